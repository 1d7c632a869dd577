//! The daily alert digest: what a date's alerts looked like (volume against
//! the week before, the noisiest alerts, new names, names missing from the
//! catalogue, the busiest clusters), said once per date to `[digest]
//! receivers`.
//!
//! This module owns the config, the content ([`DigestData`], read by
//! [`crate::sink::digests`]) and its rendering as a [`Notification`]; the
//! once-per-date claim is in [`crate::sink::digests`], the sending in the
//! `digest` task ([`crate::tasks::digest`]) and `alertflow digest`. The
//! rendering is a pure function of the data, so the same tables give the
//! same card (ties are sorted by name when the data is read).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::{Colour, Notification, Section};
use crate::config::AppConfig;

/// `[digest]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DigestConfig {
    /// Names of `[receivers.NAME]`; empty turns the digest off.
    pub receivers: Vec<String>,
    /// How many noisy alerts (and busiest clusters) are listed.
    pub top: u32,
    /// The dashboard's base URL; the digest links `{dashboard_url}/day?date=DATE`.
    pub dashboard_url: Option<String>,
    /// A name is new when it was not seen in this many days before the date.
    pub new_days: u32,
}

impl Default for DigestConfig {
    fn default() -> Self {
        DigestConfig {
            receivers: Vec::new(),
            top: 10,
            dashboard_url: None,
            new_days: 30,
        }
    }
}

impl DigestConfig {
    /// Whether a digest is sent at all.
    pub fn enabled(&self) -> bool {
        !self.receivers.is_empty()
    }

    /// `(key, message)` of the first bad value, the key as in the file.
    pub fn validate(&self, config: &AppConfig) -> Result<(), (String, String)> {
        for r in &self.receivers {
            if !config.receivers.contains_key(r) {
                return Err((
                    "digest.receivers".into(),
                    format!("no [receivers.{r}] is configured"),
                ));
            }
        }
        if self.top == 0 {
            return Err(("digest.top".into(), "must be at least 1".into()));
        }
        if self.new_days == 0 {
            return Err(("digest.new_days".into(), "must be at least 1".into()));
        }
        if let Some(u) = &self.dashboard_url {
            let ok = reqwest::Url::parse(u)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
            if !ok {
                return Err((
                    "digest.dashboard_url".into(),
                    "must be an http:// or https:// URL".into(),
                ));
            }
        }
        Ok(())
    }
}

/// Days before the date whose volume is averaged.
pub const BASELINE_DAYS: u32 = 7;

/// One noisy alert of the day.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NoisyAlert {
    pub alert_name: String,
    pub severity: String,
    pub fired: u64,
    /// Comma-separated, as stored.
    pub clusters: String,
    /// The first line of the recommendation.
    pub recommendation: String,
}

/// What a digest says, read from the tables.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DigestData {
    pub date: NaiveDate,
    /// Firing rows of `lark_alerts` on the date.
    pub firing: u64,
    /// Firing rows of each of the [`BASELINE_DAYS`] dates before, oldest first.
    pub previous: Vec<(NaiveDate, u64)>,
    /// Noisy alerts of the date (`alert_recommendations.is_noisy`), most
    /// fired first, then by name; at most `top`.
    pub noisy: Vec<NoisyAlert>,
    /// Noisy alerts of the date in all (`noisy` may be cut to `top`).
    pub noisy_total: u64,
    /// Names that fired on the date and not in the `new_days` days before.
    pub new_names: Vec<String>,
    /// Names of the date's recommendations not in the catalogue.
    pub not_in_catalogue: Vec<String>,
    /// Clusters by firing rows naming them, most first, then by name; at most `top`.
    pub clusters: Vec<(String, u64)>,
    /// `{dashboard_url}/day?date=DATE` when configured.
    pub link: Option<String>,
}

impl DigestData {
    /// The mean firing rows of the days before.
    pub fn average(&self) -> f64 {
        if self.previous.is_empty() {
            return 0.0;
        }
        self.previous.iter().map(|(_, n)| *n as f64).sum::<f64>() / self.previous.len() as f64
    }

    /// The change against [`DigestData::average`] in whole percent, `None`
    /// when the days before had no alerts.
    pub fn change_percent(&self) -> Option<i64> {
        let avg = self.average();
        (avg > 0.0).then(|| ((self.firing as f64 - avg) / avg * 100.0).round() as i64)
    }

    /// `Alert digest 2026-03-08: 412 firing (+12% vs 7-day avg 368)`.
    pub fn title(&self) -> String {
        let change = match self.change_percent() {
            Some(p) => format!("{p:+}%"),
            None => "n/a".into(),
        };
        format!(
            "Alert digest {}: {} firing ({change} vs {BASELINE_DAYS}-day avg {:.0})",
            self.date,
            self.firing,
            self.average()
        )
    }

    /// The digest as a message: one section per part, one per noisy alert.
    pub fn notification(&self) -> Notification {
        let mut sections = Vec::new();
        let volume = self
            .previous
            .iter()
            .map(|(d, n)| format!("{}: {n}", d.format("%m-%d")))
            .collect::<Vec<_>>()
            .join(", ");
        sections.push(Section {
            heading: "Volume".into(),
            text: format!(
                "{} firing on {}; {BASELINE_DAYS}-day average {:.1} ({volume})",
                self.firing,
                self.date,
                self.average()
            ),
            fields: Vec::new(),
        });
        let clusters = if self.clusters.is_empty() {
            "none".to_string()
        } else {
            self.clusters
                .iter()
                .map(|(c, n)| format!("{c} ({n})"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        sections.push(Section {
            heading: "Clusters with most alerts".into(),
            text: clusters,
            fields: Vec::new(),
        });
        sections.push(Section {
            heading: format!("New alert names ({})", self.new_names.len()),
            text: list_or_none(&self.new_names),
            fields: Vec::new(),
        });
        sections.push(Section {
            heading: format!("Not in the catalogue ({})", self.not_in_catalogue.len()),
            text: list_or_none(&self.not_in_catalogue),
            fields: Vec::new(),
        });
        sections.push(Section {
            heading: format!(
                "Noisy alerts: top {} of {}",
                self.noisy.len(),
                self.noisy_total
            ),
            text: if self.noisy.is_empty() {
                "none".into()
            } else {
                String::new()
            },
            fields: Vec::new(),
        });
        for (i, a) in self.noisy.iter().enumerate() {
            sections.push(Section {
                heading: format!("{}. {} [{}]", i + 1, a.alert_name, a.severity),
                text: a.recommendation.clone(),
                fields: vec![
                    ("fired".into(), a.fired.to_string()),
                    ("clusters".into(), a.clusters.replace(',', ", ")),
                ],
            });
        }
        let text = self.text();
        Notification {
            title: self.title(),
            colour: match self.change_percent() {
                Some(p) if p >= 50 => Colour::Orange,
                _ => Colour::Blue,
            },
            text,
            sections,
            note: Some(match &self.link {
                Some(l) => format!("alertflow digest · {l}"),
                None => "alertflow digest".into(),
            }),
        }
    }

    /// Plain text of the whole digest (Slack's fallback, the CLI).
    pub fn text(&self) -> String {
        let mut t = String::new();
        t.push_str(&self.title());
        t.push('\n');
        t.push_str(&format!(
            "noisy: {} · new names: {} · not in the catalogue: {}",
            self.noisy_total,
            self.new_names.len(),
            self.not_in_catalogue.len()
        ));
        if let Some(l) = &self.link {
            t.push_str(&format!("\n{l}"));
        }
        t
    }
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// The first non-empty line of a recommendation.
pub fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}

/// `{base}/day?date=DATE` without a doubled slash.
pub fn day_link(base: &str, date: NaiveDate) -> String {
    format!("{}/day?date={date}", base.trim_end_matches('/'))
}

/// The digest as plain text lines for a terminal: the title, then each
/// section's heading, text and fields.
pub fn render_text(n: &Notification) -> String {
    let mut out = format!("{}\n", n.title);
    for s in &n.sections {
        out.push('\n');
        if !s.heading.is_empty() {
            out.push_str(&s.heading);
            out.push('\n');
        }
        if !s.text.is_empty() {
            out.push_str(&format!("  {}\n", s.text));
        }
        for (k, v) in &s.fields {
            out.push_str(&format!("  {k}: {v}\n"));
        }
    }
    if let Some(note) = &n.note {
        out.push_str(&format!("\n{note}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::lark_bot;

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn sample(noisy: usize) -> DigestData {
        let d = date("2026-03-08");
        DigestData {
            date: d,
            firing: 412,
            previous: (1..=7)
                .rev()
                .map(|i| (d - chrono::Days::new(i), 368))
                .collect(),
            noisy: (0..noisy)
                .map(|i| NoisyAlert {
                    alert_name: format!("KubePodCrashLooping-{i:04}"),
                    severity: "critical".into(),
                    fired: 1000 - i as u64,
                    clusters: "prod-a,prod-b,prod-c,prod-d".into(),
                    recommendation: "Check the pod's logs and the last deploy; \
                         raise the threshold if it flaps on restarts of healthy pods."
                        .repeat(3),
                })
                .collect(),
            noisy_total: noisy as u64,
            new_names: vec!["NewOne".into()],
            not_in_catalogue: vec!["Unknown".into()],
            clusters: vec![("prod-a".into(), 40), ("prod-b".into(), 12)],
            link: Some(day_link("https://dash.example/", d)),
        }
    }

    #[test]
    fn title_says_volume_change_and_average() {
        let d = sample(2);
        assert_eq!(
            d.title(),
            "Alert digest 2026-03-08: 412 firing (+12% vs 7-day avg 368)"
        );
        let mut quiet = d.clone();
        quiet.previous.iter_mut().for_each(|p| p.1 = 0);
        assert!(quiet.title().contains("(n/a vs 7-day avg 0)"));
        assert_eq!(
            d.link.as_deref(),
            Some("https://dash.example/day?date=2026-03-08")
        );
    }

    #[test]
    fn same_data_same_card() {
        let a = lark_bot::card(&sample(5).notification()).to_string();
        let b = lark_bot::card(&sample(5).notification()).to_string();
        assert_eq!(a, b);
    }

    #[test]
    fn a_big_day_stays_under_the_lark_limit_and_counts_what_is_left_out() {
        let n = sample(200).notification();
        let card = lark_bot::card(&n).to_string();
        assert!(
            card.len() <= lark_bot::MAX_BODY_BYTES,
            "{} bytes",
            card.len()
        );
        let note = regex_lite_find(&card);
        assert!(note.is_some(), "no overflow note in the card");
        let left_out: usize = note.unwrap();
        // Everything not in the card is counted: the five fixed sections
        // and the 200 noisy ones.
        let shown = card.matches("\"tag\":\"div\"").count();
        assert_eq!(shown + left_out, 205, "shown {shown}, left out {left_out}");
    }

    fn regex_lite_find(card: &str) -> Option<usize> {
        let at = card.find(" more not shown")?;
        let head = &card[..at];
        let digits: String = head
            .chars()
            .rev()
            .take_while(char::is_ascii_digit)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        digits.parse().ok()
    }

    #[test]
    fn validation_names_the_key() {
        let c = AppConfig::default();
        let mut d = DigestConfig {
            receivers: vec!["ops".into()],
            ..DigestConfig::default()
        };
        assert_eq!(d.validate(&c).unwrap_err().0, "digest.receivers");
        d.receivers.clear();
        d.top = 0;
        assert_eq!(d.validate(&c).unwrap_err().0, "digest.top");
        d.top = 3;
        d.dashboard_url = Some("nope".into());
        assert_eq!(d.validate(&c).unwrap_err().0, "digest.dashboard_url");
        d.dashboard_url = None;
        assert!(d.validate(&c).is_ok());
    }

    #[test]
    fn first_line_skips_blank_lines() {
        assert_eq!(first_line("\n  Do this.\nThen that."), "Do this.");
        assert_eq!(first_line(""), "");
    }
}
