//! sqlx, the Rust driver with its own implementation of the protocol, against a real node:
//! its migrator (which takes an advisory lock and keeps a checksum table), every type in
//! binary (prepared statements) and text (simple queries) formats, NULLs, transactions,
//! and errors with their SQLSTATE.

use std::str::FromStr;

use rust_decimal::Decimal;
use sqlx::migrate::Migrator;
use sqlx::postgres::types::PgInterval;
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{Connection, Executor, Row};
use tessera_tests::Node;

async fn connect(node: &Node) -> PgConnection {
    let url = format!("postgres://root@127.0.0.1:{}/tessera", node.port);
    PgConnection::connect(&url).await.expect("sqlx connects")
}

fn code(e: &sqlx::Error) -> Option<String> {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned())
}

const CREATE: &str = "CREATE TABLE ty (id INT PRIMARY KEY, b BOOL, i2 SMALLINT, i4 INT, \
     i8 BIGINT, f4 REAL, f8 DOUBLE PRECISION, n NUMERIC(12, 3), s TEXT, by BYTEA, d DATE, \
     ts TIMESTAMP, tz TIMESTAMPTZ, iv INTERVAL, u UUID, j JSONB)";

const ROW: &str = "INSERT INTO ty VALUES (1, true, -3, 77, 1234567890123, 1.5, -2.25, \
     123456.789, 'héllo', '\\xdeadbeef', '2024-02-29', '2024-01-02 03:04:05.5', \
     '2024-01-02 03:04:05+00', '1 day 02:00:00', '00000000-0000-0000-0000-00000000002a', \
     '{\"k\": [1]}'), \
     (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
     NULL)";

/// Arrays are values, not column types: the same row in both formats.
const ARRAYS: &str = "SELECT ARRAY[1, -2, 3] AS a, ARRAY['x', 'y z'] AS sa, \
     CAST(NULL AS BIGINT[]) AS n FROM ty WHERE id = ";

/// The values of row 1, whatever format they came in.
fn check_row(r: &PgRow, format: &str) {
    assert!(r.get::<bool, _>("b"), "{format}");
    assert_eq!(r.get::<i16, _>("i2"), -3, "{format}");
    assert_eq!(r.get::<i32, _>("i4"), 77, "{format}");
    assert_eq!(r.get::<i64, _>("i8"), 1234567890123, "{format}");
    assert_eq!(r.get::<f32, _>("f4"), 1.5, "{format}");
    assert_eq!(r.get::<f64, _>("f8"), -2.25, "{format}");
    assert_eq!(
        r.get::<Decimal, _>("n"),
        Decimal::from_str("123456.789").unwrap(),
        "{format}"
    );
    assert_eq!(r.get::<String, _>("s"), "héllo", "{format}");
    assert_eq!(
        r.get::<Vec<u8>, _>("by"),
        vec![0xde, 0xad, 0xbe, 0xef],
        "{format}"
    );
    assert_eq!(
        r.get::<chrono::NaiveDate, _>("d").to_string(),
        "2024-02-29",
        "{format}"
    );
    assert_eq!(
        r.get::<chrono::NaiveDateTime, _>("ts").to_string(),
        "2024-01-02 03:04:05.500",
        "{format}"
    );
    assert_eq!(
        r.get::<chrono::DateTime<chrono::Utc>, _>("tz").to_rfc3339(),
        "2024-01-02T03:04:05+00:00",
        "{format}"
    );
    if format == "binary" {
        let iv = r.get::<PgInterval, _>("iv");
        assert_eq!(
            (iv.months, iv.days, iv.microseconds),
            (0, 1, 2 * 3600 * 1_000_000)
        );
    } else {
        // sqlx cannot decode an interval in text: read the text PostgreSQL sends.
        let iv: String = r.try_get_unchecked("iv").unwrap();
        assert_eq!(iv, "1 day 02:00:00");
    }
    assert_eq!(r.get::<uuid::Uuid, _>("u").as_u128(), 42, "{format}");
    assert_eq!(
        r.get::<serde_json::Value, _>("j"),
        serde_json::json!({"k": [1]}),
        "{format}"
    );
}

fn check_arrays(r: &PgRow, format: &str) {
    assert_eq!(r.get::<Vec<i64>, _>("a"), vec![1, -2, 3], "{format}");
    assert_eq!(
        r.get::<Vec<String>, _>("sa"),
        vec!["x".to_string(), "y z".to_string()],
        "{format}"
    );
    assert_eq!(r.get::<Option<Vec<i64>>, _>("n"), None, "{format}");
}

/// Claim: every supported type decodes to the value stored, in binary (a prepared
/// statement) and in text (a simple query), and NULL decodes as None in both.
#[tokio::test]
async fn every_type_in_both_formats() {
    let node = Node::start();
    let mut c = connect(&node).await;
    c.execute(CREATE).await.unwrap();
    c.execute(ROW).await.unwrap();
    let select = "SELECT * FROM ty WHERE id = 1";
    // A query with a bound parameter is prepared: binary results.
    let binary = sqlx::query("SELECT * FROM ty WHERE id = $1")
        .bind(1i32)
        .fetch_one(&mut c)
        .await
        .unwrap();
    check_row(&binary, "binary");
    // A raw query goes through the simple protocol: text results.
    let text = sqlx::raw_sql(select).fetch_one(&mut c).await.unwrap();
    check_row(&text, "text");
    let binary = sqlx::query(&format!("{ARRAYS}$1"))
        .bind(1i32)
        .fetch_one(&mut c)
        .await
        .unwrap();
    check_arrays(&binary, "binary");
    let text = sqlx::raw_sql(&format!("{ARRAYS}1"))
        .fetch_one(&mut c)
        .await
        .unwrap();
    check_arrays(&text, "text");
    for row in [
        sqlx::query("SELECT * FROM ty WHERE id = $1")
            .bind(2i32)
            .fetch_one(&mut c)
            .await
            .unwrap(),
        sqlx::raw_sql("SELECT * FROM ty WHERE id = 2")
            .fetch_one(&mut c)
            .await
            .unwrap(),
    ] {
        assert_eq!(row.get::<Option<bool>, _>("b"), None);
        assert_eq!(row.get::<Option<i64>, _>("i8"), None);
        assert_eq!(row.get::<Option<Decimal>, _>("n"), None);
        assert_eq!(row.get::<Option<String>, _>("s"), None);
        assert_eq!(row.get::<Option<uuid::Uuid>, _>("u"), None);
    }
    // Binary parameters of every type find the row again.
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ty WHERE b = $1 AND i2 = $2 AND i8 = $3 AND n = $4 AND s = $5 \
         AND by = $6 AND d = $7 AND tz = $8 AND u = $9",
    )
    .bind(true)
    .bind(-3i16)
    .bind(1234567890123i64)
    .bind(Decimal::from_str("123456.789").unwrap())
    .bind("héllo")
    .bind(vec![0xdeu8, 0xad, 0xbe, 0xef])
    .bind(chrono::NaiveDate::from_ymd_opt(2024, 2, 29).unwrap())
    .bind(
        chrono::DateTime::parse_from_rfc3339("2024-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&chrono::Utc),
    )
    .bind(uuid::Uuid::from_u128(42))
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(n, 1);
    // Inserting through parameters round-trips NULLs and values alike.
    sqlx::query("INSERT INTO ty (id, s, j, iv) VALUES ($1, $2, $3, $4)")
        .bind(3i32)
        .bind(None::<String>)
        .bind(serde_json::json!({"a": null}))
        .bind(PgInterval {
            months: 1,
            days: 2,
            microseconds: 3,
        })
        .execute(&mut c)
        .await
        .unwrap();
    let r = sqlx::query("SELECT s, j, iv FROM ty WHERE id = 3")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(r.get::<Option<String>, _>("s"), None);
    assert_eq!(
        r.get::<serde_json::Value, _>("j"),
        serde_json::json!({"a": null})
    );
    let iv = r.get::<PgInterval, _>("iv");
    assert_eq!((iv.months, iv.days, iv.microseconds), (1, 2, 3));
}

/// Claim: sqlx's transactions commit and roll back, and errors carry their SQLSTATE
/// without breaking the connection.
#[tokio::test]
async fn transactions_and_errors() {
    let node = Node::start();
    let mut c = connect(&node).await;
    c.execute("CREATE TABLE acct (id INT PRIMARY KEY, bal BIGINT NOT NULL)")
        .await
        .unwrap();
    let mut tx = c.begin().await.unwrap();
    sqlx::query("INSERT INTO acct VALUES ($1, $2)")
        .bind(1i32)
        .bind(100i64)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = c.begin().await.unwrap();
    sqlx::query("UPDATE acct SET bal = bal - 50 WHERE id = 1")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let bal: i64 = sqlx::query_scalar("SELECT bal FROM acct WHERE id = 1")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(bal, 100);

    let dup = sqlx::query("INSERT INTO acct VALUES (1, 5)")
        .execute(&mut c)
        .await
        .unwrap_err();
    assert_eq!(code(&dup).as_deref(), Some("23505"), "{dup}");
    let null = sqlx::query("INSERT INTO acct VALUES (2, NULL)")
        .execute(&mut c)
        .await
        .unwrap_err();
    assert_eq!(code(&null).as_deref(), Some("23502"), "{null}");
    let missing = sqlx::query("SELECT * FROM nowhere")
        .fetch_all(&mut c)
        .await
        .unwrap_err();
    assert_eq!(code(&missing).as_deref(), Some("42P01"), "{missing}");
    // An error inside a transaction aborts it: later statements fail with 25P02.
    let mut tx = c.begin().await.unwrap();
    let div = sqlx::query("SELECT 1 / (bal - bal) FROM acct")
        .fetch_all(&mut *tx)
        .await
        .unwrap_err();
    assert_eq!(code(&div).as_deref(), Some("22012"), "{div}");
    let aborted = sqlx::query("SELECT 1")
        .fetch_all(&mut *tx)
        .await
        .unwrap_err();
    assert_eq!(code(&aborted).as_deref(), Some("25P02"), "{aborted}");
    tx.rollback().await.unwrap();
    let id: i32 = sqlx::query_scalar("SELECT id FROM acct")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(id, 1);
}

/// Claim: sqlx's migrator applies migrations once, records them with their checksums,
/// and a second run (holding the same advisory lock) applies nothing; a migration that
/// was changed after it ran is refused.
#[tokio::test]
async fn migrations_run_once() {
    let node = Node::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("1_accounts.sql"),
        "CREATE TABLE accounts (id BIGINT PRIMARY KEY, owner TEXT NOT NULL);\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("2_seed.sql"),
        "INSERT INTO accounts VALUES (1, 'ada'), (2, 'grace');\n",
    )
    .unwrap();
    let mut c = connect(&node).await;
    let migrator = Migrator::new(dir.path()).await.unwrap();
    migrator.run(&mut c).await.unwrap();
    // A second connection runs the same migrations: nothing left to do.
    let mut other = connect(&node).await;
    migrator.run(&mut other).await.unwrap();
    let owners: Vec<String> = sqlx::query_scalar("SELECT owner FROM accounts ORDER BY id")
        .fetch_all(&mut c)
        .await
        .unwrap();
    assert_eq!(owners, ["ada", "grace"]);
    let applied: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut c)
            .await
            .unwrap();
    assert_eq!(applied, [(1, true), (2, true)]);
    std::fs::write(
        dir.path().join("2_seed.sql"),
        "INSERT INTO accounts VALUES (3, 'edsger');\n",
    )
    .unwrap();
    let changed = Migrator::new(dir.path()).await.unwrap();
    let err = changed.run(&mut c).await.unwrap_err();
    assert!(
        matches!(err, sqlx::migrate::MigrateError::VersionMismatch(2)),
        "{err}"
    );
}
