//! Every client a task needs is built when the process starts: a config
//! value that one of them refuses stops the worker, the beat and the CLI at
//! once with exit 2 and the key, instead of dead-lettering every message of
//! that task later. No service is needed: nothing gets as far as connecting.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

fn run(bin: &str, args: &[&str], config: &std::path::Path) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(common::bin(bin))
        .args(args)
        .env("ALERTFLOW_CONFIG", config)
        // Unreachable services: a process that got past its setup would
        // retry them (a worker forever) or fail differently.
        .env("ALERTFLOW_BROKER_URL", "amqp://guest:guest@127.0.0.1:1/%2f")
        .env("ALERTFLOW_REDIS_URL", "redis://127.0.0.1:1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    // check-config reports on stdout, the others on stderr.
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), said, started.elapsed())
}

#[test]
fn a_value_a_task_client_refuses_stops_every_binary_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let catalogue = dir.path().join("catalogue.toml");
    std::fs::write(&catalogue, "[alerts.X\nbroken = ").unwrap();
    let bad_catalogue = dir.path().join("a.toml");
    std::fs::write(
        &bad_catalogue,
        format!(
            "[recommend]\ncatalogue = {:?}\n",
            catalogue.display().to_string()
        ),
    )
    .unwrap();
    let bad_stream_load = dir.path().join("b.toml");
    std::fs::write(
        &bad_stream_load,
        "[sink]\nmode = \"stream_load\"\nstream_load_url = \"not a url\"\n",
    )
    .unwrap();
    for (config, key) in [
        (&bad_catalogue, "recommend.catalogue"),
        (&bad_stream_load, "sink.stream_load_url"),
    ] {
        for (bin, args) in [
            ("alertflow-worker", &[][..]),
            ("alertflow-beat", &[][..]),
            ("alertflow", &["check-config"][..]),
            ("alertflow", &["enqueue", "noop"][..]),
        ] {
            let (code, said, took) = run(bin, args, config);
            assert_eq!(code, Some(2), "{bin} {args:?} with a bad {key}: {said}");
            assert!(said.contains(key), "{bin} {args:?}: {said}");
            assert!(
                took < Duration::from_secs(10),
                "{bin} {args:?} took {took:?} to refuse"
            );
        }
    }
}
