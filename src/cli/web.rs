//! `alertflow web`: the dashboard (see [`crate::web`]).

use crate::cli::{CliError, CliResult, EXIT_OK, GlobalOpts};

#[derive(clap::Args, Debug)]
pub struct WebArgs {
    /// Address to serve on; loopback only (a non-loopback address needs
    /// `[web] auth`, which this version does not have yet).
    #[arg(long, default_value = "127.0.0.1:9800", value_name = "ADDR")]
    pub listen: String,
}

pub async fn web(g: &GlobalOpts, a: WebArgs) -> CliResult {
    let config = g.load_config()?;
    let addr = crate::web::bind_address(&a.listen).map_err(CliError::usage)?;
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
