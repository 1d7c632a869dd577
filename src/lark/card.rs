//! Lark alert cards → alert rows, as contracted in `docs/cards.md`.
//!
//! This module owns reading the receive-side projection of an `interactive`
//! message (`{"title": .., "elements": [[node, ..], ..]}`), the alias tables
//! and the section/row rules. It does no I/O and never logs; a message that
//! gives no rows is a [`SkipReason`], never an error, and no input — however
//! malformed — may make it panic.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use chrono_tz::America::Los_Angeles;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::severity::most_severe;

/// What a JSON 2.0 card (or one with components Lark cannot project) reads back as.
const UPGRADE_PLACEHOLDER: &str = "请升级至最新版本客户端，以查看内容";

/// Notes nest in practice only one level deep; the bound keeps hostile input
/// from recursing without limit.
const MAX_NOTE_DEPTH: usize = 8;

/// One alert row (cards.md §6). Field names are the column names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRow {
    pub message_id: String,
    pub lark_message_id: String,
    pub chat_id: String,
    pub status: String,
    pub alert_name: String,
    pub severity: String,
    pub clusters: String,
    pub regions: String,
    pub alert_count: u32,
    pub created_at: String,
    pub alert_date: String,
    pub title: String,
    pub summary: String,
}

/// The sandbox's expected row, to compare with what this parser produced.
/// The sandbox builds its rows from what it generated and the contract,
/// never from this module, so the two types agree only through the columns.
impl From<alertflow_sandbox::ExpectedRow> for AlertRow {
    fn from(r: alertflow_sandbox::ExpectedRow) -> Self {
        // Destructured, so a column added on either side fails to compile.
        let alertflow_sandbox::ExpectedRow {
            message_id,
            lark_message_id,
            chat_id,
            status,
            alert_name,
            severity,
            clusters,
            regions,
            alert_count,
            created_at,
            alert_date,
            title,
            summary,
        } = r;
        AlertRow {
            message_id,
            lark_message_id,
            chat_id,
            status,
            alert_name,
            severity,
            clusters,
            regions,
            alert_count,
            created_at,
            alert_date,
            title,
            summary,
        }
    }
}

/// Why a message gave no rows (cards.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    NotACard,
    Recalled,
    UnreadableCard,
    NoAlertFields,
    NoAlertName,
}

impl SkipReason {
    pub const ALL: [SkipReason; 5] = [
        SkipReason::NotACard,
        SkipReason::Recalled,
        SkipReason::UnreadableCard,
        SkipReason::NoAlertFields,
        SkipReason::NoAlertName,
    ];

    /// The name used in skip counts, logs and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NotACard => "not-a-card",
            SkipReason::Recalled => "recalled",
            SkipReason::UnreadableCard => "unreadable-card",
            SkipReason::NoAlertFields => "no-alert-fields",
            SkipReason::NoAlertName => "no-alert-name",
        }
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A configured alias named a field that cards.md §4 does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown alert field `{0}` (expected one of: alert_name, severity, status, level_status, cluster, region, start, end, summary)"
)]
pub struct UnknownField(pub String);

/// A document given to [`items_from_document`] holds no message items.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("list-messages response failed with code {code}: {msg}")]
    Api { code: i64, msg: String },
    #[error("list-messages response has a `data.items` that is not an array")]
    ItemsNotAnArray,
    #[error("expected a list-messages response or a JSON array of message items")]
    UnexpectedShape,
}

/// The fields of cards.md §4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Field {
    AlertName,
    Severity,
    Status,
    LevelStatus,
    Cluster,
    Region,
    Start,
    End,
    Summary,
}

const FIELD_COUNT: usize = 9;

impl Field {
    const ALL: [Field; FIELD_COUNT] = [
        Field::AlertName,
        Field::Severity,
        Field::Status,
        Field::LevelStatus,
        Field::Cluster,
        Field::Region,
        Field::Start,
        Field::End,
        Field::Summary,
    ];

    fn name(self) -> &'static str {
        match self {
            Field::AlertName => "alert_name",
            Field::Severity => "severity",
            Field::Status => "status",
            Field::LevelStatus => "level_status",
            Field::Cluster => "cluster",
            Field::Region => "region",
            Field::Start => "start",
            Field::End => "end",
            Field::Summary => "summary",
        }
    }

    fn builtin_aliases(self) -> &'static [&'static str] {
        match self {
            Field::AlertName => &[
                "alert",
                "alert name",
                "alertname",
                "alarm",
                "alarm name",
                "rule",
                "rule name",
                "告警名称",
                "规则名称",
            ],
            Field::Severity => &["severity", "level", "priority", "告警级别", "级别"],
            Field::Status => &["status", "state", "状态", "告警状态"],
            Field::LevelStatus => &["级别状态"],
            Field::Cluster => &["cluster", "cluster name", "cluster id", "集群", "告警集群"],
            Field::Region => &["region", "区域", "地域"],
            Field::Start => &[
                "start time",
                "starts at",
                "started at",
                "开始时间",
                "触发时间",
            ],
            Field::End => &["end time", "ends at", "结束时间", "恢复时间"],
            Field::Summary => &[
                "summary",
                "description",
                "message",
                "告警详情",
                "告警内容",
                "告警描述",
            ],
        }
    }

    /// Fields whose key alone makes a section an alert (cards.md §1).
    fn marks_alert(self) -> bool {
        matches!(
            self,
            Field::AlertName | Field::Severity | Field::Status | Field::LevelStatus
        )
    }
}

/// Alias tables (cards.md §4): the built-in ones, extendable from configuration.
#[derive(Debug, Clone)]
pub struct Aliases {
    by_key: HashMap<String, Field>,
}

impl Default for Aliases {
    fn default() -> Self {
        let mut by_key = HashMap::new();
        for field in Field::ALL {
            for alias in field.builtin_aliases() {
                by_key.insert(normalise_key(alias), field);
            }
        }
        Aliases { by_key }
    }
}

impl Aliases {
    /// Adds aliases for `field` (one of the names in cards.md §4, e.g. `"cluster"`).
    /// Keys compare case-insensitively with runs of whitespace collapsed; an alias
    /// already mapped to another field now maps to `field`; blank aliases are ignored.
    pub fn extend(
        &mut self,
        field: &str,
        aliases: impl IntoIterator<Item = String>,
    ) -> Result<(), UnknownField> {
        let wanted = field.trim();
        let Some(field) = Field::ALL.into_iter().find(|f| f.name() == wanted) else {
            return Err(UnknownField(field.to_string()));
        };
        for alias in aliases {
            let key = normalise_key(&alias);
            if !key.is_empty() {
                self.by_key.insert(key, field);
            }
        }
        Ok(())
    }

    /// The field name a card key maps to, if any.
    pub fn field_for(&self, key: &str) -> Option<&'static str> {
        self.lookup(key).map(Field::name)
    }

    fn lookup(&self, key: &str) -> Option<Field> {
        self.by_key.get(&normalise_key(key)).copied()
    }
}

fn normalise_key(key: &str) -> String {
    key.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Rows and skip counts of a batch of messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParseOutcome {
    /// Rows in item order; within a message the firing row precedes the resolved one.
    pub rows: Vec<AlertRow>,
    /// Skip counts keyed by [`SkipReason::as_str`]; reasons that never occurred are absent.
    pub skips: BTreeMap<String, u64>,
}

/// Parses many message items; a skipped item never fails the batch.
pub fn parse_items(items: &[Value], aliases: &Aliases) -> ParseOutcome {
    let mut outcome = ParseOutcome::default();
    for item in items {
        match parse_message(item, aliases) {
            Ok(rows) => outcome.rows.extend(rows),
            Err(reason) => {
                *outcome
                    .skips
                    .entry(reason.as_str().to_string())
                    .or_insert(0) += 1
            }
        }
    }
    outcome
}

/// The message items of a list-messages response (`{"code":0,"data":{"items":[..]}}`)
/// or of a plain JSON array of items. A response whose `data` has no `items`
/// (Lark omits empty arrays) holds no items.
pub fn items_from_document(doc: &Value) -> Result<Vec<Value>, DocumentError> {
    match doc {
        Value::Array(items) => Ok(items.clone()),
        Value::Object(obj) if obj.contains_key("data") || obj.contains_key("code") => {
            let code = obj.get("code").and_then(Value::as_i64).unwrap_or(0);
            if code != 0 {
                let msg = obj
                    .get("msg")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                return Err(DocumentError::Api { code, msg });
            }
            match obj.get("data").and_then(|data| data.get("items")) {
                Some(Value::Array(items)) => Ok(items.clone()),
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(_) => Err(DocumentError::ItemsNotAnArray),
            }
        }
        _ => Err(DocumentError::UnexpectedShape),
    }
}

/// Parses one message item (an element of `data.items` of
/// `GET /open-apis/im/v1/messages`) into zero, one or two rows: firing first,
/// then resolved.
pub fn parse_message(item: &Value, aliases: &Aliases) -> Result<Vec<AlertRow>, SkipReason> {
    let Some(obj) = item.as_object() else {
        return Err(SkipReason::NotACard);
    };
    if obj.get("msg_type").and_then(Value::as_str) != Some("interactive") {
        return Err(SkipReason::NotACard);
    }
    if obj.get("deleted").and_then(Value::as_bool) == Some(true) {
        return Err(SkipReason::Recalled);
    }
    let meta = MessageMeta::read(obj).ok_or(SkipReason::UnreadableCard)?;
    let content = obj
        .get("body")
        .and_then(|body| body.get("content"))
        .and_then(Value::as_str)
        .ok_or(SkipReason::UnreadableCard)?;
    let card: Value = serde_json::from_str(content).map_err(|_| SkipReason::UnreadableCard)?;
    let card = Card::read(&card).ok_or(SkipReason::UnreadableCard)?;
    if card.is_upgrade_placeholder() {
        return Err(SkipReason::UnreadableCard);
    }

    let sections: Vec<Section> = card
        .section_lines(aliases)
        .iter()
        .map(|lines| Section::read(lines, aliases))
        .collect();
    let any_alert_key = sections.iter().any(|s| s.has_alert_key);
    if sections.is_empty() || (!any_alert_key && !title_has_status_word(&card.title)) {
        return Err(SkipReason::NoAlertFields);
    }

    let title_name = name_from_title(&card.title);
    let facts: Vec<SectionFacts> = sections
        .iter()
        .map(|s| s.facts(&card.title, title_name.as_deref()))
        .collect();
    let Some(card_name) = most_frequent(facts.iter().filter_map(|f| f.name.as_deref())) else {
        return Err(SkipReason::NoAlertName);
    };

    let mut rows = Vec::with_capacity(2);
    for status in [Status::Firing, Status::Resolved] {
        let group: Vec<&SectionFacts> = facts.iter().filter(|f| f.status == status).collect();
        if group.is_empty() {
            continue;
        }
        // A group whose sections carry no name still belongs to the card's alert.
        let alert_name = most_frequent(group.iter().filter_map(|f| f.name.as_deref()))
            .unwrap_or(card_name)
            .to_string();
        let severity = most_severe(group.iter().map(|f| f.severity.as_str())).to_string();
        rows.push(AlertRow {
            message_id: format!("{}-{}", meta.message_id, status.suffix()),
            lark_message_id: meta.message_id.clone(),
            chat_id: meta.chat_id.clone(),
            status: status.as_str().to_string(),
            alert_name,
            severity,
            clusters: distinct_sorted(group.iter().map(|f| f.cluster.as_str())),
            regions: distinct_sorted(group.iter().map(|f| f.region.as_str())),
            alert_count: u32::try_from(group.len()).unwrap_or(u32::MAX),
            created_at: meta.created_at.clone(),
            alert_date: meta.alert_date.clone(),
            title: card.title.clone(),
            summary: group[0].summary.clone(),
        });
    }
    Ok(rows)
}

/// The item-level columns of a row.
struct MessageMeta {
    message_id: String,
    chat_id: String,
    created_at: String,
    alert_date: String,
}

impl MessageMeta {
    fn read(obj: &serde_json::Map<String, Value>) -> Option<MessageMeta> {
        let message_id = obj.get("message_id")?.as_str()?.trim();
        if message_id.is_empty() {
            return None;
        }
        let chat_id = obj.get("chat_id").and_then(Value::as_str).unwrap_or("");
        let millis = match obj.get("create_time")? {
            Value::String(s) => s.trim().parse::<i64>().ok()?,
            Value::Number(n) => n.as_i64()?,
            _ => return None,
        };
        let created = DateTime::<Utc>::from_timestamp_millis(millis)?;
        Some(MessageMeta {
            message_id: message_id.to_string(),
            chat_id: chat_id.to_string(),
            created_at: created.format("%Y-%m-%d %H:%M:%S").to_string(),
            alert_date: created
                .with_timezone(&Los_Angeles)
                .format("%Y-%m-%d")
                .to_string(),
        })
    }
}

/// One top-level card element, as read back.
enum CardRow {
    /// Only `hr` nodes: ends a section.
    Divider,
    /// Only `note` nodes: belongs to no section.
    Note(Vec<String>),
    Text(Vec<String>),
}

struct Card {
    title: String,
    rows: Vec<CardRow>,
}

impl Card {
    /// `None` when the content is not a projected card at all.
    fn read(content: &Value) -> Option<Card> {
        let obj = content.as_object()?;
        let title = obj
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let elements = obj.get("elements")?.as_array()?;
        let rows = elements
            .iter()
            .map(|row| {
                // A row that is not an array of nodes carries nothing we can read.
                let nodes = row.as_array().map(Vec::as_slice).unwrap_or(&[]);
                let only =
                    |tag: &str| !nodes.is_empty() && nodes.iter().all(|n| node_tag(n) == Some(tag));
                if only("hr") {
                    return CardRow::Divider;
                }
                let mut text = String::new();
                for node in nodes {
                    node_text(node, 0, &mut text);
                }
                let lines = text
                    .split('\n')
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect();
                if only("note") {
                    CardRow::Note(lines)
                } else {
                    CardRow::Text(lines)
                }
            })
            .collect();
        Some(Card { title, rows })
    }

    /// The card's only text (title included) is the upgrade placeholder.
    fn is_upgrade_placeholder(&self) -> bool {
        let title = self.title.trim();
        if !title.is_empty() && title != UPGRADE_PLACEHOLDER {
            return false;
        }
        let mut lines = self
            .rows
            .iter()
            .flat_map(|row| match row {
                CardRow::Divider => [].as_slice(),
                CardRow::Note(lines) | CardRow::Text(lines) => lines.as_slice(),
            })
            .peekable();
        lines.peek().is_some() && lines.all(|l| l == UPGRADE_PLACEHOLDER)
    }

    /// The lines of each non-empty section (cards.md §3).
    fn section_lines(&self, aliases: &Aliases) -> Vec<Vec<String>> {
        let mut sections: Vec<Vec<String>> = Vec::new();
        if self.rows.iter().any(|r| matches!(r, CardRow::Divider)) {
            let mut current = Vec::new();
            for row in &self.rows {
                match row {
                    CardRow::Divider => sections.push(std::mem::take(&mut current)),
                    CardRow::Note(_) => {}
                    CardRow::Text(lines) => current.extend(lines.iter().cloned()),
                }
            }
            sections.push(current);
        } else {
            let lines: Vec<String> = self
                .rows
                .iter()
                .filter_map(|row| match row {
                    CardRow::Text(lines) => Some(lines.iter().cloned()),
                    _ => None,
                })
                .flatten()
                .collect();
            let starts: Vec<usize> = lines
                .iter()
                .enumerate()
                .filter(|(_, line)| names_alert(line, aliases))
                .map(|(i, _)| i)
                .collect();
            if starts.len() > 1 {
                // Lines before the first alert-name key stay with the first alert.
                let mut bounds: Vec<usize> = vec![0];
                bounds.extend(&starts[1..]);
                bounds.push(lines.len());
                for pair in bounds.windows(2) {
                    sections.push(lines[pair[0]..pair[1]].to_vec());
                }
            } else {
                sections.push(lines);
            }
        }
        sections.retain(|lines| !lines.is_empty());
        sections
    }
}

fn node_tag(node: &Value) -> Option<&str> {
    node.get("tag").and_then(Value::as_str)
}

/// Appends a node's text (cards.md §2); tags without alert data add nothing.
fn node_text(node: &Value, depth: usize, out: &mut String) {
    let key = match node_tag(node) {
        Some("text" | "a") => "text",
        Some("at") => "user_name",
        Some("note") => {
            if depth < MAX_NOTE_DEPTH
                && let Some(children) = node.get("elements").and_then(Value::as_array)
            {
                for child in children {
                    node_text(child, depth + 1, out);
                }
            }
            return;
        }
        _ => return,
    };
    if let Some(text) = node.get(key).and_then(Value::as_str) {
        out.push_str(text);
    }
}

/// What one line says (cards.md §4).
enum Line<'a> {
    /// `KEY: VALUE` with an aliased key.
    Keyed(Field, &'a str),
    /// `key=value ...` tokens; only aliased keys are kept.
    Labels(Vec<(Field, &'a str)>),
    /// `START ~ END`; `true` when END is `TO BE RESOLVED`.
    Range {
        firing: bool,
    },
    Plain,
}

fn read_line<'a>(line: &'a str, aliases: &Aliases) -> Line<'a> {
    if let Some((key, value)) = split_key(line)
        && let Some(field) = aliases.lookup(key)
    {
        return Line::Keyed(field, value.trim());
    }
    if let Some(labels) = read_labels(line) {
        return Line::Labels(
            labels
                .into_iter()
                .filter_map(|(k, v)| aliases.lookup(k).map(|f| (f, v)))
                .collect(),
        );
    }
    if let Some(firing) = read_range(line) {
        return Line::Range { firing };
    }
    Line::Plain
}

/// Splits at the first ASCII or full-width colon.
fn split_key(line: &str) -> Option<(&str, &str)> {
    let at = line.find([':', '：'])?;
    let colon_len = line[at..].chars().next().map_or(1, char::len_utf8);
    Some((&line[..at], &line[at + colon_len..]))
}

/// A line made only of `key=value` tokens (Alertmanager label style).
fn read_labels(line: &str) -> Option<Vec<(&str, &str)>> {
    let mut labels = Vec::new();
    for token in line.split_whitespace() {
        let (key, value) = token.split_once('=')?;
        if key.is_empty() {
            return None;
        }
        labels.push((key, value));
    }
    (!labels.is_empty()).then_some(labels)
}

/// An Alertmanager time range `START ~ END`: both ends carry a digit, or END is
/// `TO BE RESOLVED`. The digit rule keeps prose with a tilde from counting.
fn read_range(line: &str) -> Option<bool> {
    let (start, end) = line.split_once('~')?;
    let (start, end) = (start.trim(), end.trim());
    if end.contains('~') || !start.chars().any(|c| c.is_ascii_digit()) {
        return None;
    }
    if end.eq_ignore_ascii_case("TO BE RESOLVED") {
        Some(true)
    } else if end.chars().any(|c| c.is_ascii_digit()) {
        Some(false)
    } else {
        None
    }
}

/// Whether a line carries an alert-name key (which may split sections).
fn names_alert(line: &str, aliases: &Aliases) -> bool {
    match read_line(line, aliases) {
        Line::Keyed(field, _) => field == Field::AlertName,
        Line::Labels(labels) => labels.iter().any(|(f, _)| *f == Field::AlertName),
        Line::Range { .. } | Line::Plain => false,
    }
}

/// The raw fields of one section.
struct Section {
    lines: Vec<String>,
    /// First non-empty value of each field, indexed by `Field as usize`.
    values: [Option<String>; FIELD_COUNT],
    has_alert_key: bool,
    /// The first `START ~ END` line: `Some(true)` while still firing.
    range_firing: Option<bool>,
}

impl Section {
    fn read(lines: &[String], aliases: &Aliases) -> Section {
        let mut section = Section {
            lines: lines.to_vec(),
            values: Default::default(),
            has_alert_key: false,
            range_firing: None,
        };
        for line in lines {
            match read_line(line, aliases) {
                Line::Keyed(field, value) => section.record(field, value),
                Line::Labels(labels) => {
                    for (field, value) in labels {
                        section.record(field, value);
                    }
                }
                Line::Range { firing } => {
                    section.has_alert_key = true;
                    section.range_firing.get_or_insert(firing);
                }
                Line::Plain => {}
            }
        }
        section
    }

    /// The first occurrence wins; an empty value marks the key but is no value.
    fn record(&mut self, field: Field, value: &str) {
        self.has_alert_key |= field.marks_alert();
        let value = value.trim();
        let slot = &mut self.values[field as usize];
        if slot.is_none() && !value.is_empty() {
            *slot = Some(value.to_string());
        }
    }

    fn value(&self, field: Field) -> Option<&str> {
        self.values[field as usize].as_deref()
    }

    /// The per-section values of cards.md §5.
    fn facts(&self, title: &str, title_name: Option<&str>) -> SectionFacts {
        SectionFacts {
            name: self
                .value(Field::AlertName)
                .or(title_name)
                .map(str::to_string),
            status: self.status(title),
            severity: self.severity(),
            cluster: self.value(Field::Cluster).unwrap_or("").to_string(),
            region: self.value(Field::Region).unwrap_or("").to_string(),
            summary: self.value(Field::Summary).unwrap_or("").to_string(),
        }
    }

    fn status(&self, title: &str) -> Status {
        let from_field = [Field::Status, Field::LevelStatus]
            .into_iter()
            .find_map(|f| self.value(f).and_then(status_of_value));
        if let Some(status) = from_field {
            return status;
        }
        if let Some(firing) = self.range_firing {
            return if firing {
                Status::Firing
            } else {
                Status::Resolved
            };
        }
        if self.value(Field::End).is_some() {
            return Status::Resolved;
        }
        let title = title.to_lowercase();
        if ["resolved", "recovered", "恢复"]
            .iter()
            .any(|w| title.contains(w))
            && !title.contains("firing")
        {
            return Status::Resolved;
        }
        Status::Firing
    }

    fn severity(&self) -> String {
        if let Some(value) = self.value(Field::Severity) {
            return normalise_severity(value);
        }
        if let Some(word) = self
            .value(Field::LevelStatus)
            .and_then(severity_of_level_status)
        {
            return word;
        }
        self.lines
            .iter()
            .flat_map(|line| standalone_tokens(line))
            .find_map(|token| severity_word(&token.to_lowercase()))
            .unwrap_or("")
            .to_string()
    }
}

/// A section reduced to what rows need.
struct SectionFacts {
    name: Option<String>,
    status: Status,
    severity: String,
    cluster: String,
    region: String,
    summary: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Firing,
    Resolved,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Status::Firing => "f",
            Status::Resolved => "r",
        }
    }
}

const FIRING_WORDS: [&str; 4] = ["firing", "alerting", "triggered", "problem"];
const RESOLVED_WORDS: [&str; 3] = ["resolved", "recovered", "ok"];

/// The status word in a `status` or `level_status` value. Chinese words match
/// anywhere (no spaces separate them); a resolved word wins, so `告警已恢复` is
/// resolved.
fn status_of_value(value: &str) -> Option<Status> {
    let lower = value.to_lowercase();
    let has_word = |set: &[&str]| words(&lower).any(|w| set.contains(&w));
    if has_word(&RESOLVED_WORDS) || lower.contains("恢复") {
        Some(Status::Resolved)
    } else if has_word(&FIRING_WORDS) || lower.contains("告警") || lower.contains("触发") {
        Some(Status::Firing)
    } else {
        None
    }
}

fn is_status_word(word: &str) -> bool {
    FIRING_WORDS.contains(&word)
        || RESOLVED_WORDS.contains(&word)
        || ["告警", "触发", "恢复", "已恢复"].contains(&word)
}

/// Runs of alphanumeric characters (CJK characters count as alphabetic).
fn words(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
}

/// Whitespace-separated tokens with surrounding punctuation trimmed, so
/// `[CRITICAL]` is a standalone word but `prod-p1` is not.
fn standalone_tokens(s: &str) -> impl Iterator<Item = &str> {
    s.split_whitespace()
        .map(|t| t.trim_matches(|c: char| !c.is_alphanumeric()))
        .filter(|t| !t.is_empty())
}

/// The normalised severity for a lowercase severity word.
fn severity_word(word: &str) -> Option<&'static str> {
    match word {
        "critical" | "crit" | "fatal" | "emergency" | "p0" | "p1" | "s1" | "严重" | "紧急" => {
            Some("critical")
        }
        "warning" | "warn" | "major" | "minor" | "p2" | "s2" | "警告" => Some("warning"),
        "info" | "informational" | "notice" | "p3" | "s3" | "提示" => Some("info"),
        _ => None,
    }
}

fn normalise_severity(value: &str) -> String {
    let lower = value.trim().to_lowercase();
    severity_word(&lower).map_or(lower, str::to_string)
}

/// The severity word of e.g. `S1 Triggered`; failing a known word, the first
/// word that is not a status word, kept lowercased like any other severity.
fn severity_of_level_status(value: &str) -> Option<String> {
    let lower = value.to_lowercase();
    if let Some(word) = words(&lower).find_map(severity_word) {
        return Some(word.to_string());
    }
    words(&lower)
        .find(|w| !is_status_word(w))
        .map(str::to_string)
}

fn title_has_status_word(title: &str) -> bool {
    let title = title.to_lowercase();
    ["firing", "resolved", "recovered", "告警", "恢复"]
        .iter()
        .any(|w| title.contains(w))
}

/// The alert name a title gives (cards.md §5), `None` when nothing is left.
fn name_from_title(title: &str) -> Option<String> {
    let stripped = remove_bracket_groups(title);
    let name = stripped
        .split_whitespace()
        .filter(|token| {
            let core = token
                .trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase();
            !matches!(core.as_str(), "firing" | "resolved" | "recovered") && !is_bare_number(token)
        })
        .collect::<Vec<_>>()
        .join(" ");
    (!name.is_empty()).then_some(name)
}

fn is_bare_number(token: &str) -> bool {
    !token.is_empty()
        && token
            .split(['.', ','])
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()))
}

/// Removes every matched `[...]`, `【...】` and `(...)` group (nested ones
/// included), each replaced by one space; unmatched brackets stay.
fn remove_bracket_groups(title: &str) -> String {
    let chars: Vec<char> = title.chars().collect();
    let mut removed = vec![false; chars.len()];
    let mut open: Vec<(char, usize)> = Vec::new();
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '[' => open.push((']', i)),
            '【' => open.push(('】', i)),
            '(' => open.push((')', i)),
            ']' | '】' | ')' => {
                if let Some(pos) = open.iter().rposition(|&(closer, _)| closer == c) {
                    let start = open[pos].1;
                    open.truncate(pos);
                    removed[start..=i].iter_mut().for_each(|r| *r = true);
                }
            }
            _ => {}
        }
    }
    let mut out = String::with_capacity(title.len());
    for (i, &c) in chars.iter().enumerate() {
        if !removed[i] {
            out.push(c);
        } else if i == 0 || !removed[i - 1] {
            out.push(' ');
        }
    }
    out
}

/// The most frequent value; ties go to the one seen first.
fn most_frequent<'a>(values: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for value in values {
        match counts.iter_mut().find(|(v, _)| *v == value) {
            Some((_, n)) => *n += 1,
            None => counts.push((value, 1)),
        }
    }
    let mut best: Option<(&str, usize)> = None;
    for (value, n) in counts {
        if best.is_none_or(|(_, m)| n > m) {
            best = Some((value, n));
        }
    }
    best.map(|(value, _)| value)
}

fn distinct_sorted<'a>(values: impl Iterator<Item = &'a str>) -> String {
    values
        .filter(|v| !v.is_empty())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CREATE_TIME: &str = "1773196558000"; // 2026-03-11 02:35:58 UTC, 2026-03-10 in Los Angeles

    fn text(s: &str) -> Value {
        json!({"tag": "text", "text": s})
    }

    fn hr() -> Value {
        json!([{"tag": "hr"}])
    }

    fn item_with_content(content: &str) -> Value {
        json!({
            "message_id": "om_1",
            "msg_type": "interactive",
            "create_time": CREATE_TIME,
            "deleted": false,
            "chat_id": "oc_1",
            "body": {"content": content},
        })
    }

    fn card_item(title: Value, rows: Value) -> Value {
        item_with_content(&json!({"title": title, "elements": rows}).to_string())
    }

    fn parse(title: &str, rows: Value) -> Result<Vec<AlertRow>, SkipReason> {
        parse_message(&card_item(json!(title), rows), &Aliases::default())
    }

    /// A card whose rows are each a single text node.
    fn parse_lines(title: &str, rows: &[&str]) -> Result<Vec<AlertRow>, SkipReason> {
        let rows: Vec<Value> = rows
            .iter()
            .map(|r| if *r == "---" { hr() } else { json!([text(r)]) })
            .collect();
        parse(title, Value::Array(rows))
    }

    fn one_row(result: Result<Vec<AlertRow>, SkipReason>) -> AlertRow {
        let rows = result.expect("card should give rows");
        assert_eq!(rows.len(), 1, "{rows:#?}");
        rows.into_iter().next().unwrap()
    }

    #[test]
    fn skip_reason_names() {
        let names: Vec<&str> = SkipReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            [
                "not-a-card",
                "recalled",
                "unreadable-card",
                "no-alert-fields",
                "no-alert-name"
            ]
        );
        assert_eq!(SkipReason::NoAlertName.to_string(), "no-alert-name");
    }

    #[test]
    fn non_interactive_messages_are_not_cards() {
        let aliases = Aliases::default();
        let mut item = card_item(json!("[Firing] X"), json!([[text("Alert: X")]]));
        item["msg_type"] = json!("text");
        assert_eq!(parse_message(&item, &aliases), Err(SkipReason::NotACard));
        item.as_object_mut().unwrap().remove("msg_type");
        assert_eq!(parse_message(&item, &aliases), Err(SkipReason::NotACard));
        item["msg_type"] = json!(7);
        assert_eq!(parse_message(&item, &aliases), Err(SkipReason::NotACard));
        assert_eq!(
            parse_message(&json!([1, 2]), &aliases),
            Err(SkipReason::NotACard)
        );
        assert_eq!(
            parse_message(&json!(null), &aliases),
            Err(SkipReason::NotACard)
        );
    }

    #[test]
    fn recalled_messages() {
        let mut item = item_with_content("This message was recalled");
        item["deleted"] = json!(true);
        assert_eq!(
            parse_message(&item, &Aliases::default()),
            Err(SkipReason::Recalled)
        );
    }

    #[test]
    fn unreadable_content() {
        let aliases = Aliases::default();
        for content in [
            "not json",
            "This message was recalled",
            "[1,2]",
            r#"{"title":"[Firing] X"}"#,
            r#"{"title":"[Firing] X","elements":{}}"#,
        ] {
            assert_eq!(
                parse_message(&item_with_content(content), &aliases),
                Err(SkipReason::UnreadableCard),
                "{content}"
            );
        }
        let mut item = card_item(json!("x"), json!([]));
        item["body"] = json!({"content": {"title": "x"}});
        assert_eq!(
            parse_message(&item, &aliases),
            Err(SkipReason::UnreadableCard)
        );
    }

    #[test]
    fn upgrade_placeholder_is_unreadable() {
        assert_eq!(
            parse("", json!([[text("请升级至最新版本客户端，以查看内容")]])),
            Err(SkipReason::UnreadableCard)
        );
        let with_dsl = json!({
            "title": null,
            "elements": [[text(" 请升级至最新版本客户端，以查看内容\n")]],
            "user_dsl": "{\"schema\":\"2.0\"}",
        });
        assert_eq!(
            parse_message(
                &item_with_content(&with_dsl.to_string()),
                &Aliases::default()
            ),
            Err(SkipReason::UnreadableCard)
        );
    }

    #[test]
    fn bad_item_metadata_is_unreadable() {
        let aliases = Aliases::default();
        let good = card_item(json!("[Firing] X"), json!([[text("Alert: X")]]));
        assert!(parse_message(&good, &aliases).is_ok());
        for (key, value) in [
            ("message_id", json!(null)),
            ("message_id", json!("")),
            ("create_time", json!("yesterday")),
            ("create_time", json!("99999999999999999999")),
            ("create_time", json!(i64::MAX)),
        ] {
            let mut item = good.clone();
            item[key] = value;
            assert_eq!(
                parse_message(&item, &aliases),
                Err(SkipReason::UnreadableCard),
                "{key}"
            );
        }
        let mut item = good.clone();
        item["create_time"] = json!(1_773_196_558_000_i64);
        assert_eq!(
            one_row(parse_message(&item, &aliases)).created_at,
            "2026-03-11 02:35:58"
        );
    }

    #[test]
    fn report_cards_have_no_alert_fields() {
        assert_eq!(
            parse_lines(
                "Daily query report",
                &["Queries: 12034\nP95 latency: 840 ms"]
            ),
            Err(SkipReason::NoAlertFields)
        );
        // A cluster key alone does not make an alert.
        assert_eq!(
            parse_lines("Deploy done", &["Cluster: prod-01", "Region: us-east-1"]),
            Err(SkipReason::NoAlertFields)
        );
        assert_eq!(
            parse("[Firing] Disk", json!([])),
            Err(SkipReason::NoAlertFields)
        );
    }

    #[test]
    fn status_word_in_title_makes_an_alert() {
        let row = one_row(parse_lines("[FIRING:1] DiskFull", &["disk at 95% on db-1"]));
        assert_eq!(row.alert_name, "DiskFull");
        assert_eq!(row.status, "firing");
        assert_eq!(row.severity, "");
        let row = one_row(parse_lines("【告警】磁盘满", &["磁盘使用率 95%"]));
        assert_eq!(row.alert_name, "磁盘满");
    }

    #[test]
    fn no_alert_name() {
        assert_eq!(
            parse_lines("[Firing] 42", &["Status: firing", "Severity: warning"]),
            Err(SkipReason::NoAlertName)
        );
        assert_eq!(
            parse_lines("", &["Status: firing"]),
            Err(SkipReason::NoAlertName)
        );
    }

    #[test]
    fn nodes_become_lines() {
        // Bold keys are separate text nodes; links and mentions are text; other tags add nothing.
        let rows = json!([[
            text("Alert"),
            text(": Disk"),
            {"tag": "a", "text": "Full", "href": "http://x"},
            text("\n"),
            text("Summary"),
            {"tag": "img", "image_key": "img_1"},
            text(":   paged "),
            {"tag": "at", "user_id": "@_user_1", "user_name": "Tom"},
            {"tag": "button", "text": "Severity: critical"},
            {"tag": "select_static", "options": ["x"]},
            {"tag": "wobble", "text": "Status: resolved"},
            text("\n\n   \nCluster: c1  ")
        ]]);
        let row = one_row(parse("", rows));
        assert_eq!(row.alert_name, "DiskFull");
        assert_eq!(row.summary, "paged Tom");
        assert_eq!(row.clusters, "c1");
        assert_eq!(row.severity, "");
        assert_eq!(row.status, "firing");
    }

    #[test]
    fn note_rows_belong_to_no_section() {
        let rows = json!([
            [text("Alert: A\nCluster: c1")],
            [{"tag": "hr"}],
            [text("Alert: A\nCluster: c2")],
            [{"tag": "hr"}],
            [{"tag": "note", "elements": [text("Alert: B\nSeverity: critical")]}]
        ]);
        let row = one_row(parse("", rows));
        assert_eq!(row.alert_count, 2);
        assert_eq!(row.alert_name, "A");
        assert_eq!(row.severity, "");
        // A note beside other nodes is text like any other.
        let rows = json!([[
            text("Alert: A\n"),
            {"tag": "note", "elements": [text("Severity: "), {"tag": "at", "user_name": "P1"}]}
        ]]);
        assert_eq!(one_row(parse("", rows)).severity, "critical");
    }

    #[test]
    fn sections_are_split_by_hr() {
        let rows = parse_lines(
            "",
            &[
                "Alert: A\nCluster: c1",
                "---",
                "---",
                "Alert: A\nCluster: c2",
                "---",
                "Alert: B\nStatus: resolved\nCluster: c3",
                "---",
            ],
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].status.as_str(), rows[0].alert_count),
            ("firing", 2)
        );
        assert_eq!(rows[0].clusters, "c1,c2");
        assert_eq!(
            (rows[1].status.as_str(), rows[1].alert_count),
            ("resolved", 1)
        );
        assert_eq!(rows[1].alert_name, "B");
    }

    #[test]
    fn a_row_with_hr_and_text_is_not_a_divider() {
        let rows = json!([[text("Alert: A\nCluster: c1"), {"tag": "hr"}, text("\nAlert: A\nCluster: c2")]]);
        // No divider, so the repeated alert-name key splits it.
        assert_eq!(one_row(parse("", rows)).alert_count, 2);
    }

    #[test]
    fn repeated_alert_name_key_splits_sections() {
        let rows = parse_lines(
            "Alerts",
            &[
                "2 alerts from the bridge",
                "Alert: A\nStatus: firing\nCluster: c2",
                "Alert: B\nStatus: Resolved\nCluster: c1",
                "Rule Name: A\nStatus: firing\nCluster: c1",
            ],
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].alert_count, 2);
        assert_eq!(rows[0].clusters, "c1,c2");
        assert_eq!(rows[1].alert_count, 1);
        assert_eq!(rows[1].alert_name, "B");
        // Label-style alert names split too.
        let rows = parse_lines("", &["alertname=A cluster=c1", "alertname=B cluster=c2"]).unwrap();
        assert_eq!(rows[0].alert_count, 2);
        assert_eq!(rows[0].alert_name, "A");
        // With hr rows, only hr rows split.
        let row = one_row(parse_lines("", &["Alert: A\nAlert: B", "---", "Alert: C"]));
        assert_eq!(row.alert_count, 2);
        assert_eq!(row.alert_name, "A");
    }

    #[test]
    fn one_alert_name_key_is_one_section() {
        let row = one_row(parse_lines(
            "",
            &["Intro line", "Alert: A", "Cluster: c1", "Status: firing"],
        ));
        assert_eq!(row.alert_count, 1);
    }

    #[test]
    fn keys_match_case_insensitively_with_any_colon_spacing() {
        let row = one_row(parse_lines(
            "",
            &[
                "告警名称：Foo",
                "SEVERITY ： Warn",
                "cluster   name:c1",
                "区域： r1",
                "告警详情 ：  big trouble: really",
                "Alert: Bar",
            ],
        ));
        assert_eq!(row.alert_name, "Foo");
        assert_eq!(row.severity, "warning");
        assert_eq!(row.clusters, "c1");
        assert_eq!(row.regions, "r1");
        assert_eq!(row.summary, "big trouble: really");
        assert_eq!(row.alert_count, 2);
    }

    #[test]
    fn first_occurrence_of_a_field_wins_and_empty_values_do_not_count() {
        let row = one_row(parse_lines(
            "",
            &[
                "Alert: A",
                "Severity:",
                "Cluster: c1",
                "Cluster: c2",
                "Level: info",
            ],
        ));
        assert_eq!(row.clusters, "c1");
        assert_eq!(row.severity, "info");
    }

    #[test]
    fn key_value_label_lines() {
        let row = one_row(parse_lines(
            "[prod] X",
            &[
                "alertname=DiskFull severity=P1 cluster=prod-sg region=ap-southeast-1 instance=10.0.3.17:8080",
                "job=node Cluster=ignored-second",
            ],
        ));
        assert_eq!(row.alert_name, "DiskFull");
        assert_eq!(row.severity, "critical");
        assert_eq!(row.clusters, "prod-sg");
        assert_eq!(row.regions, "ap-southeast-1");
        // A line with any token that is not key=value is no label line.
        let row = one_row(parse_lines(
            "[Firing] X",
            &["see cluster=prod-sg", "=x region=r1"],
        ));
        assert_eq!((row.clusters.as_str(), row.regions.as_str()), ("", ""));
    }

    #[test]
    fn time_range_gives_status() {
        let rows = parse_lines(
            "[prod] X [1] Firing [1] Resolved",
            &[
                "Disk full WARNING\n2026-03-10 16:56:18 ~ TO BE RESOLVED",
                "---",
                "Disk full CRITICAL\n2026-03-10 16:56:18 ~ 2026-03-10 17:01:18",
            ],
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].status.as_str(), rows[0].severity.as_str()),
            ("firing", "warning")
        );
        assert_eq!(
            (rows[1].status.as_str(), rows[1].severity.as_str()),
            ("resolved", "critical")
        );
        // A range alone marks an alert; `to be resolved` is case-insensitive.
        let row = one_row(parse_lines("X", &["10:00 ~ to be resolved"]));
        assert_eq!(row.status, "firing");
        // A tilde in prose is no range.
        assert_eq!(
            parse_lines("X", &["roughly ~ a lot"]),
            Err(SkipReason::NoAlertFields)
        );
    }

    #[test]
    fn status_field_beats_time_range() {
        let row = one_row(parse_lines(
            "X",
            &["Status: firing\n2026-03-10 16:56:18 ~ 2026-03-10 17:01:18"],
        ));
        assert_eq!(row.status, "firing");
    }

    #[test]
    fn end_field_means_resolved() {
        let row = one_row(parse_lines(
            "[Firing] X",
            &["Alert: X\nStart Time: 10:00\nEnd Time: 10:05"],
        ));
        assert_eq!(row.status, "resolved");
        assert!(row.message_id.ends_with("-r"));
        // An empty end field is no end.
        let row = one_row(parse_lines("X", &["Alert: X\n恢复时间："]));
        assert_eq!(row.status, "firing");
    }

    #[test]
    fn status_words() {
        for (value, want) in [
            ("Firing", "firing"),
            ("ALERTING", "firing"),
            ("triggered", "firing"),
            ("Problem", "firing"),
            ("告警", "firing"),
            ("告警中", "firing"),
            ("触发", "firing"),
            ("[FIRING:2]", "firing"),
            ("Resolved ✅", "resolved"),
            ("recovered", "resolved"),
            ("OK", "resolved"),
            ("恢复", "resolved"),
            ("已恢复", "resolved"),
            ("告警已恢复", "resolved"),
        ] {
            let row = one_row(parse_lines("X", &[&format!("状态: {value}")]));
            assert_eq!(row.status, want, "{value}");
        }
        // An unknown status value falls through to the later rules.
        let row = one_row(parse_lines("[Resolved] X", &["State: Pending"]));
        assert_eq!(row.status, "resolved");
        let row = one_row(parse_lines("X", &["State: Pending"]));
        assert_eq!(row.status, "firing");
    }

    #[test]
    fn title_gives_status_last() {
        let row = one_row(parse_lines("[Resolved] X", &["Alert: X"]));
        assert_eq!(row.status, "resolved");
        let row = one_row(parse_lines("【恢复】X", &["Alert: X"]));
        assert_eq!(row.status, "resolved");
        let row = one_row(parse_lines("X recovered", &["Alert: X"]));
        assert_eq!(row.status, "resolved");
        let row = one_row(parse_lines("[2] Firing [1] Resolved", &["Alert: X"]));
        assert_eq!(row.status, "firing");
        let row = one_row(parse_lines("X", &["Alert: X"]));
        assert_eq!(row.status, "firing");
    }

    #[test]
    fn title_derived_names() {
        for (title, want) in [
            (
                "[prod] ClusterStateAbnormal [2] Firing [1] Resolved",
                "ClusterStateAbnormal",
            ),
            (
                "[Resolved] FEQueryErrRateMoreThan60%",
                "FEQueryErrRateMoreThan60%",
            ),
            ("【告警】FEGCCount", "FEGCCount"),
            ("Disk (db-1) full 3 firing", "Disk full"),
            (
                "  High   load  [x [nested] y] on 10 hosts 2.5 ",
                "High load on hosts",
            ),
            ("RECOVERED: Disk[1]full", "Disk full"),
            ("Unbalanced [ bracket", "Unbalanced [ bracket"),
            ("stray ] closer", "stray ] closer"),
            ("mixed [a(b]c) tail", "mixed c) tail"),
            ("v2 node 1,000 down", "v2 node down"),
        ] {
            assert_eq!(name_from_title(title).as_deref(), Some(want), "{title}");
        }
        for title in ["", "[x] 12 Firing", "(Resolved)", "   "] {
            assert_eq!(name_from_title(title), None, "{title}");
        }
    }

    #[test]
    fn alert_name_field_beats_title() {
        let row = one_row(parse_lines(
            "[Firing] TitleName",
            &["Alarm Name: FieldName"],
        ));
        assert_eq!(row.alert_name, "FieldName");
    }

    #[test]
    fn severity_normalisation() {
        for (value, want) in [
            ("Critical", "critical"),
            ("CRIT", "critical"),
            ("fatal", "critical"),
            ("Emergency", "critical"),
            ("P0", "critical"),
            ("p1", "critical"),
            ("S1", "critical"),
            ("严重", "critical"),
            ("紧急", "critical"),
            ("Warning", "warning"),
            ("warn", "warning"),
            ("Major", "warning"),
            ("minor", "warning"),
            ("P2", "warning"),
            ("s2", "warning"),
            ("警告", "warning"),
            ("Info", "info"),
            ("informational", "info"),
            ("NOTICE", "info"),
            ("p3", "info"),
            ("S3", "info"),
            ("提示", "info"),
            ("High", "high"),
            ("P4 Page", "p4 page"),
        ] {
            for key in ["Severity", "level", "Priority", "告警级别", "级别"] {
                let row = one_row(parse_lines("X", &["Alert: X", &format!("{key}: {value}")]));
                assert_eq!(row.severity, want, "{key}: {value}");
            }
        }
    }

    #[test]
    fn standalone_severity_word_on_lines() {
        let row = one_row(parse_lines(
            "[Firing] X",
            &[
                "cluster=prod-p1",
                "Pod crash looping [CRITICAL], then WARNING",
            ],
        ));
        assert_eq!(row.severity, "critical");
        // Part of a word is not a standalone word.
        let row = one_row(parse_lines(
            "[Firing] X",
            &["host-p1 informative critically"],
        ));
        assert_eq!(row.severity, "");
    }

    #[test]
    fn level_status() {
        let row = one_row(parse_lines("X", &["告警名称: A", "级别状态: S1 Triggered"]));
        assert_eq!(
            (row.severity.as_str(), row.status.as_str()),
            ("critical", "firing")
        );
        let row = one_row(parse_lines("X", &["告警名称: A", "级别状态: S3 Recovered"]));
        assert_eq!(
            (row.severity.as_str(), row.status.as_str()),
            ("info", "resolved")
        );
        let row = one_row(parse_lines("X", &["告警名称: A", "级别状态: Triggered/S2"]));
        assert_eq!(
            (row.severity.as_str(), row.status.as_str()),
            ("warning", "firing")
        );
        let row = one_row(parse_lines("X", &["告警名称: A", "级别状态: P4 已恢复"]));
        assert_eq!(
            (row.severity.as_str(), row.status.as_str()),
            ("p4", "resolved")
        );
        // A severity field and a status field beat level_status.
        let row = one_row(parse_lines(
            "X",
            &[
                "告警名称: A",
                "级别状态: S1 Triggered",
                "级别: info",
                "状态: ok",
            ],
        ));
        assert_eq!(
            (row.severity.as_str(), row.status.as_str()),
            ("info", "resolved")
        );
        // level_status with no severity word leaves the standalone scan.
        let row = one_row(parse_lines(
            "X",
            &["告警名称: A", "级别状态: Triggered", "minor issue"],
        ));
        assert_eq!(
            (row.severity.as_str(), row.status.as_str()),
            ("warning", "firing")
        );
    }

    #[test]
    fn most_frequent_name_ties_go_to_the_first() {
        let row = one_row(parse_lines(
            "",
            &[
                "Alert: A",
                "---",
                "Alert: B",
                "---",
                "Alert: B",
                "---",
                "Cluster: c\nStatus: firing",
            ],
        ));
        assert_eq!(row.alert_name, "B");
        assert_eq!(row.alert_count, 4);
        let row = one_row(parse_lines(
            "",
            &[
                "Alert: A", "---", "Alert: B", "---", "Alert: B", "---", "Alert: A",
            ],
        ));
        assert_eq!(row.alert_name, "A");
        // The title name counts for sections without their own name.
        let row = one_row(parse_lines(
            "[Firing] T",
            &["Alert: A", "---", "Severity: info", "---", "Severity: info"],
        ));
        assert_eq!(row.alert_name, "T");
    }

    #[test]
    fn a_status_group_without_names_takes_the_cards_name() {
        let rows =
            parse_lines("", &["Alert: A\nStatus: firing", "---", "Status: resolved"]).unwrap();
        assert_eq!(rows[1].status, "resolved");
        assert_eq!(rows[1].alert_name, "A");
    }

    #[test]
    fn severity_is_the_highest_across_sections() {
        for (severities, want) in [
            (&["info", "critical", "warning"][..], "critical"),
            (&["info", "warning", "info"][..], "warning"),
            (&["", "info"][..], "info"),
            (&["high", ""][..], "high"),
            (&["high", "info", "sev9"][..], "info"),
            (&["high", "sev9"][..], "high"),
            (&["", ""][..], ""),
        ] {
            let lines: Vec<String> = severities
                .iter()
                .map(|s| format!("Alert: A\nSeverity: {s}"))
                .collect();
            let mut rows: Vec<&str> = Vec::new();
            for line in &lines {
                rows.push(line);
                rows.push("---");
            }
            let row = one_row(parse_lines("", &rows));
            assert_eq!(row.severity, want, "{severities:?}");
        }
    }

    #[test]
    fn clusters_and_regions_are_distinct_sorted_joined() {
        let row = one_row(parse_lines(
            "",
            &[
                "Alert: A\nCluster: zeta\nRegion: us-west-2",
                "---",
                "Alert: A\nCluster: alpha\nRegion: us-east-1",
                "---",
                "Alert: A\nCluster:  zeta \nRegion: us-east-1",
                "---",
                "Alert: A",
                "---",
                "Alert: A\nCluster: Beta",
            ],
        ));
        assert_eq!(row.clusters, "Beta,alpha,zeta");
        assert_eq!(row.regions, "us-east-1,us-west-2");
        assert_eq!(row.alert_count, 5);
    }

    #[test]
    fn summary_is_the_first_sections() {
        let row = one_row(parse_lines(
            "",
            &["Alert: A", "---", "Alert: A\nDescription: second"],
        ));
        assert_eq!(row.summary, "");
        let row = one_row(parse_lines(
            "",
            &[
                "Alert: A\nMessage: first",
                "---",
                "Alert: A\nDescription: second",
            ],
        ));
        assert_eq!(row.summary, "first");
    }

    #[test]
    fn full_row_columns_and_order() {
        let rows = parse_lines(
            "[BYOC Alarm] Heap",
            &[
                "Alert: Heap\nStatus: Resolved\nCluster: c3\nSummary: s-resolved",
                "---",
                "Alert: Heap\nStatus: Firing\nSeverity: warning\nCluster: c1\nRegion: r1\nSummary: s-firing",
            ],
        )
        .unwrap();
        let firing = AlertRow {
            message_id: "om_1-f".into(),
            lark_message_id: "om_1".into(),
            chat_id: "oc_1".into(),
            status: "firing".into(),
            alert_name: "Heap".into(),
            severity: "warning".into(),
            clusters: "c1".into(),
            regions: "r1".into(),
            alert_count: 1,
            created_at: "2026-03-11 02:35:58".into(),
            alert_date: "2026-03-10".into(),
            title: "[BYOC Alarm] Heap".into(),
            summary: "s-firing".into(),
        };
        let resolved = AlertRow {
            message_id: "om_1-r".into(),
            status: "resolved".into(),
            severity: "".into(),
            clusters: "c3".into(),
            regions: "".into(),
            summary: "s-resolved".into(),
            ..firing.clone()
        };
        assert_eq!(rows, vec![firing, resolved]);
        let keys: Vec<String> = serde_json::to_value(&rows[0])
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys.len(), 13);
    }

    #[test]
    fn missing_title_and_chat_id() {
        let mut item = card_item(json!(null), json!([[text("Alert: A")]]));
        item.as_object_mut().unwrap().remove("chat_id");
        let row = one_row(parse_message(&item, &Aliases::default()));
        assert_eq!((row.title.as_str(), row.chat_id.as_str()), ("", ""));
        let item = card_item(json!(17), json!([[text("Alert: A")]]));
        assert_eq!(one_row(parse_message(&item, &Aliases::default())).title, "");
    }

    #[test]
    fn created_at_and_los_angeles_date() {
        let mut item = card_item(json!(""), json!([[text("Alert: A")]]));
        // 2026-01-01 07:59:59 UTC is still 2025-12-31 in Los Angeles (PST, UTC-8).
        item["create_time"] = json!("1767254399000");
        let row = one_row(parse_message(&item, &Aliases::default()));
        assert_eq!(row.created_at, "2026-01-01 07:59:59");
        assert_eq!(row.alert_date, "2025-12-31");
        item["create_time"] = json!("1767254400000");
        let row = one_row(parse_message(&item, &Aliases::default()));
        assert_eq!(row.alert_date, "2026-01-01");
    }

    #[test]
    fn aliases_extend() {
        let mut aliases = Aliases::default();
        aliases
            .extend("cluster", ["Env  Cluster".to_string(), "  ".to_string()])
            .unwrap();
        aliases
            .extend(" alert_name ", ["Check".to_string()])
            .unwrap();
        assert_eq!(aliases.field_for("env cluster"), Some("cluster"));
        assert_eq!(aliases.field_for("CHECK"), Some("alert_name"));
        assert_eq!(aliases.field_for(""), None);
        assert_eq!(
            aliases.extend("clusters", ["x".to_string()]),
            Err(UnknownField("clusters".to_string()))
        );
        let item = card_item(json!(""), json!([[text("Check: Disk\nENV CLUSTER: c9")]]));
        let row = one_row(parse_message(&item, &aliases));
        assert_eq!(
            (row.alert_name.as_str(), row.clusters.as_str()),
            ("Disk", "c9")
        );
        assert_eq!(
            parse_message(&item, &Aliases::default()),
            Err(SkipReason::NoAlertFields)
        );
    }

    #[test]
    fn builtin_aliases_cover_the_contract() {
        let aliases = Aliases::default();
        for (field, keys) in [
            (
                "alert_name",
                &[
                    "Alert",
                    "alert name",
                    "AlertName",
                    "alarm",
                    "alarm name",
                    "rule",
                    "rule name",
                    "告警名称",
                    "规则名称",
                ][..],
            ),
            (
                "severity",
                &["severity", "level", "priority", "告警级别", "级别"][..],
            ),
            ("status", &["status", "state", "状态", "告警状态"][..]),
            ("level_status", &["级别状态"][..]),
            (
                "cluster",
                &["cluster", "cluster name", "cluster id", "集群", "告警集群"][..],
            ),
            ("region", &["region", "区域", "地域"][..]),
            (
                "start",
                &[
                    "start time",
                    "starts at",
                    "started at",
                    "开始时间",
                    "触发时间",
                ][..],
            ),
            ("end", &["end time", "ends at", "结束时间", "恢复时间"][..]),
            (
                "summary",
                &[
                    "summary",
                    "description",
                    "message",
                    "告警详情",
                    "告警内容",
                    "告警描述",
                ][..],
            ),
        ] {
            for key in keys {
                assert_eq!(aliases.field_for(key), Some(field), "{key}");
            }
        }
    }

    #[test]
    fn documents() {
        let item = card_item(json!(""), json!([[text("Alert: A")]]));
        let response = json!({"code": 0, "msg": "success", "data": {"has_more": false, "items": [item.clone()]}});
        assert_eq!(items_from_document(&response).unwrap(), vec![item.clone()]);
        assert_eq!(
            items_from_document(&json!([item.clone()])).unwrap(),
            vec![item]
        );
        assert_eq!(
            items_from_document(&json!({"code": 0, "data": {"has_more": false}})).unwrap(),
            Vec::<Value>::new()
        );
        assert_eq!(
            items_from_document(
                &json!({"code": 230002, "msg": "Bot/User can NOT be out of the chat."})
            ),
            Err(DocumentError::Api {
                code: 230002,
                msg: "Bot/User can NOT be out of the chat.".to_string()
            })
        );
        assert_eq!(
            items_from_document(&json!({"code": 0, "data": {"items": {}}})),
            Err(DocumentError::ItemsNotAnArray)
        );
        for doc in [json!({"items": []}), json!("x"), json!(null), json!(3)] {
            assert_eq!(
                items_from_document(&doc),
                Err(DocumentError::UnexpectedShape)
            );
        }
    }

    #[test]
    fn parse_items_counts_skips() {
        let aliases = Aliases::default();
        let good = card_item(json!(""), json!([[text("Alert: A")]]));
        let mut recalled = good.clone();
        recalled["deleted"] = json!(true);
        let outcome = parse_items(
            &[
                json!(1),
                good.clone(),
                recalled.clone(),
                recalled,
                json!({}),
            ],
            &aliases,
        );
        assert_eq!(outcome.rows.len(), 1);
        let skips: Vec<(&str, u64)> = outcome
            .skips
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(skips, [("not-a-card", 2), ("recalled", 2)]);
        assert_eq!(parse_items(&[], &aliases), ParseOutcome::default());
    }

    #[test]
    fn deeply_nested_notes_are_bounded() {
        let nest = |depth: usize, inner: Value| {
            (0..depth).fold(inner, |node, _| json!({"tag": "note", "elements": [node]}))
        };
        // Text within a few note levels is read; text below the bound is not.
        let rows = json!([
            [text("x"), nest(2, text("\nSeverity: info"))],
            [nest(40, text("\nAlert: Deep"))]
        ]);
        let row = one_row(parse("[Firing] T", rows));
        assert_eq!(
            (row.alert_name.as_str(), row.severity.as_str()),
            ("T", "info")
        );
        // Content nested past serde_json's recursion limit is unreadable, not a crash.
        let rows = json!([[nest(300, text("Alert: Deep"))]]);
        assert_eq!(parse("[Firing] T", rows), Err(SkipReason::UnreadableCard));
    }
}
