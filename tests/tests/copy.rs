//! COPY FROM STDIN and COPY TO STDOUT against a real node: through tokio-postgres (the
//! extended protocol) and through psql's `\copy` (the simple protocol).

use std::process::Command;

use bytes::Bytes;
use futures::{SinkExt, TryStreamExt};
use tessera_tests::{sqlstate, Node};

/// A fresh node and a client on it, with one table created by `ddl`.
async fn node_with(ddl: &str) -> (Node, tokio_postgres::Client) {
    let node = Node::start();
    let c = node.connect().await;
    c.batch_execute(ddl).await.unwrap();
    (node, c)
}

/// One row of the table `t` below.
type Row = (i32, Option<String>, Option<f64>, Option<String>);

async fn copy_in(
    c: &tokio_postgres::Client,
    sql: &str,
    chunks: &[&str],
) -> Result<u64, tokio_postgres::Error> {
    let sink = c.copy_in(sql).await?;
    futures::pin_mut!(sink);
    for chunk in chunks {
        sink.send(Bytes::from(chunk.to_string())).await?;
    }
    sink.finish().await
}

async fn copy_out(c: &tokio_postgres::Client, sql: &str) -> String {
    let stream = c.copy_out(sql).await.unwrap();
    let parts: Vec<Bytes> = stream.try_collect().await.unwrap();
    String::from_utf8(parts.concat()).unwrap()
}

/// Text format: escapes, `\N`, rows cut across chunks, the `\.` end marker; then the
/// same rows come back out byte for byte, and in CSV with quoting where needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_and_csv_round_trip() {
    let (_node, c) =
        node_with("CREATE TABLE t (id INT PRIMARY KEY, name TEXT, score FLOAT8, note VARCHAR(10))")
            .await;
    let n = copy_in(
        &c,
        "COPY t FROM STDIN",
        &[
            "1\tal\\tice\t1.5\t\\N\n2\tb",
            "ob\t\\N\tx,y\n",
            "3\t\"q\"\t-2\t\n\\.\n",
        ],
    )
    .await
    .unwrap();
    assert_eq!(n, 3);
    let rows = c
        .query("SELECT id, name, score, note FROM t ORDER BY id", &[])
        .await
        .unwrap();
    let got: Vec<Row> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, Some("al\tice".into()), Some(1.5), None),
            (2, Some("bob".into()), None, Some("x,y".into())),
            (3, Some("\"q\"".into()), Some(-2.0), Some(String::new())),
        ]
    );
    assert_eq!(
        copy_out(&c, "COPY t TO STDOUT").await,
        "1\tal\\tice\t1.5\t\\N\n2\tbob\t\\N\tx,y\n3\t\"q\"\t-2\t\n"
    );
    assert_eq!(
        copy_out(
            &c,
            "COPY (SELECT id, note FROM t ORDER BY id DESC) TO STDOUT WITH (FORMAT csv)"
        )
        .await,
        "3,\"\"\n2,\"x,y\"\n1,\n"
    );
}

/// CSV in: a header line, quoted fields with the delimiter, a doubled quote and a
/// newline inside, and an unquoted empty field as NULL; listed columns only, the rest
/// take their defaults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_in_with_header_and_defaults() {
    let (_node, c) =
        node_with("CREATE TABLE p (id SERIAL PRIMARY KEY, a TEXT, b INT DEFAULT 7)").await;
    let n = copy_in(
        &c,
        "COPY p (a) FROM STDIN WITH (FORMAT csv, HEADER true)",
        &["a\n\"x, \"\"y\"\"\"\n", "\"two\nlines\"\n\n"],
    )
    .await
    .unwrap();
    assert_eq!(n, 3);
    let rows = c
        .query("SELECT a, b FROM p ORDER BY id", &[])
        .await
        .unwrap();
    let got: Vec<(Option<String>, i32)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        vec![
            (Some("x, \"y\"".into()), 7),
            (Some("two\nlines".into()), 7),
            (None, 7),
        ]
    );
}

/// A bad line fails the whole COPY with the line number, nothing of it is committed,
/// and the connection goes on; inside BEGIN the transaction is failed until ROLLBACK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_line_fails_the_copy_whole() {
    let (_node, c) = node_with("CREATE TABLE b (id INT PRIMARY KEY, v INT NOT NULL)").await;
    let err = copy_in(
        &c,
        "COPY b FROM STDIN",
        &["1\t10\n2\t20\n3\tthirty\n4\t40\n"],
    )
    .await
    .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("22P02"), "{err:?}");
    let db = err.as_db_error().unwrap();
    assert!(
        db.detail().unwrap_or_default().contains("COPY b, line 3"),
        "{db:?}"
    );
    let err = copy_in(&c, "COPY b FROM STDIN", &["1\t10\n2\n"])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("22P04"), "{err:?}");
    let err = copy_in(&c, "COPY b FROM STDIN", &["1\t10\n1\t11\n"])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("23505"), "{err:?}");
    let count: i64 = c
        .query_one("SELECT count(*) FROM b", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0);

    c.batch_execute("BEGIN").await.unwrap();
    assert_eq!(
        copy_in(&c, "COPY b FROM STDIN", &["5\t50\n"])
            .await
            .unwrap(),
        1
    );
    let err = copy_in(&c, "COPY b FROM STDIN", &["6\t\\N\n"])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("23502"), "{err:?}");
    let err = c.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("25P02"));
    c.batch_execute("ROLLBACK").await.unwrap();
    let count: i64 = c
        .query_one("SELECT count(*) FROM b", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0);
    assert_eq!(
        copy_in(&c, "COPY b FROM STDIN", &["7\t70"]).await.unwrap(),
        1
    );
}

/// psql's `\copy` (simple-protocol COPY) both ways: a file loaded in, and written out
/// again with the same content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_backslash_copy_both_ways() {
    let (node, _c) = node_with("CREATE TABLE q (id INT PRIMARY KEY, label TEXT, at DATE)").await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    let output = dir.path().join("out.csv");
    let data = "id,label,at\n1,one,2024-01-31\n2,\"t,wo\",\n3,,1999-12-31\n";
    std::fs::write(&input, data).unwrap();
    let psql = |cmd: String| {
        let out = Command::new("psql")
            .args([
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "root",
            ])
            .args(["-p", &node.port.to_string(), "-d", "tessera", "-c", &cmd])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(
        psql(format!(
            "\\copy q from '{}' with (format csv, header)",
            input.display()
        ))
        .trim(),
        "COPY 3"
    );
    psql(format!(
        "\\copy (select * from q order by id) to '{}' with (format csv, header)",
        output.display()
    ));
    assert_eq!(std::fs::read_to_string(&output).unwrap(), data);
}

/// `CHAR(n)` values go in without their trailing spaces mattering and come out padded
/// to `n`, as PostgreSQL 15 writes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn char_values_copy_out_padded() {
    let (_node, c) = node_with("CREATE TABLE ch (id INT PRIMARY KEY, m CHAR(4))").await;
    copy_in(&c, "COPY ch FROM STDIN", &["1\tab\n2\tabcd\n3\tx  \n"])
        .await
        .unwrap();
    assert_eq!(
        copy_out(&c, "COPY ch TO STDOUT").await,
        "1\tab  \n2\tabcd\n3\tx   \n"
    );
    assert_eq!(
        copy_out(&c, "COPY (SELECT id FROM ch WHERE m = 'x') TO STDOUT").await,
        "3\n"
    );
}
