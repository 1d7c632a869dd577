//! `alertflow digest [DATE]`: print a date's digest, and without
//! `--dry-run` send it through the same once-per-date claim as the
//! `digest` task ([`crate::tasks::digest::send_digest`]).

use chrono::{Days, Utc};

use crate::cli::{CliError, CliResult, EXIT_OK, GlobalOpts};
use crate::lark::window::pacific_date;
use crate::notify::Receivers;
use crate::notify::digest::render_text;
use crate::sink::starrocks::SqlSink;
use crate::tasks::digest::{SendOutcome, send_digest};

#[derive(clap::Args, Debug)]
pub struct DigestArgs {
    /// Pacific date, YYYY-MM-DD (default: yesterday).
    pub date: Option<String>,
    /// Print the digest, send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON: the digest's data, its title, and what was done.
    #[arg(long)]
    pub json: bool,
    /// Database to read (default: mysql.database), e.g. `alertflow_demo`.
    #[arg(long)]
    pub database: Option<String>,
}

pub async fn digest(g: &GlobalOpts, a: DigestArgs) -> CliResult {
    let mut config = (*g.load_config()?).clone();
    if let Some(db) = &a.database {
        config.mysql.database = db.clone();
    }
    let date = match &a.date {
        Some(d) => crate::tasks::fetch_day::parse_run_date(d)
            .map_err(|e| CliError::usage(format!("DATE: {e}")))?,
        None => pacific_date(Utc::now()) - Days::new(1),
    };
    let d = &config.digest;
    let sink = SqlSink::new(&config);
    let data = sink
        .digest_data(date, d.top, d.new_days, d.dashboard_url.as_deref())
        .await
        .map_err(|e| {
            CliError::failure(format!(
                "reading the digest of {date} from {} on {}:{}: {e}",
                config.mysql.database, config.mysql.host, config.mysql.port
            ))
        });
    let data = match data {
        Ok(v) => v,
        Err(e) => {
            sink.close().await;
            return Err(e);
        }
    };
    let n = data.notification();
    let outcome = if a.dry_run {
        None
    } else {
        let receivers = Receivers::from_config(&config, None).map_err(CliError::failure)?;
        let me = format!("cli-{}", uuid::Uuid::now_v7());
        let r = send_digest(&sink, &receivers, d, date, &n, &me).await;
        Some(r.map_err(CliError::failure))
    };
    sink.close().await;
    let outcome = outcome.transpose()?;
    if a.json {
        let v = serde_json::json!({
            "date": date.to_string(),
            "title": n.title,
            "data": data,
            "sent": outcome,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&v).expect("the digest serializes")
        );
        return Ok(EXIT_OK);
    }
    print!("{}", render_text(&n));
    match outcome {
        None => println!("\n(dry run: nothing sent)"),
        Some(SendOutcome::Off) => {
            println!("\nnot sent: [digest] receivers is empty")
        }
        Some(SendOutcome::Sent { receivers, .. }) => {
            for (name, attempts) in receivers {
                println!("\nsent to {name} ({attempts} attempt(s))");
            }
        }
        Some(SendOutcome::AlreadySent { claim }) => println!(
            "\nnot sent: already sent at {} UTC by {}",
            claim.sent_at.map(|t| t.to_string()).unwrap_or_default(),
            claim.claimed_by
        ),
        Some(SendOutcome::HeldBy { claim }) => println!(
            "\nnot sent: {} claimed it at {} UTC and is sending it",
            claim.claimed_by, claim.claimed_at
        ),
    }
    Ok(EXIT_OK)
}
