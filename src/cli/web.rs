//! `alertflow web`: the dashboard (see [`crate::web`]), and the helpers to
//! configure who may use it.

use std::io::{BufRead, IsTerminal};

use crate::cli::{CliError, CliResult, EXIT_OK, GlobalOpts};

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct WebArgs {
    /// Address to serve on (default: `[web] listen`, else 127.0.0.1:9800).
    /// A non-loopback address needs `[web.auth]` users.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Serve what `alertflow demo` left: its namespace (`<namespace>-demo`)
    /// and database (`alertflow_demo`).
    #[arg(long)]
    pub demo: bool,
    #[command(subcommand)]
    pub command: Option<WebCommand>,
}

#[derive(clap::Subcommand, Debug)]
pub enum WebCommand {
    /// Hash a password for `[[web.auth.users]] password_hash` (argon2id);
    /// reads the password from stdin (one line), prompting on a terminal.
    #[command(
        after_help = "Example:\n  alertflow web hash-password\n  printf '%s\\n' \"$PW\" | alertflow web hash-password"
    )]
    HashPassword,
    /// Make a bearer token for scripts: prints the token (give it to the
    /// script) and its `token_sha256` (put it in the config).
    #[command(after_help = "Example:\n  alertflow web new-token")]
    NewToken,
}

pub async fn web(g: &GlobalOpts, a: WebArgs) -> CliResult {
    match a.command {
        Some(WebCommand::HashPassword) => return hash_password(),
        Some(WebCommand::NewToken) => {
            let (token, digest) = crate::web::auth::new_token();
            println!("token:        {token}");
            println!("token_sha256: {digest}");
            eprintln!(
                "Put token_sha256 in a [[web.auth.users]] entry (name, role); send the token as `Authorization: Bearer TOKEN`. The token is not stored anywhere: keep it now."
            );
            return Ok(EXIT_OK);
        }
        None => {}
    }
    let mut config = g.load_config()?;
    if a.demo {
        config = std::sync::Arc::new(crate::cli::demo::demo_config(&config));
    }
    let listen = a
        .listen
        .or_else(|| config.web.listen.clone())
        .unwrap_or_else(|| "127.0.0.1:9800".to_string());
    let addr =
        crate::web::bind_address(&listen, config.web.auth.is_some()).map_err(CliError::usage)?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    crate::cli::worker::install_signal_handlers(shutdown.clone(), "stopping the web server");
    let state = crate::web::WebState::new(config).map_err(CliError::usage)?;
    crate::web::serve(std::sync::Arc::new(state), addr, shutdown, |bound| {
        println!("alertflow web: http://{bound}/  (JSON: http://{bound}/api/overview)");
    })
    .await
    .map_err(CliError::failure)?;
    Ok(EXIT_OK)
}

fn hash_password() -> CliResult {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password (echoed; run in a private terminal): ");
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line).map_err(CliError::write)?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.len() < 8 {
        return Err(CliError::usage("give a password of at least 8 characters"));
    }
    let hash = crate::web::auth::hash_password(password).map_err(CliError::failure)?;
    println!("{hash}");
    Ok(EXIT_OK)
}
