//! The alert catalogue: per alert name, the severity it is filed under and
//! what on-call should do first. The built-in table is `catalogue.toml`
//! beside this file; an operator's file of the same shape replaces or extends
//! its entries. This module only reads and validates; the `recommend` task
//! decides what to do with an alert the catalogue does not know.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const BUILTIN_TOML: &str = include_str!("catalogue.toml");

/// Where a catalogue error came from, as shown in its message.
const BUILTIN_ORIGIN: &str = "built-in catalogue.toml";

/// The severities a catalogue entry may have.
pub const SEVERITIES: [&str; 3] = ["critical", "warning", "info"];

/// One alert type's severity and first-response recommendation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogueEntry {
    pub severity: String,
    pub recommendation: String,
}

/// Errors loading a catalogue. Each names the file (or the built-in table)
/// and, where it is about one entry, the alert.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("cannot read alert catalogue {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid alert catalogue {origin}: {source}")]
    Parse {
        origin: String,
        source: toml::de::Error,
    },
    #[error(
        "alert catalogue {origin}: alert {alert:?} has severity {severity:?}; expected critical, warning or info"
    )]
    BadSeverity {
        origin: String,
        alert: String,
        severity: String,
    },
    #[error("alert catalogue {origin}: alert {alert:?} has an empty recommendation")]
    EmptyRecommendation { origin: String, alert: String },
    #[error(
        "alert catalogue {origin}: alert {alert:?} is not in the built-in catalogue, so it needs a {missing}"
    )]
    Incomplete {
        origin: String,
        alert: String,
        missing: &'static str,
    },
    #[error("alert catalogue {origin}: alert name {alert:?} is empty or has surrounding spaces")]
    BadName { origin: String, alert: String },
}

/// The file shape: `[alerts.<Name>]` tables, nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    #[serde(default)]
    alerts: BTreeMap<String, EntryFile>,
}

/// An entry as written. Both fields are optional so an override file can
/// change only the severity or only the text of a built-in entry; a new
/// alert must give both.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryFile {
    severity: Option<String>,
    recommendation: Option<String>,
}

/// Alert name → entry.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    entries: BTreeMap<String, CatalogueEntry>,
}

impl Catalogue {
    /// The catalogue shipped in the binary.
    ///
    /// # Panics
    /// If `catalogue.toml` is invalid, which the unit tests rule out.
    pub fn builtin() -> Catalogue {
        let mut catalogue = Catalogue::default();
        catalogue
            .merge(BUILTIN_TOML, BUILTIN_ORIGIN)
            .expect("the built-in catalogue.toml is valid");
        catalogue
    }

    /// The built-in catalogue, then `override_file`'s entries on top: a name
    /// already present (exactly or ignoring ASCII case) is updated field by
    /// field, a new name is added.
    pub fn load(override_file: Option<&Path>) -> Result<Catalogue, CatalogueError> {
        let mut catalogue = Catalogue::builtin();
        if let Some(path) = override_file {
            let text = std::fs::read_to_string(path).map_err(|source| CatalogueError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            catalogue.merge(&text, &path.display().to_string())?;
        }
        Ok(catalogue)
    }

    /// The entry for `alert_name`: an exact match, else the first name equal
    /// ignoring ASCII case.
    pub fn get(&self, alert_name: &str) -> Option<&CatalogueEntry> {
        self.entries.get(alert_name).or_else(|| {
            self.entries
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(alert_name))
                .map(|(_, entry)| entry)
        })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Alert names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Every entry, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &CatalogueEntry)> {
        self.entries
            .iter()
            .map(|(name, entry)| (name.as_str(), entry))
    }

    /// Validates every entry of `text` before changing anything, so a bad
    /// file leaves the catalogue as it was.
    fn merge(&mut self, text: &str, origin: &str) -> Result<(), CatalogueError> {
        let file: CatalogueFile = toml::from_str(text).map_err(|source| CatalogueError::Parse {
            origin: origin.to_owned(),
            source,
        })?;
        let mut updates = Vec::with_capacity(file.alerts.len());
        for (alert, raw) in file.alerts {
            if alert.is_empty() || alert.trim() != alert {
                return Err(CatalogueError::BadName {
                    origin: origin.to_owned(),
                    alert,
                });
            }
            let severity = match raw.severity {
                Some(s) => {
                    Some(
                        validate_severity(&s).ok_or_else(|| CatalogueError::BadSeverity {
                            origin: origin.to_owned(),
                            alert: alert.clone(),
                            severity: s.clone(),
                        })?,
                    )
                }
                None => None,
            };
            let recommendation = match raw.recommendation {
                Some(r) if r.trim().is_empty() => {
                    return Err(CatalogueError::EmptyRecommendation {
                        origin: origin.to_owned(),
                        alert,
                    });
                }
                Some(r) => Some(r.trim().to_owned()),
                None => None,
            };
            let key = self.existing_key(&alert);
            if key.is_none() {
                let missing = match (&severity, &recommendation) {
                    (None, _) => Some("severity"),
                    (_, None) => Some("recommendation"),
                    _ => None,
                };
                if let Some(missing) = missing {
                    return Err(CatalogueError::Incomplete {
                        origin: origin.to_owned(),
                        alert,
                        missing,
                    });
                }
            }
            updates.push((key.unwrap_or(alert), severity, recommendation));
        }
        for (name, severity, recommendation) in updates {
            let entry = self.entries.entry(name).or_insert_with(|| CatalogueEntry {
                severity: String::new(),
                recommendation: String::new(),
            });
            if let Some(s) = severity {
                entry.severity = s;
            }
            if let Some(r) = recommendation {
                entry.recommendation = r;
            }
        }
        Ok(())
    }

    /// The stored name `alert` refers to, if any (exact, then ignoring case).
    fn existing_key(&self, alert: &str) -> Option<String> {
        if self.entries.contains_key(alert) {
            return Some(alert.to_owned());
        }
        self.entries
            .keys()
            .find(|name| name.eq_ignore_ascii_case(alert))
            .cloned()
    }
}

/// `Some(normalised)` for critical/warning/info in any case, else `None`.
fn validate_severity(s: &str) -> Option<String> {
    let lower = s.trim().to_ascii_lowercase();
    SEVERITIES.contains(&lower.as_str()).then_some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const SEEDS: [(&str, &str); 9] = [
        ("ProcNotRunning", "critical"),
        ("BeAliveAbnormal", "critical"),
        ("ClusterStateAbnormal", "critical"),
        ("FEQueryErrRateMoreThan60%", "critical"),
        ("FEHeapUsageTooHigh", "warning"),
        ("FEMaxTabletCompaction", "warning"),
        ("RootFreeDiskLessThan10%", "warning"),
        ("FEGCCount", "warning"),
        ("OperationDurationGT10m", "info"),
    ];

    /// The alert names crates/sandbox/src/generator.rs draws from.
    const GENERATOR_NAMES: [&str; 23] = [
        "ProcNotRunning",
        "BeAliveAbnormal",
        "ClusterStateAbnormal",
        "FEQueryErrRateMoreThan60%",
        "FEHeapUsageTooHigh",
        "FEMaxTabletCompaction",
        "RootFreeDiskLessThan10%",
        "FEGCCount",
        "OperationDurationGT10m",
        "BECpuUsageHigh",
        "BEMemoryUsageHigh",
        "BEDiskIOUtilHigh",
        "FEJvmOldGcTooFrequent",
        "LoadJobFailed",
        "CompactionScoreHigh",
        "QueryLatencyP99High",
        "TabletReplicaMissing",
        "RoutineLoadPaused",
        "BEDataDiskUsageHigh",
        "FEMetaJournalLag",
        "MaterializedViewRefreshFailed",
        "CNNodeDown",
        "StreamLoadErrRateHigh",
    ];

    fn override_file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn builtin_parses_with_seed_severities() {
        let c = Catalogue::builtin();
        assert!(c.len() >= 21, "only {} entries", c.len());
        for (name, severity) in SEEDS {
            let entry = c.get(name).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(entry.severity, severity, "{name}");
        }
    }

    #[test]
    fn builtin_entries_are_complete() {
        let c = Catalogue::builtin();
        assert!(c.len() >= SEEDS.len() + 12);
        for (name, entry) in c.iter() {
            assert!(SEVERITIES.contains(&entry.severity.as_str()), "{name}");
            let r = &entry.recommendation;
            assert!(r.len() >= 40, "{name}: recommendation too short");
            assert!(!r.contains('\n'), "{name}: recommendation spans lines");
        }
    }

    #[test]
    fn builtin_covers_generator_names() {
        let c = Catalogue::builtin();
        for name in GENERATOR_NAMES {
            assert!(c.entries.contains_key(name), "{name} missing");
        }
    }

    #[test]
    fn names_are_sorted_and_match_len() {
        let c = Catalogue::builtin();
        let names: Vec<&str> = c.names().collect();
        assert_eq!(names.len(), c.len());
        assert!(names.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn get_is_exact_then_case_insensitive() {
        let c = Catalogue::builtin();
        assert_eq!(c.get("procnotrunning"), c.get("ProcNotRunning"));
        assert!(c.get("PROCNOTRUNNING").is_some());
        assert!(c.get("ProcNotRunningX").is_none());
        assert!(c.get("").is_none());
    }

    #[test]
    fn load_without_file_is_builtin() {
        let c = Catalogue::load(None).unwrap();
        assert_eq!(c.len(), Catalogue::builtin().len());
    }

    #[test]
    fn load_overrides_and_extends() {
        let f = override_file(
            r#"
[alerts.ProcNotRunning]
severity = "warning"
recommendation = "Page the platform team."

[alerts.fegccount]
recommendation = "Ignore during nightly batch."

[alerts.MyCustomAlert]
severity = "Info"
recommendation = "Check the custom exporter."
"#,
        );
        let builtin = Catalogue::builtin();
        let c = Catalogue::load(Some(f.path())).unwrap();
        assert_eq!(c.len(), builtin.len() + 1);
        let proc_ = c.get("ProcNotRunning").unwrap();
        assert_eq!(proc_.severity, "warning");
        assert_eq!(proc_.recommendation, "Page the platform team.");
        // A case-insensitive key updates the existing entry, keeping its severity.
        let gc = c.get("FEGCCount").unwrap();
        assert_eq!(gc.severity, "warning");
        assert_eq!(gc.recommendation, "Ignore during nightly batch.");
        assert!(c.names().all(|n| n != "fegccount"));
        assert_eq!(c.get("MyCustomAlert").unwrap().severity, "info");
    }

    #[test]
    fn unknown_keys_name_the_file() {
        for text in [
            "[alerts.ProcNotRunning]\nseverity = \"critical\"\nrunbook = \"x\"\n",
            "[alert.ProcNotRunning]\nseverity = \"critical\"\n",
            "title = \"x\"\n",
        ] {
            let f = override_file(text);
            let err = Catalogue::load(Some(f.path())).unwrap_err();
            assert!(matches!(err, CatalogueError::Parse { .. }), "{err}");
            let msg = err.to_string();
            assert!(msg.contains(&f.path().display().to_string()), "{msg}");
        }
    }

    #[test]
    fn bad_severity_names_the_alert() {
        let f =
            override_file("[alerts.DiskOnFire]\nseverity = \"urgent\"\nrecommendation = \"x\"\n");
        let err = Catalogue::load(Some(f.path())).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, CatalogueError::BadSeverity { .. }));
        assert!(
            msg.contains("DiskOnFire") && msg.contains("urgent"),
            "{msg}"
        );
    }

    #[test]
    fn new_alert_needs_both_fields() {
        let f = override_file("[alerts.DiskOnFire]\nseverity = \"critical\"\n");
        let err = Catalogue::load(Some(f.path())).unwrap_err();
        assert!(
            matches!(&err, CatalogueError::Incomplete { alert, missing: "recommendation", .. } if alert == "DiskOnFire"),
            "{err}"
        );
        let f = override_file("[alerts.DiskOnFire]\nrecommendation = \"x\"\n");
        let err = Catalogue::load(Some(f.path())).unwrap_err();
        assert!(matches!(
            err,
            CatalogueError::Incomplete {
                missing: "severity",
                ..
            }
        ));
    }

    #[test]
    fn empty_recommendation_and_bad_names_are_errors() {
        let f = override_file("[alerts.ProcNotRunning]\nrecommendation = \"  \"\n");
        let err = Catalogue::load(Some(f.path())).unwrap_err();
        assert!(matches!(err, CatalogueError::EmptyRecommendation { .. }));
        let f =
            override_file("[alerts.\" Padded\"]\nseverity = \"info\"\nrecommendation = \"x\"\n");
        let err = Catalogue::load(Some(f.path())).unwrap_err();
        assert!(matches!(err, CatalogueError::BadName { .. }));
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.toml");
        let err = Catalogue::load(Some(&path)).unwrap_err();
        assert!(matches!(err, CatalogueError::Read { .. }));
        assert!(err.to_string().contains("nope.toml"));
    }

    #[test]
    fn empty_override_file_is_fine() {
        let f = override_file("");
        let c = Catalogue::load(Some(f.path())).unwrap();
        assert_eq!(c.len(), Catalogue::builtin().len());
    }
}
