//! Slack incoming-webhook receiver (`lark-api.md` §6): `text` (the
//! notification fallback) and `blocks`; success is HTTP 200 `ok`, errors are
//! plain-text strings whose HTTP status carries the class; 429 comes with
//! `Retry-After`.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Notification, NotifyError, Receiver, truncate};

const MAX_BLOCKS: usize = 50;
const MAX_SECTION_CHARS: usize = 3000;
const MAX_HEADER_CHARS: usize = 150;
const MAX_TEXT_CHARS: usize = 40_000;

/// Escape the three characters Slack's mrkdwn treats as control characters.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The webhook body: `text` plus a header, one section per [`super::Section`]
/// (at most 50 blocks: the rest are counted in a context block) and a
/// context block with the note.
pub fn payload(n: &Notification) -> Value {
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": truncate(&n.title, MAX_HEADER_CHARS), "emoji": true},
    })];
    // Room for the header, the trailing context and a "more" context.
    let room = MAX_BLOCKS - 3;
    let mut left_out = 0;
    for (i, s) in n.sections.iter().enumerate() {
        if i >= room {
            left_out += 1;
            continue;
        }
        let mut md = String::new();
        if !s.heading.is_empty() {
            md.push_str(&format!("*{}*\n", escape(&s.heading)));
        }
        if !s.text.is_empty() {
            md.push_str(&escape(&s.text));
            md.push('\n');
        }
        for (k, v) in &s.fields {
            md.push_str(&format!("*{}:* {}\n", escape(k), escape(v)));
        }
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": truncate(md.trim_end(), MAX_SECTION_CHARS)},
        }));
    }
    if left_out > 0 {
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": format!("{left_out} more not shown (Slack's 50-block limit)")}],
        }));
    }
    let note = n.note.clone().unwrap_or_else(|| "alertflow".into());
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": format!("{} {}", n.colour.slack_emoji(), escape(&note))}],
    }));
    let text = if n.text.is_empty() { &n.title } else { &n.text };
    json!({"text": truncate(text, MAX_TEXT_CHARS), "blocks": blocks})
}

/// What a webhook answer means.
pub fn interpret(
    name: &str,
    status: u16,
    body: &str,
    retry_after: Option<Duration>,
) -> Result<(), NotifyError> {
    let body = body.trim();
    let what = truncate(body, 200);
    match status {
        200..=299 => {
            if body != "ok" {
                tracing::warn!(receiver = name, answer = %what, "Slack answered 2xx without `ok`; counted as delivered");
            }
            Ok(())
        }
        429 => Err(NotifyError::Retryable {
            message: format!("Slack webhook {name}: rate limited (429 {what})"),
            retry_after: Some(retry_after.unwrap_or(Duration::from_secs(1))),
        }),
        500..=599 => Err(NotifyError::Retryable {
            message: format!("Slack webhook {name}: HTTP {status} {what}"),
            retry_after,
        }),
        _ => {
            let hint = match body {
                "invalid_payload" | "no_text" => "the message was not accepted",
                "invalid_token" | "no_service" | "no_service_id" | "no_team"
                | "no_active_hooks" => {
                    "the webhook was revoked or removed: check the receiver's url"
                }
                "channel_not_found" | "channel_is_archived" => {
                    "the webhook's channel is gone or archived"
                }
                "action_prohibited" | "posting_to_general_channel_denied" | "team_disabled" => {
                    "the workspace does not allow this post"
                }
                _ => "not retried",
            };
            Err(NotifyError::Fatal(format!(
                "Slack webhook {name}: HTTP {status} {what}: {hint}"
            )))
        }
    }
}

/// One POST of `n`.
pub(super) async fn send(r: &Receiver, n: &Notification) -> Result<(), NotifyError> {
    let body = payload(n);
    let resp = r
        .http()
        .post(r.config().url.expose())
        .json(&body)
        .send()
        .await
        .map_err(|e| r.transport_error(e))?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = resp.text().await.map_err(|e| r.transport_error(e))?;
    interpret(r.name(), status, &text, retry_after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::{Colour, Section};

    #[test]
    fn blocks_and_limits() {
        let n = Notification {
            title: "x".repeat(400),
            colour: Colour::Green,
            text: "--- OK ---\nbody".into(),
            sections: (0..60)
                .map(|i| Section {
                    heading: format!("a<{i}>"),
                    text: "y".repeat(5000),
                    fields: vec![],
                })
                .collect(),
            note: None,
        };
        let p = payload(&n);
        assert_eq!(p["text"], "--- OK ---\nbody");
        let blocks = p["blocks"].as_array().unwrap();
        assert!(blocks.len() <= 50);
        assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= 150);
        assert!(
            blocks[1]["text"]["text"]
                .as_str()
                .unwrap()
                .starts_with("*a&lt;0&gt;*")
        );
        assert!(blocks[1]["text"]["text"].as_str().unwrap().len() <= 3000);
        assert!(
            blocks
                .iter()
                .any(|b| b.to_string().contains("13 more not shown"))
        );
    }

    #[test]
    fn answers() {
        assert!(interpret("s", 200, "ok", None).is_ok());
        let e = interpret("s", 429, "rate_limited", Some(Duration::from_secs(3))).unwrap_err();
        assert_eq!(
            e,
            NotifyError::Retryable {
                message: "Slack webhook s: rate limited (429 rate_limited)".into(),
                retry_after: Some(Duration::from_secs(3))
            }
        );
        assert!(
            interpret("s", 500, "rollup_error", None)
                .unwrap_err()
                .is_retryable()
        );
        let e = interpret("s", 404, "no_service", None).unwrap_err();
        assert!(
            !e.is_retryable() && e.to_string().contains("removed"),
            "{e}"
        );
        assert!(
            !interpret("s", 400, "invalid_payload", None)
                .unwrap_err()
                .is_retryable()
        );
    }
}
