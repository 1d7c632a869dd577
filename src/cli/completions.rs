//! `alertflow completions SHELL` and `alertflow man`: shell completions and a
//! man page generated from the same clap definitions as `--help`, for the
//! operator CLI and for `alertflow-worker` / `alertflow-beat`.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::{CliError, CliResult, EXIT_OK, GlobalOpts};

/// Which binary to generate for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Binary {
    #[default]
    Alertflow,
    AlertflowWorker,
    AlertflowBeat,
}

impl Binary {
    fn command(self) -> clap::Command {
        match self {
            Binary::Alertflow => crate::cli::Cli::command(),
            Binary::AlertflowWorker => crate::cli::worker::WorkerCli::command(),
            Binary::AlertflowBeat => crate::cli::beat::BeatCli::command(),
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
    /// The binary to complete.
    #[arg(
        long = "for",
        value_enum,
        default_value = "alertflow",
        value_name = "BINARY"
    )]
    pub binary: Binary,
}

#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// The binary to document.
    #[arg(
        long = "for",
        value_enum,
        default_value = "alertflow",
        value_name = "BINARY"
    )]
    pub binary: Binary,
    /// Write the page and one page per subcommand (alertflow-enqueue.1 ...)
    /// into this directory instead of printing the top page.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<std::path::PathBuf>,
}

pub async fn completions(_g: &GlobalOpts, a: CompletionsArgs) -> CliResult {
    let mut cmd = a.binary.command();
    let name = cmd.get_name().to_string();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(a.shell, &mut cmd, name, &mut out);
    out.flush().map_err(CliError::write)?;
    Ok(EXIT_OK)
}

pub async fn man(_g: &GlobalOpts, a: ManArgs) -> CliResult {
    let cmd = a.binary.command();
    if let Some(dir) = a.out_dir {
        std::fs::create_dir_all(&dir)
            .map_err(|e| CliError::failure(format!("{}: {e}", dir.display())))?;
        clap_mangen::generate_to(cmd, &dir)
            .map_err(|e| CliError::failure(format!("{}: {e}", dir.display())))?;
        return Ok(EXIT_OK);
    }
    let mut out = std::io::stdout().lock();
    clap_mangen::Man::new(cmd)
        .section("1")
        .manual("alertflow manual")
        .render(&mut out)
        .map_err(CliError::write)?;
    out.flush().map_err(CliError::write)?;
    Ok(EXIT_OK)
}
