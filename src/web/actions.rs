//! What the dashboard does, not only shows: replay and purge dead letters,
//! retry and revoke tasks, pause, resume and run schedules, start runs.
//!
//! Every action is a POST of a form carrying the CSRF token of the user
//! (see [`crate::web::auth`]), is refused to viewers, and is written to the
//! audit log (`web_audit` in the database, and a log line with the target
//! `alertflow::audit`) with who, what, when, from where and the result,
//! refusals included. A form post is answered with a redirect to the page
//! it came from carrying a notice; a client asking for JSON (`Accept:
//! application/json`) gets `{"ok": bool, "detail": "..."}`.

use std::future::Future;

use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Redirect, Response};
use axum::routing::post;
use chrono::NaiveDate;
use serde_json::json;

use crate::queue::admin::{DeadEntry, replay_dead};
use crate::queue::beat::Pause;
use crate::queue::publisher::Publisher;
use crate::queue::state::{StateStore, TaskState, TaskStatus};
use crate::queue::topology::Topology;
use crate::sink::audit::AuditEntry;
use crate::web::WebState;
use crate::web::auth::Actor;

type Shared = Arc<WebState>;

/// A posted form: every `name=value` pair, in order (a name may repeat:
/// the selected dead letters).
pub struct FormData(Vec<(String, String)>);

impl FormData {
    pub fn parse(body: &[u8]) -> FormData {
        FormData(url::form_urlencoded::parse(body).into_owned().collect())
    }
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect()
    }
}

/// The routes of the actions: `/actions/{group}/{verb}`, and `/actions/run`.
pub fn routes() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/actions/run", post(start_run))
        .route("/actions/{group}/{verb}", post(dispatch))
}

/// An action ready to run: what it is asked of, where to go back, and the
/// work (run only once the role and the CSRF token are checked).
struct Planned<'a> {
    target: String,
    back_to: String,
    act: BoxFuture<'a, Outcome>,
}

async fn start_run(
    state: State<Shared>,
    actor: Extension<Actor>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    dispatch(
        state,
        actor,
        Path(("run".into(), "start".into())),
        headers,
        body,
    )
    .await
}

async fn dispatch(
    State(state): State<Shared>,
    Extension(actor): Extension<Actor>,
    Path((group, verb)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let form = FormData::parse(&body);
    let action = format!("{group}.{verb}");
    let planned = match action.as_str() {
        "dead.replay" => dead_replay(&state, &form),
        "dead.purge" => dead_purge(&state, &form),
        "task.retry" => task_retry(&state, &form),
        "task.revoke" => task_revoke(&state, &form),
        "schedule.pause" => schedule_pause(&state, &actor, &form),
        "schedule.resume" => schedule_resume(&state, &form),
        "schedule.run" => schedule_run(&state, &form),
        "run.start" => run_start(&state, &form),
        "silence.add" => silence_add(&state, &actor, &form),
        "silence.expire" => silence_expire(&state, &actor, &form),
        _ => return (StatusCode::NOT_FOUND, "no such action\n").into_response(),
    };
    perform(&state, &actor, &headers, &form, &action, planned).await
}

/// An action's result: what happened, or why it failed.
type Outcome = Result<String, String>;

/// Where to go back to: a local path only.
fn back(form: &FormData, default: &str) -> String {
    form.get("back")
        .filter(|b| b.starts_with('/') && !b.starts_with("//") && !b.contains('\\'))
        .unwrap_or(default)
        .to_string()
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

/// Check the role and the CSRF token, run the action, audit, answer.
async fn perform(
    state: &WebState,
    actor: &Actor,
    headers: &HeaderMap,
    form: &FormData,
    action: &str,
    planned: Planned<'_>,
) -> Response {
    let Planned {
        target,
        back_to,
        act,
    } = planned;
    let target = target.as_str();
    let refused = if !actor.is_admin() {
        Some("viewers cannot act; ask an admin")
    } else if !state
        .gate
        .csrf_ok(actor, form.get("csrf").unwrap_or_default())
    {
        Some("missing or wrong CSRF token (reload the page and try again)")
    } else {
        None
    };
    let (result, outcome) = match refused {
        Some(why) => ("denied", Err(why.to_string())),
        None => {
            let out = act.await;
            (if out.is_ok() { "ok" } else { "failed" }, out)
        }
    };
    let detail = match &outcome {
        Ok(d) | Err(d) => d.clone(),
    };
    audit(state, actor, action, target, result, &detail).await;
    let status = match (result, &outcome) {
        ("denied", _) => StatusCode::FORBIDDEN,
        (_, Ok(_)) => StatusCode::OK,
        (_, Err(_)) => StatusCode::UNPROCESSABLE_ENTITY,
    };
    if wants_json(headers) {
        return (
            status,
            Json(json!({"ok": outcome.is_ok(), "result": result, "detail": detail})),
        )
            .into_response();
    }
    if status == StatusCode::FORBIDDEN {
        let body = maud::html! { div.problems #notice { "Refused: " (detail) } p { a href=(back_to) { "Back" } } };
        return (
            status,
            axum::response::Html(
                crate::web::layout(&state.config.namespace, "Refused", None, body).into_string(),
            ),
        )
            .into_response();
    }
    let sep = if back_to.contains('?') { '&' } else { '?' };
    let kind = if outcome.is_ok() { "notice" } else { "failure" };
    let msg: String = url::form_urlencoded::byte_serialize(detail.as_bytes()).collect();
    Redirect::to(&format!("{back_to}{sep}{kind}={msg}")).into_response()
}

/// Write the audit entry: a log line always, the database row when it
/// answers (a failure to write it is logged with the whole entry).
async fn audit(
    state: &WebState,
    actor: &Actor,
    action: &str,
    target: &str,
    result: &str,
    detail: &str,
) {
    tracing::info!(
        target: "alertflow::audit",
        actor = %actor.name,
        role = actor.role.as_str(),
        remote = %actor.remote,
        action,
        target_ = target,
        result,
        detail,
        "dashboard action"
    );
    let entry = AuditEntry {
        // Time-ordered: entries of one second keep their order.
        id: uuid::Uuid::now_v7().to_string(),
        at: crate::sink::ledger::now(),
        actor: actor.name.clone(),
        role: actor.role.as_str().to_string(),
        remote: actor.remote.clone(),
        action: action.to_string(),
        target: target.to_string(),
        result: result.to_string(),
        detail: detail.to_string(),
    };
    match tokio::time::timeout(Duration::from_secs(5), state.sink.record_audit(&entry)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(error = %e, entry = ?entry, "cannot write the audit entry to the database")
        }
        Err(_) => {
            tracing::error!(entry = ?entry, "the database did not take the audit entry within 5 s")
        }
    }
}

/// Bound an action's work.
async fn bounded<T>(f: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .unwrap_or_else(|_| {
            Err("did not finish within 30 s; look at the page again before retrying".into())
        })
}

/// A filter over dead letters (the dead-letter page's, also used to replay
/// all that match).
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct DeadFilter {
    #[serde(default)]
    pub task: String,
    #[serde(default)]
    pub reason: String,
    /// Text in the id or the last error.
    #[serde(default)]
    pub q: String,
}

impl DeadFilter {
    pub fn from_form(f: &FormData) -> DeadFilter {
        DeadFilter {
            task: f.get("task").unwrap_or_default().to_string(),
            reason: f.get("reason").unwrap_or_default().to_string(),
            q: f.get("q").unwrap_or_default().to_string(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.task.is_empty() && self.reason.is_empty() && self.q.is_empty()
    }
    pub fn matches(&self, e: &DeadEntry) -> bool {
        (self.task.is_empty() || e.task == self.task)
            && (self.reason.is_empty() || e.reason.as_str() == self.reason)
            && (self.q.is_empty()
                || e.id.contains(&self.q)
                || e.last_error.to_lowercase().contains(&self.q.to_lowercase()))
    }
    /// As query parameters.
    pub fn query(&self) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("task", &self.task),
            ("reason", &self.reason),
            ("q", &self.q),
        ] {
            if !v.is_empty() {
                s.append_pair(k, v);
            }
        }
        s.finish()
    }
    pub fn describe(&self) -> String {
        if self.is_empty() {
            return "all".into();
        }
        let mut parts = Vec::new();
        for (k, v) in [
            ("task", &self.task),
            ("reason", &self.reason),
            ("text", &self.q),
        ] {
            if !v.is_empty() {
                parts.push(format!("{k}={v}"));
            }
        }
        parts.join(" ")
    }
}

/// Replay dead letters picked by `select`; the others are put back.
async fn replay(
    state: &WebState,
    select: &(dyn Fn(&DeadEntry) -> bool + Sync),
) -> Result<(usize, Vec<String>), String> {
    let config = &state.config;
    let topology = Arc::new(Topology::from_config(config));
    state
        .broker
        .with(Duration::from_secs(10), async |conn| {
            let ch = conn.create_channel().await.map_err(|e| e.to_string())?;
            let publisher = Publisher::open(conn, topology.clone(), config.broker.publish_window)
                .await
                .map_err(|e| e.to_string())?;
            let states =
                StateStore::new(state.redis.clone(), &config.namespace, config.state.ttl.0);
            let report = replay_dead(&ch, &publisher, &topology, &states, select)
                .await
                .map_err(|e| e.to_string());
            let _ = ch.close(200, "replayed".into()).await;
            let _ = publisher.channel().close(200, "done".into()).await;
            let report = report?;
            Ok((
                report.replayed.len(),
                report.replayed.iter().map(|e| e.id.to_string()).collect(),
            ))
        })
        .await
}

fn dead_replay<'a>(state: &'a WebState, form: &'a FormData) -> Planned<'a> {
    let ids = form.all("id");
    let all_matching = form.get("all_matching") == Some("1");
    let filter = DeadFilter::from_form(form);
    let target = if all_matching {
        format!("dead letters matching {}", filter.describe())
    } else {
        format!("dead letters {}", ids.join(", "))
    };
    let act = async move {
        if !all_matching && ids.is_empty() {
            return Err(
                "select dead letters to replay, or replay all that match the filter".to_string(),
            );
        }
        let select = |e: &DeadEntry| {
            if all_matching {
                filter.matches(e)
            } else {
                ids.contains(&e.id)
            }
        };
        let (n, replayed) = bounded(replay(state, &select)).await?;
        if n == 0 {
            return Err(
                "nothing replayed: no dead letter matched (already replayed or purged?)".into(),
            );
        }
        let missing: Vec<&str> = ids
            .iter()
            .filter(|i| !replayed.contains(i))
            .map(String::as_str)
            .collect();
        let mut msg = format!("replayed {n} dead letter(s): {}", replayed.join(", "));
        if !all_matching && !missing.is_empty() {
            msg.push_str(&format!("; not found: {}", missing.join(", ")));
        }
        Ok(msg)
    };
    Planned {
        target,
        back_to: back(form, "/dead"),
        act: Box::pin(act),
    }
}

fn dead_purge<'a>(state: &'a WebState, form: &'a FormData) -> Planned<'a> {
    let queue = Topology::from_config(&state.config).dead_queue();
    let typed = form.get("confirm").unwrap_or_default().to_string();
    let target = queue.clone();
    let act = async move {
        if typed != queue {
            return Err(format!(
                "not purged: type the queue name {queue} to confirm (you typed {typed:?})"
            ));
        }
        bounded(state.broker.with(Duration::from_secs(10), async |conn| {
            let ch = conn.create_channel().await.map_err(|e| e.to_string())?;
            let n = crate::queue::admin::purge(&ch, &queue)
                .await
                .map_err(|e| e.to_string());
            let _ = ch.close(200, "purged".into()).await;
            n.map(|n| format!("purged {n} dead letter(s) from {queue}"))
        }))
        .await
    };
    Planned {
        target,
        back_to: back(form, "/dead"),
        act: Box::pin(act),
    }
}

/// The task named by the form, and its state (which must exist).
async fn task_of(state: &WebState, form: &FormData) -> Result<TaskState, String> {
    let id = form.get("id").unwrap_or_default();
    let uuid: uuid::Uuid = id
        .parse()
        .map_err(|_| format!("{id:?} is not a task id (a UUID)"))?;
    let c = &state.config;
    StateStore::new(state.redis.clone(), &c.namespace, c.state.ttl.0)
        .get(&uuid)
        .await
        .map_err(|e| format!("Redis: {e}"))?
        .ok_or_else(|| format!("no task {uuid} in Redis (older than state.ttl, or lost)"))
}

fn task_planned<'a>(form: &'a FormData, act: BoxFuture<'a, Outcome>) -> Planned<'a> {
    let id = form.get("id").unwrap_or_default().to_string();
    Planned {
        back_to: back(form, &format!("/task?id={id}")),
        target: id,
        act,
    }
}

fn task_retry<'a>(state: &'a WebState, form: &'a FormData) -> Planned<'a> {
    let act = async move {
        let st = task_of(state, form).await?;
        let uuid = st.id;
        if !matches!(st.status, TaskStatus::Dead | TaskStatus::Failed) {
            return Err(format!(
                "task {uuid} is {}: only a dead or failed task is retried",
                st.status.as_str()
            ));
        }
        // From the dead-letter queue when it is there: the whole envelope,
        // and no copy left behind to replay twice.
        let want = uuid.to_string();
        let select = |e: &DeadEntry| e.id == want;
        let (n, _) = bounded(replay(state, &select)).await?;
        if n == 1 {
            return Ok(format!(
                "task {uuid} ({}) retried from the dead-letter queue",
                st.task
            ));
        }
        // Not there: publish it again from its state when that kept the
        // arguments whole.
        let args = serde_json::Value::Object(st.args.clone().unwrap_or_default());
        if !crate::queue::state::args_kept_whole(&args) {
            return Err(format!(
                "task {uuid} is no longer in the dead-letter queue and its state keeps only a summary of its arguments; start its run again instead"
            ));
        }
        let config = &state.config;
        let mut env = crate::queue::message::Envelope::new(st.task.clone(), args);
        env.id = uuid;
        env.root_id = st.root_id.unwrap_or(uuid);
        env.parent_id = st.parent_id;
        env.run_id = st.run_id.clone();
        state.registry.apply_policy(&mut env, config, None);
        bounded(async {
            crate::cli::run::publish_envelopes(config, vec![env])
                .await
                .map_err(|e| e.message)
        })
        .await?;
        Ok(format!("task {uuid} ({}) published again", st.task))
    };
    task_planned(form, Box::pin(act))
}

fn task_revoke<'a>(state: &'a WebState, form: &'a FormData) -> Planned<'a> {
    let act = async move {
        let st = task_of(state, form).await?;
        let uuid = st.id;
        if !matches!(st.status, TaskStatus::Queued | TaskStatus::Retrying) {
            return Err(format!(
                "task {uuid} is {}: only a queued or retrying task is revoked",
                st.status.as_str()
            ));
        }
        let config = &state.config;
        let added = crate::queue::revoke::revoke(
            &state.redis,
            &config.namespace,
            &uuid,
            config.state.ttl.0,
        )
        .await
        .map_err(|e| format!("Redis: {e}"))?;
        Ok(if added {
            format!(
                "task {uuid} ({}) revoked: workers dead-letter it (reason revoked) instead of running it; replay it to run it after all",
                st.task
            )
        } else {
            format!("task {uuid} was already revoked")
        })
    };
    task_planned(form, Box::pin(act))
}

fn schedule_planned<'a>(form: &'a FormData, act: BoxFuture<'a, Outcome>) -> Planned<'a> {
    Planned {
        target: form.get("name").unwrap_or_default().to_string(),
        back_to: back(form, "/schedules"),
        act,
    }
}

fn schedule_pause<'a>(state: &'a WebState, actor: &'a Actor, form: &'a FormData) -> Planned<'a> {
    let act = async move {
        let name = form.get("name").unwrap_or_default();
        let pause = Pause {
            by: actor.name.clone(),
            at: chrono::Utc::now(),
            comment: form.get("comment").unwrap_or_default().to_string(),
        };
        state
            .beat
            .pause(name, &pause)
            .await
            .map_err(|e| e.to_string())?;
        Ok(format!(
            "schedule {name} paused: every beat skips its fires until it is resumed"
        ))
    };
    schedule_planned(form, Box::pin(act))
}

fn schedule_resume<'a>(state: &'a WebState, form: &'a FormData) -> Planned<'a> {
    let act = async move {
        let name = form.get("name").unwrap_or_default();
        let was = state.beat.resume(name).await.map_err(|e| e.to_string())?;
        Ok(if was {
            format!(
                "schedule {name} resumed: its next fire is published (fires passed while paused are not caught up)"
            )
        } else {
            format!("schedule {name} was not paused")
        })
    };
    schedule_planned(form, Box::pin(act))
}

fn schedule_run<'a>(state: &'a WebState, form: &'a FormData) -> Planned<'a> {
    let act = bounded(async move {
        let name = form.get("name").unwrap_or_default();
        let config = &state.config;
        state
            .broker
            .with(Duration::from_secs(10), async |conn| {
                let topology = Arc::new(Topology::from_config(config));
                let publisher = Publisher::open(conn, topology, config.broker.publish_window)
                    .await
                    .map_err(|e| e.to_string())?;
                let id = state
                    .beat
                    .run_now(&publisher, name)
                    .await
                    .map_err(|e| e.to_string());
                let _ = publisher.channel().close(200, "done".into()).await;
                id.map(|id| format!("schedule {name} fired now: task {id}"))
            })
            .await
    });
    schedule_planned(form, Box::pin(act))
}

/// The form that starts a run of `date` (a day's page), or of a day or a
/// range (the runs page); nothing for viewers.
pub fn run_form(
    state: &WebState,
    actor: &Actor,
    date: Option<NaiveDate>,
    back: &str,
) -> maud::Markup {
    if !actor.is_admin() {
        return maud::html! {};
    }
    maud::html! {
        form.inline #start-run method="post" action="/actions/run" {
            (crate::web::csrf_field(state, actor))
            input type="hidden" name="back" value=(back);
            @match date {
                Some(d) => {
                    input type="hidden" name="from" value=(d);
                    button { "Run " (d) " again" }
                }
                None => {
                    "Start a run of " input type="date" name="from" required aria-label="from date";
                    " through " input type="date" name="to" aria-label="to date (optional, for a backfill)";
                    " " button { "Start" }
                    span.muted { " (one fetch-day per date, each with a new run id; leave the second date empty for one day)" }
                }
            }
        }
    }
}

/// The days of a run or backfill form: `from` (and `to`), each checked as
/// `fetch-day` checks it.
pub fn run_days(
    from: &str,
    to: Option<&str>,
    today: NaiveDate,
) -> Result<Vec<crate::cli::run::DayPlan>, String> {
    let parse =
        |s: &str| crate::tasks::fetch_day::check_run_date(s, today).map_err(|e| e.to_string());
    let first = parse(from)?;
    let last = match to {
        Some(t) => parse(t)?,
        None => first,
    };
    if last < first {
        return Err(format!("{last} is before {first}"));
    }
    if (last - first).num_days() >= 366 {
        return Err(format!(
            "{first} .. {last} spans more than a year; split the backfill"
        ));
    }
    Ok(first
        .iter_days()
        .take_while(|d| *d <= last)
        .map(|d| crate::cli::run::DayPlan {
            date: d,
            until_now: d == today,
        })
        .collect())
}

fn silence_add<'a>(state: &'a WebState, actor: &'a Actor, form: &'a FormData) -> Planned<'a> {
    use crate::notify::silence::{Request, Span};
    let check = form.get("check").map(str::to_string);
    let matchers: Vec<String> = form
        .get("match")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let target = format!(
        "{} {}",
        check.as_deref().unwrap_or("(health)"),
        matchers.join(" ")
    );
    let act = async move {
        let span = if form.get("until_resolved") == Some("1") {
            Some(Span::UntilResolved)
        } else {
            form.get("for").map(|d| Span::For(d.to_string()))
        };
        let s = Request {
            check,
            matchers,
            span,
            comment: form.get("comment").unwrap_or_default().to_string(),
            author: actor.name.clone(),
        }
        .build(&state.config, crate::sink::ledger::now())?;
        bounded(async {
            state
                .sink
                .record_silence(&s)
                .await
                .map_err(|e| e.to_string())
        })
        .await?;
        Ok(format!("silence {} added", s.id))
    };
    Planned {
        target,
        back_to: back(form, "/silences"),
        act: Box::pin(act),
    }
}

fn silence_expire<'a>(state: &'a WebState, actor: &'a Actor, form: &'a FormData) -> Planned<'a> {
    let id = form.get("id").unwrap_or_default().to_string();
    let target = id.clone();
    let act = async move {
        match bounded(async {
            state
                .sink
                .expire_silence(&id, &actor.name)
                .await
                .map_err(|e| e.to_string())
        })
        .await?
        {
            None => Err(format!("no silence {id}")),
            Some(false) => Ok(format!("silence {id} had already ended")),
            Some(true) => Ok(format!("silence {id} expired")),
        }
    };
    Planned {
        target,
        back_to: back(form, "/silences"),
        act: Box::pin(act),
    }
}

fn run_start<'a>(state: &'a WebState, form: &'a FormData) -> Planned<'a> {
    let from = form.get("from").unwrap_or_default();
    let to = form.get("to");
    let target = match to {
        Some(t) if t != from => format!("{from} .. {t}"),
        _ => from.to_string(),
    };
    let act = async move {
        let today = crate::lark::window::pacific_date(chrono::Utc::now());
        let plans = run_days(from, to, today)?;
        let runs = bounded(async {
            crate::cli::run::publish_days(&state.config, &plans)
                .await
                .map(|r| {
                    r.iter()
                        .map(|p| format!("{} run {} (task {})", p.date, p.run_id, p.task_id))
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .map_err(|e| e.message)
        })
        .await?;
        Ok(format!("started {} run(s): {runs}", plans.len()))
    };
    Planned {
        target,
        back_to: back(form, "/"),
        act: Box::pin(act),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_forms_take_a_day_or_a_range_and_refuse_the_rest() {
        let today = NaiveDate::from_ymd_opt(2026, 3, 10).unwrap();
        let one = run_days("2026-03-08", None, today).unwrap();
        assert_eq!(one.len(), 1);
        assert!(!one[0].until_now);
        let range = run_days("2026-03-01", Some("2026-03-10"), today).unwrap();
        assert_eq!(range.len(), 10);
        assert!(range.last().unwrap().until_now);
        assert!(run_days("2026-03-09", Some("2026-03-01"), today).is_err());
        assert!(run_days("2026-03-11", None, today).is_err(), "the future");
        assert!(run_days("yesterday-ish", None, today).is_err());
    }

    #[test]
    fn back_links_stay_on_this_site() {
        let f = |b: &str| back(&FormData::parse(format!("back={b}").as_bytes()), "/d");
        assert_eq!(f("%2Fdead%3Ftask%3Dx"), "/dead?task=x");
        assert_eq!(f("https%3A%2F%2Fevil.example"), "/d");
        assert_eq!(f("%2F%2Fevil.example"), "/d");
    }

    #[test]
    fn dead_filters_match_task_reason_and_text() {
        let e = DeadEntry {
            id: "0b9c6f1e-8a3e-4a55-9d1f-2f1f0b2d3c4e".into(),
            task: "fetch-day".into(),
            reason: crate::queue::message::DeadReason::Fatal,
            attempts: 1,
            last_error: "Lark said 403".into(),
            worker: String::new(),
            queue: String::new(),
            dead_at: None,
            envelope: None,
            raw_body: None,
        };
        let f = |task: &str, reason: &str, q: &str| {
            DeadFilter {
                task: task.into(),
                reason: reason.into(),
                q: q.into(),
            }
            .matches(&e)
        };
        assert!(f("", "", ""));
        assert!(f("fetch-day", "fatal", "403"));
        assert!(f("", "", "lark said"));
        assert!(!f("insert", "", ""));
        assert!(!f("", "expired", ""));
        assert!(!f("", "", "timeout"));
    }
}
