//! The layout's promises, checked: the queue crate stays generic (no alert
//! vocabulary in its code, none of the application's heavy clients in its
//! dependencies) and the repository is self-contained (nothing reads a
//! sibling directory of shared references).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file: comments and the `#[cfg(test)]` module left out.
fn code_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") {
            break;
        }
        if t.starts_with("//") {
            continue;
        }
        let code = match t.find("//") {
            Some(at) if !t[..at].contains('"') => &t[..at],
            _ => t,
        };
        out.push((i + 1, code));
    }
    out
}

#[test]
fn the_queue_crate_names_no_alert_vocabulary() {
    let mut files = Vec::new();
    rust_files(&root().join("crates/queue/src"), &mut files);
    assert!(files.len() >= 10, "the queue crate's sources: {files:?}");
    let words = ["lark", "starrocks", "influx", "alarm", "recommend"];
    let mut found = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (n, code) in code_lines(&text) {
            let lower = code.to_lowercase();
            for w in words {
                if lower.contains(w) {
                    found.push(format!("{}:{n}: {code}", f.display()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "alert vocabulary in crates/queue:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_queue_crate_depends_on_no_database_http_client_or_web_framework() {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "alertflow-queue",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
            "--locked",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && tree.contains("lapin"),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for banned in ["mysql_async ", "reqwest ", "axum "] {
        assert!(
            !tree.lines().any(|l| l.starts_with(banned)),
            "alertflow-queue depends on {banned}:\n{tree}"
        );
    }
}

#[test]
fn nothing_reads_outside_the_repository() {
    let mut files = Vec::new();
    for dir in ["src", "crates", "tests"] {
        rust_files(&root().join(dir), &mut files);
    }
    // The needles are built, so this file does not name the path it forbids.
    let sibling = ["..", "shared"].join("/");
    let fixtures = ["shared", "fixtures"].join("/");
    let mut found = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.contains(&sibling) || line.contains(&fixtures) {
                found.push(format!("{}:{}: {line}", f.display(), n + 1));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}
