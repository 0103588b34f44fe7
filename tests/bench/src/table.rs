//! A table of one scenario: a row per library, figures filled in one repetition at a
//! time, printed as Markdown at the end.

use crate::{figures::Figure, library::Library, measure::Scenario};

/// One library's row: a [`Figure`] per column of its scenario.
pub struct Row<'a> {
    /// The library measured.
    pub library: Library<'a>,
    figures: Vec<Figure>,
    /// The row (of ours, on the same server) its first figure is compared with.
    versus: Option<usize>,
}

/// The table of one scenario.
pub struct Table<'a> {
    /// What is measured.
    pub scenario: Scenario,
    /// Its rows, in order.
    pub rows: Vec<Row<'a>>,
    footer: Option<&'static str>,
}

impl<'a> Table<'a> {
    /// An empty table of `scenario`.
    pub fn new(scenario: Scenario) -> Self {
        Self {
            scenario,
            rows: Vec::new(),
            footer: None,
        }
    }

    /// Adds a row; returns its index, for [`versus`](Table::versus).
    pub fn row(&mut self, library: Library<'a>) -> usize {
        self.rows.push(Row {
            library,
            figures: vec![Figure::default(); self.scenario.columns().len()],
            versus: None,
        });
        self.rows.len() - 1
    }

    /// Adds a baseline's row whose first figure is shown as a multiple of row `ours`'s.
    pub fn versus(&mut self, library: Library<'a>, ours: usize) {
        let row = self.row(library);
        self.rows[row].versus = Some(ours);
    }

    /// A line printed under the table.
    pub fn footer(&mut self, footer: &'static str) {
        self.footer = Some(footer);
    }

    /// Records one repetition's figures of row `row`, in column order.
    pub fn record(&mut self, row: usize, values: &[f64]) {
        for (figure, value) in self.rows[row].figures.iter_mut().zip(values) {
            figure.push(*value);
        }
    }

    /// The table as Markdown.
    pub fn markdown(&self) -> String {
        let compared = self.rows.iter().any(|row| row.versus.is_some());
        let mut columns = vec!["library"];
        columns.extend(self.scenario.columns());
        if compared {
            columns.push("first figure × ours");
        }
        let mut out = format!(
            "\n### {}\n\n| {} |\n|{}|\n",
            self.scenario.title(),
            columns.join(" | "),
            vec!["---"; columns.len()].join("|")
        );
        for row in &self.rows {
            let mut cells = vec![row.library.label()];
            cells.extend(row.figures.iter().map(Figure::show));
            if compared {
                cells.push(match row.versus {
                    Some(ours) => ratio(&row.figures[0], &self.rows[ours]),
                    None => "–".to_owned(),
                });
            }
            out += &format!("| {} |\n", cells.join(" | "));
        }
        if let Some(footer) = self.footer {
            out += &format!("\n{footer}\n");
        }
        out
    }
}

/// `×R lock-X`: a baseline's figure as a multiple of ours.
fn ratio(theirs: &Figure, ours: &Row<'_>) -> String {
    let ratio = theirs.median() / ours.figures[0].median();
    let digits = if ratio.abs() >= 10.0 { 0 } else { 2 };
    format!("×{ratio:.digits$} {}", ours.library.label())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{baselines::Settings, subjects::Subject};

    #[test]
    fn a_baseline_is_shown_as_a_multiple_of_ours() {
        let memory = Subject::Memory(lock_core::MemoryBackend::new());
        let mut table = Table::new(Scenario::Steady);
        let ours = table.row(Library::Ours(&memory));
        table.versus(Library::KubeLeaseManager(Settings::Lease(15)), ours);
        table.footer("Counted: requests.");
        for (ours_value, theirs_value) in [(0.2, 0.4), (0.2, 0.6), (0.4, 0.4)] {
            table.record(0, &[ours_value, 0.0]);
            table.record(1, &[theirs_value, f64::NAN]);
        }
        assert_eq!(
            table.markdown(),
            "\n### Steady state: server requests per second for one held lock, alone or with a standby waiting (15 s lease, held 20 s; a 30 s lease 60 s)\n\n\
             | library | requests/s | reads/s | first figure × ours |\n|---|---|---|---|\n\
             | lock-memory | 0.200 (0.200–0.400) | 0 (0–0) | – |\n\
             | kube-lease-manager 0.13, 15 s lease | 0.400 (0.400–0.600) | – | ×2.00 lock-memory |\n\
             \nCounted: requests.\n"
        );
    }
}
