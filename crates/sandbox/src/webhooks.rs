//! The outgoing side of the sandbox: a Lark custom-bot webhook
//! (`lark-api.md` §4) and a Slack incoming webhook (§6). Accepted bodies are
//! recorded so tests and the demo can see what alertflow sent; nothing is
//! forwarded anywhere.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{
    Endpoint, Fault, Outcome, SandboxState, code_message, json_value, new_log_id, text_response,
};

/// Largest custom-bot request body accepted.
const MAX_BOT_BODY: usize = 20 * 1024;
/// How far a signed request's timestamp may be from the server's clock.
const MAX_SIGN_SKEW_SECS: i64 = 3600;

/// The custom-bot signature for a timestamp in seconds (`lark-api.md` §4.2).
/// The sandbox's own implementation of the contract, so that it checks
/// alertflow's signer rather than agreeing with it by construction.
pub fn lark_bot_sign(timestamp: i64, secret: &str) -> String {
    sign_with(&timestamp.to_string(), secret)
}

/// Base64 (standard, padded) of HMAC-SHA256 keyed with `"{timestamp}\n{secret}"`
/// over an empty message, for the timestamp exactly as sent.
fn sign_with(timestamp: &str, secret: &str) -> String {
    let key = format!("{timestamp}\n{secret}");
    match Hmac::<Sha256>::new_from_slice(key.as_bytes()) {
        Ok(mac) => STANDARD.encode(mac.finalize().into_bytes()),
        // HMAC takes keys of any length; no request can be signed this way.
        Err(_) => String::new(),
    }
}

fn bot_reply(code: i64, log_id: &str) -> Response {
    json_value(
        StatusCode::OK,
        &json!({"code": code, "data": {}, "msg": code_message(code)}),
        log_id,
    )
}

/// `Ok` when the request carries a valid signature for `secret`.
fn check_signature(body: &Value, secret: &str, now_secs: i64) -> Result<(), ()> {
    let timestamp = match &body["timestamp"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(()),
    };
    let ts: i64 = timestamp.trim().parse().map_err(|_| ())?;
    if (now_secs - ts).abs() > MAX_SIGN_SKEW_SECS {
        return Err(());
    }
    let sign = body["sign"].as_str().ok_or(())?;
    if sign == sign_with(&timestamp, secret) {
        Ok(())
    } else {
        Err(())
    }
}

/// 0 when the body matches its `msg_type`, else the code to answer.
fn check_message_shape(body: &Value) -> i64 {
    let Some(msg_type) = body["msg_type"].as_str() else {
        return 9499;
    };
    let content = &body["content"];
    let ok = match msg_type {
        "text" => content["text"].is_string(),
        "post" => content["post"].as_object().is_some_and(|locales| {
            !locales.is_empty() && locales.values().all(|l| l["content"].is_array())
        }),
        "image" => content["image_key"].is_string(),
        "share_chat" => content["share_chat_id"].is_string(),
        "interactive" => {
            let card = &body["card"];
            card["elements"].is_array()
                || card["body"].is_object()
                || card["header"].is_object()
                || (card["type"] == "template" && card["data"].is_object())
        }
        _ => return 19002,
    };
    if ok { 0 } else { 9499 }
}

/// `POST /open-apis/bot/v2/hook/{token}` — every answer is HTTP 200 with a
/// code, except a non-JSON body (HTTP 400, 99991300).
pub(crate) async fn lark_bot(
    State(st): State<Arc<SandboxState>>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let ep = Endpoint::LarkBot;
    st.begin(ep);
    let now_ms = st.clock.unix_ms();
    let log_id = new_log_id(now_ms);
    if let Some(fault) = st.take_fault(ep) {
        let (outcome, response) = match fault {
            Fault::Delay(d) => {
                tokio::time::sleep(d).await;
                (None, None)
            }
            Fault::Http500 => (
                Some(Outcome::Error),
                Some(json_value(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &json!({"code": 1500, "data": {}, "msg": code_message(1500)}),
                    &log_id,
                )),
            ),
            Fault::RateLimit429 => {
                let body = json!({"code": 11232, "data": {}, "msg": code_message(11232)});
                (
                    Some(Outcome::RateLimited),
                    Some(json_value(StatusCode::TOO_MANY_REQUESTS, &body, &log_id)),
                )
            }
            Fault::BotFrequency11232 => {
                (Some(Outcome::RateLimited), Some(bot_reply(11232, &log_id)))
            }
            Fault::Code(code) => {
                let outcome = if code == 11232 {
                    Outcome::RateLimited
                } else {
                    Outcome::Error
                };
                (Some(outcome), Some(bot_reply(code, &log_id)))
            }
        };
        if let (Some(outcome), Some(response)) = (outcome, response) {
            return st.finish(ep, outcome, response);
        }
    }
    let Some(secret) = st.cfg.bot_hooks.get(&token) else {
        return st.finish(ep, Outcome::Error, bot_reply(19001, &log_id));
    };
    if st.bot_quota.try_acquire(&token, st.clock.now()).is_err() {
        return st.finish(ep, Outcome::RateLimited, bot_reply(11232, &log_id));
    }
    if body.len() > MAX_BOT_BODY {
        return st.finish(ep, Outcome::Error, bot_reply(9499, &log_id));
    }
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return st.finish(ep, Outcome::Error, bot_reply(9499, &log_id)),
        Err(e) => {
            let body = json!({
                "code": 99991300,
                "data": {},
                "msg": format!("invalid request body: not json, {e}"),
            });
            return st.finish(
                ep,
                Outcome::Error,
                json_value(StatusCode::BAD_REQUEST, &body, &log_id),
            );
        }
    };
    // An empty secret means an unsigned hook (TOML has no null).
    if let Some(secret) = secret.as_deref().filter(|s| !s.is_empty())
        && check_signature(&parsed, secret, now_ms.div_euclid(1000)).is_err()
    {
        return st.finish(ep, Outcome::Error, bot_reply(19021, &log_id));
    }
    let shape = check_message_shape(&parsed);
    if shape != 0 {
        return st.finish(ep, Outcome::Error, bot_reply(shape, &log_id));
    }
    SandboxState::record(&st.received_bot, &token, parsed);
    let ok = json!({"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"});
    st.finish(ep, Outcome::Ok, json_value(StatusCode::OK, &ok, &log_id))
}

fn slack_error_body(status: u16) -> &'static str {
    match status {
        400 => "invalid_payload",
        403 => "invalid_token",
        404 => "no_service",
        410 => "channel_is_archived",
        429 => "rate_limited",
        500 => "rollup_error",
        _ => "error",
    }
}

fn slack_rate_limited(retry_after: u64, log_id: &str) -> Response {
    let mut response = text_response(StatusCode::TOO_MANY_REQUESTS, "rate_limited", log_id);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

/// `POST /services/{T…}/{B…}/{X…}` — plain-text answers, the HTTP status
/// carries the class.
pub(crate) async fn slack(
    State(st): State<Arc<SandboxState>>,
    Path((team, bot, key)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let ep = Endpoint::Slack;
    st.begin(ep);
    let log_id = new_log_id(st.clock.unix_ms());
    if let Some(fault) = st.take_fault(ep) {
        let injected = match fault {
            Fault::Delay(d) => {
                tokio::time::sleep(d).await;
                None
            }
            Fault::Http500 => Some((
                Outcome::Error,
                text_response(StatusCode::INTERNAL_SERVER_ERROR, "rollup_error", &log_id),
            )),
            Fault::RateLimit429 | Fault::BotFrequency11232 => {
                Some((Outcome::RateLimited, slack_rate_limited(1, &log_id)))
            }
            Fault::Code(code) => {
                let status = u16::try_from(code)
                    .ok()
                    .and_then(|c| StatusCode::from_u16(c).ok())
                    .filter(|s| s.is_client_error() || s.is_server_error())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let outcome = if status == StatusCode::TOO_MANY_REQUESTS {
                    Outcome::RateLimited
                } else {
                    Outcome::Error
                };
                let mut response =
                    text_response(status, slack_error_body(status.as_u16()), &log_id);
                if status == StatusCode::TOO_MANY_REQUESTS {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(1u64));
                }
                Some((outcome, response))
            }
        };
        if let Some((outcome, response)) = injected {
            return st.finish(ep, outcome, response);
        }
    }
    let path = format!("/services/{team}/{bot}/{key}");
    let known = if st.cfg.slack_hooks.is_empty() {
        team.starts_with('T') && bot.starts_with('B') && !key.is_empty()
    } else {
        st.cfg
            .slack_hooks
            .iter()
            .any(|h| super::slack_key(h) == path)
    };
    if !known {
        return st.finish(
            ep,
            Outcome::Error,
            text_response(StatusCode::NOT_FOUND, "no_service", &log_id),
        );
    }
    if let Err(retry_after) = st.slack_quota.try_acquire(&path, st.clock.now()) {
        return st.finish(
            ep,
            Outcome::RateLimited,
            slack_rate_limited(retry_after, &log_id),
        );
    }
    let Ok(parsed @ Value::Object(_)) = serde_json::from_slice::<Value>(&body) else {
        return st.finish(
            ep,
            Outcome::Error,
            text_response(StatusCode::BAD_REQUEST, "invalid_payload", &log_id),
        );
    };
    let has_text = parsed["text"]
        .as_str()
        .is_some_and(|t| !t.trim().is_empty());
    let has_blocks = parsed["blocks"].as_array().is_some_and(|b| !b.is_empty());
    let has_attachments = parsed["attachments"]
        .as_array()
        .is_some_and(|a| !a.is_empty());
    if !(has_text || has_blocks || has_attachments) {
        return st.finish(
            ep,
            Outcome::Error,
            text_response(StatusCode::BAD_REQUEST, "no_text", &log_id),
        );
    }
    SandboxState::record(&st.received_slack, &path, parsed);
    st.finish(
        ep,
        Outcome::Ok,
        text_response(StatusCode::OK, "ok", &log_id),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_documented_vectors() {
        assert_eq!(
            lark_bot_sign(1599360473, "demo"),
            "l1N0gAcBjdwBvGm1xMjOF0XSyaLRpR7tuO5dHfhAYc8="
        );
        assert_eq!(
            lark_bot_sign(1735689600, "SEC_test_secret"),
            "m+VwWI8zkrosYqkA1jvia505wDc22srtYaV/EQx4cNY="
        );
    }

    #[test]
    fn signature_check_window_and_mismatch() {
        let ok = json!({"timestamp": "1599360473", "sign": "l1N0gAcBjdwBvGm1xMjOF0XSyaLRpR7tuO5dHfhAYc8="});
        assert!(check_signature(&ok, "demo", 1599360473 + 3600).is_ok());
        assert!(check_signature(&ok, "demo", 1599360473 - 3600).is_ok());
        assert!(check_signature(&ok, "demo", 1599360473 + 3601).is_err());
        assert!(check_signature(&ok, "other", 1599360473).is_err());
        assert!(check_signature(&json!({"timestamp": "1599360473"}), "demo", 1599360473).is_err());
        assert!(check_signature(&json!({"sign": "x"}), "demo", 1599360473).is_err());
    }

    #[test]
    fn message_shapes() {
        assert_eq!(
            check_message_shape(&json!({"msg_type": "text", "content": {"text": "hi"}})),
            0
        );
        assert_eq!(
            check_message_shape(&json!({"msg_type": "text", "content": {"post": {}}})),
            9499
        );
        assert_eq!(
            check_message_shape(&json!({"msg_type": "interactive", "card": {"elements": []}})),
            0
        );
        assert_eq!(
            check_message_shape(&json!({"msg_type": "interactive", "content": {"text": "x"}})),
            9499
        );
        assert_eq!(
            check_message_shape(
                &json!({"msg_type": "post", "content": {"post": {"zh_cn": {"title": "t", "content": [[]]}}}})
            ),
            0
        );
        assert_eq!(
            check_message_shape(&json!({"msg_type": "video", "content": {}})),
            19002
        );
        assert_eq!(
            check_message_shape(&json!({"content": {"text": "x"}})),
            9499
        );
    }
}
