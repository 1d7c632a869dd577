//! `[[checks]]`: an InfluxDB query, a threshold on one column, and the
//! labels that make each result row an alarm instance. [`evaluate`] turns
//! rows into firing [`Alarm`]s (pure); [`grouped_notification`] renders the
//! alarms of one evaluation as one message.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use super::{Colour, Notification, Section};
use crate::config::HumanDuration;
use crate::influx::{Row, value_number, value_text};

/// How bad an alarm is; picks the Lark header colour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    #[default]
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
    pub fn colour(self) -> Colour {
        match self {
            Severity::Info => Colour::Blue,
            Severity::Warning => Colour::Orange,
            Severity::Critical => Colour::Red,
        }
    }
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }
}

/// `"> 90"`, `"<= 5"`, `"== 0"`, `"!= 1"`, `">=0.5"`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Threshold {
    pub op: Op,
    pub value: f64,
}

impl Threshold {
    pub fn parse(s: &str) -> Result<Threshold, String> {
        let t = s.trim();
        let (op, rest) = [
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            (">", Op::Gt),
            ("<", Op::Lt),
        ]
        .into_iter()
        .find_map(|(p, op)| t.strip_prefix(p).map(|r| (op, r)))
        .ok_or_else(|| {
            format!("threshold {s:?} must start with one of > >= < <= == != (e.g. \"> 90\")")
        })?;
        let value: f64 = rest
            .trim()
            .parse()
            .map_err(|_| format!("threshold {s:?}: {:?} is not a number", rest.trim()))?;
        if !value.is_finite() {
            return Err(format!("threshold {s:?} must be finite"));
        }
        Ok(Threshold { op, value })
    }

    /// Whether `v` breaches the threshold (fires).
    pub fn fires(&self, v: f64) -> bool {
        match self.op {
            Op::Gt => v > self.value,
            Op::Ge => v >= self.value,
            Op::Lt => v < self.value,
            Op::Le => v <= self.value,
            Op::Eq => v == self.value,
            Op::Ne => v != self.value,
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op.as_str(), format_number(self.value))
    }
}

impl<'de> Deserialize<'de> for Threshold {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Threshold::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Threshold {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// `1.0` → `1`, `95.5` → `95.5`, `0.123456789` → `0.1235`.
pub fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// `[[checks]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    pub name: String,
    /// `[influx.sources.NAME]`.
    pub source: String,
    /// InfluxQL (v1 source) or Flux (v2 source).
    pub query: String,
    /// The column compared with the threshold (Flux: usually `_value`).
    pub value: String,
    pub threshold: Threshold,
    /// Columns / tags identifying an alarm instance (e.g. `["cluster"]`).
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub severity: Severity,
    /// `{label}`, `{value}`, `{threshold}` and `{check}` are replaced.
    #[serde(default = "default_summary")]
    pub summary: String,
    /// An alarm still firing is sent again after this long.
    #[serde(default = "default_repeat")]
    pub repeat_interval: HumanDuration,
    /// Send one message when a firing alarm stops firing.
    #[serde(default = "yes")]
    pub send_resolved: bool,
    /// `[receivers.NAME]`.
    pub receiver: String,
    /// How long a condition must hold before its alarm fires (Prometheus'
    /// pending state), e.g. `"5m"`; kept in Redis across workers and
    /// restarts. Unset: it fires at the first evaluation.
    #[serde(default, rename = "for")]
    pub for_: Option<HumanDuration>,
    /// What a label set that reported before and is missing from the
    /// query's rows means: `ok` (it stops firing, the default), `alert` (a
    /// distinct no-data alarm, labelled `no_data = "true"`, fires until it
    /// reports again), `keep` (a firing alarm stays firing).
    #[serde(default)]
    pub no_data: NoData,
    /// An alarm that changes state more than this many times within
    /// `flap_window` is flapping: one message says so, then nothing until
    /// it has been stable for `flap_window`, then one message with its
    /// state. Off unless both are set; for a check evaluated every minute,
    /// `flap_threshold = 4` and `flap_window = "30m"` are a good start.
    #[serde(default)]
    pub flap_threshold: Option<u32>,
    #[serde(default)]
    pub flap_window: Option<HumanDuration>,
}

impl CheckConfig {
    /// The check's flapping policy, if it has one (validated at start).
    pub fn flap(&self) -> Option<super::flap::FlapPolicy> {
        super::flap::FlapPolicy::from_config(self.flap_threshold, self.flap_window)
            .ok()
            .flatten()
    }
}

/// See [`CheckConfig::no_data`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoData {
    #[default]
    Ok,
    Alert,
    Keep,
}

/// The label sets that reported a value in `rows`, by key.
pub fn reported(check: &CheckConfig, rows: &[Row]) -> BTreeMap<String, BTreeMap<String, String>> {
    rows.iter()
        .filter(|row| row.get(&check.value).and_then(value_number).is_some())
        .map(|row| {
            let labels: BTreeMap<String, String> = check
                .labels
                .iter()
                .map(|l| (l.clone(), row.get(l).map(value_text).unwrap_or_default()))
                .collect();
            (label_key(&labels), labels)
        })
        .collect()
}

/// The no-data alarm of a label set that stopped reporting at `last`.
pub fn no_data_alarm(
    check: &CheckConfig,
    labels: &BTreeMap<String, String>,
    last: chrono::DateTime<chrono::Utc>,
) -> Alarm {
    let mut labels = labels.clone();
    labels.insert("no_data".into(), "true".into());
    let shown: Vec<String> = labels
        .iter()
        .filter(|(k, _)| *k != "no_data")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    Alarm {
        check: check.name.clone(),
        summary: format!(
            "{}: no data from {} since {}",
            check.name,
            if shown.is_empty() {
                "(no labels)".to_string()
            } else {
                shown.join(", ")
            },
            last.format("%Y-%m-%d %H:%M UTC")
        ),
        labels,
        value: 0.0,
        severity: check.severity,
    }
}

fn default_summary() -> String {
    "{check}: value {value} {threshold}".into()
}
fn default_repeat() -> HumanDuration {
    HumanDuration(Duration::from_secs(4 * 3600))
}
fn yes() -> bool {
    true
}

/// Placeholders in a template: `{name}` (`{{` is a literal `{`).
fn placeholders(t: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(i) = rest.find('{') {
        if rest[i..].starts_with("{{") {
            rest = &rest[i + 2..];
            continue;
        }
        match rest[i + 1..].find('}') {
            Some(j) => {
                out.push(rest[i + 1..i + 1 + j].to_string());
                rest = &rest[i + 2 + j..];
            }
            None => break,
        }
    }
    out
}

/// Replace `{key}` by `vars[key]`; unknown keys stay as written.
pub fn render_template(t: &str, vars: &BTreeMap<&str, String>) -> String {
    let mut out = String::with_capacity(t.len());
    let mut rest = t;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if let Some(after) = tail.strip_prefix('}') {
            out.push('}');
            rest = after;
            continue;
        }
        match tail[1..].find('}') {
            Some(j) => {
                let key = &tail[1..1 + j];
                match vars.get(key) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&tail[..j + 2]),
                }
                rest = &tail[j + 2..];
            }
            None => {
                out.push_str(tail);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// A check or watchdog name: non-empty letters, digits, '-', '_' or '.'
/// (it is part of Redis keys and of `silence add --check`).
pub fn valid_name(name: &str) -> Result<(), (String, String)> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err((
            "name".into(),
            "must be non-empty letters, digits, '-', '_' or '.'".into(),
        ));
    }
    Ok(())
}

impl CheckConfig {
    /// Field checks; the error is `(field, message)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |k: &str, m: String| Err((k.to_string(), m));
        valid_name(&self.name)?;
        if self.query.trim().is_empty() {
            return err("query", "is empty".into());
        }
        if self.value.is_empty() {
            return err("value", "names no column".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for l in &self.labels {
            if l.is_empty() || !seen.insert(l) {
                return err("labels", format!("label {l:?} is empty or repeated"));
            }
        }
        for p in placeholders(&self.summary) {
            if !matches!(p.as_str(), "value" | "threshold" | "check") && !self.labels.contains(&p) {
                return err(
                    "summary",
                    format!(
                        "{{{p}}} is neither a label ({}) nor value, threshold or check",
                        self.labels.join(", ")
                    ),
                );
            }
        }
        if self.repeat_interval.0 < Duration::from_secs(1) {
            return err("repeat_interval", "must be at least 1s".into());
        }
        super::flap::FlapPolicy::from_config(self.flap_threshold, self.flap_window)?;
        Ok(())
    }
}

/// One firing alarm instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alarm {
    pub check: String,
    /// Label → value, sorted.
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    pub summary: String,
    pub severity: Severity,
}

/// `k=v,k2=v2` over sorted labels, `\`, `,` and `=` escaped: the alarm's
/// identity within its check (the dedup key is check + this).
pub fn label_key(labels: &BTreeMap<String, String>) -> String {
    let esc = |s: &str| {
        s.replace('\\', "\\\\")
            .replace(',', "\\,")
            .replace('=', "\\=")
    };
    labels
        .iter()
        .map(|(k, v)| format!("{}={}", esc(k), esc(v)))
        .collect::<Vec<_>>()
        .join(",")
}

impl Alarm {
    pub fn key(&self) -> String {
        label_key(&self.labels)
    }
    /// `cluster=a, host=h1` for messages (`(no labels)` when none).
    pub fn labels_text(&self) -> String {
        if self.labels.is_empty() {
            "(no labels)".into()
        } else {
            self.labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    }
}

/// What [`evaluate`] made of the rows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evaluation {
    pub rows: usize,
    /// Firing alarms by key, one per label set (the worst value wins).
    pub firing: BTreeMap<String, Alarm>,
    /// Rows without a numeric value column, skipped.
    pub skipped: usize,
}

/// Rows → firing alarms. Rows whose value column is missing, null or not a
/// number are skipped (and counted). Several rows with one label set make
/// one alarm, with the value furthest past the threshold.
pub fn evaluate(check: &CheckConfig, rows: &[Row]) -> Evaluation {
    let mut ev = Evaluation {
        rows: rows.len(),
        ..Evaluation::default()
    };
    for row in rows {
        let Some(v) = row.get(&check.value).and_then(value_number) else {
            ev.skipped += 1;
            continue;
        };
        if !check.threshold.fires(v) {
            continue;
        }
        let labels: BTreeMap<String, String> = check
            .labels
            .iter()
            .map(|l| (l.clone(), row.get(l).map(value_text).unwrap_or_default()))
            .collect();
        let mut vars: BTreeMap<&str, String> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        vars.insert("value", format_number(v));
        vars.insert("threshold", check.threshold.to_string());
        vars.insert("check", check.name.clone());
        let alarm = Alarm {
            check: check.name.clone(),
            summary: render_template(&check.summary, &vars),
            labels,
            value: v,
            severity: check.severity,
        };
        let key = alarm.key();
        let worse = |old: &Alarm| match check.threshold.op {
            Op::Gt | Op::Ge => alarm.value > old.value,
            Op::Lt | Op::Le => alarm.value < old.value,
            Op::Eq | Op::Ne => false,
        };
        match ev.firing.get(&key) {
            Some(old) if !worse(old) => {}
            _ => {
                ev.firing.insert(key, alarm);
            }
        }
    }
    ev
}

/// A resolved alarm as remembered from when it fired.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActiveAlarm {
    pub alarm: Alarm,
    /// When it was first notified as firing.
    pub since: DateTime<Utc>,
}

/// A flapping announcement in an evaluation's message.
#[derive(Clone, Debug)]
pub struct FlapNote {
    pub owed: super::flap::Owed,
    /// The alarm as it last fired.
    pub alarm: Alarm,
    /// Its state now.
    pub firing: bool,
    /// State changes within the window.
    pub changes: usize,
    pub window: Duration,
}

/// The one message of an evaluation: firing alarms first, then resolved,
/// then flapping announcements.
/// Header: `[FIRING:n] check` in the severity's colour, `[RESOLVED:n] check`
/// in green, or `[FIRING:n, RESOLVED:m] check`.
pub fn grouped_notification(
    check: &CheckConfig,
    firing: &[&Alarm],
    resolved: &[&ActiveAlarm],
    flaps: &[FlapNote],
    now: DateTime<Utc>,
) -> Notification {
    let flapping = flaps
        .iter()
        .filter(|f| f.owed == super::flap::Owed::Flapping)
        .count();
    let stable = flaps.len() - flapping;
    let parts: Vec<String> = [
        ("FIRING", firing.len()),
        ("RESOLVED", resolved.len()),
        ("FLAPPING", flapping),
        ("STABLE", stable),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .map(|(k, n)| format!("{k}:{n}"))
    .collect();
    let title = format!("[{}] {}", parts.join(", "), check.name);
    let alarming = !firing.is_empty() || flapping > 0 || flaps.iter().any(|f| f.firing);
    let colour = if alarming {
        check.severity.colour()
    } else {
        Colour::Green
    };
    let mut sections = Vec::new();
    let mut text = vec![title.clone()];
    for a in firing {
        sections.push(Section {
            heading: format!("FIRING · {}", a.summary),
            text: String::new(),
            fields: vec![
                ("Severity".into(), a.severity.as_str().into()),
                ("Labels".into(), a.labels_text()),
                (
                    "Value".into(),
                    format!(
                        "{} ({} {})",
                        format_number(a.value),
                        check.value,
                        check.threshold
                    ),
                ),
            ],
        });
        text.push(format!("FIRING {}: {}", a.labels_text(), a.summary));
    }
    for r in resolved {
        sections.push(Section {
            heading: format!("RESOLVED · {}", r.alarm.summary),
            text: String::new(),
            fields: vec![
                ("Labels".into(), r.alarm.labels_text()),
                (
                    "Last value".into(),
                    format!(
                        "{} ({} {})",
                        format_number(r.alarm.value),
                        check.value,
                        check.threshold
                    ),
                ),
                (
                    "Firing since".into(),
                    r.since.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                ),
            ],
        });
        text.push(format!(
            "RESOLVED {}: {}",
            r.alarm.labels_text(),
            r.alarm.summary
        ));
    }
    let window = humantime::format_duration(flaps.first().map_or(Duration::ZERO, |f| f.window));
    for f in flaps {
        let state = if f.firing { "firing" } else { "OK" };
        let (heading, line) = match f.owed {
            super::flap::Owed::Flapping => (
                format!("FLAPPING · {}", f.alarm.summary),
                format!(
                    "Changed state {} times within {window}; now {state}. No more messages for it until it is stable for {window}.",
                    f.changes
                ),
            ),
            super::flap::Owed::Stable => (
                format!("STABLE · {}", f.alarm.summary),
                format!("No change for {window}: it is {state}."),
            ),
        };
        sections.push(Section {
            heading,
            text: line.clone(),
            fields: vec![
                ("Labels".into(), f.alarm.labels_text()),
                ("State".into(), state.into()),
            ],
        });
        text.push(format!(
            "{} {}: {line}",
            f.owed.as_str(),
            f.alarm.labels_text()
        ));
    }
    Notification {
        title,
        colour,
        text: text.join("\n"),
        sections,
        note: Some(format!(
            "alertflow influx-check {} · {}",
            check.name,
            now.format("%Y-%m-%d %H:%M:%S UTC")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check() -> CheckConfig {
        toml::from_str(
            r#"name = "cpu-high"
source = "metrics"
query = "SELECT last(usage) AS usage FROM cpu GROUP BY cluster"
value = "usage"
threshold = "> 90"
labels = ["cluster"]
severity = "critical"
summary = "CPU on {cluster} is {value}% ({threshold})"
repeat_interval = "2s"
receiver = "ops"
"#,
        )
        .unwrap()
    }

    fn row(pairs: &[(&str, serde_json::Value)]) -> Row {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn thresholds() {
        let t = Threshold::parse("> 90").unwrap();
        assert!(t.fires(90.5) && !t.fires(90.0));
        assert!(Threshold::parse("<= 5").unwrap().fires(5.0));
        assert!(Threshold::parse("==0").unwrap().fires(0.0));
        assert!(Threshold::parse("!= 1").unwrap().fires(2.0));
        assert!(Threshold::parse(">= 1e3").unwrap().fires(1000.0));
        assert_eq!(Threshold::parse(">=0.5").unwrap().to_string(), ">= 0.5");
        assert!(Threshold::parse("90").is_err());
        assert!(Threshold::parse("> x").is_err());
        assert!(Threshold::parse("=> 1").is_err());
    }

    #[test]
    fn templates() {
        let vars: BTreeMap<&str, String> = [("a", "1".to_string())].into_iter().collect();
        assert_eq!(render_template("x {a} {b} {{a}} }", &vars), "x 1 {b} {a} }");
        assert_eq!(placeholders("{a} {{b}} {c}"), vec!["a", "c"]);
        let mut c = check();
        c.summary = "{host}".into();
        assert_eq!(c.validate().unwrap_err().0, "summary");
        assert!(check().validate().is_ok());
    }

    #[test]
    fn evaluation_makes_one_alarm_per_label_set() {
        let rows = vec![
            row(&[("cluster", json!("a")), ("usage", json!(95.5))]),
            row(&[("cluster", json!("b")), ("usage", json!(12))]),
            row(&[("cluster", json!("c")), ("usage", json!(91))]),
            row(&[("cluster", json!("c")), ("usage", json!(99))]),
            row(&[("cluster", json!("d")), ("usage", json!(null))]),
            row(&[("cluster", json!("e"))]),
        ];
        let ev = evaluate(&check(), &rows);
        assert_eq!(ev.rows, 6);
        assert_eq!(ev.skipped, 2);
        assert_eq!(
            ev.firing.keys().collect::<Vec<_>>(),
            ["cluster=a", "cluster=c"]
        );
        assert_eq!(ev.firing["cluster=c"].value, 99.0);
        assert_eq!(ev.firing["cluster=a"].summary, "CPU on a is 95.5% (> 90)");
    }

    #[test]
    fn label_keys_are_sorted_and_escaped() {
        let l: BTreeMap<String, String> = [("z", "1"), ("a", "x,y=z")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(label_key(&l), "a=x\\,y\\=z,z=1");
    }

    #[test]
    fn grouped_message_titles_and_colours() {
        let c = check();
        let rows = vec![
            row(&[("cluster", json!("a")), ("usage", json!(95))]),
            row(&[("cluster", json!("b")), ("usage", json!(96))]),
        ];
        let ev = evaluate(&c, &rows);
        let firing: Vec<&Alarm> = ev.firing.values().collect();
        let n = grouped_notification(&c, &firing, &[], &[], Utc::now());
        assert_eq!(n.title, "[FIRING:2] cpu-high");
        assert_eq!(n.colour, Colour::Red);
        assert_eq!(n.sections.len(), 2);
        let active = ActiveAlarm {
            alarm: firing[0].clone(),
            since: Utc::now(),
        };
        let n = grouped_notification(&c, &[], &[&active], &[], Utc::now());
        assert_eq!(n.title, "[RESOLVED:1] cpu-high");
        assert_eq!(n.colour, Colour::Green);
    }
}
