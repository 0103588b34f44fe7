//! Figures over repetitions: the median, and the min–max as the noise the run shows.

/// One measured quantity, once per repetition.
#[derive(Clone, Debug, Default)]
pub struct Figure(pub Vec<f64>);

impl Figure {
    /// Adds one repetition's value; `NaN` (no such figure) is left out.
    pub fn push(&mut self, value: f64) {
        if !value.is_nan() {
            self.0.push(value);
        }
    }

    fn sorted(&self) -> Vec<f64> {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        sorted
    }

    /// The median over repetitions (`NaN` without any).
    pub fn median(&self) -> f64 {
        let sorted = self.sorted();
        match sorted.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        }
    }

    /// `median (min–max)`, or `median` for one repetition, or `–` for none; with three
    /// significant digits of the median (at least), so that every figure reads alike.
    pub fn show(&self) -> String {
        let sorted = self.sorted();
        let decimals = decimals(self.median());
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

/// Decimals that show `value` with three significant digits, none for 100 and up.
fn decimals(value: f64) -> usize {
    let value = value.abs();
    if value >= 100.0 || value == 0.0 || !value.is_finite() {
        0
    } else {
        // 10..100 → 1, 1..10 → 2, 0.1..1 → 3, ...
        (2.0 - value.log10().floor()).clamp(0.0, 6.0) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_and_the_spread_of_repetitions() {
        assert_eq!(Figure(vec![3.0, 1.0, 2.0]).show(), "2.00 (1.00–3.00)");
        assert_eq!(Figure(vec![400.0, 100.0]).show(), "250 (100–400)");
        assert_eq!(Figure(vec![7.25]).show(), "7.25");
        assert_eq!(Figure(vec![0.1234]).show(), "0.123");
        assert_eq!(Figure(vec![14811.4]).show(), "14811");
        assert_eq!(Figure(vec![0.0, 0.0]).show(), "0 (0–0)");
        assert_eq!(Figure(Vec::new()).show(), "–");
    }

    #[test]
    fn a_missing_figure_is_left_out() {
        let mut figure = Figure::default();
        figure.push(f64::NAN);
        figure.push(2.0);
        assert_eq!(figure.show(), "2.00");
    }
}
