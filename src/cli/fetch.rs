//! `alertflow fetch --date D [--out FILE]`: one Pacific day of the chat's
//! history straight from the API (or the sandbox) to a file, for operators
//! debugging a day. The file is a list-messages response, so
//! `alertflow parse FILE` reads it.

use std::path::PathBuf;

use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{CliError, CliResult, EXIT_OK, GlobalOpts, connect_redis};
use crate::lark::client::{LarkClient, RetryPolicy};
use crate::lark::window::api_window;
use crate::queue::ratelimit::RateLimiter;
use crate::tasks::fetch_day::{LARK_RATE_KEY, parse_run_date};

#[derive(clap::Args, Debug)]
pub struct FetchArgs {
    /// Pacific calendar day, YYYY-MM-DD.
    #[arg(long)]
    pub date: String,
    /// Only up to now (for today).
    #[arg(long)]
    pub until_now: bool,
    /// Chat id (default: lark.chat_id).
    #[arg(long)]
    pub chat: Option<String>,
    /// Output file (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Do not use the shared Redis rate limiter (only when no worker is fetching).
    #[arg(long)]
    pub no_limiter: bool,
}

pub async fn fetch(g: &GlobalOpts, a: FetchArgs) -> CliResult {
    let config = g.load_config()?;
    let date = parse_run_date(&a.date).map_err(CliError::usage)?;
    if config.lark.app_id.is_empty() || config.lark.app_secret.is_empty() {
        return Err(CliError::usage(
            "Lark credentials are not configured: set lark.app_id and lark.app_secret (or LARK_APP_ID and LARK_APP_SECRET); `alertflow sandbox` serves test credentials",
        ));
    }
    let limiter = if a.no_limiter {
        None
    } else {
        let pool = connect_redis(&config).await?;
        Some(RateLimiter::new(
            pool,
            &config.namespace,
            config.rate_limits.clone(),
            config.redis.fail_open,
        ))
    };
    let client = LarkClient::new(&config.lark, limiter, LARK_RATE_KEY).map_err(CliError::usage)?;
    let chat = a.chat.unwrap_or_else(|| config.lark.chat_id.clone());
    let (start, end) = api_window(date, a.until_now.then(Utc::now));
    let pb = ProgressBar::new_spinner();
    pb.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("valid template"));
    let mut total = 0usize;
    let items = client
        .fetch_window(&chat, start, end, &RetryPolicy::default(), |n, page| {
            total += page.items.len();
            pb.set_message(format!("{date}: page {n}, {total} messages"));
            pb.tick();
        })
        .await
        .map_err(CliError::failure)?;
    pb.finish_and_clear();
    let doc = serde_json::json!({
        "code": 0,
        "msg": "success",
        "data": {"has_more": false, "items": items},
    });
    let text = serde_json::to_string_pretty(&doc).expect("serializes");
    match &a.out {
        Some(path) => {
            std::fs::write(path, text)
                .map_err(|e| CliError::failure(format!("cannot write {}: {e}", path.display())))?;
            eprintln!(
                "{} messages of {date} (chat {chat}) written to {}",
                items_len(&doc),
                path.display()
            );
        }
        None => println!("{text}"),
    }
    Ok(EXIT_OK)
}

fn items_len(doc: &serde_json::Value) -> usize {
    doc["data"]["items"].as_array().map(Vec::len).unwrap_or(0)
}
