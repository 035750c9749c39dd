//! Serializable isolation over the wire, with two and three concurrent sessions.
//!
//! Each test states an anomaly; the claim is that it cannot be observed: either the
//! schedule is harmless, or one transaction fails with SQLSTATE 40001. Transactions that
//! do not conflict must all commit.

use tessera_tests::{sqlstate, Node};
use tokio_postgres::Client;

async fn setup(node: &Node, sql: &str) -> Client {
    let c = node.connect().await;
    c.batch_execute(sql).await.expect("setup");
    c
}

async fn int(c: &Client, sql: &str) -> i64 {
    let row = c.query_one(sql, &[]).await.expect(sql);
    row.get::<_, i64>(0)
}

/// Whether `r` is a serialization failure; panics on any other error.
fn is_conflict<T: std::fmt::Debug>(r: &Result<T, tokio_postgres::Error>) -> bool {
    match r {
        Ok(_) => false,
        Err(e) => {
            assert_eq!(
                sqlstate(e).as_deref(),
                Some("40001"),
                "unexpected error: {e:?}"
            );
            true
        }
    }
}

/// G1a/G1b (dirty reads): uncommitted and rolled-back writes are never visible.
#[tokio::test]
async fn no_dirty_reads() {
    let node = Node::start();
    let a = setup(
        &node,
        "CREATE TABLE t (id INT PRIMARY KEY, v BIGINT); INSERT INTO t VALUES (1, 10)",
    )
    .await;
    let b = node.connect().await;
    a.batch_execute("BEGIN; UPDATE t SET v = 11 WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(int(&b, "SELECT v FROM t WHERE id = 1").await, 10);
    a.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(int(&b, "SELECT v FROM t WHERE id = 1").await, 10);
}

/// Fuzzy reads: a transaction reads the same value twice even when another commits a
/// change in between (it reads a snapshot).
#[tokio::test]
async fn no_fuzzy_reads() {
    let node = Node::start();
    let a = setup(
        &node,
        "CREATE TABLE t (id INT PRIMARY KEY, v BIGINT); INSERT INTO t VALUES (1, 10)",
    )
    .await;
    let b = node.connect().await;
    a.batch_execute("BEGIN").await.unwrap();
    assert_eq!(int(&a, "SELECT v FROM t WHERE id = 1").await, 10);
    b.batch_execute("UPDATE t SET v = 20 WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(int(&a, "SELECT v FROM t WHERE id = 1").await, 10);
    assert_eq!(int(&a, "SELECT sum(v) FROM t").await, 10);
    a.batch_execute("COMMIT").await.unwrap();
    assert_eq!(int(&a, "SELECT v FROM t WHERE id = 1").await, 20);
}

/// Lost update: two read-modify-write transactions on one row; one must fail.
#[tokio::test]
async fn no_lost_updates() {
    let node = Node::start();
    let a = setup(
        &node,
        "CREATE TABLE t (id INT PRIMARY KEY, v BIGINT); INSERT INTO t VALUES (1, 0)",
    )
    .await;
    let b = node.connect().await;
    a.batch_execute("BEGIN").await.unwrap();
    b.batch_execute("BEGIN").await.unwrap();
    let va = int(&a, "SELECT v FROM t WHERE id = 1").await;
    let vb = int(&b, "SELECT v FROM t WHERE id = 1").await;
    let ra = a
        .execute(&format!("UPDATE t SET v = {} WHERE id = 1", va + 1), &[])
        .await;
    let ra = match ra {
        Ok(_) => a.batch_execute("COMMIT").await,
        Err(e) => Err(e),
    };
    let rb = b
        .execute(&format!("UPDATE t SET v = {} WHERE id = 1", vb + 1), &[])
        .await;
    let rb = match rb {
        Ok(_) => b.batch_execute("COMMIT").await,
        Err(e) => Err(e),
    };
    let failed = [is_conflict(&ra), is_conflict(&rb)]
        .iter()
        .filter(|x| **x)
        .count();
    assert_eq!(failed, 1, "exactly one of the two must fail: {ra:?} {rb:?}");
    let _ = b.batch_execute("ROLLBACK").await;
    let _ = a.batch_execute("ROLLBACK").await;
    assert_eq!(int(&a, "SELECT v FROM t WHERE id = 1").await, 1);
}

/// Concurrent increments through implicit transactions are all applied (the server
/// retries them), and none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_all_count() {
    let node = Node::start();
    setup(
        &node,
        "CREATE TABLE c (id INT PRIMARY KEY, n BIGINT); INSERT INTO c VALUES (1, 0)",
    )
    .await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let c = node.connect().await;
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                c.execute("UPDATE c SET n = n + 1 WHERE id = 1", &[])
                    .await
                    .expect("implicit retry");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let c = node.connect().await;
    assert_eq!(int(&c, "SELECT n FROM c WHERE id = 1").await, 100);
}

/// G2-item (write skew on rows): two doctors each check that someone else is on call
/// and go off call. Both may not commit.
#[tokio::test]
async fn no_write_skew_on_rows() {
    let node = Node::start();
    let a = setup(
        &node,
        "CREATE TABLE oncall (doctor TEXT PRIMARY KEY, on_duty BOOLEAN); INSERT INTO oncall VALUES ('alice', true), ('bob', true)",
    )
    .await;
    let b = node.connect().await;
    a.batch_execute("BEGIN").await.unwrap();
    b.batch_execute("BEGIN").await.unwrap();
    assert_eq!(
        int(&a, "SELECT count(*) FROM oncall WHERE on_duty").await,
        2
    );
    assert_eq!(
        int(&b, "SELECT count(*) FROM oncall WHERE on_duty").await,
        2
    );
    a.batch_execute("UPDATE oncall SET on_duty = false WHERE doctor = 'alice'")
        .await
        .unwrap();
    b.batch_execute("UPDATE oncall SET on_duty = false WHERE doctor = 'bob'")
        .await
        .unwrap();
    let ra = a.batch_execute("COMMIT").await;
    let rb = b.batch_execute("COMMIT").await;
    assert!(is_conflict(&ra) || is_conflict(&rb), "write skew committed");
    assert!(int(&a, "SELECT count(*) FROM oncall WHERE on_duty").await >= 1);
}

/// G2 with a predicate read followed by an insert (phantom write skew): two sessions
/// each count the rows of a group and insert one if it has fewer than two.
#[tokio::test]
async fn no_write_skew_on_predicates() {
    let node = Node::start();
    let a = setup(
        &node,
        "CREATE TABLE slots (id INT PRIMARY KEY, grp INT); INSERT INTO slots VALUES (1, 7)",
    )
    .await;
    let b = node.connect().await;
    a.batch_execute("BEGIN").await.unwrap();
    b.batch_execute("BEGIN").await.unwrap();
    assert_eq!(int(&a, "SELECT count(*) FROM slots WHERE grp = 7").await, 1);
    assert_eq!(int(&b, "SELECT count(*) FROM slots WHERE grp = 7").await, 1);
    a.batch_execute("INSERT INTO slots VALUES (2, 7)")
        .await
        .unwrap();
    b.batch_execute("INSERT INTO slots VALUES (3, 7)")
        .await
        .unwrap();
    let ra = a.batch_execute("COMMIT").await;
    let rb = b.batch_execute("COMMIT").await;
    assert!(
        is_conflict(&ra) || is_conflict(&rb),
        "phantom write skew committed"
    );
    assert_eq!(int(&a, "SELECT count(*) FROM slots WHERE grp = 7").await, 2);
}

/// Fekete's read-only anomaly with three sessions: a read-only transaction must not
/// observe a state that no serial order explains.
#[tokio::test]
async fn no_read_only_anomaly() {
    let node = Node::start();
    let s = setup(
        &node,
        "CREATE TABLE bank (name TEXT PRIMARY KEY, bal BIGINT); INSERT INTO bank VALUES ('checking', 0), ('savings', 0)",
    )
    .await;
    let t1 = node.connect().await; // deposit into savings
    let t3 = node.connect().await; // read-only report
                                   // T2: withdraw 10 from checking, with a penalty of 1 if the total would go negative.
    s.batch_execute("BEGIN").await.unwrap();
    let total = int(&s, "SELECT sum(bal) FROM bank").await;
    // T1 deposits 20 into savings and commits.
    t1.batch_execute("BEGIN; UPDATE bank SET bal = bal + 20 WHERE name = 'savings'; COMMIT")
        .await
        .unwrap();
    // T3 reads both balances and commits: it sees the deposit but not the withdrawal.
    t3.batch_execute("BEGIN").await.unwrap();
    let checking = int(&t3, "SELECT bal FROM bank WHERE name = 'checking'").await;
    let savings = int(&t3, "SELECT bal FROM bank WHERE name = 'savings'").await;
    t3.batch_execute("COMMIT").await.unwrap();
    assert_eq!((checking, savings), (0, 20));
    // T2 now withdraws based on its stale total: it must not commit the penalty.
    let amount = if total - 10 < 0 { 11 } else { 10 };
    assert_eq!(amount, 11);
    let w = s
        .batch_execute(&format!(
            "UPDATE bank SET bal = bal - {amount} WHERE name = 'checking'"
        ))
        .await;
    let r = match w {
        Ok(()) => s.batch_execute("COMMIT").await,
        Err(e) => Err(e),
    };
    assert!(
        is_conflict(&r),
        "T2 committed a penalty that T3's view contradicts"
    );
}

/// Transactions that touch different rows all commit.
#[tokio::test]
async fn non_conflicting_transactions_commit() {
    let node = Node::start();
    let a = setup(&node, "CREATE TABLE t (id INT PRIMARY KEY, v BIGINT); INSERT INTO t VALUES (1, 0), (2, 0), (3, 0)").await;
    let b = node.connect().await;
    let c = node.connect().await;
    for s in [&a, &b, &c] {
        s.batch_execute("BEGIN").await.unwrap();
    }
    assert_eq!(int(&a, "SELECT v FROM t WHERE id = 1").await, 0);
    assert_eq!(int(&b, "SELECT v FROM t WHERE id = 2").await, 0);
    assert_eq!(int(&c, "SELECT v FROM t WHERE id = 3").await, 0);
    a.batch_execute("UPDATE t SET v = 1 WHERE id = 1")
        .await
        .unwrap();
    b.batch_execute("UPDATE t SET v = 2 WHERE id = 2")
        .await
        .unwrap();
    c.batch_execute("INSERT INTO t VALUES (4, 4)")
        .await
        .unwrap();
    for s in [&a, &b, &c] {
        s.batch_execute("COMMIT")
            .await
            .expect("non-conflicting commit");
    }
    assert_eq!(int(&a, "SELECT sum(v) FROM t").await, 7);
}

/// A conflict's message names the table and the key.
#[tokio::test]
async fn conflict_names_table_and_key() {
    let node = Node::start();
    let a = setup(
        &node,
        "CREATE TABLE named (id INT PRIMARY KEY, v BIGINT); INSERT INTO named VALUES (5, 0)",
    )
    .await;
    let b = node.connect().await;
    a.batch_execute("BEGIN").await.unwrap();
    int(&a, "SELECT v FROM named WHERE id = 5").await;
    b.batch_execute("UPDATE named SET v = 1 WHERE id = 5")
        .await
        .unwrap();
    a.batch_execute("UPDATE named SET v = 2 WHERE id = 5")
        .await
        .unwrap_or(());
    let err = a.batch_execute("COMMIT").await.expect_err("must conflict");
    let msg = err
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert_eq!(sqlstate(&err).as_deref(), Some("40001"));
    assert!(
        msg.contains("\"named\"") && msg.contains("id") && msg.contains('5'),
        "message: {msg}"
    );
}

/// Write skew through an upsert: `INSERT ... ON CONFLICT DO NOTHING` (and `DO UPDATE ...
/// WHERE false`) that finds the row and writes nothing has read it. A transaction that
/// deletes the row and reads what the first one writes closes a cycle, so both cannot
/// commit.
#[tokio::test]
async fn no_write_skew_through_on_conflict() {
    for upsert in [
        "INSERT INTO t VALUES (1, 0) ON CONFLICT (k) DO NOTHING",
        "INSERT INTO t VALUES (1, 0) ON CONFLICT (k) DO UPDATE SET v = 5 WHERE false",
        "INSERT INTO t VALUES (1, 0) ON CONFLICT DO NOTHING",
    ] {
        let node = Node::start();
        let a = setup(
            &node,
            "CREATE TABLE t (k INT PRIMARY KEY, v INT); INSERT INTO t VALUES (1, 1); \
             CREATE TABLE marks (m INT PRIMARY KEY)",
        )
        .await;
        let b = node.connect().await;
        a.batch_execute("BEGIN").await.unwrap();
        a.batch_execute(upsert).await.unwrap();
        b.batch_execute("BEGIN").await.unwrap();
        assert_eq!(int(&b, "SELECT count(*) FROM marks").await, 0);
        a.batch_execute("INSERT INTO marks VALUES (1)")
            .await
            .unwrap();
        b.batch_execute("DELETE FROM t WHERE k = 1").await.unwrap();
        let b_failed = is_conflict(&b.batch_execute("COMMIT").await);
        let a_failed = is_conflict(&a.batch_execute("COMMIT").await);
        assert!(a_failed || b_failed, "{upsert}: both committed");
    }
}
