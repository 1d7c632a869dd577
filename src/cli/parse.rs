//! `alertflow parse FILE`: the card parser offline. Rows go to standard
//! output as JSON lines (keys = the columns of cards.md §6), skip counts to
//! standard error.

use std::io::Write;
use std::path::PathBuf;

use crate::cli::{CliError, CliResult, EXIT_OK, GlobalOpts};
use crate::lark::card::{items_from_document, parse_items};

#[derive(clap::Args, Debug)]
pub struct ParseArgs {
    /// A list-messages response (`{"code":0,"data":{"items":[...]}}`) or a JSON array of items; `-` reads standard input.
    pub file: PathBuf,
}

pub async fn parse(g: &GlobalOpts, a: ParseArgs) -> CliResult {
    let text = if a.file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(CliError::failure)?;
        s
    } else {
        std::fs::read_to_string(&a.file)
            .map_err(|e| CliError::usage(format!("cannot read {}: {e}", a.file.display())))?
    };
    let doc: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| CliError::usage(format!("{} is not JSON: {e}", a.file.display())))?;
    let items = items_from_document(&doc)
        .map_err(|e| CliError::usage(format!("{}: {e}", a.file.display())))?;
    // The config is optional here: only [parser.aliases] matters.
    let aliases = match g.load_config() {
        Ok(c) => c.parser.aliases().map_err(CliError::usage)?,
        Err(e) if g.config.is_some() => return Err(e),
        Err(_) => Default::default(),
    };
    let outcome = parse_items(&items, &aliases);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for row in &outcome.rows {
        serde_json::to_writer(&mut out, row).map_err(CliError::failure)?;
        out.write_all(b"\n").map_err(CliError::failure)?;
    }
    out.flush().map_err(CliError::failure)?;
    eprintln!(
        "{} messages, {} rows; skipped: {}",
        items.len(),
        outcome.rows.len(),
        serde_json::to_string(&outcome.skips).expect("counts serialize")
    );
    Ok(EXIT_OK)
}
