//! What each binary links: the sandbox (`alertflow-sandbox`: stand-ins for
//! Lark, Slack, Stream Load and InfluxDB) is for the `alertflow` CLI's
//! `sandbox`, `demo` and benchmarks, never for the processes that run in
//! production. `alertflow-worker` and `alertflow-beat` depend on the library
//! that re-exports it, so only the linker keeps it out (it drops the code
//! their `main` never reaches); this checks that it does.
//!
//! The check reads the binaries' symbol tables with `nm` (binutils, which
//! the linker `cc` uses comes with). Symbols, not bytes: a debug build's
//! `.debug_str` names the sandbox's items even in the worker, because the
//! DWARF of an object file the linker opened stays when its code is dropped.

use std::process::Command;

/// Defined symbols of `bin` whose demangled name contains `needle`.
fn symbols_naming(bin: &str, needle: &str) -> usize {
    let out = Command::new("nm")
        .args(["--defined-only", "--demangle", bin])
        .output()
        .unwrap_or_else(|e| {
            panic!("run nm on {bin}: {e} (nm is in binutils: `apt-get install binutils`)")
        });
    assert!(
        out.status.success(),
        "nm {bin}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

#[test]
fn worker_and_beat_do_not_link_the_sandbox_or_the_benchmarks_and_the_cli_does() {
    let cli = env!("CARGO_BIN_EXE_alertflow");
    let cli_count = symbols_naming(cli, "alertflow_sandbox");
    assert!(
        cli_count > 0,
        "the alertflow CLI runs the sandbox, so its symbols must be visible to this check (found none in {cli})"
    );
    let cli_bench = symbols_naming(cli, "alertflow::cli::bench");
    assert!(cli_bench > 0, "the alertflow CLI runs the benchmarks");
    for bin in [
        env!("CARGO_BIN_EXE_alertflow-worker"),
        env!("CARGO_BIN_EXE_alertflow-beat"),
    ] {
        // The symbol table is there and read: the queue core is linked.
        assert!(
            symbols_naming(bin, "alertflow_queue") > 0,
            "no alertflow_queue symbol in {bin}: stripped, or nm reads nothing"
        );
        assert_eq!(
            symbols_naming(bin, "alertflow_sandbox"),
            0,
            "{bin} links sandbox code (alertflow CLI: {cli_count} such symbols)"
        );
        // Benchmarks (and their `bench-incr` task) leave the worker too.
        assert_eq!(
            symbols_naming(bin, "alertflow::cli::bench"),
            0,
            "{bin} links benchmark code (alertflow CLI: {cli_bench} such symbols)"
        );
    }
}
