//! The InfluxDB client: v1 against a real InfluxDB 1.x (Debian's `influxdb`,
//! started by `scripts/services`; each test writes its own points into its
//! own database and drops it), v2 against the local fake serving annotated
//! CSV (`alertflow::sandbox::influx_v2`).

mod common;

use std::collections::BTreeMap;

use alertflow::config::Secret;
use alertflow::influx::{InfluxClient, InfluxError, InfluxSource, InfluxVersion, V1Auth};
use alertflow::sandbox::influx_v2::{self, FluxAnswer, FluxColumn, FluxTable, InfluxV2Config};
use common::TestEnv;

/// The local InfluxDB 1.x (override with `INFLUX_URL`).
pub fn influx_url() -> String {
    std::env::var("INFLUX_URL").unwrap_or_else(|_| "http://127.0.0.1:8086".into())
}

/// A database of the test's own, dropped on drop (even when the test fails).
struct TestDb {
    source: InfluxSource,
}

impl TestDb {
    async fn create(env: &TestEnv) -> (TestDb, InfluxClient) {
        let source = InfluxSource {
            url: influx_url(),
            db: Some(format!("t_{}", env.ns().replace('-', "_"))),
            ..InfluxSource::default()
        };
        let admin = InfluxClient::new(&source).unwrap();
        admin
            .execute(&format!(
                "CREATE DATABASE \"{}\"",
                source.db.as_deref().unwrap()
            ))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "InfluxDB 1.x must run at {} (./scripts/services starts it): {e}",
                    influx_url()
                )
            });
        (TestDb { source }, admin)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let source = self.source.clone();
        common::cleanup_blocking(async move {
            if let Ok(c) = InfluxClient::new(&source) {
                let _ = c
                    .execute(&format!(
                        "DROP DATABASE \"{}\"",
                        source.db.as_deref().unwrap_or("")
                    ))
                    .await;
            }
        });
    }
}

#[tokio::test]
async fn v1_queries_series_tags_and_statement_errors_against_real_influxdb() {
    let env = TestEnv::new("influx-v1");
    let (db, client) = TestDb::create(&env).await;
    client
        .write_lines(
            "cpu,cluster=a,host=h1 usage=95.5\n\
             cpu,cluster=b,host=h1 usage=12\n\
             cpu,cluster=c,host=h2 usage=91,note=\"x, y\"\n",
        )
        .await
        .unwrap();

    // GROUP BY a tag: one series per cluster, tags added to each row.
    let rows = client
        .query("SELECT last(usage) AS usage FROM cpu GROUP BY cluster")
        .await
        .unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    let by_cluster: BTreeMap<String, f64> = rows
        .iter()
        .map(|r| {
            (
                r["cluster"].as_str().unwrap().to_string(),
                r["usage"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(by_cluster["a"], 95.5);
    assert_eq!(by_cluster["b"], 12.0);
    assert_eq!(rows[0]["_measurement"], "cpu");
    assert!(rows[0].contains_key("time"));

    // Raw points: tags and fields are columns; a string field with a comma.
    let rows = client
        .query("SELECT * FROM cpu WHERE cluster = 'c'")
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["host"], "h2");
    assert_eq!(rows[0]["note"], "x, y");

    // Two statements: rows of both; no data is not an error.
    let rows = client
        .query(
            "SELECT usage FROM cpu WHERE cluster = 'a'; SELECT usage FROM cpu WHERE cluster = 'zz'",
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);

    // A statement error comes with HTTP 200 and is an error here.
    let other = InfluxClient::new(&InfluxSource {
        db: Some(format!("{}_missing", db.source.db.as_deref().unwrap())),
        ..db.source.clone()
    })
    .unwrap();
    let err = other.query("SELECT * FROM cpu").await.unwrap_err();
    assert!(
        matches!(&err, InfluxError::Statement { message, .. } if message.contains("database not found")),
        "{err:?}"
    );
    assert!(!err.is_retryable());

    // A parse error is HTTP 400 with the server's message.
    let err = client.query("SELEC nonsense").await.unwrap_err();
    assert!(
        matches!(&err, InfluxError::Http { status: 400, message } if message.contains("error parsing query")),
        "{err:?}"
    );

    // Credentials in the query string (auth is off on the test server, so
    // they are accepted; the point is that the request is well formed).
    let qs = InfluxClient::new(&InfluxSource {
        auth: V1Auth::Query,
        username: Some("reader".into()),
        password: Some(Secret::new("pa&ss=word")),
        ..db.source.clone()
    })
    .unwrap();
    assert_eq!(qs.query("SELECT usage FROM cpu").await.unwrap().len(), 3);
    let basic = InfluxClient::new(&InfluxSource {
        username: Some("reader".into()),
        password: Some(Secret::new("pw")),
        ..db.source.clone()
    })
    .unwrap();
    assert_eq!(basic.query("SELECT usage FROM cpu").await.unwrap().len(), 3);

    // An unreachable server is a retryable transport error without the URL's password.
    let down = InfluxClient::new(&InfluxSource {
        url: "http://127.0.0.1:1".into(),
        auth: V1Auth::Query,
        username: Some("u".into()),
        password: Some(Secret::new("hunter2")),
        ..db.source.clone()
    })
    .unwrap();
    let err = down.query("SELECT 1").await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    drop(db);
}

fn cpu_table(rows: &[(&str, &str)]) -> FluxTable {
    FluxTable {
        columns: vec![
            FluxColumn::new("_start", "dateTime:RFC3339", true),
            FluxColumn::new("_stop", "dateTime:RFC3339", true),
            FluxColumn::new("_time", "dateTime:RFC3339", false),
            FluxColumn::new("_value", "double", false),
            FluxColumn::new("_field", "string", true),
            FluxColumn::new("_measurement", "string", true),
            FluxColumn::new("cluster", "string", true),
        ],
        rows: rows
            .iter()
            .map(|(cluster, v)| {
                vec![
                    "2026-03-10T00:00:00Z".into(),
                    "2026-03-10T01:00:00Z".into(),
                    "2026-03-10T00:59:00Z".into(),
                    v.to_string(),
                    "usage".into(),
                    "cpu".into(),
                    cluster.to_string(),
                ]
            })
            .collect(),
    }
}

#[tokio::test]
async fn v2_annotated_csv_tables_and_error_table_after_partial_results() {
    const Q: &str = "from(bucket: \"m\") |> range(start: -1h) |> last()";
    const Q_PARTIAL: &str = "from(bucket: \"m\") |> range(start: -1h) |> map(fn: boom)";
    let count_table = FluxTable {
        columns: vec![
            FluxColumn::new("cluster", "string", true),
            FluxColumn::new("up", "boolean", false),
            FluxColumn::new("_value", "long", false),
        ],
        rows: vec![vec!["d,1".into(), "true".into(), "7".into()]],
    };
    let fake = influx_v2::spawn(InfluxV2Config {
        org: "ops".into(),
        token: "tok-v2".into(),
        answers: [
            (
                Q.to_string(),
                FluxAnswer::Tables(vec![
                    cpu_table(&[("a", "95.5")]),
                    cpu_table(&[("b", "12")]),
                    count_table.clone(),
                ]),
            ),
            (
                Q_PARTIAL.to_string(),
                FluxAnswer::TablesThenError {
                    tables: vec![cpu_table(&[("a", "95.5"), ("b", "93")])],
                    message: "runtime error @1:40-1:55: map: panic: boom".into(),
                    reference: "897".into(),
                },
            ),
        ]
        .into_iter()
        .collect(),
    })
    .await
    .unwrap();
    let source = InfluxSource {
        version: InfluxVersion::V2,
        url: fake.base_url.clone(),
        org: Some("ops".into()),
        token: Some(Secret::new("tok-v2")),
        ..InfluxSource::default()
    };
    source.validate().unwrap();
    let client = InfluxClient::new(&source).unwrap();

    // Three tables, two schemas: every row, typed by #datatype, group-key
    // columns included, result/table dropped.
    let rows = client.query(Q).await.unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[0]["_value"], 95.5);
    assert_eq!(rows[0]["cluster"], "a");
    assert_eq!(rows[1]["_value"], 12.0);
    assert_eq!(rows[2]["cluster"], "d,1");
    assert_eq!(rows[2]["up"], true);
    assert_eq!(rows[2]["_value"], 7);
    assert!(!rows[0].contains_key("table") && !rows[0].contains_key("result"));
    let req = &fake.requests()[0];
    assert_eq!(req["authorization"], "Token tok-v2");
    assert_eq!(req["org"], "ops");
    assert_eq!(req["annotated"], true);
    assert_eq!(req["query"], Q);

    // An error table after partial rows fails the whole query: partial
    // results must never be evaluated as if complete (false "resolved").
    let err = client.query(Q_PARTIAL).await.unwrap_err();
    assert_eq!(
        err,
        InfluxError::Query {
            message: "runtime error @1:40-1:55: map: panic: boom".into(),
            reference: Some("897".into()),
            partial_rows: 2,
        }
    );
    assert!(err.is_retryable());

    // Errors before any result: JSON with a status.
    let err = client.query("nonsense").await.unwrap_err();
    assert!(
        matches!(&err, InfluxError::Http { status: 400, message } if message.contains("compilation failed")),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    let bad_token = InfluxClient::new(&InfluxSource {
        token: Some(Secret::new("wrong")),
        ..source.clone()
    })
    .unwrap();
    let err = bad_token.query(Q).await.unwrap_err();
    assert!(
        matches!(err, InfluxError::Http { status: 401, .. }),
        "{err:?}"
    );
    let bad_org = InfluxClient::new(&InfluxSource {
        org: Some("nope".into()),
        ..source.clone()
    })
    .unwrap();
    let err = bad_org.query(Q).await.unwrap_err();
    assert!(
        matches!(&err, InfluxError::Http { status: 404, message } if message.contains("organization name")),
        "{err:?}"
    );
    fake.set_answer(
        Q,
        FluxAnswer::Error {
            status: 503,
            code: "unavailable".into(),
            message: "too many requests".into(),
        },
    );
    assert!(client.query(Q).await.unwrap_err().is_retryable());
}
