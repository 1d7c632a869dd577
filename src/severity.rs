//! How severe an alert is, with one order for the whole program: the
//! parser picking a card's severity, the recommendation picking a day's and
//! the report sorting all rank alike. The sandbox ranks the cards it
//! generates by the contract (`docs/cards.md` §6) with its own code, so its
//! expected rows check this order rather than reuse it.

use std::cmp::Ordering;

/// The text recommendations use when no row of an alert had a severity.
pub const UNKNOWN_SEVERITY: &str = "unknown";

/// Severity classes in ascending order: `Critical` is the greatest.
/// Values other than the three known ones (`high`, `P1`, ...) rank between
/// `Info` and no severity at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Empty, or "unknown".
    None,
    /// Any other value.
    Other,
    Info,
    Warning,
    Critical,
}

impl Severity {
    /// Classify a severity as written (case and surrounding spaces ignored).
    pub fn of(s: &str) -> Severity {
        let s = s.trim();
        if s.eq_ignore_ascii_case("critical") {
            Severity::Critical
        } else if s.eq_ignore_ascii_case("warning") {
            Severity::Warning
        } else if s.eq_ignore_ascii_case("info") {
            Severity::Info
        } else if s.is_empty() || s.eq_ignore_ascii_case(UNKNOWN_SEVERITY) {
            Severity::None
        } else {
            Severity::Other
        }
    }
}

/// Most severe first (the order of reports): compares two written
/// severities by class, greatest first.
pub fn most_severe_first(a: &str, b: &str) -> Ordering {
    Severity::of(b).cmp(&Severity::of(a))
}

/// The most severe of several written severities (the first among equals);
/// a written `unknown` still beats an empty value, so the word is kept.
pub fn most_severe<'a>(values: impl IntoIterator<Item = &'a str>) -> &'a str {
    values.into_iter().fold("", |best, s| {
        if Severity::of(s) > Severity::of(best) || (best.is_empty() && !s.is_empty()) {
            s
        } else {
            best
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_order() {
        let ranked: Vec<Severity> = ["critical", "Warning", " info ", "high", "unknown", ""]
            .iter()
            .map(|s| Severity::of(s))
            .collect();
        assert_eq!(
            ranked,
            [
                Severity::Critical,
                Severity::Warning,
                Severity::Info,
                Severity::Other,
                Severity::None,
                Severity::None
            ]
        );
        assert!(ranked.windows(2).all(|w| w[0] >= w[1]));
        assert_eq!(most_severe_first("critical", "info"), Ordering::Less);
    }

    #[test]
    fn the_most_severe_is_picked_and_unknown_beats_nothing() {
        assert_eq!(most_severe(["info", "", "critical", "warning"]), "critical");
        assert_eq!(most_severe(["", "unknown", ""]), "unknown");
        assert_eq!(most_severe(["high", "P1"]), "high");
        assert_eq!(most_severe([]), "");
    }
}
