//! No input may make the card parser panic, and every row it returns is well-formed.

use alertflow::lark::card::{AlertRow, Aliases, items_from_document, parse_items, parse_message};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Arbitrary JSON values.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        card_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((json_key(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Object keys, biased towards the ones the parser looks at.
fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "message_id",
            "msg_type",
            "create_time",
            "deleted",
            "chat_id",
            "body",
            "content",
            "title",
            "elements",
            "tag",
            "text",
            "user_name",
            "code",
            "data",
            "items",
            "msg",
        ])
        .prop_map(str::to_string),
        "[a-z_]{0,8}",
    ]
}

/// Text that looks like card lines often enough to reach every rule.
fn card_text() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        prop::sample::select(vec![
            "Alert",
            "alertname",
            "Severity",
            "level",
            "Status",
            "级别状态",
            "Cluster",
            "region",
            "End Time",
            "恢复时间",
            "Summary",
            "告警名称",
            "firing",
            "Resolved",
            "RECOVERED",
            "ok",
            "告警",
            "恢复",
            "已恢复",
            "S1",
            "p2",
            "CRITICAL",
            "提示",
            "TO BE RESOLVED",
            "2026-03-10 16:56:18",
            "~",
            ":",
            "：",
            "=",
            "\n",
            " ",
            "[",
            "]",
            "【",
            "】",
            "(",
            ")",
            "42",
            "1.5",
            "请升级至最新版本客户端，以查看内容",
            "cluster=c1",
            "region=r1",
            "alertname=X",
            "severity=info",
            "status=resolved",
        ])
        .prop_map(str::to_string),
        "\\PC{0,6}",
    ];
    prop::collection::vec(word, 0..8).prop_map(|words| words.concat())
}

/// Arbitrary node trees: known and unknown tags, wrong field types, nested notes.
fn any_node() -> impl Strategy<Value = Value> {
    let tag = prop_oneof![
        prop::sample::select(vec![
            "text",
            "a",
            "at",
            "hr",
            "note",
            "img",
            "button",
            "select_static",
            "overflow",
            "date_picker",
            "plain_text",
            "lark_md",
        ])
        .prop_map(Value::from),
        any_json(),
    ];
    let leaf = (tag, card_text(), card_text(), any_json()).prop_map(|(tag, text, name, extra)| {
        json!({"tag": tag, "text": text, "user_name": name, "href": "http://x", "style": extra})
    });
    let leaf = prop_oneof![4 => leaf, 1 => any_json()];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5)
                .prop_map(|elements| json!({"tag": "note", "elements": elements})),
            inner.prop_map(|e| json!({"tag": "note", "elements": e})),
        ]
    })
}

fn any_rows() -> impl Strategy<Value = Vec<Value>> {
    let row = prop_oneof![
        4 => prop::collection::vec(any_node(), 0..6).prop_map(Value::Array),
        1 => Just(json!([{"tag": "hr"}])),
        1 => any_json(),
    ];
    prop::collection::vec(row, 0..8)
}

fn message(title: Value, rows: Vec<Value>) -> Value {
    let content = json!({"title": title, "elements": rows}).to_string();
    json!({
        "message_id": "om_prop",
        "msg_type": "interactive",
        "create_time": "1773196558000",
        "deleted": false,
        "chat_id": "oc_prop",
        "body": {"content": content},
    })
}

fn check_rows(rows: &[AlertRow]) {
    assert!(rows.len() <= 2, "{rows:#?}");
    for row in rows {
        let suffix = match row.status.as_str() {
            "firing" => "-f",
            "resolved" => "-r",
            other => panic!("bad status {other:?}"),
        };
        assert!(row.message_id.ends_with(suffix), "{row:?}");
        assert_eq!(row.message_id, format!("{}{suffix}", row.lark_message_id));
        assert!(!row.alert_name.is_empty(), "{row:?}");
        assert!(row.alert_count >= 1, "{row:?}");
    }
    if let [first, second] = rows {
        assert_eq!(
            (first.status.as_str(), second.status.as_str()),
            ("firing", "resolved")
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_json_items_never_panic(item in any_json()) {
        let aliases = Aliases::default();
        if let Ok(rows) = parse_message(&item, &aliases) {
            check_rows(&rows);
        }
        if let Ok(items) = items_from_document(&item) {
            let outcome = parse_items(&items, &aliases);
            let skipped: u64 = outcome.skips.values().sum();
            prop_assert!(skipped <= items.len() as u64);
        }
    }

    #[test]
    fn arbitrary_json_content_never_panics(content in any_json(), as_text in any::<bool>()) {
        let mut item = message(json!(""), vec![]);
        item["body"]["content"] = if as_text { Value::String(content.to_string()) } else { content };
        if let Ok(rows) = parse_message(&item, &Aliases::default()) {
            check_rows(&rows);
        }
    }

    #[test]
    fn arbitrary_node_trees_never_panic(
        title in prop_oneof![card_text().prop_map(Value::String), any_json()],
        before in any_rows(),
        after in any_rows(),
    ) {
        // A valid alert row embedded among arbitrary ones.
        let mut rows = before;
        rows.push(json!([{"tag": "text", "text": "Alert"}, {"tag": "text", "text": ": Disk\nStatus: firing"}]));
        rows.extend(after);
        // Whatever surrounds it, the alert row's keys make the card an alert.
        let parsed = parse_message(&message(title, rows), &Aliases::default());
        prop_assert!(parsed.is_ok(), "{parsed:?}");
        let rows = parsed.unwrap();
        prop_assert!(!rows.is_empty());
        check_rows(&rows);
    }

    #[test]
    fn rows_match_their_status(title in card_text(), rows in any_rows()) {
        if let Ok(rows) = parse_message(&message(Value::String(title), rows), &Aliases::default()) {
            check_rows(&rows);
        }
    }
}
