//! SQL behaviour as sqllogictest files (`tests/slt/*.slt`), each run over the wire
//! against a fresh `tessera` process. Errors are matched by SQLSTATE
//! (`statement error (42P01)`) or by a regex on `SQLSTATE: message`.

use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use tessera_tests::Node;
use tokio_postgres::{Client, SimpleQueryMessage};

#[derive(Debug)]
struct WireError {
    code: Option<String>,
    message: String,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}",
            self.code.as_deref().unwrap_or("?????"),
            self.message
        )
    }
}

impl std::error::Error for WireError {}

struct Db {
    client: Client,
}

#[async_trait::async_trait]
impl AsyncDB for Db {
    type Error = WireError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, WireError> {
        let msgs = self.client.simple_query(sql).await.map_err(|e| WireError {
            code: e.code().map(|c| c.code().to_string()),
            message: e
                .as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or_else(|| e.to_string()),
        })?;
        let mut rows = Vec::new();
        let mut ncols = 0;
        let mut is_query = false;
        let mut count = 0;
        for m in msgs {
            match m {
                SimpleQueryMessage::RowDescription(d) => {
                    is_query = true;
                    ncols = d.len();
                }
                SimpleQueryMessage::Row(r) => {
                    is_query = true;
                    ncols = r.len();
                    rows.push(
                        (0..r.len())
                            .map(|i| match r.get(i) {
                                None => "NULL".to_string(),
                                Some("") => "(empty)".to_string(),
                                Some(v) => v.to_string(),
                            })
                            .collect(),
                    );
                }
                SimpleQueryMessage::CommandComplete(n) => count = n,
                _ => {}
            }
        }
        if is_query {
            Ok(DBOutput::Rows {
                types: vec![DefaultColumnType::Any; ncols],
                rows,
            })
        } else {
            Ok(DBOutput::StatementComplete(count))
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "tessera"
    }

    fn error_sql_state(err: &WireError) -> Option<String> {
        err.code.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_logic_tests() {
    let dir = tessera_tests::package_dir().join("slt");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    let mut failures = Vec::new();
    for file in files {
        let node = Node::start();
        let url = node.url();
        let mut runner = sqllogictest::Runner::new(move || {
            let url = url.clone();
            async move {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .map_err(|e| WireError {
                        code: None,
                        message: e.to_string(),
                    })?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(Db { client })
            }
        });
        if let Err(e) = runner.run_file_async(&file).await {
            failures.push(format!(
                "{}:\n{e}\n--- node log ---\n{}",
                file.display(),
                tail(&node.log())
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} file(s) failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
