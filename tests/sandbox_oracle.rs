//! alertflow's code against the sandbox's oracles. The sandbox
//! (`alertflow-sandbox`) writes down what the contracts say without using
//! alertflow's code: the rows a card must parse to (`docs/cards.md`) and the
//! custom-bot signature (`docs/lark-api.md` §4.2). These tests check that the
//! parser and the signer agree with it.

use alertflow::lark::card::{AlertRow, Aliases, parse_items};
use alertflow::notify::lark_bot;
use alertflow::sandbox::{self, SandboxConfig, day_messages, expected_day};
use chrono::NaiveDate;

const CHAT: &str = "oc_sandbox_alerts";

fn cfg(seed: u64, per_day: u32) -> SandboxConfig {
    SandboxConfig {
        seed,
        per_day,
        history_from: NaiveDate::from_ymd_opt(2025, 1, 1),
        history_to: NaiveDate::from_ymd_opt(2027, 1, 1),
        ..SandboxConfig::default()
    }
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// The parser reads generated days as the generator says: the same rows in
/// the same order, the same skips. Days include both DST transitions.
#[test]
fn parser_agrees_with_the_generator() {
    let aliases = Aliases::default();
    for seed in [1u64, 7, 2024] {
        let c = cfg(seed, 400);
        for d in [date(2026, 3, 8), date(2026, 3, 10), date(2026, 11, 1)] {
            let items = day_messages(&c, CHAT, d);
            let exp = expected_day(&c, CHAT, d);
            let got = parse_items(&items, &aliases);
            for (i, (g, e)) in got.rows.iter().zip(&exp.rows).enumerate() {
                assert_eq!(*g, AlertRow::from(e.clone()), "seed {seed} {d} row {i}");
            }
            assert_eq!(got.rows.len(), exp.rows.len(), "seed {seed} {d}");
            assert_eq!(got.skips, exp.skips, "seed {seed} {d}");
        }
    }
}

/// The generated rows cover every severity class, so the agreement above
/// checks the parser's ranking against the contract's, not only one class.
#[test]
fn generated_rows_cover_every_severity_class() {
    let aliases = Aliases::default();
    let c = cfg(7, 2000);
    let d = date(2026, 3, 10);
    let exp = expected_day(&c, CHAT, d);
    let got = parse_items(&day_messages(&c, CHAT, d), &aliases);
    for class in ["critical", "warning", "info", ""] {
        assert!(
            exp.rows.iter().any(|r| r.severity == class),
            "no expected row with severity {class:?}"
        );
    }
    assert!(
        exp.rows
            .iter()
            .any(|r| !["critical", "warning", "info", ""].contains(&r.severity.as_str())),
        "no expected row with another severity"
    );
    assert_eq!(got.rows.len(), exp.rows.len());
}

/// alertflow signs bot messages as the sandbox verifies them, and both give
/// the documented test vectors.
#[test]
fn bot_signer_agrees_with_the_sandbox_verifier() {
    let vectors = [
        (
            1599360473,
            "demo",
            "l1N0gAcBjdwBvGm1xMjOF0XSyaLRpR7tuO5dHfhAYc8=",
        ),
        (
            1735689600,
            "SEC_test_secret",
            "m+VwWI8zkrosYqkA1jvia505wDc22srtYaV/EQx4cNY=",
        ),
    ];
    for (ts, secret, sign) in vectors {
        assert_eq!(lark_bot::lark_bot_sign(ts, secret), sign);
        assert_eq!(sandbox::lark_bot_sign(ts, secret), sign);
    }
    for ts in [0, 1, 1_700_000_000, 4_102_444_800, -1] {
        for secret in [
            "",
            "s",
            "SEC_0123456789abcdef",
            "密钥\n with newline",
            &"x".repeat(200),
        ] {
            assert_eq!(
                lark_bot::lark_bot_sign(ts, secret),
                sandbox::lark_bot_sign(ts, secret),
                "timestamp {ts}, secret of {} bytes",
                secret.len()
            );
        }
    }
}
