//! One day's alert rows → one recommendation per alert name. Pure: no I/O,
//! no clock, no logging; the `recommend` task reads the rows and writes what
//! this returns.

use std::collections::{BTreeMap, BTreeSet};

pub mod catalogue;

use serde::{Deserialize, Serialize};

use crate::lark::card::AlertRow;
use crate::recommendation::catalogue::Catalogue;
use crate::severity::{Severity, most_severe_first};

pub use crate::severity::UNKNOWN_SEVERITY;

/// One row of the daily recommendations table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recommendation {
    pub report_date: String,
    pub alert_name: String,
    pub severity: String,
    pub fired_count: u32,
    pub resolved_count: u32,
    pub cluster_count: u32,
    /// Sorted, distinct, comma-joined.
    pub clusters: String,
    /// Sorted, distinct, comma-joined.
    pub regions: String,
    pub is_noisy: bool,
    pub recommendation: String,
    pub in_catalogue: bool,
}

/// An alert is noisy when it fired at least `fired` times in the day or
/// touched at least `clusters` distinct clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoisyThresholds {
    pub fired: u32,
    pub clusters: u32,
}

impl Default for NoisyThresholds {
    fn default() -> Self {
        NoisyThresholds {
            fired: 10,
            clusters: 3,
        }
    }
}

impl NoisyThresholds {
    pub fn is_noisy(&self, fired_count: u32, cluster_count: u32) -> bool {
        fired_count >= self.fired || cluster_count >= self.clusters
    }
}

/// What one alert name accumulates over the day's rows.
#[derive(Default)]
struct Tally {
    fired: u32,
    resolved: u32,
    clusters: BTreeSet<String>,
    regions: BTreeSet<String>,
    /// The most severe non-empty row severity, lowercased.
    row_severity: Option<String>,
}

impl Tally {
    fn add(&mut self, row: &AlertRow) {
        let status = row.status.trim();
        if status.eq_ignore_ascii_case("firing") {
            self.fired = self.fired.saturating_add(1);
        } else if status.eq_ignore_ascii_case("resolved") {
            self.resolved = self.resolved.saturating_add(1);
        }
        self.clusters.extend(split_list(&row.clusters));
        self.regions.extend(split_list(&row.regions));

        let severity = row.severity.trim().to_ascii_lowercase();
        if severity.is_empty() {
            return;
        }
        let more_severe = match &self.row_severity {
            None => true,
            // Among equal ranks (two "other" values) the alphabetically first
            // wins, so the result does not depend on row order.
            Some(current) => {
                (Severity::of(&severity), std::cmp::Reverse(&severity))
                    > (Severity::of(current), std::cmp::Reverse(current))
            }
        };
        if more_severe {
            self.row_severity = Some(severity);
        }
    }
}

/// A comma-joined list → its trimmed, non-empty items.
fn split_list(list: &str) -> impl Iterator<Item = String> + '_ {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn join(set: &BTreeSet<String>) -> String {
    set.iter().map(String::as_str).collect::<Vec<_>>().join(",")
}

/// The text for an alert the catalogue does not know.
fn generic_recommendation(alert_name: &str, clusters: &BTreeSet<String>) -> String {
    let list = if clusters.is_empty() {
        "none recorded".to_owned()
    } else {
        clusters
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "No runbook for {alert_name} yet: check the alert's source rule and the affected \
         clusters ({list}), then add it to the catalogue."
    )
}

/// The rows whose `alert_date` is `date` (others are ignored) → one
/// recommendation per alert name, most severe first, then most fired, then
/// by name. Rows with an empty alert name are ignored.
pub fn compute(
    date: &str,
    rows: &[AlertRow],
    catalogue: &Catalogue,
    noisy: &NoisyThresholds,
) -> Vec<Recommendation> {
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    for row in rows {
        let name = row.alert_name.trim();
        if name.is_empty() || row.alert_date != date {
            continue;
        }
        tallies.entry(name).or_default().add(row);
    }

    let mut out: Vec<Recommendation> = tallies
        .into_iter()
        .map(|(name, tally)| {
            let entry = catalogue.get(name);
            let severity = match (entry, tally.row_severity) {
                (Some(e), _) => e.severity.clone(),
                (None, Some(s)) => s,
                (None, None) => UNKNOWN_SEVERITY.to_owned(),
            };
            let recommendation = match entry {
                Some(e) => e.recommendation.clone(),
                None => generic_recommendation(name, &tally.clusters),
            };
            let cluster_count = u32::try_from(tally.clusters.len()).unwrap_or(u32::MAX);
            Recommendation {
                report_date: date.to_owned(),
                alert_name: name.to_owned(),
                severity,
                fired_count: tally.fired,
                resolved_count: tally.resolved,
                cluster_count,
                clusters: join(&tally.clusters),
                regions: join(&tally.regions),
                is_noisy: noisy.is_noisy(tally.fired, cluster_count),
                recommendation,
                in_catalogue: entry.is_some(),
            }
        })
        .collect();

    sort_report(&mut out);
    out
}

/// The report's order: most severe first, then most fired, then by name.
pub fn sort_report(recs: &mut [Recommendation]) {
    recs.sort_by(|a, b| {
        most_severe_first(&a.severity, &b.severity)
            .then(b.fired_count.cmp(&a.fired_count))
            .then_with(|| a.alert_name.cmp(&b.alert_name))
    });
}

/// Alert names in `rows` (any date) that the catalogue does not know, sorted
/// and distinct.
pub fn unmapped(rows: &[AlertRow], catalogue: &Catalogue) -> Vec<String> {
    rows.iter()
        .map(|r| r.alert_name.trim())
        .filter(|name| !name.is_empty() && catalogue.get(name).is_none())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDateTime, TimeZone, Utc};
    use chrono_tz::America::Los_Angeles;

    const DAY: &str = "2026-03-10";

    fn row(name: &str, status: &str, severity: &str, clusters: &str, regions: &str) -> AlertRow {
        AlertRow {
            message_id: format!("om_{name}_{status}"),
            lark_message_id: format!("om_{name}"),
            chat_id: "oc_test".into(),
            status: status.into(),
            alert_name: name.into(),
            severity: severity.into(),
            clusters: clusters.into(),
            regions: regions.into(),
            alert_count: 5,
            created_at: format!("{DAY} 18:00:00"),
            alert_date: DAY.into(),
            title: "title".into(),
            summary: "summary".into(),
        }
    }

    fn firing(name: &str, clusters: &str) -> AlertRow {
        row(name, "firing", "", clusters, "")
    }

    fn one<'a>(recs: &'a [Recommendation], name: &str) -> &'a Recommendation {
        recs.iter()
            .find(|r| r.alert_name == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    }

    fn run(rows: &[AlertRow]) -> Vec<Recommendation> {
        compute(
            DAY,
            rows,
            &Catalogue::builtin(),
            &NoisyThresholds::default(),
        )
    }

    #[test]
    fn counts_rows_not_alert_count() {
        let rows = vec![
            row("ProcNotRunning", "firing", "critical", "c1", "r1"),
            row("ProcNotRunning", "firing", "critical", "c1", "r1"),
            row("ProcNotRunning", "resolved", "critical", "c1", "r1"),
            row("ProcNotRunning", "Firing", "critical", "c1", "r1"),
            row("ProcNotRunning", "weird", "critical", "c1", "r1"),
        ];
        let recs = run(&rows);
        assert_eq!(recs.len(), 1);
        let r = &recs[0];
        assert_eq!(r.report_date, DAY);
        assert_eq!((r.fired_count, r.resolved_count), (3, 1));
    }

    #[test]
    fn clusters_and_regions_are_split_trimmed_and_deduplicated() {
        let rows = vec![
            row("FEGCCount", "firing", "", "b, a", "us-west-2,us-east-1"),
            row("FEGCCount", "resolved", "", "a,,c ", " us-east-1 , "),
            row("FEGCCount", "firing", "", "", ""),
        ];
        let r = &run(&rows)[0];
        assert_eq!(r.clusters, "a,b,c");
        assert_eq!(r.cluster_count, 3);
        assert_eq!(r.regions, "us-east-1,us-west-2");
    }

    #[test]
    fn noisy_by_fired_count_boundary() {
        let nine: Vec<_> = (0..9).map(|_| firing("FEGCCount", "c1")).collect();
        assert!(!run(&nine)[0].is_noisy);
        let ten: Vec<_> = (0..10).map(|_| firing("FEGCCount", "c1")).collect();
        let r = &run(&ten)[0];
        assert_eq!(r.fired_count, 10);
        assert!(r.is_noisy);
    }

    #[test]
    fn resolved_rows_do_not_count_towards_noise() {
        let mut rows: Vec<_> = (0..9).map(|_| firing("FEGCCount", "c1")).collect();
        rows.extend((0..5).map(|_| row("FEGCCount", "resolved", "", "c1", "")));
        assert!(!run(&rows)[0].is_noisy);
    }

    #[test]
    fn noisy_by_cluster_count_boundary() {
        let two = vec![firing("FEGCCount", "c1"), firing("FEGCCount", "c2")];
        assert!(!run(&two)[0].is_noisy);
        let three = vec![firing("FEGCCount", "c1,c2"), firing("FEGCCount", "c3")];
        let r = &run(&three)[0];
        assert_eq!(r.cluster_count, 3);
        assert!(r.is_noisy);
    }

    #[test]
    fn noisy_thresholds_are_configurable() {
        let c = Catalogue::builtin();
        let rows: Vec<_> = (0..4)
            .map(|i| firing("FEGCCount", &format!("c{}", i % 2)))
            .collect();
        let strict = NoisyThresholds {
            fired: 4,
            clusters: 100,
        };
        assert!(compute(DAY, &rows, &c, &strict)[0].is_noisy);
        let by_clusters = NoisyThresholds {
            fired: 100,
            clusters: 2,
        };
        assert!(compute(DAY, &rows, &c, &by_clusters)[0].is_noisy);
        let lax = NoisyThresholds {
            fired: 5,
            clusters: 3,
        };
        assert!(!compute(DAY, &rows, &c, &lax)[0].is_noisy);
    }

    #[test]
    fn noisy_thresholds_deserialize_with_defaults() {
        let t: NoisyThresholds = toml::from_str("").unwrap();
        assert_eq!(t, NoisyThresholds::default());
        assert_eq!((t.fired, t.clusters), (10, 3));
        let t: NoisyThresholds = toml::from_str("fired = 20").unwrap();
        assert_eq!((t.fired, t.clusters), (20, 3));
        assert!(toml::from_str::<NoisyThresholds>("fires = 20").is_err());
    }

    #[test]
    fn catalogue_severity_beats_row_severity() {
        let rows = vec![
            row("OperationDurationGT10m", "firing", "critical", "c1", ""),
            row("ProcNotRunning", "firing", "info", "c1", ""),
        ];
        let recs = run(&rows);
        let op = one(&recs, "OperationDurationGT10m");
        assert_eq!(op.severity, "info");
        assert!(op.in_catalogue);
        let c = Catalogue::builtin();
        assert_eq!(
            op.recommendation,
            c.get("OperationDurationGT10m").unwrap().recommendation
        );
        assert_eq!(one(&recs, "ProcNotRunning").severity, "critical");
    }

    #[test]
    fn catalogue_lookup_ignores_case() {
        let recs = run(&[firing("procnotrunning", "c1")]);
        assert_eq!(recs[0].alert_name, "procnotrunning");
        assert!(recs[0].in_catalogue);
        assert_eq!(recs[0].severity, "critical");
    }

    #[test]
    fn fallback_severity_is_highest_in_rows() {
        let rows = vec![
            row("MysteryAlert", "firing", "info", "c1", ""),
            row("MysteryAlert", "firing", "warning", "c1", ""),
            row("MysteryAlert", "resolved", "", "c1", ""),
            row("MysteryAlert", "firing", "high", "c1", ""),
            row("OtherOnly", "firing", "sev4", "c1", ""),
            row("OtherOnly", "firing", "high", "c1", ""),
            row("CritSomewhere", "firing", "high", "c1", ""),
            row("CritSomewhere", "resolved", "critical", "c1", ""),
        ];
        let recs = run(&rows);
        assert_eq!(one(&recs, "MysteryAlert").severity, "warning");
        assert_eq!(one(&recs, "OtherOnly").severity, "high");
        assert_eq!(one(&recs, "CritSomewhere").severity, "critical");
        assert!(recs.iter().all(|r| !r.in_catalogue));
    }

    #[test]
    fn unknown_when_no_severity_anywhere() {
        let rows = vec![
            row("MysteryAlert", "firing", "", "c1", ""),
            row("MysteryAlert", "resolved", "  ", "c1", ""),
        ];
        assert_eq!(run(&rows)[0].severity, "unknown");
    }

    #[test]
    fn generic_recommendation_names_alert_and_clusters() {
        let rows = vec![
            firing("MysteryAlert", "olap-b,olap-a"),
            firing("NoClusters", ""),
        ];
        let recs = run(&rows);
        let r = one(&recs, "MysteryAlert");
        assert!(!r.in_catalogue);
        assert_eq!(
            r.recommendation,
            "No runbook for MysteryAlert yet: check the alert's source rule and the affected \
             clusters (olap-a, olap-b), then add it to the catalogue."
        );
        let r = one(&recs, "NoClusters");
        assert!(r.recommendation.contains("NoClusters"));
        assert!(r.recommendation.contains("(none recorded)"));
    }

    #[test]
    fn other_dates_and_empty_names_are_ignored() {
        let mut before = firing("FEGCCount", "c9");
        before.alert_date = "2026-03-09".into();
        let mut after = firing("LoadJobFailed", "c9");
        after.alert_date = "2026-03-11".into();
        let rows = vec![
            before,
            after,
            firing("", "c1"),
            firing("   ", "c1"),
            firing("FEGCCount", "c1"),
        ];
        let recs = run(&rows);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].alert_name, "FEGCCount");
        assert_eq!(recs[0].fired_count, 1);
        assert_eq!(recs[0].clusters, "c1");
        assert!(run(&[]).is_empty());
    }

    /// The Pacific date of a UTC `created_at`, as cards.md computes `alert_date`.
    fn pacific_date(created_at: &str) -> String {
        let naive = NaiveDateTime::parse_from_str(created_at, "%Y-%m-%d %H:%M:%S").unwrap();
        Utc.from_utc_datetime(&naive)
            .with_timezone(&Los_Angeles)
            .format("%Y-%m-%d")
            .to_string()
    }

    #[test]
    fn dst_fall_back_day_keeps_both_one_thirties() {
        let date = "2026-11-01";
        // 01:30 PDT (UTC-7) and 01:30 PST (UTC-8): the repeated hour.
        let created = ["2026-11-01 08:30:00", "2026-11-01 09:30:00"];
        let mut rows = Vec::new();
        for (i, at) in created.iter().enumerate() {
            let local = Utc
                .from_utc_datetime(&NaiveDateTime::parse_from_str(at, "%Y-%m-%d %H:%M:%S").unwrap())
                .with_timezone(&Los_Angeles);
            assert_eq!(local.format("%H:%M").to_string(), "01:30");
            assert_eq!(
                local.format("%Z").to_string(),
                ["PDT", "PST"][i],
                "{at} is not in the expected offset"
            );
            let mut r = firing("BeAliveAbnormal", &format!("c{i}"));
            r.created_at = (*at).into();
            r.alert_date = pacific_date(at);
            assert_eq!(r.alert_date, date);
            rows.push(r);
        }
        // 2026-11-02 00:30 PST is 08:30 UTC on the 2nd: the next day.
        let mut late = firing("BeAliveAbnormal", "c9");
        late.created_at = "2026-11-02 08:30:00".into();
        late.alert_date = pacific_date(&late.created_at);
        assert_eq!(late.alert_date, "2026-11-02");
        rows.push(late);

        let recs = compute(
            date,
            &rows,
            &Catalogue::builtin(),
            &NoisyThresholds::default(),
        );
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].report_date, date);
        assert_eq!(recs[0].fired_count, 2);
        assert_eq!(recs[0].clusters, "c0,c1");
    }

    #[test]
    fn sorted_by_severity_then_fired_desc_then_name() {
        let mut rows = Vec::new();
        let mut add = |name: &str, severity: &str, n: usize| {
            for _ in 0..n {
                rows.push(row(name, "firing", severity, "c1", ""));
            }
        };
        add("OperationDurationGT10m", "", 5); // info (catalogue)
        add("NoSeverity", "", 50); // unknown
        add("OddSeverity", "high", 50); // other
        add("FEGCCount", "", 2); // warning
        add("FEHeapUsageTooHigh", "", 7); // warning
        add("BeAliveAbnormal", "", 1); // critical
        add("ProcNotRunning", "", 1); // critical, same count: by name
        add("ClusterStateAbnormal", "", 3); // critical
        let names: Vec<String> = run(&rows).into_iter().map(|r| r.alert_name).collect();
        assert_eq!(
            names,
            [
                "ClusterStateAbnormal",
                "BeAliveAbnormal",
                "ProcNotRunning",
                "FEHeapUsageTooHigh",
                "FEGCCount",
                "OperationDurationGT10m",
                "OddSeverity",
                "NoSeverity",
            ]
        );
    }

    #[test]
    fn unmapped_names_are_sorted_distinct() {
        let mut other_day = firing("ZetaAlert", "c1");
        other_day.alert_date = "2026-01-01".into();
        let rows = vec![
            firing("MysteryAlert", "c1"),
            firing("ProcNotRunning", "c1"),
            firing("MysteryAlert", "c2"),
            firing("", "c1"),
            firing("AlphaAlert", "c1"),
            firing("fegccount", "c1"),
            other_day,
        ];
        assert_eq!(
            unmapped(&rows, &Catalogue::builtin()),
            ["AlphaAlert", "MysteryAlert", "ZetaAlert"]
        );
        assert!(unmapped(&[], &Catalogue::builtin()).is_empty());
    }
}
