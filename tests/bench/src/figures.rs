//! Figures over repetitions: the median, and the min–max as the noise the run shows.

/// One measured quantity, once per repetition.
#[derive(Clone, Debug, Default)]
pub struct Figure(pub Vec<f64>);

impl Figure {
    /// Adds one repetition's value.
    pub fn push(&mut self, value: f64) {
        self.0.push(value);
    }

    fn sorted(&self) -> Vec<f64> {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        sorted
    }

    /// The median over repetitions.
    pub fn median(&self) -> f64 {
        let sorted = self.sorted();
        match sorted.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        }
    }

    /// `median (min–max)` with `decimals` digits, or `median` for one repetition.
    pub fn show(&self, decimals: usize) -> String {
        let sorted = self.sorted();
        match (sorted.first(), sorted.last()) {
            (Some(min), Some(max)) if sorted.len() > 1 => format!(
                "{:.decimals$} ({min:.decimals$}–{max:.decimals$})",
                self.median()
            ),
            (Some(only), _) => format!("{only:.decimals$}"),
            _ => "–".to_owned(),
        }
    }
}

/// A Markdown table, printed as it is filled.
pub struct Table;

impl Table {
    /// Prints a title and the header.
    pub fn start(title: &str, columns: &[&str]) {
        println!();
        println!("### {title}");
        println!();
        println!("| {} |", columns.join(" | "));
        println!("|{}|", vec!["---"; columns.len()].join("|"));
    }

    /// Prints a row.
    pub fn row(cells: &[String]) {
        println!("| {} |", cells.join(" | "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_and_the_spread_of_repetitions() {
        assert_eq!(Figure(vec![3.0, 1.0, 2.0]).show(1), "2.0 (1.0–3.0)");
        assert_eq!(Figure(vec![4.0, 1.0]).show(0), "2 (1–4)");
        assert_eq!(Figure(vec![7.25]).show(2), "7.25");
        assert_eq!(Figure(Vec::new()).show(2), "–");
    }
}
