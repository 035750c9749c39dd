//! Session-level statements and functions clients send: settings (SET, SHOW, RESET,
//! set_config, current_setting, startup `options`), identity functions, savepoints,
//! DISCARD and DEALLOCATE, and arrays in both wire formats.

use tessera_tests::{sqlstate, Node};
use tokio_postgres::NoTls;

async fn text(c: &tokio_postgres::Client, sql: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for m in c.simple_query(sql).await.unwrap() {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            out.push(r.get(0).map(str::to_string));
        }
    }
    out
}

/// Startup parameters and `options=-c` become the session's settings and identity;
/// SET, set_config, RESET and DISCARD ALL move them as in PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_and_identity() {
    let node = Node::start();
    let url = format!(
        "host=127.0.0.1 port={} user=alice dbname=shop application_name=app1 options='-c extra_float_digits=2 -c search_path=public'",
        node.port
    );
    let (c, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(conn);
    let one = |sql: &'static str| {
        let c = &c;
        async move { text(c, sql).await.remove(0) }
    };
    assert_eq!(one("SHOW extra_float_digits").await.as_deref(), Some("2"));
    assert_eq!(one("SHOW application_name").await.as_deref(), Some("app1"));
    assert_eq!(
        one("SELECT current_user || '@' || current_database() || '/' || current_schema()")
            .await
            .as_deref(),
        Some("alice@shop/public")
    );
    let version = one("SELECT pg_catalog.version()").await.unwrap();
    assert!(version.starts_with("PostgreSQL 15."), "{version}");
    assert!(version.contains("tessera"), "{version}");

    c.batch_execute("SET application_name = 'other'")
        .await
        .unwrap();
    assert_eq!(
        one("SELECT current_setting('application_name')")
            .await
            .as_deref(),
        Some("other")
    );
    assert_eq!(
        one("SELECT set_config('application_name', 'third', false)")
            .await
            .as_deref(),
        Some("third")
    );
    assert_eq!(one("SHOW application_name").await.as_deref(), Some("third"));
    c.batch_execute("RESET application_name").await.unwrap();
    assert_eq!(one("SHOW application_name").await.as_deref(), Some("app1"));
    c.batch_execute("SET extra_float_digits = 0; DISCARD ALL")
        .await
        .unwrap();
    assert_eq!(one("SHOW extra_float_digits").await.as_deref(), Some("2"));
    assert_eq!(
        one("SELECT current_setting('no_such_thing', true)").await,
        None
    );
    let err = c
        .simple_query("SELECT current_setting('no_such_thing')")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("42704"));
    c.batch_execute("DEALLOCATE ALL").await.unwrap();
    c.batch_execute("BEGIN").await.unwrap();
    let err = c.batch_execute("DISCARD ALL").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("25001"));
}

/// SAVEPOINT, ROLLBACK TO and RELEASE: writes after a savepoint are undone, a failed
/// transaction becomes usable again, and an unknown savepoint is 3B001.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savepoints_undo_what_came_after() {
    let node = Node::start();
    let c = node.connect().await;
    c.batch_execute("CREATE TABLE s (k INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    c.batch_execute("BEGIN; INSERT INTO s VALUES (1, 1); SAVEPOINT a; INSERT INTO s VALUES (2, 2)")
        .await
        .unwrap();
    c.batch_execute("SAVEPOINT b; UPDATE s SET v = 10 WHERE k = 1")
        .await
        .unwrap();
    c.batch_execute("ROLLBACK TO SAVEPOINT b").await.unwrap();
    assert_eq!(
        text(
            &c,
            "SELECT string_agg(k || ':' || v, ',' ORDER BY k) FROM s"
        )
        .await,
        vec![Some("1:1,2:2".into())]
    );
    // A failed statement, then back to `a`: the transaction goes on without row 2.
    let err = c
        .batch_execute("INSERT INTO s VALUES (1, 5)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("23505"));
    let err = c.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("25P02"));
    c.batch_execute("ROLLBACK TO a").await.unwrap();
    c.batch_execute("INSERT INTO s VALUES (3, 3); RELEASE SAVEPOINT a")
        .await
        .unwrap();
    let err = c.batch_execute("ROLLBACK TO a").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("3B001"));
    c.batch_execute("ROLLBACK").await.unwrap();
    c.batch_execute("BEGIN; INSERT INTO s VALUES (4, 4); SAVEPOINT x; INSERT INTO s VALUES (5, 5); RELEASE x; COMMIT")
        .await
        .unwrap();
    assert_eq!(
        text(&c, "SELECT string_agg(k::text, ',' ORDER BY k) FROM s").await,
        vec![Some("4,5".into())]
    );
    let err = c.batch_execute("SAVEPOINT outside").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("25P01"));
}

/// Arrays come back as PostgreSQL writes them in text (`{...}` with quoting) and decode
/// from the binary format as arrays of their element type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrays_in_text_and_binary() {
    let node = Node::start();
    let c = node.connect().await;
    assert_eq!(
        text(&c, "SELECT make_array('x y', '', 'q\"z', 'NULL', 'plain')").await,
        vec![Some(r#"{"x y","","q\"z","NULL",plain}"#.into())]
    );
    assert_eq!(
        text(&c, "SELECT current_schemas(true)").await,
        vec![Some("{pg_catalog,public}".into())]
    );
    let row = c
        .query_one("SELECT make_array(1, NULL, 3), make_array('a', 'b c')", &[])
        .await
        .unwrap();
    let ints: Vec<Option<i64>> = row.get(0);
    let texts: Vec<String> = row.get(1);
    assert_eq!(ints, vec![Some(1), None, Some(3)]);
    assert_eq!(texts, vec!["a".to_string(), "b c".to_string()]);
}

/// A CancelRequest (with the right secret) stops the running statement with 57014; the
/// connection goes on, and a transaction it was in is failed until ROLLBACK. A request
/// with a wrong secret is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_stops_a_running_query() {
    let node = Node::start();
    let c = node.connect().await;
    let slow = "SELECT count(*) FROM generate_series(1, 5000000000) AS g(x) WHERE x % 7 = 3";
    let cancel_soon = |token: tokio_postgres::CancelToken| {
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            token.cancel_query(NoTls).await.unwrap();
        })
    };
    let started = std::time::Instant::now();
    let canceller = cancel_soon(c.cancel_token());
    let err = c.simple_query(slow).await.unwrap_err();
    canceller.await.unwrap();
    assert_eq!(sqlstate(&err).as_deref(), Some("57014"), "{err:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert_eq!(text(&c, "SELECT 41 + 1").await, vec![Some("42".into())]);

    c.batch_execute("BEGIN").await.unwrap();
    let canceller = cancel_soon(c.cancel_token());
    let err = c.query(slow, &[]).await.unwrap_err();
    canceller.await.unwrap();
    assert_eq!(sqlstate(&err).as_deref(), Some("57014"), "{err:?}");
    let err = c.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("25P02"));
    c.batch_execute("ROLLBACK").await.unwrap();

    // A CancelRequest for another (idle) connection leaves this one's statement alone.
    let other = node.connect().await;
    let canceller = cancel_soon(other.cancel_token());
    assert_eq!(
        text(&c, "SELECT count(*) FROM generate_series(1, 100000000)").await,
        vec![Some("100000000".into())]
    );
    canceller.await.unwrap();
}

async fn flag(c: &tokio_postgres::Client, sql: &str) -> bool {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

/// Advisory locks exclude: a held lock makes `try` fail and `lock` wait until it is
/// released (or the waiter is cancelled); session locks nest; transaction locks end
/// with their transaction; a closed session's locks are freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advisory_locks_exclude() {
    let node = Node::start();
    let a = node.connect().await;
    let b = node.connect().await;
    a.batch_execute("SELECT pg_advisory_lock(42); SELECT pg_advisory_lock(42)")
        .await
        .unwrap();
    assert!(!flag(&b, "SELECT pg_try_advisory_lock(42)").await);
    assert!(flag(&b, "SELECT pg_try_advisory_lock(43)").await);
    // A waiter is released only when both of a's holds are gone.
    let waiter = {
        let url = node.url();
        tokio::spawn(async move {
            let (c, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
            tokio::spawn(conn);
            let started = std::time::Instant::now();
            c.batch_execute("SELECT pg_advisory_lock(42)")
                .await
                .unwrap();
            started.elapsed()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(flag(&a, "SELECT pg_advisory_unlock(42)").await);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "took a lock still held once");
    assert!(flag(&a, "SELECT pg_advisory_unlock(42)").await);
    let waited = waiter.await.unwrap();
    assert!(
        waited >= std::time::Duration::from_millis(500),
        "{waited:?}"
    );
    assert!(!flag(&a, "SELECT pg_advisory_unlock(42)").await);

    // Transaction-level: held until COMMIT.
    a.batch_execute("BEGIN; SELECT pg_advisory_xact_lock(7)")
        .await
        .unwrap();
    assert!(!flag(&b, "SELECT pg_try_advisory_xact_lock(7)").await);
    a.batch_execute("COMMIT").await.unwrap();
    assert!(flag(&b, "SELECT pg_try_advisory_lock(7)").await);

    // A waiting lock is cancellable.
    let token = a.cancel_token();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        token.cancel_query(NoTls).await.unwrap();
    });
    let err = a
        .batch_execute("SELECT pg_advisory_lock(7)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("57014"), "{err:?}");

    // b's session ends: its locks (7 and 43) are free again.
    drop(b);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !flag(&a, "SELECT pg_try_advisory_lock(7)").await {
        assert!(std::time::Instant::now() < deadline, "lock 7 never freed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(flag(&a, "SELECT pg_try_advisory_lock(43)").await);
}
