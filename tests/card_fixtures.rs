//! Every fixture family in `tests/fixtures/cards/` parses to exactly its
//! `*.expected.jsonl` rows and `*.skips.json` counts (cards.md, Examples).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use alertflow::lark::card::{AlertRow, Aliases, items_from_document, parse_items};
use serde_json::Value;

fn fixtures_dir() -> PathBuf {
    std::env::var_os("ALERTFLOW_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cards"))
        })
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Fixture families: `NAME.json` beside `NAME.expected.jsonl` and `NAME.skips.json`.
fn families(dir: &Path) -> Vec<String> {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut names: Vec<String> = entries
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|file| {
            let family = file.strip_suffix(".json")?;
            (!family.ends_with(".skips")).then(|| family.to_string())
        })
        .collect();
    names.sort();
    names
}

#[test]
fn every_fixture_family_gives_its_expected_rows_and_skips() {
    let dir = fixtures_dir();
    let names = families(&dir);
    assert!(
        !names.is_empty(),
        "no fixture families in {}",
        dir.display()
    );
    let aliases = Aliases::default();
    for name in &names {
        let doc = read_json(&dir.join(format!("{name}.json")));
        let items = items_from_document(&doc).unwrap_or_else(|e| panic!("{name}: {e}"));
        let outcome = parse_items(&items, &aliases);

        let expected_path = dir.join(format!("{name}.expected.jsonl"));
        let expected: Vec<Value> = fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()))
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}: {e}")))
            .collect();
        // Compared as JSON objects, so the key set must match the columns exactly.
        let got: Vec<Value> = outcome
            .rows
            .iter()
            .map(|row| serde_json::to_value(row).unwrap())
            .collect();
        assert_eq!(got.len(), expected.len(), "{name}: row count");
        for (i, (got, want)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(got, want, "{name}: row {i}");
        }
        // And each expected line reads back as an AlertRow equal to ours.
        let typed: Vec<AlertRow> = expected
            .iter()
            .map(|v| serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{name}: {e}")))
            .collect();
        assert_eq!(outcome.rows, typed, "{name}");

        let skips: BTreeMap<String, u64> =
            serde_json::from_value(read_json(&dir.join(format!("{name}.skips.json"))))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(outcome.skips, skips, "{name}: skips");
    }
}

#[test]
fn fixture_items_also_parse_as_a_plain_array() {
    let dir = fixtures_dir();
    let aliases = Aliases::default();
    for name in families(&dir) {
        let doc = read_json(&dir.join(format!("{name}.json")));
        let items = items_from_document(&doc).unwrap();
        let array = Value::Array(items.clone());
        assert_eq!(items_from_document(&array).unwrap(), items, "{name}");
        assert_eq!(
            parse_items(&items_from_document(&array).unwrap(), &aliases),
            parse_items(&items, &aliases),
            "{name}"
        );
    }
}
