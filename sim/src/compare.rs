//! The determinism check: two runs of one seed must write the same files.

use std::path::Path;

/// The files of a run that must be identical for the same seed.
/// (`outcome.json` names the run's own folder, so it is not among them.)
pub const COMPARED: &[&str] = &["history.jsonl", "final-reads.jsonl", "report/report.json"];

/// The first difference between the runs in `a` and `b`, as `file:line: left | right`,
/// or `None` when every compared file is the same.
pub fn first_divergence(a: &Path, b: &Path) -> Option<String> {
    for name in COMPARED {
        let left = std::fs::read_to_string(a.join(name)).ok();
        let right = std::fs::read_to_string(b.join(name)).ok();
        match (left, right) {
            (None, None) => continue,
            (Some(_), None) | (None, Some(_)) => return Some(format!("{name}: written by one run only")),
            (Some(l), Some(r)) if l == r => continue,
            (Some(l), Some(r)) => {
                let line = l.lines().zip(r.lines()).position(|(x, y)| x != y);
                return Some(match line {
                    Some(i) => format!(
                        "{name}:{}: `{}` | `{}`",
                        i + 1,
                        l.lines().nth(i).unwrap_or_default().trim(),
                        r.lines().nth(i).unwrap_or_default().trim()
                    ),
                    None => format!(
                        "{name}: one run's file is longer ({} vs {} lines)",
                        l.lines().count(),
                        r.lines().count()
                    ),
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_first_different_line() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(a.path().join("history.jsonl"), "[\n  1,\n  2\n]").unwrap();
        std::fs::write(b.path().join("history.jsonl"), "[\n  1,\n  2\n]").unwrap();
        assert_eq!(first_divergence(a.path(), b.path()), None);
        std::fs::write(b.path().join("final-reads.jsonl"), "{}").unwrap();
        assert_eq!(first_divergence(a.path(), b.path()).unwrap(), "final-reads.jsonl: written by one run only");
        std::fs::write(a.path().join("final-reads.jsonl"), "{\n \"x\": 1\n}").unwrap();
        std::fs::write(b.path().join("final-reads.jsonl"), "{\n \"x\": 2\n}").unwrap();
        assert_eq!(first_divergence(a.path(), b.path()).unwrap(), "final-reads.jsonl:2: `\"x\": 1` | `\"x\": 2`");
    }
}
