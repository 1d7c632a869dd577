//! Synthetic chat history for the sandbox: the messages of one Pacific day of
//! one chat, and the rows (and skips) a correct card parser must get from them.
//!
//! Everything is a pure function of `(seed, chat, date)`: a day is generated on
//! demand, never a whole year up front. The expected rows are computed from
//! what was generated (name, status, severity, ... of every section), never by
//! parsing the generated JSON, so they are an independent oracle for the real
//! parser (`docs/cards.md`). This module knows nothing about HTTP.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::America::Los_Angeles;
use chrono_tz::Asia::Shanghai;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::SandboxConfig;

/// Body of a recalled message (not JSON).
pub const RECALLED_CONTENT: &str = "This message was recalled";
/// What a card the projector cannot render (e.g. JSON 2.0) reads back as.
pub const UPGRADE_PLACEHOLDER: &str = "请升级至最新版本客户端，以查看内容";

/// Skip reasons, as named in `docs/cards.md` §1.
pub const SKIP_NOT_A_CARD: &str = "not-a-card";
pub const SKIP_RECALLED: &str = "recalled";
pub const SKIP_UNREADABLE: &str = "unreadable-card";
pub const SKIP_NO_ALERT_FIELDS: &str = "no-alert-fields";
pub const SKIP_NO_ALERT_NAME: &str = "no-alert-name";

/// One row a correct parser must produce (`docs/cards.md` §6): the 13
/// columns of the contract, named as the columns are. The sandbox's own type,
/// so that the oracle shares nothing with the parser it checks; alertflow
/// converts it to its `AlertRow` where it compares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedRow {
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

/// What a correct parser must produce for some messages: the rows in message
/// order (firing row before resolved row within a message) and the number of
/// skipped messages per reason (reasons with no skip are absent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expected {
    pub rows: Vec<ExpectedRow>,
    pub skips: BTreeMap<String, u64>,
}

impl Expected {
    fn append(&mut self, other: Expected) {
        self.rows.extend(other.rows);
        for (reason, n) in other.skips {
            *self.skips.entry(reason).or_default() += n;
        }
    }
}

/// The messages of one chat on one Pacific day, exactly as the list API serves
/// them, sorted by `create_time` ascending. Empty when `chat` is not one of
/// `cfg.chats` or `date` is outside the configured history.
pub fn day_messages(cfg: &SandboxConfig, chat: &str, date: NaiveDate) -> Vec<Value> {
    generate_day(cfg, chat, date, cfg.history_range()).items
}

/// The rows and skips that [`day_messages`] for the same arguments must parse to.
pub fn expected_day(cfg: &SandboxConfig, chat: &str, date: NaiveDate) -> Expected {
    generate_day(cfg, chat, date, cfg.history_range()).expected
}

/// [`expected_day`] for every day of `from..=to`, concatenated in date order.
pub fn expected_range(cfg: &SandboxConfig, chat: &str, from: NaiveDate, to: NaiveDate) -> Expected {
    let range = cfg.history_range();
    let mut all = Expected::default();
    let mut day = from;
    while day <= to {
        all.append(generate_day(cfg, chat, day, range).expected);
        match day.succ_opt() {
            Some(next) => day = next,
            None => break,
        }
    }
    all
}

/// `[start, end)` of a Pacific (America/Los_Angeles) calendar day in Unix
/// milliseconds: 24 h, or 23 h / 25 h on DST transition days.
pub fn pacific_day_bounds_ms(date: NaiveDate) -> (i64, i64) {
    let start = pacific_midnight_ms(date);
    let end = date
        .succ_opt()
        .map_or(start + 86_400_000, pacific_midnight_ms);
    (start, end)
}

/// The Pacific calendar date of a Unix-millisecond instant.
pub fn pacific_date_of_ms(ms: i64) -> NaiveDate {
    let utc = DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    utc.with_timezone(&Los_Angeles).date_naive()
}

fn pacific_midnight_ms(date: NaiveDate) -> i64 {
    let naive = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    // Midnight always exists in Los Angeles (transitions happen at 02:00).
    Los_Angeles
        .from_local_datetime(&naive)
        .earliest()
        .map_or_else(
            || naive.and_utc().timestamp_millis(),
            |t| t.timestamp_millis(),
        )
}

/// One generated day: the items, their create times (ms, ascending) and the
/// expected parse.
pub(crate) struct GeneratedDay {
    pub items: Vec<Value>,
    pub create_ms: Vec<i64>,
    pub expected: Expected,
}

pub(crate) fn generate_day(
    cfg: &SandboxConfig,
    chat: &str,
    date: NaiveDate,
    (from, to): (NaiveDate, NaiveDate),
) -> GeneratedDay {
    let mut day = GeneratedDay {
        items: Vec::new(),
        create_ms: Vec::new(),
        expected: Expected::default(),
    };
    if date < from || date > to || !cfg.chats.iter().any(|c| c == chat) {
        return day;
    }
    let ctx = DayContext::new(cfg.seed, chat, date);
    let mut rng = fastrand::Rng::with_seed(ctx.day_seed);
    let (start, end) = pacific_day_bounds_ms(date);
    let len = u64::try_from(end - start).unwrap_or(86_400_000).max(1);
    let mut times: Vec<i64> = (0..cfg.per_day)
        .map(|_| start + i64::try_from(rng.u64(0..len)).unwrap_or(0))
        .collect();
    times.sort_unstable();

    let mut last_card_id: Option<String> = None;
    for (index, &create_ms) in times.iter().enumerate() {
        let message_id = ctx.message_id(index);
        let generated = ctx.message(&mut rng, &message_id, create_ms, last_card_id.as_deref());
        if generated.item["msg_type"] == "interactive" {
            last_card_id = Some(message_id.clone());
        }
        match generated.outcome {
            Outcome::Rows(rows) => day.expected.rows.extend(rows),
            Outcome::Skip(reason) => *day.expected.skips.entry(reason.to_owned()).or_default() += 1,
        }
        day.items.push(generated.item);
        day.create_ms.push(create_ms);
    }
    day
}

// ---------------------------------------------------------------------------
// Deterministic hashing

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separator so ("ab","c") and ("a","bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    splitmix64(h)
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn hex_id(parts: &[&[u8]], hex_len: usize) -> String {
    let mut out = String::with_capacity(hex_len + 16);
    let mut counter: u64 = 0;
    while out.len() < hex_len {
        let c = counter.to_le_bytes();
        let mut all: Vec<&[u8]> = parts.to_vec();
        all.push(&c);
        out.push_str(&format!("{:016x}", fnv1a(&all)));
        counter += 1;
    }
    out.truncate(hex_len);
    out
}

// ---------------------------------------------------------------------------
// Catalogue

struct AlertKind {
    name: &'static str,
    /// Alertmanager headline (bold span); `{host}` is replaced.
    headline: &'static str,
    desc_en: &'static str,
    desc_zh: &'static str,
    port: u16,
}

const fn kind(
    name: &'static str,
    headline: &'static str,
    desc_en: &'static str,
    desc_zh: &'static str,
    port: u16,
) -> AlertKind {
    AlertKind {
        name,
        headline,
        desc_en,
        desc_zh,
        port,
    }
}

// No text here may contain a severity word (critical, warning, info, p1, s2,
// 严重, ...): sections without a severity key take the first such word.
#[rustfmt::skip]
const CATALOGUE: &[AlertKind] = &[
    kind("ProcNotRunning", "starrocks process is not running on {host}", "process down for 2 minutes", "进程未运行", 9050),
    kind("BeAliveAbnormal", "Backend {host} heartbeat lost", "no heartbeat for 3 minutes", "BE 节点心跳丢失", 9050),
    kind("ClusterStateAbnormal", "cluster state abnormal, reported by {host}", "unhealthy FE or BE nodes detected", "集群状态异常", 9030),
    kind("FEQueryErrRateMoreThan60%", "query error rate above 60% on {host}", "failed queries above 60% of total over 5m", "查询错误率超过 60%", 9030),
    kind("FEHeapUsageTooHigh", "FE heap usage above 90% on {host}", "FE heap above 90%", "FE 堆内存使用率超过 90%", 9030),
    kind("FEMaxTabletCompaction", "tablet compaction score too high on {host}", "max tablet compaction score above 500", "Tablet Compaction 分数过高", 9030),
    kind("RootFreeDiskLessThan10%", "root disk free space below 10% on {host}", "root filesystem free space below 10%", "磁盘使用率超过阈值", 9050),
    kind("FEGCCount", "FE GC count too high on {host}", "young GC count above 50 per minute", "FE GC 次数过多", 9030),
    kind("OperationDurationGT10m", "cluster operation running longer than 10m on {host}", "scale-out operation running for over 10 minutes", "集群操作耗时超过 10 分钟", 9030),
    kind("BECpuUsageHigh", "BE CPU usage above 90% on {host}", "CPU above 90% for 10 minutes", "BE CPU 使用率超过 90%", 9050),
    kind("BEMemoryUsageHigh", "BE memory usage above 90% on {host}", "process memory above 90% of mem_limit", "BE 内存使用率超过 90%", 9050),
    kind("BEDiskIOUtilHigh", "BE disk IO util above 95% on {host}", "disk util above 95% for 5 minutes", "BE 磁盘 IO 使用率超过 95%", 9050),
    kind("FEJvmOldGcTooFrequent", "FE old GC too frequent on {host}", "old GC more than 3 times in 5 minutes", "FE Old GC 过于频繁", 9030),
    kind("LoadJobFailed", "load job failed on {host}", "broker load job failed: too many filtered rows", "导入任务失败", 9030),
    kind("CompactionScoreHigh", "compaction score above 800 on {host}", "base compaction lagging behind ingestion", "Compaction 分数过高", 9050),
    kind("QueryLatencyP99High", "query P99 latency above 5s on {host}", "P99 query latency above 5 s for 10 minutes", "查询 P99 延迟超过 5 秒", 9030),
    kind("TabletReplicaMissing", "tablet replicas missing on {host}", "unhealthy tablet replicas detected", "Tablet 副本缺失", 9050),
    kind("RoutineLoadPaused", "routine load job paused on {host}", "routine load job paused after a Kafka offset error", "Routine Load 任务已暂停", 9030),
    kind("BEDataDiskUsageHigh", "BE data disk usage above 85% on {host}", "data disk usage above 85%", "BE 数据盘使用率超过 85%", 9050),
    kind("FEMetaJournalLag", "FE metadata journal lag on {host}", "follower journal replay lag above 10000", "FE 元数据同步延迟", 9030),
    kind("MaterializedViewRefreshFailed", "materialized view refresh failed on {host}", "async refresh task failed 3 times in a row", "物化视图刷新失败", 9030),
    kind("CNNodeDown", "compute node {host} is down", "CN heartbeat lost for 2 minutes", "CN 节点宕机", 9060),
    kind("StreamLoadErrRateHigh", "stream load error rate above 10% on {host}", "stream load error rate above 10% over 5m", "Stream Load 错误率超过 10%", 8040),
];

/// Cluster and the region it usually lives in.
const CLUSTERS: &[(&str, &str)] = &[
    ("byoc-prod-01", "us-east-1"),
    ("byoc-prod-02", "us-west-2"),
    ("olap-us-east", "us-east-1"),
    ("olap-us-west", "us-west-2"),
    ("olap-eu-central", "eu-central-1"),
    ("analytics-apac", "ap-southeast-1"),
    ("lakehouse-prod", "ap-northeast-1"),
    ("byoc-staging-01", "eu-west-1"),
    ("adtech-olap-03", "us-east-1"),
    ("finance-dw", "eu-west-1"),
];

const REGIONS: &[&str] = &[
    "us-east-1",
    "us-west-2",
    "eu-central-1",
    "eu-west-1",
    "ap-southeast-1",
    "ap-northeast-1",
];

const USERS: &[&str] = &[
    "Li Wei",
    "Maria Garcia",
    "Chen Jing",
    "Tom",
    "Priya N.",
    "王芳",
    "Alex Kim",
];

const CHAT_TEXTS: &[&str] = &[
    "ack, looking",
    "@_user_1 can you take a look at {cluster}?",
    "silenced for 1h",
    "restarted the BE on {cluster}, watching",
    "false alarm, threshold too tight",
    "这个我来跟进",
    "已处理，观察中",
    "is anyone on call today?",
    "rolling restart of {cluster} done",
    "opened a ticket for this",
    "@_user_1 FYI",
    "scaling {cluster} out by 2 BEs",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Firing,
    Resolved,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Critical,
    Warning,
    Info,
    /// A value outside the table (kept lowercased by the parser).
    Other,
    /// No severity at all.
    Missing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    English,
    Chinese,
    Nightingale,
    Alertmanager,
}

fn pick<T: Copy>(rng: &mut fastrand::Rng, items: &[T]) -> T {
    items[rng.usize(0..items.len())]
}

fn chance(rng: &mut fastrand::Rng, p: f64) -> bool {
    rng.f64() < p
}

fn draw_level(rng: &mut fastrand::Rng, family: Family) -> Level {
    let r = rng.f64();
    match family {
        Family::Nightingale => {
            if r < 0.4 {
                Level::Critical
            } else if r < 0.8 {
                Level::Warning
            } else {
                Level::Info
            }
        }
        Family::Alertmanager => {
            if r < 0.4 {
                Level::Critical
            } else if r < 0.8 {
                Level::Warning
            } else if r < 0.97 {
                Level::Info
            } else {
                Level::Missing
            }
        }
        Family::English | Family::Chinese => {
            if r < 0.35 {
                Level::Critical
            } else if r < 0.75 {
                Level::Warning
            } else if r < 0.9 {
                Level::Info
            } else if r < 0.95 {
                Level::Other
            } else {
                Level::Missing
            }
        }
    }
}

/// The spelling written on the card, or `None` for a missing severity.
#[rustfmt::skip]
fn spell_level(rng: &mut fastrand::Rng, level: Level, family: Family) -> Option<&'static str> {
    let choices: &[&str] = match (family, level) {
        (_, Level::Missing) => return None,
        (Family::Nightingale, Level::Critical) => &["S1"],
        (Family::Nightingale, Level::Warning) => &["S2"],
        (Family::Nightingale, _) => &["S3"],
        (Family::Alertmanager, Level::Critical) => &["CRITICAL", "CRITICAL", "critical"],
        (Family::Alertmanager, Level::Warning) => &["WARNING", "WARNING", "warning"],
        (Family::Alertmanager, _) => &["INFO"],
        (Family::English, Level::Critical) => &[
            "Critical",
            "Critical",
            "CRITICAL",
            "critical",
            "P1",
            "P0",
            "S1",
            "crit",
            "Fatal",
            "Emergency",
        ],
        (Family::English, Level::Warning) => &[
            "Warning", "Warning", "warning", "WARN", "P2", "S2", "Major", "Minor", "warn",
        ],
        (Family::English, Level::Info) => &[
            "Info",
            "Info",
            "info",
            "P3",
            "S3",
            "Notice",
            "Informational",
        ],
        (Family::English, Level::Other) => &["High", "Medium", "Low", "Sev4"],
        (Family::Chinese, Level::Critical) => &["严重", "严重", "紧急", "P1", "S1", "Critical"],
        (Family::Chinese, Level::Warning) => &["警告", "警告", "P2", "S2", "warning"],
        (Family::Chinese, Level::Info) => &["提示", "P3", "info"],
        (Family::Chinese, Level::Other) => &["高", "中", "High"],
    };
    Some(pick(rng, choices))
}

/// The contract's ranking of severities (`docs/cards.md` §6): `critical` >
/// `warning` > `info` > any other value > `unknown` or empty. Values are
/// compared as written (case and surrounding spaces ignored).
fn severity_rank(severity: &str) -> u8 {
    let s = severity.trim();
    if s.eq_ignore_ascii_case("critical") {
        4
    } else if s.eq_ignore_ascii_case("warning") {
        3
    } else if s.eq_ignore_ascii_case("info") {
        2
    } else if s.is_empty() || s.eq_ignore_ascii_case("unknown") {
        0
    } else {
        1
    }
}

/// A row's severity (`docs/cards.md` §6): the highest-ranked of its
/// sections', the first seen among equals; a written `unknown` still beats
/// an empty value, so the word is kept.
fn row_severity<'a>(severities: impl IntoIterator<Item = &'a str>) -> &'a str {
    let mut best = "";
    for s in severities {
        if severity_rank(s) > severity_rank(best) || (best.is_empty() && !s.is_empty()) {
            best = s;
        }
    }
    best
}

/// The parser's normalisation of a written severity (`docs/cards.md` §5).
fn normalise_severity(written: Option<&str>) -> String {
    let Some(w) = written else {
        return String::new();
    };
    let lower = w.trim().to_lowercase();
    let norm = match lower.as_str() {
        "critical" | "crit" | "fatal" | "emergency" | "p0" | "p1" | "s1" | "严重" | "紧急" => {
            "critical"
        }
        "warning" | "warn" | "major" | "minor" | "p2" | "s2" | "警告" => "warning",
        "info" | "informational" | "notice" | "p3" | "s3" | "提示" => "info",
        _ => return lower,
    };
    norm.to_owned()
}

// ---------------------------------------------------------------------------
// Projected card building (lark-api.md §2.4)

/// An inline node of a projected card (typed rather than `Value`: days are
/// generated on request, and this is the bulk of the work).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "tag", rename_all = "snake_case")]
enum Node {
    Text {
        text: String,
    },
    A {
        text: String,
        href: String,
    },
    At {
        user_id: &'static str,
        user_name: &'static str,
    },
    Hr,
    Note {
        elements: Vec<Node>,
    },
    Button {
        text: &'static str,
        #[serde(rename = "type")]
        kind: &'static str,
    },
}

fn text(s: &str) -> Node {
    Node::Text { text: s.to_owned() }
}

fn link(s: &str, href: &str) -> Node {
    Node::A {
        text: s.to_owned(),
        href: href.to_owned(),
    }
}

fn hr_row() -> Vec<Node> {
    vec![Node::Hr]
}

fn note_row(elements: Vec<Node>) -> Vec<Node> {
    vec![Node::Note { elements }]
}

fn button(text: &'static str, kind: &'static str) -> Node {
    Node::Button { text, kind }
}

/// How a card writes `Key: value` lines once projected.
#[derive(Debug, Clone, Copy)]
enum KeyStyle {
    /// `**Key**: value` → `[text "Key"][text ": value\n"]`.
    Bold { colon: &'static str },
    /// `**Key:** value` → `[text "Key:"][text " value\n"]` (nightingale).
    BoldWithColon { colon: &'static str },
    /// `Key: value` in plain text.
    Plain { colon: &'static str },
}

/// Accumulates the inline nodes of one row, merging adjacent plain text the
/// way the projection does.
#[derive(Default)]
struct RowText {
    nodes: Vec<Node>,
    plain: String,
}

impl RowText {
    fn flush(&mut self) {
        if !self.plain.is_empty() {
            let t = std::mem::take(&mut self.plain);
            self.nodes.push(text(&t));
        }
    }

    fn bold(&mut self, s: &str) {
        self.flush();
        self.nodes.push(text(s));
    }

    fn plain(&mut self, s: &str) {
        self.plain.push_str(s);
    }

    fn node(&mut self, v: Node) {
        self.flush();
        self.nodes.push(v);
    }

    fn field(&mut self, style: KeyStyle, key: &str, value: &str) {
        match style {
            KeyStyle::Bold { colon } => {
                self.bold(key);
                self.plain(&format!("{colon}{value}\n"));
            }
            KeyStyle::BoldWithColon { colon } => {
                self.bold(&format!("{key}{colon}"));
                self.plain(&format!(" {value}\n"));
            }
            KeyStyle::Plain { colon } => self.plain(&format!("{key}{colon}{value}\n")),
        }
    }

    fn line(&mut self, s: &str) {
        self.plain(s);
        self.plain("\n");
    }

    fn finish(mut self) -> Vec<Node> {
        if self.plain.ends_with('\n') {
            self.plain.pop();
        }
        self.flush();
        self.nodes
    }
}

#[derive(Serialize)]
struct CardContent<'a> {
    title: Option<&'a str>,
    elements: &'a [Vec<Node>],
}

fn card_content(title: Option<&str>, rows: &[Vec<Node>]) -> String {
    serde_json::to_string(&CardContent {
        title,
        elements: rows,
    })
    .unwrap_or_default()
}

fn fmt_utc(ms: i64) -> String {
    fmt_datetime(
        DateTime::<Utc>::from_timestamp_millis(ms)
            .unwrap_or_default()
            .naive_utc(),
    )
}

fn fmt_shanghai(ms: i64) -> String {
    let utc = DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    fmt_datetime(utc.with_timezone(&Shanghai).naive_local())
}

/// `YYYY-MM-DD HH:MM:SS` without parsing a strftime pattern per call.
fn fmt_datetime(t: chrono::NaiveDateTime) -> String {
    use chrono::{Datelike, Timelike};
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

// ---------------------------------------------------------------------------
// Sections and rows

/// What the generator put into one section of a card.
#[derive(Debug, Clone)]
struct Section {
    name: Option<String>,
    status: Status,
    severity: String,
    cluster: String,
    region: String,
    summary: String,
}

struct MessageMeta<'a> {
    message_id: &'a str,
    chat: &'a str,
    create_ms: i64,
    title: Option<&'a str>,
}

/// `docs/cards.md` §6, from known section facts.
fn rows_for(meta: &MessageMeta<'_>, sections: &[Section]) -> Vec<ExpectedRow> {
    let created_at = fmt_utc(meta.create_ms);
    let alert_date = pacific_date_of_ms(meta.create_ms)
        .format("%Y-%m-%d")
        .to_string();
    let mut rows = Vec::new();
    for (status, suffix, word) in [
        (Status::Firing, "-f", "firing"),
        (Status::Resolved, "-r", "resolved"),
    ] {
        let group: Vec<&Section> = sections.iter().filter(|s| s.status == status).collect();
        let Some(first) = group.first() else {
            continue;
        };
        // Most frequent name, ties to the first seen.
        let mut counts: Vec<(&str, usize)> = Vec::new();
        for name in group.iter().filter_map(|s| s.name.as_deref()) {
            match counts.iter_mut().find(|(n, _)| *n == name) {
                Some((_, c)) => *c += 1,
                None => counts.push((name, 1)),
            }
        }
        let mut alert_name = "";
        let mut best = 0;
        for (n, c) in &counts {
            if *c > best {
                best = *c;
                alert_name = n;
            }
        }
        let severity = row_severity(group.iter().map(|s| s.severity.as_str()));
        let join = |f: fn(&Section) -> &str| {
            group
                .iter()
                .map(|s| f(s))
                .filter(|v| !v.is_empty())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join(",")
        };
        rows.push(ExpectedRow {
            message_id: format!("{}{suffix}", meta.message_id),
            lark_message_id: meta.message_id.to_owned(),
            chat_id: meta.chat.to_owned(),
            status: word.to_owned(),
            alert_name: alert_name.to_owned(),
            severity: severity.to_owned(),
            clusters: join(|s| &s.cluster),
            regions: join(|s| &s.region),
            alert_count: u32::try_from(group.len()).unwrap_or(u32::MAX),
            created_at: created_at.clone(),
            alert_date: alert_date.clone(),
            title: meta.title.unwrap_or("").to_owned(),
            summary: first.summary.clone(),
        });
    }
    rows
}

enum Outcome {
    Rows(Vec<ExpectedRow>),
    Skip(&'static str),
}

struct Generated {
    item: Value,
    outcome: Outcome,
}

/// One drawn alert instance.
struct Alert {
    kind: &'static AlertKind,
    status: Status,
    level: Level,
    cluster: &'static str,
    region: Option<&'static str>,
    host: String,
    start_ms: i64,
    end_ms: i64,
}

// ---------------------------------------------------------------------------
// The day

struct DayContext<'a> {
    seed: u64,
    chat: &'a str,
    date: NaiveDate,
    day_seed: u64,
    tenant_key: String,
    /// Sender app ids of the three bridges (keyed English, Alertmanager, Chinese).
    bridges: [String; 3],
}

impl<'a> DayContext<'a> {
    fn new(seed: u64, chat: &'a str, date: NaiveDate) -> Self {
        let seed_b = seed.to_le_bytes();
        let date_s = date.to_string();
        let day_seed = fnv1a(&[b"day", &seed_b, chat.as_bytes(), date_s.as_bytes()]);
        let bridge = |n: &str| format!("cli_{}", hex_id(&[b"bridge", &seed_b, n.as_bytes()], 16));
        Self {
            seed,
            chat,
            date,
            day_seed,
            tenant_key: hex_id(&[b"tenant", &seed_b], 16),
            bridges: [
                bridge("keyed-en"),
                bridge("alertmanager"),
                bridge("keyed-zh"),
            ],
        }
    }

    fn message_id(&self, index: usize) -> String {
        let seed_b = self.seed.to_le_bytes();
        let date_s = self.date.to_string();
        let index_b = (index as u64).to_le_bytes();
        format!(
            "om_{}",
            hex_id(
                &[
                    b"msg",
                    &seed_b,
                    self.chat.as_bytes(),
                    date_s.as_bytes(),
                    &index_b
                ],
                32
            )
        )
    }

    fn user(&self, rng: &mut fastrand::Rng) -> (String, &'static str) {
        let i = rng.usize(0..USERS.len());
        let id = format!(
            "ou_{}",
            hex_id(&[b"user", &self.seed.to_le_bytes(), &i.to_le_bytes()], 32)
        );
        (id, USERS[i])
    }

    fn app_sender(&self, app_id: &str) -> Value {
        json!({"id": app_id, "id_type": "app_id", "sender_type": "app", "tenant_key": self.tenant_key})
    }

    fn user_sender(&self, open_id: &str) -> Value {
        json!({"id": open_id, "id_type": "open_id", "sender_type": "user", "tenant_key": self.tenant_key})
    }

    #[allow(clippy::too_many_arguments)]
    fn item(
        &self,
        message_id: &str,
        msg_type: &str,
        create_ms: i64,
        update_ms: i64,
        deleted: bool,
        updated: bool,
        sender: Value,
        content: String,
    ) -> Value {
        json!({
            "message_id": message_id,
            "msg_type": msg_type,
            "create_time": create_ms.to_string(),
            "update_time": update_ms.to_string(),
            "deleted": deleted,
            "updated": updated,
            "chat_id": self.chat,
            "sender": sender,
            "body": {"content": content},
        })
    }

    fn message(
        &self,
        rng: &mut fastrand::Rng,
        message_id: &str,
        create_ms: i64,
        last_card: Option<&str>,
    ) -> Generated {
        let r = rng.u32(0..100);
        match r {
            0..30 => self.keyed_english(rng, message_id, create_ms),
            30..50 => self.alertmanager(rng, message_id, create_ms),
            50..70 => self.keyed_chinese(rng, message_id, create_ms),
            70..84 => self.chatter(rng, message_id, create_ms, last_card),
            84..89 => self.recalled(rng, message_id, create_ms),
            89..94 => self.unreadable(rng, message_id, create_ms),
            94..98 => self.report(rng, message_id, create_ms),
            _ => self.nameless(rng, message_id, create_ms),
        }
    }

    fn draw_alert(
        &self,
        rng: &mut fastrand::Rng,
        kind: &'static AlertKind,
        status: Status,
        family: Family,
        create_ms: i64,
    ) -> Alert {
        // Alerts have favourite clusters (a sick cluster keeps alerting),
        // so a day's report has quiet and noisy alerts, as in real chats.
        let seed = kind.name.bytes().fold(7usize, |h, b| {
            h.wrapping_mul(31).wrapping_add(usize::from(b))
        });
        let (cluster, home) = if chance(rng, 0.85) {
            CLUSTERS[seed % CLUSTERS.len()]
        } else if chance(rng, 0.8) {
            CLUSTERS[(seed + 1) % CLUSTERS.len()]
        } else {
            pick(rng, CLUSTERS)
        };
        let region = if chance(rng, 0.08) {
            None
        } else if chance(rng, 0.8) {
            Some(home)
        } else {
            Some(pick(rng, REGIONS))
        };
        let host = format!("10.{}.{}.{}", rng.u8(0..4), rng.u8(0..16), rng.u8(2..250));
        let end_ms = create_ms - i64::from(rng.u32(0..120_000));
        let start_ms = end_ms - i64::from(rng.u32(60_000..3_600_000));
        Alert {
            kind,
            status,
            level: draw_level(rng, family),
            cluster,
            region,
            host,
            start_ms: start_ms / 1000 * 1000,
            end_ms: end_ms / 1000 * 1000,
        }
    }

    // --- keyed English --------------------------------------------------

    fn keyed_english(
        &self,
        rng: &mut fastrand::Rng,
        message_id: &str,
        create_ms: i64,
    ) -> Generated {
        let main = pick_kind(rng);
        let multi = chance(rng, 0.3);
        let count = if multi { rng.usize(2..5) } else { 1 };
        let p_resolved = if multi { 0.35 } else { 0.4 };
        let alerts: Vec<Alert> = (0..count)
            .map(|_| {
                let kind = if multi && chance(rng, 0.2) {
                    pick_kind(rng)
                } else {
                    main
                };
                let status = if chance(rng, p_resolved) {
                    Status::Resolved
                } else {
                    Status::Firing
                };
                let mut alert = self.draw_alert(rng, kind, status, Family::English, create_ms);
                // Which of two different out-of-table severities wins a row is
                // unspecified, so a multi-alert card never has one.
                if multi && alert.level == Level::Other {
                    alert.level = Level::Warning;
                }
                alert
            })
            .collect();

        let name_key = pick(
            rng,
            &[
                "Alert",
                "Alert",
                "Alert",
                "Alert Name",
                "Alertname",
                "Rule",
                "Rule Name",
                "Alarm",
            ],
        );
        let sev_key = pick(
            rng,
            &["Severity", "Severity", "Severity", "Level", "Priority"],
        );
        let status_key = pick(rng, &["Status", "Status", "Status", "State"]);
        let summary_key = pick(rng, &["Summary", "Summary", "Description", "Message"]);
        let cluster_key = pick(rng, &["Cluster", "Cluster", "Cluster Name"]);
        let style = match rng.u8(0..10) {
            0..7 => KeyStyle::Bold { colon: ": " },
            7 => KeyStyle::BoldWithColon { colon: ":" },
            8 => KeyStyle::Plain { colon: ": " },
            _ => KeyStyle::Plain {
                colon: pick(rng, &[" : ", "：", ":"]),
            },
        };
        // Single-alert cards sometimes leave the name or the status to the title.
        let name_from_title = !multi && chance(rng, 0.1);
        // 0: status key, 1: end time only (resolved) / nothing (firing), 2: title only.
        let status_mode = if multi {
            0
        } else {
            pick(rng, &[0, 0, 0, 0, 0, 0, 0, 1, 1, 2])
        };
        let summary_style = rng.u8(0..3);

        let first = &alerts[0];
        let title: Option<String> = if multi {
            Some(
                pick(
                    rng,
                    &[
                        "[BYOC Alarm] {}",
                        "[StarRocks][prod] {}",
                        "[BYOC Alarm] {} x{n}",
                    ],
                )
                .replace("{}", main.name)
                .replace("{n}", &count.to_string()),
            )
        } else {
            let word = match first.status {
                Status::Firing => pick(rng, &["Firing", "FIRING:1", "Firing"]),
                Status::Resolved => pick(rng, &["Resolved", "RESOLVED", "Resolved"]),
            };
            let t = match rng.u8(0..6) {
                0 if !name_from_title && status_mode == 0 => {
                    format!("[BYOC Alarm] {}", first.kind.name)
                }
                1 => format!(
                    "[{word}][StarRocks] {} ({})",
                    first.kind.name, first.cluster
                ),
                2 => format!(
                    "{} {}",
                    first.kind.name,
                    word.split(':').next().unwrap_or(word)
                ),
                _ => format!("[{word}] {}", first.kind.name),
            };
            Some(t)
        };
        let title_ref = title.as_deref();

        let mut rows: Vec<Vec<Node>> = Vec::new();
        let mut sections = Vec::new();
        let use_hr = !multi || chance(rng, 0.85);
        for (i, a) in alerts.iter().enumerate() {
            if i > 0 && use_hr {
                rows.push(hr_row());
            }
            let mut row = RowText::default();
            let name = if name_from_title {
                // The title minus brackets/status words is exactly the name.
                None
            } else {
                row.field(style, name_key, a.kind.name);
                Some(a.kind.name.to_owned())
            };
            let written = spell_level(rng, a.level, Family::English);
            if let Some(w) = written {
                row.field(style, sev_key, w);
            }
            row.field(style, cluster_key, a.cluster);
            if let Some(r) = a.region {
                row.field(style, "Region", r);
            }
            if status_mode == 0 {
                let v = match a.status {
                    Status::Firing => pick(
                        rng,
                        &[
                            "Firing",
                            "Firing",
                            "firing",
                            "FIRING",
                            "Alerting",
                            "Triggered",
                            "Problem",
                        ],
                    ),
                    Status::Resolved => pick(
                        rng,
                        &[
                            "Resolved",
                            "Resolved",
                            "resolved",
                            "RESOLVED",
                            "Recovered",
                            "OK",
                        ],
                    ),
                };
                row.field(style, status_key, v);
            }
            row.field(style, "Start Time", &fmt_utc(a.start_ms));
            let end_line = match status_mode {
                1 => a.status == Status::Resolved,
                2 => false,
                _ => a.status == Status::Resolved && chance(rng, 0.5),
            };
            if end_line {
                row.field(style, "End Time", &fmt_utc(a.end_ms));
            }
            if chance(rng, 0.3) {
                row.field(style, "Instance", &format!("{}:{}", a.host, a.kind.port));
            }
            let summary = match summary_style {
                0 => Some(format!("{} on {}", a.kind.name, a.cluster)),
                1 => Some(a.kind.desc_en.to_owned()),
                _ if chance(rng, 0.5) => Some(a.kind.desc_en.to_owned()),
                _ => None,
            };
            if let Some(s) = &summary {
                row.field(style, summary_key, s);
            }
            if chance(rng, 0.25) {
                row.plain("Runbook: ");
                row.node(link(
                    "wiki",
                    &format!(
                        "https://wiki.sandbox.local/runbooks/{}",
                        a.kind.name.trim_end_matches('%')
                    ),
                ));
                row.plain("\n");
            }
            if chance(rng, 0.1) {
                row.plain("Owner: ");
                row.node(Node::At {
                    user_id: "@_user_1",
                    user_name: pick(rng, USERS),
                });
            }
            rows.push(row.finish());
            let name = name.or_else(|| Some(a.kind.name.to_owned()));
            sections.push(Section {
                name,
                status: a.status,
                severity: normalise_severity(written),
                cluster: a.cluster.to_owned(),
                region: a.region.unwrap_or("").to_owned(),
                summary: summary.unwrap_or_default(),
            });
        }
        if chance(rng, 0.7) {
            rows.push(vec![
                button("Silence 1h", "default"),
                button("Ack", "primary"),
            ]);
        }
        if chance(rng, 0.3) {
            rows.push(note_row(vec![text("StarRocks Cloud Monitor")]));
        }
        let content = card_content(title_ref, &rows);
        let updated = chance(rng, 0.03);
        let update_ms = if updated {
            create_ms + i64::from(rng.u32(60_000..1_800_000))
        } else {
            create_ms
        };
        let item = self.item(
            message_id,
            "interactive",
            create_ms,
            update_ms,
            false,
            updated,
            self.app_sender(&self.bridges[0]),
            content,
        );
        let meta = MessageMeta {
            message_id,
            chat: self.chat,
            create_ms,
            title: title_ref,
        };
        Generated {
            outcome: Outcome::Rows(rows_for(&meta, &sections)),
            item,
        }
    }

    // --- Alertmanager bridge ---------------------------------------------

    fn alertmanager(&self, rng: &mut fastrand::Rng, message_id: &str, create_ms: i64) -> Generated {
        let kind = pick_kind(rng);
        let (firing, resolved) = loop {
            let f = pick(rng, &[0usize, 1, 1, 1, 2, 2, 3, 4]);
            let r = pick(rng, &[0usize, 0, 1, 1, 2, 3]);
            if f + r > 0 {
                break (f, r);
            }
        };
        let prefix = pick(rng, &["[prod] ", "[prod] ", "[staging] ", "[byoc] ", ""]);
        let mut title = format!("{prefix}{}", kind.name);
        if firing > 0 {
            title.push_str(&format!(" [{firing}] Firing"));
        }
        if resolved > 0 {
            title.push_str(&format!(" [{resolved}] Resolved"));
        }
        let labels_with_name = chance(rng, 0.3);
        let with_desc = chance(rng, 0.7);
        let expr = kind.name.to_lowercase().replace('%', "");
        let mut rows = Vec::new();
        let mut sections = Vec::new();
        let statuses = std::iter::repeat_n(Status::Firing, firing)
            .chain(std::iter::repeat_n(Status::Resolved, resolved));
        for status in statuses {
            let a = self.draw_alert(rng, kind, status, Family::Alertmanager, create_ms);
            let written = spell_level(rng, a.level, Family::Alertmanager);
            let mut row = RowText::default();
            row.bold(&kind.headline.replace("{host}", &a.host));
            match written {
                Some(w) => row.plain(&format!(" {w} ")),
                None => row.plain(" "),
            }
            row.node(link(
                "GeneratorURL",
                &format!("http://prometheus.prod:9090/graph?g0.expr={expr}"),
            ));
            row.plain("\n");
            if with_desc {
                row.line(kind.desc_en);
            }
            let mut labels = String::new();
            if labels_with_name {
                labels.push_str(&format!("alertname={} ", kind.name));
                if let Some(w) = written {
                    labels.push_str(&format!("severity={} ", w.to_lowercase()));
                }
            }
            labels.push_str(&format!("cluster={}", a.cluster));
            if let Some(r) = a.region {
                labels.push_str(&format!(" region={r}"));
            }
            labels.push_str(&format!(" instance={}:{}", a.host, kind.port));
            if chance(rng, 0.3) {
                labels.push_str(" job=starrocks");
            }
            row.line(&labels);
            let end = match status {
                Status::Firing => "TO BE RESOLVED".to_owned(),
                Status::Resolved => fmt_utc(a.end_ms),
            };
            row.line(&format!("{} ~ {end}", fmt_utc(a.start_ms)));
            rows.push(row.finish());
            rows.push(hr_row());
            sections.push(Section {
                name: Some(kind.name.to_owned()),
                status,
                severity: normalise_severity(written),
                cluster: a.cluster.to_owned(),
                region: a.region.unwrap_or("").to_owned(),
                summary: String::new(),
            });
        }
        rows.push(note_row(vec![text(
            "alertmanager: http://alertmanager.prod:9093",
        )]));
        let content = card_content(Some(&title), &rows);
        let item = self.item(
            message_id,
            "interactive",
            create_ms,
            create_ms,
            false,
            false,
            self.app_sender(&self.bridges[1]),
            content,
        );
        let meta = MessageMeta {
            message_id,
            chat: self.chat,
            create_ms,
            title: Some(&title),
        };
        Generated {
            outcome: Outcome::Rows(rows_for(&meta, &sections)),
            item,
        }
    }

    // --- keyed Chinese (nightingale and PrometheusAlert styles) ----------

    fn keyed_chinese(
        &self,
        rng: &mut fastrand::Rng,
        message_id: &str,
        create_ms: i64,
    ) -> Generated {
        let nightingale = chance(rng, 0.6);
        let family = if nightingale {
            Family::Nightingale
        } else {
            Family::Chinese
        };
        let kind = pick_kind(rng);
        let count = if chance(rng, 0.15) { 2 } else { 1 };
        let alerts: Vec<Alert> = (0..count)
            .map(|_| {
                let status = if chance(rng, 0.4) {
                    Status::Resolved
                } else {
                    Status::Firing
                };
                let mut alert = self.draw_alert(rng, kind, status, family, create_ms);
                if count > 1 && alert.level == Level::Other {
                    // See keyed_english: no two out-of-table severities in a row.
                    alert.level = Level::Warning;
                }
                alert
            })
            .collect();
        let title = if count == 1 {
            match alerts[0].status {
                Status::Firing => format!(
                    "{}{}",
                    pick(rng, &["【告警】", "【告警】", "[生产环境]"]),
                    kind.name
                ),
                Status::Resolved => format!(
                    "{}{}",
                    pick(rng, &["【恢复】", "【恢复】", "[生产环境]"]),
                    kind.name
                ),
            }
        } else {
            format!("【StarRocks】{}", kind.name)
        };
        let mut rows = Vec::new();
        let mut sections = Vec::new();
        for (i, a) in alerts.iter().enumerate() {
            if i > 0 {
                rows.push(hr_row());
            }
            let written = spell_level(rng, a.level, family);
            let mut row = RowText::default();
            let desc = a.kind.desc_zh;
            if nightingale {
                let style = KeyStyle::BoldWithColon {
                    colon: pick(rng, &[":", ":", "："]),
                };
                let word = match a.status {
                    Status::Firing => "Triggered",
                    Status::Resolved => "Recovered",
                };
                row.field(style, "告警集群", a.cluster);
                row.field(
                    style,
                    "级别状态",
                    &format!("{} {word}", written.unwrap_or("S3")),
                );
                row.field(style, "告警名称", a.kind.name);
                if let Some(r) = a.region {
                    row.field(style, pick(rng, &["区域", "地域"]), r);
                }
                row.field(style, "触发时间", &fmt_shanghai(a.start_ms));
                if a.status == Status::Resolved {
                    row.field(style, "恢复时间", &fmt_shanghai(a.end_ms));
                }
                row.field(style, "发送时间", &fmt_shanghai(create_ms));
                if chance(rng, 0.5) {
                    row.field(
                        style,
                        "触发时值",
                        &format!("{}.{}", rng.u8(50..100), rng.u8(0..10)),
                    );
                }
                row.field(style, "告警描述", desc);
            } else {
                let style = KeyStyle::Plain {
                    colon: pick(rng, &["：", "：", ": "]),
                };
                let name_key = pick(rng, &["告警名称", "规则名称"]);
                row.field(style, name_key, a.kind.name);
                if let Some(w) = written {
                    row.field(style, pick(rng, &["告警级别", "级别"]), w);
                }
                let status_word = match a.status {
                    Status::Firing => pick(rng, &["告警", "触发", "firing"]),
                    Status::Resolved => pick(rng, &["恢复", "已恢复", "resolved"]),
                };
                row.field(style, pick(rng, &["告警状态", "状态"]), status_word);
                row.field(style, pick(rng, &["集群", "告警集群"]), a.cluster);
                if let Some(r) = a.region {
                    row.field(style, pick(rng, &["区域", "地域"]), r);
                }
                row.field(style, "开始时间", &fmt_shanghai(a.start_ms));
                if a.status == Status::Resolved {
                    row.field(style, "结束时间", &fmt_shanghai(a.end_ms));
                }
                row.field(style, "故障主机IP", &a.host);
                row.field(
                    style,
                    pick(rng, &["告警内容", "告警详情", "告警描述"]),
                    desc,
                );
            }
            rows.push(row.finish());
            let severity = match (family, written) {
                // Nightingale always writes a level; S3 stands in for a missing one.
                (Family::Nightingale, None) => "info".to_owned(),
                _ => normalise_severity(written),
            };
            sections.push(Section {
                name: Some(a.kind.name.to_owned()),
                status: a.status,
                severity,
                cluster: a.cluster.to_owned(),
                region: a.region.unwrap_or("").to_owned(),
                summary: desc.to_owned(),
            });
        }
        if !nightingale && chance(rng, 0.5) {
            rows.push(vec![
                link("查看 Grafana", "https://grafana.sandbox.local/d/starrocks"),
                button("屏蔽 1 小时", "danger"),
            ]);
        }
        let content = card_content(Some(&title), &rows);
        let item = self.item(
            message_id,
            "interactive",
            create_ms,
            create_ms,
            false,
            false,
            self.app_sender(&self.bridges[2]),
            content,
        );
        let meta = MessageMeta {
            message_id,
            chat: self.chat,
            create_ms,
            title: Some(&title),
        };
        Generated {
            outcome: Outcome::Rows(rows_for(&meta, &sections)),
            item,
        }
    }

    // --- noise ----------------------------------------------------------

    fn chatter(
        &self,
        rng: &mut fastrand::Rng,
        message_id: &str,
        create_ms: i64,
        last_card: Option<&str>,
    ) -> Generated {
        let (open_id, _) = self.user(rng);
        let sender = self.user_sender(&open_id);
        let (cluster, _) = pick(rng, CLUSTERS);
        let r = rng.u8(0..20);
        let (msg_type, content) = if r < 16 {
            let t = pick(rng, CHAT_TEXTS).replace("{cluster}", cluster);
            ("text", json!({ "text": t }).to_string())
        } else if r < 18 {
            let post = json!({
                "title": "Incident notes",
                "content": [
                    [{"tag": "text", "text": format!("Root cause: disk pressure on {cluster}")}],
                    [{"tag": "a", "href": "https://wiki.sandbox.local/incidents", "text": "postmortem"}]
                ]
            });
            ("post", post.to_string())
        } else {
            let key = hex_id(&[b"img", message_id.as_bytes()], 24);
            (
                "image",
                json!({ "image_key": format!("img_v3_{key}") }).to_string(),
            )
        };
        let mut item = self.item(
            message_id, msg_type, create_ms, create_ms, false, false, sender, content,
        );
        if msg_type == "text"
            && item["body"]["content"]
                .as_str()
                .is_some_and(|c| c.contains("@_user_1"))
        {
            let (mid, name) = self.user(rng);
            item["mentions"] = json!([{"key": "@_user_1", "id": mid, "id_type": "open_id", "name": name, "tenant_key": self.tenant_key}]);
        }
        if let Some(card) = last_card.filter(|_| chance(rng, 0.3)) {
            item["root_id"] = json!(card);
            item["parent_id"] = json!(card);
        }
        Generated {
            item,
            outcome: Outcome::Skip(SKIP_NOT_A_CARD),
        }
    }

    fn recalled(&self, rng: &mut fastrand::Rng, message_id: &str, create_ms: i64) -> Generated {
        let update_ms = create_ms + i64::from(rng.u32(5_000..600_000));
        let bridge = pick(rng, &[0usize, 1, 2]);
        let item = self.item(
            message_id,
            "interactive",
            create_ms,
            update_ms,
            true,
            false,
            self.app_sender(&self.bridges[bridge]),
            RECALLED_CONTENT.to_owned(),
        );
        Generated {
            item,
            outcome: Outcome::Skip(SKIP_RECALLED),
        }
    }

    fn unreadable(&self, rng: &mut fastrand::Rng, message_id: &str, create_ms: i64) -> Generated {
        let placeholder_row = vec![vec![text(UPGRADE_PLACEHOLDER)]];
        let content = match rng.u8(0..6) {
            // A JSON 2.0 card: only the placeholder comes back.
            0..3 => card_content(None, &placeholder_row),
            3 => {
                let dsl = json!({"schema": "2.0", "body": {"elements": [{"tag": "markdown", "content": "**Alert**: BECpuUsageHigh"}]}});
                json!({"title": null, "elements": serde_json::to_value(&placeholder_row).unwrap_or_default(), "user_dsl": dsl.to_string()})
                    .to_string()
            }
            // Not JSON at all (a truncated body).
            _ => {
                let kind = pick_kind(rng);
                let full = card_content(
                    Some(&format!("[Firing] {}", kind.name)),
                    &[vec![text("Alert"), text(&format!(": {}\n", kind.name))]],
                );
                let cut = full.len() / 2;
                let cut = (0..=cut)
                    .rev()
                    .find(|i| full.is_char_boundary(*i))
                    .unwrap_or(0);
                full[..cut].to_owned()
            }
        };
        let bridge = pick(rng, &[0usize, 1, 2]);
        let item = self.item(
            message_id,
            "interactive",
            create_ms,
            create_ms,
            false,
            false,
            self.app_sender(&self.bridges[bridge]),
            content,
        );
        Generated {
            item,
            outcome: Outcome::Skip(SKIP_UNREADABLE),
        }
    }

    /// Report and deploy cards: no alert field, no status word in the title.
    fn report(&self, rng: &mut fastrand::Rng, message_id: &str, create_ms: i64) -> Generated {
        let (cluster, _) = pick(rng, CLUSTERS);
        let (title, lines): (String, Vec<String>) = match rng.u8(0..4) {
            0 => (
                "Daily query report".to_owned(),
                vec![
                    format!("Queries: {}", rng.u32(5_000..50_000)),
                    format!("P95 latency: {} ms", rng.u32(200..2_000)),
                ],
            ),
            1 => (
                format!("Deploy finished: starrocks-fe 3.3.{}", rng.u8(0..12)),
                vec![
                    "Service: starrocks-fe".to_owned(),
                    format!("Cluster: {cluster}"),
                    format!("Operator: {}", pick(rng, USERS)),
                ],
            ),
            2 => (
                "每日巡检报告".to_owned(),
                vec![
                    format!("巡检集群数: {}", rng.u8(5..20)),
                    "异常项: 0".to_owned(),
                ],
            ),
            _ => (
                "Weekly capacity summary".to_owned(),
                vec![
                    format!("Disk used: {}%", rng.u8(30..80)),
                    format!("Tablets: {}", rng.u32(100_000..2_000_000)),
                ],
            ),
        };
        let mut row = RowText::default();
        for l in &lines {
            let (k, v) = l.split_once(": ").unwrap_or((l.as_str(), ""));
            row.bold(k);
            row.plain(&format!(": {v}\n"));
        }
        let mut rows = vec![row.finish()];
        if chance(rng, 0.5) {
            rows.push(vec![button("View pipeline", "primary")]);
        }
        let content = card_content(Some(&title), &rows);
        let item = self.item(
            message_id,
            "interactive",
            create_ms,
            create_ms,
            false,
            false,
            self.app_sender(&self.bridges[0]),
            content,
        );
        Generated {
            item,
            outcome: Outcome::Skip(SKIP_NO_ALERT_FIELDS),
        }
    }

    /// Cards with alert fields but no name: no name key, and a title that is
    /// empty once brackets, status words and numbers are removed.
    fn nameless(&self, rng: &mut fastrand::Rng, message_id: &str, create_ms: i64) -> Generated {
        let (cluster, region) = pick(rng, CLUSTERS);
        let host = format!("10.0.{}.{}", rng.u8(0..16), rng.u8(2..250));
        let (title, row) = if chance(rng, 0.6) {
            let title = pick(
                rng,
                &[
                    Some("[FIRING:1]"),
                    Some("[P1][StarRocks]"),
                    None,
                    Some("[Alarm] 3"),
                    Some("Firing 2"),
                ],
            );
            let style = KeyStyle::Bold { colon: ": " };
            let mut row = RowText::default();
            row.field(style, "Severity", pick(rng, &["P1", "Critical", "Warning"]));
            row.field(style, "Status", "Firing");
            row.field(style, "Cluster", cluster);
            row.field(style, "Region", region);
            row.field(
                style,
                "Summary",
                &format!("instance {host}:9050 unreachable"),
            );
            (title, row)
        } else {
            let title = pick(rng, &[None, Some("【告警】")]);
            let style = KeyStyle::BoldWithColon { colon: ":" };
            let mut row = RowText::default();
            row.field(style, "告警集群", cluster);
            row.field(
                style,
                "级别状态",
                pick(rng, &["S1 Triggered", "S2 Triggered"]),
            );
            row.field(style, "告警描述", "节点不可达");
            (title, row)
        };
        let content = card_content(title, &[row.finish()]);
        let item = self.item(
            message_id,
            "interactive",
            create_ms,
            create_ms,
            false,
            false,
            self.app_sender(&self.bridges[0]),
            content,
        );
        Generated {
            item,
            outcome: Outcome::Skip(SKIP_NO_ALERT_NAME),
        }
    }
}

fn pick_kind(rng: &mut fastrand::Rng) -> &'static AlertKind {
    &CATALOGUE[rng.usize(0..CATALOGUE.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(seed: u64, per_day: u32) -> SandboxConfig {
        SandboxConfig {
            seed,
            per_day,
            history_from: Some(NaiveDate::from_ymd_opt(2025, 1, 1).unwrap()),
            history_to: Some(NaiveDate::from_ymd_opt(2027, 1, 1).unwrap()),
            ..SandboxConfig::default()
        }
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    const CHAT: &str = "oc_sandbox_alerts";

    #[test]
    fn same_seed_same_day_different_seed_different_day() {
        let d = date(2026, 3, 10);
        let a = day_messages(&cfg(1, 200), CHAT, d);
        let b = day_messages(&cfg(1, 200), CHAT, d);
        let c = day_messages(&cfg(2, 200), CHAT, d);
        assert_eq!(a, b);
        assert_eq!(a.len(), 200);
        assert_ne!(a, c);
        assert_eq!(
            expected_day(&cfg(1, 200), CHAT, d),
            expected_day(&cfg(1, 200), CHAT, d)
        );
        // Another chat and another day differ too.
        let mut other_chat = cfg(1, 200);
        other_chat.chats.push("oc_other".into());
        assert_ne!(day_messages(&other_chat, "oc_other", d), a);
        assert_ne!(day_messages(&cfg(1, 200), CHAT, date(2026, 3, 11)), a);
    }

    #[test]
    fn sorted_unique_ids_inside_the_pacific_day() {
        let d = date(2026, 6, 1);
        let items = day_messages(&cfg(3, 300), CHAT, d);
        let (start, end) = pacific_day_bounds_ms(d);
        let mut ids = BTreeSet::new();
        let mut last = i64::MIN;
        for it in &items {
            let id = it["message_id"].as_str().unwrap();
            assert!(id.starts_with("om_") && id.len() == 35, "{id}");
            assert!(id[3..].chars().all(|c| c.is_ascii_hexdigit()));
            assert!(ids.insert(id.to_owned()), "duplicate id {id}");
            let t: i64 = it["create_time"].as_str().unwrap().parse().unwrap();
            assert!(t >= last && t >= start && t < end);
            last = t;
            assert_eq!(it["chat_id"], CHAT);
            assert!(it["body"]["content"].is_string());
        }
    }

    #[test]
    fn dst_days_are_23_and_25_hours() {
        let spring = date(2026, 3, 8);
        let (s, e) = pacific_day_bounds_ms(spring);
        assert_eq!(e - s, 23 * 3_600_000);
        let fall = date(2026, 11, 1);
        let (fs, fe) = pacific_day_bounds_ms(fall);
        assert_eq!(fe - fs, 25 * 3_600_000);
        for (d, start, end) in [(spring, s, e), (fall, fs, fe)] {
            let items = day_messages(&cfg(5, 500), CHAT, d);
            let times: Vec<i64> = items
                .iter()
                .map(|i| i["create_time"].as_str().unwrap().parse().unwrap())
                .collect();
            assert!(times.iter().all(|t| *t >= start && *t < end));
            assert!(times.iter().all(|t| pacific_date_of_ms(*t) == d));
            let rows = expected_day(&cfg(5, 500), CHAT, d).rows;
            assert!(rows.iter().all(|r| r.alert_date == d.to_string()));
        }
        // The fall-back day really uses its 25th hour.
        let items = day_messages(&cfg(5, 500), CHAT, fall);
        let last: i64 = items.last().unwrap()["create_time"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(last >= fs + 24 * 3_600_000);
    }

    #[test]
    fn outside_history_or_unknown_chat_is_empty() {
        let c = cfg(1, 10);
        assert!(day_messages(&c, CHAT, date(2024, 12, 31)).is_empty());
        assert!(day_messages(&c, "oc_unknown", date(2026, 1, 1)).is_empty());
        assert_eq!(
            expected_day(&c, CHAT, date(2024, 12, 31)),
            Expected::default()
        );
    }

    #[test]
    fn a_day_has_every_family_and_every_skip_reason() {
        for seed in [1, 2, 3, 42] {
            let c = cfg(seed, 500);
            let d = date(2026, 3, 10);
            let items = day_messages(&c, CHAT, d);
            let exp = expected_day(&c, CHAT, d);
            for reason in [
                SKIP_NOT_A_CARD,
                SKIP_RECALLED,
                SKIP_UNREADABLE,
                SKIP_NO_ALERT_FIELDS,
                SKIP_NO_ALERT_NAME,
            ] {
                assert!(
                    exp.skips.get(reason).copied().unwrap_or(0) > 0,
                    "seed {seed}: no {reason}"
                );
            }
            let contents: Vec<&str> = items
                .iter()
                .filter_map(|i| i["body"]["content"].as_str())
                .collect();
            assert!(
                contents
                    .iter()
                    .any(|c| c.contains("\"Alert\"") || c.contains("Alert Name")),
                "keyed English"
            );
            assert!(
                contents.iter().any(|c| c.contains("TO BE RESOLVED")),
                "Alertmanager firing"
            );
            assert!(
                contents
                    .iter()
                    .any(|c| c.contains("] Firing [") && c.contains("] Resolved")),
                "both statuses"
            );
            assert!(
                contents
                    .iter()
                    .any(|c| c.contains("级别状态") && c.contains("Triggered")),
                "nightingale"
            );
            assert!(
                contents
                    .iter()
                    .any(|c| c.contains("告警名称：") || c.contains("规则名称：")),
                "PrometheusAlert style"
            );
            assert!(contents.iter().any(|c| c.contains(UPGRADE_PLACEHOLDER)));
            assert!(contents.contains(&RECALLED_CONTENT));
            // ~70% cards.
            let rows_msgs: BTreeSet<&str> = exp
                .rows
                .iter()
                .map(|r| r.lark_message_id.as_str())
                .collect();
            let skipped: u64 = exp.skips.values().sum();
            assert_eq!(rows_msgs.len() as u64 + skipped, 500);
            assert!(
                (300..=400).contains(&rows_msgs.len()),
                "{}",
                rows_msgs.len()
            );
            let statuses: BTreeSet<&str> = exp.rows.iter().map(|r| r.status.as_str()).collect();
            assert_eq!(statuses.len(), 2);
            let severities: BTreeSet<&str> = exp.rows.iter().map(|r| r.severity.as_str()).collect();
            for s in ["critical", "warning", "info"] {
                assert!(severities.contains(s));
            }
        }
    }

    #[test]
    fn expected_range_concatenates_days() {
        let c = cfg(9, 50);
        let (a, b) = (date(2026, 4, 1), date(2026, 4, 3));
        let all = expected_range(&c, CHAT, a, b);
        let mut rows = Vec::new();
        let mut d = a;
        while d <= b {
            rows.extend(expected_day(&c, CHAT, d).rows);
            d = d.succ_opt().unwrap();
        }
        assert_eq!(all.rows, rows);
        assert_eq!(
            all.skips.values().sum::<u64>()
                + all
                    .rows
                    .iter()
                    .map(|r| &r.lark_message_id)
                    .collect::<BTreeSet<_>>()
                    .len() as u64,
            150
        );
    }

    #[test]
    fn row_severity_follows_the_contract_ranking() {
        assert_eq!(row_severity(["info", "critical", "warning"]), "critical");
        assert_eq!(row_severity(["high", "info"]), "info");
        assert_eq!(row_severity(["", "high", "low"]), "high");
        // A written `unknown` beats an empty value and ranks below any other.
        assert_eq!(row_severity(["", "unknown", ""]), "unknown");
        assert_eq!(row_severity(["unknown", "sev4"]), "sev4");
        assert_eq!(row_severity(["", ""]), "");
        assert_eq!(row_severity([]), "");
        // Equal classes: the first seen wins.
        assert_eq!(row_severity(["Warning", "warning"]), "Warning");
    }
}
