//! Hermitage's fourteen serializable cases (reference/reliability.md §b) over the wire,
//! each run twice: with the table's two rows in one tablet and with them in two.
//!
//! tessera is optimistic: where PostgreSQL blocks on a row lock, it goes on, and a
//! transaction that cannot be serialized fails with 40001 on a statement or at COMMIT.
//! So each case checks PostgreSQL's acceptance rule rather than its exact schedule:
//! every read returns the value shown (or its transaction fails), the transactions
//! that must fail do, and the final table is what some serial order of the committed
//! transactions gives.

use tessera_tests::{sqlstate, Node};
use tokio_postgres::{Client, SimpleQueryMessage};

type Rows = Vec<(i64, i64)>;

/// One session's transaction, remembering whether a statement of it failed.
struct T {
    c: Client,
    failed: bool,
}

impl T {
    async fn begin(node: &Node) -> T {
        let c = node.connect().await;
        c.batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
            .await
            .unwrap();
        T { c, failed: false }
    }

    /// Run `sql`; a failure must be a serialization failure (or, after one, 25P02).
    async fn run(&mut self, sql: &str) -> Option<Rows> {
        match self.c.simple_query(sql).await {
            Ok(msgs) => Some(rows(&msgs)),
            Err(e) => {
                let code = sqlstate(&e);
                assert!(
                    matches!(code.as_deref(), Some("40001") | Some("25P02")),
                    "{sql}: {e:?}"
                );
                self.failed = true;
                None
            }
        }
    }

    /// Run a read that must return `expected` unless the transaction fails.
    async fn read(&mut self, sql: &str, expected: &[(i64, i64)]) {
        if let Some(got) = self.run(sql).await {
            assert_eq!(got, expected, "{sql}");
        }
    }

    /// Commit; whether the transaction committed.
    async fn commit(&mut self) -> bool {
        let ok = self.run("COMMIT").await.is_some();
        ok && !self.failed
    }

    async fn rollback(&mut self) {
        self.c.batch_execute("ROLLBACK").await.unwrap();
    }
}

fn rows(msgs: &[SimpleQueryMessage]) -> Rows {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some((
                r.get(0).unwrap().parse().unwrap(),
                r.get(1).unwrap().parse().unwrap(),
            )),
            _ => None,
        })
        .collect()
}

const S: &str = "SELECT id, value FROM test ORDER BY id";
const S1: &str = "SELECT id, value FROM test WHERE id = 1";
const S2: &str = "SELECT id, value FROM test WHERE id = 2";

/// A fresh `test` table with rows (1, 10) and (2, 20), cut between them when `split`.
async fn fresh(node: &Node, split: bool) -> Client {
    let c = node.connect().await;
    c.batch_execute(
        "DROP TABLE IF EXISTS test; \
         CREATE TABLE test (id INT PRIMARY KEY, value INT); \
         INSERT INTO test (id, value) VALUES (1, 10), (2, 20)",
    )
    .await
    .unwrap();
    if split {
        c.simple_query("ALTER TABLE test SPLIT AT VALUES (2)")
            .await
            .unwrap();
        let n = c
            .query_one(
                "SELECT count(*) FROM tessera_internal.ranges WHERE table_name = 'test'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0);
        assert!(n >= 2, "the rows are in one tablet");
    }
    c
}

async fn table(c: &Client) -> Rows {
    rows(&c.simple_query(S).await.unwrap())
}

async fn g0(node: &Node, split: bool) {
    let c = fresh(node, split).await;
    let (mut t1, mut t2) = (T::begin(node).await, T::begin(node).await);
    t1.run("UPDATE test SET value = 11 WHERE id = 1").await;
    t2.run("UPDATE test SET value = 12 WHERE id = 1").await;
    t1.run("UPDATE test SET value = 21 WHERE id = 2").await;
    let c1 = t1.commit().await;
    t2.run("UPDATE test SET value = 22 WHERE id = 2").await;
    let c2 = t2.commit().await;
    let end = table(&c).await;
    let allowed: Vec<Rows> = match (c1, c2) {
        (true, false) => vec![vec![(1, 11), (2, 21)]],
        (false, true) => vec![vec![(1, 12), (2, 22)]],
        (true, true) => vec![vec![(1, 12), (2, 22)], vec![(1, 11), (2, 21)]],
        (false, false) => vec![vec![(1, 10), (2, 20)]],
    };
    assert!(allowed.contains(&end), "G0: {end:?} after {c1} {c2}");
}

async fn g1a(node: &Node, split: bool) {
    fresh(node, split).await;
    let (mut t1, mut t2) = (T::begin(node).await, T::begin(node).await);
    t1.run("UPDATE test SET value = 101 WHERE id = 1").await;
    t2.read(S, &[(1, 10), (2, 20)]).await;
    t1.rollback().await;
    t2.read(S, &[(1, 10), (2, 20)]).await;
    assert!(t2.commit().await, "G1a: the reader must commit");
}

async fn g1b(node: &Node, split: bool) {
    fresh(node, split).await;
    let (mut t1, mut t2) = (T::begin(node).await, T::begin(node).await);
    t1.run("UPDATE test SET value = 101 WHERE id = 1").await;
    t2.read(S, &[(1, 10), (2, 20)]).await;
    t1.run("UPDATE test SET value = 11 WHERE id = 1").await;
    assert!(t1.commit().await);
    t2.read(S, &[(1, 10), (2, 20)]).await;
    assert!(t2.commit().await, "G1b: the reader must commit");
}

async fn g1c(node: &Node, split: bool) {
    fresh(node, split).await;
    let (mut t1, mut t2) = (T::begin(node).await, T::begin(node).await);
    t1.run("UPDATE test SET value = 11 WHERE id = 1").await;
    t2.run("UPDATE test SET value = 22 WHERE id = 2").await;
    t1.read(S2, &[(2, 20)]).await;
    t2.read(S1, &[(1, 10)]).await;
    let (c1, c2) = (t1.commit().await, t2.commit().await);
    assert!(!(c1 && c2), "G1c: both committed");
}

async fn otv(node: &Node, split: bool) {
    fresh(node, split).await;
    let (mut t1, mut t2, mut t3) = (
        T::begin(node).await,
        T::begin(node).await,
        T::begin(node).await,
    );
    t1.run("UPDATE test SET value = 11 WHERE id = 1").await;
    t1.run("UPDATE test SET value = 19 WHERE id = 2").await;
    t2.run("UPDATE test SET value = 12 WHERE id = 1").await;
    assert!(t1.commit().await);
    let mut seen = Vec::new();
    seen.push(t3.run(S1).await);
    t2.run("UPDATE test SET value = 18 WHERE id = 2").await;
    seen.push(t3.run(S2).await);
    t2.commit().await;
    seen.push(t3.run(S2).await);
    seen.push(t3.run(S1).await);
    t3.commit().await;
    let values: Vec<i64> = seen
        .into_iter()
        .flatten()
        .flatten()
        .map(|(_, v)| v)
        .collect();
    let snapshots = [[10, 20], [11, 19], [12, 18]];
    assert!(
        snapshots
            .iter()
            .any(|[a, b]| values.iter().all(|v| v == a || v == b)),
        "OTV: T3 read {values:?}"
    );
}

async fn pmp(node: &Node, split: bool) {
    fresh(node, split).await;
    let (mut t1, mut t2) = (T::begin(node).await, T::begin(node).await);
    t1.read("SELECT id, value FROM test WHERE value = 30", &[])
        .await;
    t2.run("INSERT INTO test (id, value) VALUES (3, 30)").await;
    assert!(t2.commit().await);
    t1.read("SELECT id, value FROM test WHERE value % 3 = 0", &[])
        .await;
    t1.commit().await;
}

async fn pmp_write(node: &Node, split: bool) {
    let c = fresh(node, split).await;
    let (mut t1, mut t2) = (T::begin(node).await, T::begin(node).await);
    t1.run("UPDATE test SET value = value + 10").await;
    t2.run("DELETE FROM test WHERE value = 20").await;
    let c1 = t1.commit().await;
    t2.run("SELECT id, value FROM test WHERE value = 20").await;
    let c2 = t2.commit().await;
    let end = table(&c).await;
    let allowed: Vec<Rows> = match (c1, c2) {
        (true, false) => vec![vec![(1, 20), (2, 30)]],
        (false, true) => vec![vec![(1, 10)]],
        (true, true) => vec![vec![(2, 30)], vec![(1, 20)]],
        (false, false) => vec![vec![(1, 10), (2, 20)]],
    };
    assert!(allowed.contains(&end), "PMP write: {end:?} after {c1} {c2}");
}

async fn p4(node: &Node, split: bool) {
    fresh(node, split).await;
    let (mut t1, mut t2) = (T::begin(node).await, T::begin(node).await);
    t1.read(S1, &[(1, 10)]).await;
    t2.read(S1, &[(1, 10)]).await;
    t1.run("UPDATE test SET value = 11 WHERE id = 1").await;
    t2.run("UPDATE test SET value = 11 WHERE id = 1").await;
    let (c1, c2) = (t1.commit().await, t2.commit().await);
    assert!(!(c1 && c2), "P4: both committed");
}

async fn g_single(node: &Node, split: bool) {
    fresh(node, split).await;
    let (mut t1, mut t2) = (T::begin(node).await, T::begin(node).await);
    t1.read(S1, &[(1, 10)]).await;
    t2.run(S1).await;
    t2.run(S2).await;
    t2.run("UPDATE test SET value = 12 WHERE id = 1").await;
    t2.run("UPDATE test SET value = 18 WHERE id = 2").await;
    assert!(t2.commit().await);
    t1.read(S2, &[(2, 20)]).await;
    t1.commit().await;
}

async fn g_single_predicate(node: &Node, split: bool) {
    fresh(node, split).await;
    let (mut t1, mut t2) = (T::begin(node).await, T::begin(node).await);
    t1.read(
        "SELECT id, value FROM test WHERE value % 5 = 0 ORDER BY id",
        &[(1, 10), (2, 20)],
    )
    .await;
    t2.run("UPDATE test SET value = 12 WHERE value = 10").await;
    assert!(t2.commit().await);
    t1.read("SELECT id, value FROM test WHERE value % 3 = 0", &[])
        .await;
    t1.commit().await;
}

async fn g_single_write(node: &Node, split: bool) {
    let c = fresh(node, split).await;
    let (mut t1, mut t2) = (T::begin(node).await, T::begin(node).await);
    t1.read(S1, &[(1, 10)]).await;
    t2.run(S).await;
    t2.run("UPDATE test SET value = 12 WHERE id = 1").await;
    t2.run("UPDATE test SET value = 18 WHERE id = 2").await;
    assert!(t2.commit().await);
    t1.run("DELETE FROM test WHERE value = 20").await;
    assert!(!t1.commit().await, "G-single write: T1 committed");
    assert_eq!(table(&c).await, vec![(1, 12), (2, 18)]);
}

async fn g2_item(node: &Node, split: bool) {
    fresh(node, split).await;
    let (mut t1, mut t2) = (T::begin(node).await, T::begin(node).await);
    let both = [(1, 10), (2, 20)];
    t1.read(
        "SELECT id, value FROM test WHERE id IN (1, 2) ORDER BY id",
        &both,
    )
    .await;
    t2.read(
        "SELECT id, value FROM test WHERE id IN (1, 2) ORDER BY id",
        &both,
    )
    .await;
    t1.run("UPDATE test SET value = 11 WHERE id = 1").await;
    t2.run("UPDATE test SET value = 21 WHERE id = 2").await;
    let (c1, c2) = (t1.commit().await, t2.commit().await);
    assert!(!(c1 && c2), "G2-item: both committed");
}

async fn g2(node: &Node, split: bool) {
    let c = fresh(node, split).await;
    let (mut t1, mut t2) = (T::begin(node).await, T::begin(node).await);
    let q = "SELECT id, value FROM test WHERE value % 3 = 0";
    t1.read(q, &[]).await;
    t2.read(q, &[]).await;
    t1.run("INSERT INTO test (id, value) VALUES (3, 30)").await;
    t2.run("INSERT INTO test (id, value) VALUES (4, 42)").await;
    let (c1, c2) = (t1.commit().await, t2.commit().await);
    let n = rows(&c.simple_query(q).await.unwrap()).len();
    assert_eq!(n, usize::from(c1) + usize::from(c2));
    assert!(n <= 1, "G2: both committed");
}

async fn read_only_anomaly(node: &Node, split: bool) {
    fresh(node, split).await;
    let mut t1 = T::begin(node).await;
    t1.read(S, &[(1, 10), (2, 20)]).await;
    let mut t2 = T::begin(node).await;
    t2.run("UPDATE test SET value = value + 5 WHERE id = 2")
        .await;
    assert!(t2.commit().await);
    let mut t3 = T::begin(node).await;
    t3.read(S, &[(1, 10), (2, 25)]).await;
    assert!(t3.commit().await);
    t1.run("UPDATE test SET value = 0 WHERE id = 1").await;
    assert!(!t1.commit().await, "read-only anomaly: T1 committed");
}

async fn all_cases(split: bool) {
    let node = Node::start();
    g0(&node, split).await;
    g1a(&node, split).await;
    g1b(&node, split).await;
    g1c(&node, split).await;
    otv(&node, split).await;
    pmp(&node, split).await;
    pmp_write(&node, split).await;
    p4(&node, split).await;
    g_single(&node, split).await;
    g_single_predicate(&node, split).await;
    g_single_write(&node, split).await;
    g2_item(&node, split).await;
    g2(&node, split).await;
    read_only_anomaly(&node, split).await;
}

/// Claim: the fourteen cases hold with both rows in one tablet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hermitage_on_one_tablet() {
    all_cases(false).await;
}

/// Claim: they hold with the rows in two tablets, where the transactions that write
/// both commit through their transaction records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hermitage_on_two_tablets() {
    all_cases(true).await;
}
