//! Lark / Feishu custom-bot receiver (`lark-api.md` §4): a JSON 1.0
//! interactive card, signed when the bot has a secret, under the 20 KB body
//! limit, with the answer's `code` checked even on HTTP 200.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{Notification, NotifyError, Receiver, truncate};

/// The custom-bot signature (`lark-api.md` §4.2): base64 of
/// HMAC-SHA256 with `"{timestamp}\n{secret}"` as the KEY over an empty
/// message. The sandbox verifies with its own implementation of the
/// contract (`alertflow_sandbox::lark_bot_sign`); `tests/sandbox_oracle.rs`
/// checks that the two agree.
pub fn lark_bot_sign(timestamp: i64, secret: &str) -> String {
    sign_with(&timestamp.to_string(), secret)
}

/// [`lark_bot_sign`] for a timestamp as sent (a string).
pub fn sign_with(timestamp: &str, secret: &str) -> String {
    let key = format!("{timestamp}\n{secret}");
    match Hmac::<Sha256>::new_from_slice(key.as_bytes()) {
        Ok(mac) => STANDARD.encode(mac.finalize().into_bytes()),
        // HMAC accepts keys of any length; this arm is unreachable.
        Err(_) => String::new(),
    }
}

/// The bot's documented body limit.
pub const MAX_BODY_BYTES: usize = 20 * 1024;
/// What the card may take, leaving room for `timestamp`, `sign` and the
/// truncation note.
const CARD_BUDGET: usize = MAX_BODY_BYTES - 1024;
/// One section's text is cut to this many bytes.
const MAX_SECTION_BYTES: usize = 4000;

fn section_md(s: &super::Section) -> String {
    let mut md = String::new();
    if !s.heading.is_empty() {
        md.push_str(&format!("**{}**\n", s.heading));
    }
    if !s.text.is_empty() {
        md.push_str(&s.text);
        md.push('\n');
    }
    for (k, v) in &s.fields {
        md.push_str(&format!("**{k}:** {v}\n"));
    }
    truncate(md.trim_end(), MAX_SECTION_BYTES)
}

/// The card body (`msg_type` + `card`), at most [`MAX_BODY_BYTES`] once
/// serialised: sections that do not fit are left out and counted in a note.
pub fn card(n: &Notification) -> Value {
    let header = json!({
        "title": {"tag": "plain_text", "content": truncate(&n.title, 500)},
        "template": n.colour.lark_template(),
    });
    let note_text = n.note.clone().unwrap_or_else(|| "alertflow".into());
    let note = |extra: &str| json!({"tag": "note", "elements": [{"tag": "plain_text", "content": format!("{note_text}{extra}")}]});
    let base = json!({"msg_type": "interactive", "card": {"config": {"wide_screen_mode": true}, "header": header, "elements": [note("")]}});
    let mut used = base.to_string().len() + 200;
    let mut elements: Vec<Value> = Vec::new();
    let mut left_out = 0usize;
    for (i, s) in n.sections.iter().enumerate() {
        let div = json!({"tag": "div", "text": {"tag": "lark_md", "content": section_md(s)}});
        let hr = json!({"tag": "hr"});
        let size = div.to_string().len() + if i > 0 { hr.to_string().len() + 2 } else { 1 };
        if left_out > 0 || used + size > CARD_BUDGET {
            left_out += 1;
            continue;
        }
        if i > 0 {
            elements.push(hr);
        }
        elements.push(div);
        used += size;
    }
    elements.push(json!({"tag": "hr"}));
    if left_out > 0 {
        elements.push(note(&format!(
            " · {left_out} more not shown (Lark's 20 KB message limit)"
        )));
    } else {
        elements.push(note(""));
    }
    json!({
        "msg_type": "interactive",
        "card": {"config": {"wide_screen_mode": true}, "header": header, "elements": elements},
    })
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// What a bot answer means.
pub fn interpret(name: &str, status: u16, body: &str) -> Result<(), NotifyError> {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let code = parsed
        .as_ref()
        .and_then(|v| v["code"].as_i64().or_else(|| v["StatusCode"].as_i64()));
    let msg = parsed
        .as_ref()
        .and_then(|v| v["msg"].as_str().or_else(|| v["StatusMessage"].as_str()))
        .unwrap_or("")
        .to_string();
    let retry = |message: String| NotifyError::Retryable {
        message,
        retry_after: None,
    };
    match code {
        Some(0) if (200..300).contains(&status) => Ok(()),
        Some(11232) => Err(NotifyError::Retryable {
            message: format!("Lark bot {name}: frequency limited (11232: {msg})"),
            retry_after: Some(std::time::Duration::from_secs(1)),
        }),
        Some(19021) => Err(NotifyError::Fatal(format!(
            "Lark bot {name}: signature rejected (19021: {msg}): the receiver's `secret` must be the bot's signing secret (Lark: bot settings → Security → Set signature verification), or remove `secret` if the bot has no signature; also check this host's clock (within 1 hour)"
        ))),
        Some(19001) => Err(NotifyError::Fatal(format!(
            "Lark bot {name}: the webhook token is invalid (19001: {msg}): the bot was removed or the URL in receivers.{name}.url is wrong"
        ))),
        Some(9499) => Err(NotifyError::Fatal(format!(
            "Lark bot {name}: the message was rejected as malformed or too large (9499: {msg})"
        ))),
        Some(19002) => Err(NotifyError::Fatal(format!(
            "Lark bot {name}: unsupported msg_type (19002: {msg})"
        ))),
        Some(19022) => Err(NotifyError::Fatal(format!(
            "Lark bot {name}: this host's IP is not in the bot's allowlist (19022: {msg})"
        ))),
        Some(19024) => Err(NotifyError::Fatal(format!(
            "Lark bot {name}: the message lacks the bot's required keywords (19024: {msg})"
        ))),
        _ if status >= 500 => Err(retry(format!(
            "Lark bot {name}: HTTP {status}{}",
            code.map(|c| format!(" (code {c}: {msg})"))
                .unwrap_or_default()
        ))),
        _ if status == 429 => Err(NotifyError::Retryable {
            message: format!("Lark bot {name}: HTTP 429 {msg}"),
            retry_after: Some(std::time::Duration::from_secs(1)),
        }),
        Some(c) => Err(NotifyError::Fatal(format!(
            "Lark bot {name}: HTTP {status}, code {c}: {msg}"
        ))),
        None if (200..300).contains(&status) => Err(retry(format!(
            "Lark bot {name}: HTTP {status} with an unreadable answer: {}",
            truncate(body.trim(), 200)
        ))),
        None => Err(NotifyError::Fatal(format!(
            "Lark bot {name}: HTTP {status}: {}",
            truncate(body.trim(), 200)
        ))),
    }
}

/// One POST of `n` as a card.
pub(super) async fn send(r: &Receiver, n: &Notification) -> Result<(), NotifyError> {
    let mut body = card(n);
    if let Some(secret) = &r.config().secret {
        let ts = now_secs();
        body["timestamp"] = Value::String(ts.to_string());
        body["sign"] = Value::String(lark_bot_sign(ts, secret.expose()));
    }
    let bytes = serde_json::to_vec(&body).map_err(|e| NotifyError::Fatal(e.to_string()))?;
    let resp = r
        .http()
        .post(r.config().url.expose())
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/json; charset=utf-8",
        )
        .body(bytes)
        .send()
        .await
        .map_err(|e| r.transport_error(e))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| r.transport_error(e))?;
    interpret(r.name(), status, &text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::{Colour, Section};

    fn notification(sections: usize, text_len: usize) -> Notification {
        Notification {
            title: "[FIRING:3] cpu".into(),
            colour: Colour::Red,
            text: String::new(),
            sections: (0..sections)
                .map(|i| Section {
                    heading: format!("alarm {i}"),
                    text: "x".repeat(text_len),
                    fields: vec![("cluster".into(), format!("c{i}"))],
                })
                .collect(),
            note: Some("alertflow".into()),
        }
    }

    #[test]
    fn card_shape_and_colour() {
        let c = card(&notification(3, 10));
        assert_eq!(c["msg_type"], "interactive");
        assert_eq!(c["card"]["header"]["template"], "red");
        assert_eq!(c["card"]["header"]["title"]["content"], "[FIRING:3] cpu");
        let divs = c["card"]["elements"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["tag"] == "div")
            .count();
        assert_eq!(divs, 3);
        let md = c["card"]["elements"][0]["text"]["content"]
            .as_str()
            .unwrap();
        assert!(
            md.contains("**alarm 0**") && md.contains("**cluster:** c0"),
            "{md}"
        );
    }

    #[test]
    fn big_messages_stay_under_20_kb_with_a_note() {
        let c = card(&notification(200, 300));
        let size = c.to_string().len();
        assert!(size < MAX_BODY_BYTES - 200, "{size}");
        let last = c["card"]["elements"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        let note = last["elements"][0]["content"].as_str().unwrap();
        assert!(note.contains("more not shown"), "{note}");
        // A single huge section is cut too.
        let c = card(&notification(1, 100_000));
        assert!(c.to_string().len() < MAX_BODY_BYTES);
    }

    #[test]
    fn answers() {
        let ok = r#"{"StatusCode":0,"StatusMessage":"success","code":0,"data":{},"msg":"success"}"#;
        assert!(interpret("b", 200, ok).is_ok());
        assert!(
            interpret(
                "b",
                200,
                r#"{"Extra":null,"StatusCode":0,"StatusMessage":"success"}"#
            )
            .is_ok()
        );
        let e = interpret(
            "b",
            200,
            r#"{"code":11232,"data":{},"msg":"frequency limited"}"#,
        )
        .unwrap_err();
        assert!(e.is_retryable());
        let e = interpret(
            "b",
            200,
            r#"{"code":19021,"data":{},"msg":"sign match fail"}"#,
        )
        .unwrap_err();
        assert!(
            !e.is_retryable() && e.to_string().contains("signing secret"),
            "{e}"
        );
        assert!(
            !interpret("b", 200, r#"{"code":19001,"msg":"x"}"#)
                .unwrap_err()
                .is_retryable()
        );
        assert!(
            !interpret("b", 200, r#"{"code":9499,"msg":"Bad Request"}"#)
                .unwrap_err()
                .is_retryable()
        );
        assert!(
            interpret("b", 500, r#"{"code":1500,"msg":"internal"}"#)
                .unwrap_err()
                .is_retryable()
        );
        assert!(
            interpret("b", 502, "<html>bad gateway</html>")
                .unwrap_err()
                .is_retryable()
        );
        assert!(
            !interpret("b", 400, r#"{"code":99991300,"msg":"not json"}"#)
                .unwrap_err()
                .is_retryable()
        );
    }
}
