//! `alertflow sandbox`: run the Lark/Slack-compatible sandbox server.

use crate::cli::{CliError, CliResult, EXIT_OK, GlobalOpts};
use crate::sandbox::SandboxConfig;

#[derive(clap::Args, Debug)]
pub struct SandboxArgs {
    /// Address to listen on (loopback by default; anything else must be asked for).
    #[arg(long, default_value = "127.0.0.1:8900")]
    pub listen: String,
    /// Seed of the synthetic history (same seed, same messages).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Messages per Pacific day.
    #[arg(long, default_value_t = 200)]
    pub per_day: u32,
    /// Chat id served.
    #[arg(long, default_value = "oc_sandbox_alerts")]
    pub chat: String,
}

pub async fn run(_g: &GlobalOpts, a: SandboxArgs) -> CliResult {
    let cfg = SandboxConfig {
        seed: a.seed,
        per_day: a.per_day,
        chats: vec![a.chat.clone()],
        ..SandboxConfig::default()
    };
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .map_err(|e| CliError::failure(format!("cannot listen on {}: {e}", a.listen)))?;
    let addr = listener.local_addr().map_err(CliError::failure)?;
    let (from, to) = cfg.history_range();
    println!(
        "sandbox listening on http://{addr} (history {from} .. {to}, {} messages/day, seed {})",
        a.per_day, a.seed
    );
    println!("use it with:");
    println!(
        "  export LARK_BASE_URL=http://{addr} LARK_APP_ID={} LARK_APP_SECRET={} LARK_CHAT_ID={}",
        cfg.app_id, cfg.app_secret, a.chat
    );
    println!(
        "expected rows of a day: curl 'http://{addr}/sandbox/expected?chat_id={}&date={to}'",
        a.chat
    );
    // The sandbox's own, made-up credentials: printing them is the point.
    println!("receivers for [receivers.NAME] (alertflow notify test NAME):");
    for (token, secret) in &cfg.bot_hooks {
        match secret {
            Some(s) => println!(
                "  type = \"lark\"   url = \"http://{addr}/open-apis/bot/v2/hook/{token}\"   secret = \"{s}\""
            ),
            None => println!(
                "  type = \"lark\"   url = \"http://{addr}/open-apis/bot/v2/hook/{token}\""
            ),
        }
    }
    println!("  type = \"slack\"  url = \"http://{addr}/services/T0SANDBOX/B0SANDBOX/sandbox\"");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(CliError::failure)?;
    tokio::select! {
        r = crate::sandbox::serve(listener, cfg, shutdown) => r.map_err(CliError::failure)?,
        _ = term.recv() => {}
    }
    Ok(EXIT_OK)
}
