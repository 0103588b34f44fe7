//! The suite's table: backend × nemesis → counts and violations per property.

use std::fmt::Write as _;

use crate::{nemesis::Bounds, scenario::Row};

/// The table's header, as Markdown.
pub fn header() -> String {
    [
        "| backend | nemesis | writes | terms | faults | stale accepted | lost | token order | overlaps | unfenced stale | stale rejected | indeterminate | recovery | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    .join("\n")
}

/// One row of the table.
pub fn line(row: &Row) -> String {
    let v = &row.verdict;
    let recovery = match (v.recovery, v.unrecovered) {
        (_, n) if n > 0 => format!("{n} NOT RECOVERED"),
        (Some(gap), _) => format!("{} ms", gap.as_millis()),
        (None, _) => "–".to_owned(),
    };
    let broken = |counts: &[(usize, &str)]| {
        let broken: Vec<String> = counts
            .iter()
            .filter(|(count, _)| *count > 0)
            .map(|(count, what)| format!("{count} {what}"))
            .collect();
        if broken.is_empty() {
            "nothing broke in this run".to_owned()
        } else {
            broken.join(", ")
        }
    };
    let verdict = match (row.passed(), row.bounds) {
        (false, _) => "FAILED".to_owned(),
        (true, Bounds::Within) => "ok".to_owned(),
        (true, Bounds::Beyond) if v.overlaps > 0 => {
            "ok: guards overlapped, fencing held".to_owned()
        }
        (true, Bounds::Beyond) => "ok".to_owned(),
        (true, Bounds::Demonstration) => "ok: overlap caught, fencing rejected it".to_owned(),
        (true, Bounds::LockWithin) => format!(
            "ok: lock held; store: {}",
            broken(&[(v.store_lost, "lost"), (v.store_stale, "stale accepted")])
        ),
        (true, Bounds::Shown) => format!(
            "shown: {}",
            broken(&[
                (v.overlaps, "overlaps"),
                (v.token_order, "tokens out of order"),
                (v.lost, "lost"),
                (v.stale, "stale accepted"),
            ])
        ),
    };
    let mut line = String::new();
    let _ = write!(
        line,
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        row.backend,
        row.nemesis.name(),
        v.writes,
        v.terms,
        v.faults,
        v.stale,
        v.lost,
        v.token_order,
        v.overlaps,
        v.unfenced_stale,
        v.rejected,
        v.indeterminate,
        recovery,
        verdict,
    );
    line
}

/// The whole table.
pub fn table(rows: &[Row]) -> String {
    let mut table = header();
    for row in rows {
        table.push('\n');
        table.push_str(&line(row));
    }
    table
}
