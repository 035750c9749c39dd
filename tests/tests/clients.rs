//! Real drivers against a real node, each running its own script of checks:
//! psycopg 3, psycopg2 and SQLAlchemy (Python, from `.venv`) and node-postgres (from
//! `tests/clients/node/node_modules`) and pgjdbc (Debian's package, run by Java 17).
//! `scripts/test.sh` installs them.

use std::path::{Path, PathBuf};
use std::process::Command;

use tessera_tests::Node;

fn checkout() -> PathBuf {
    tessera_tests::package_dir()
        .parent()
        .expect("checkout root")
        .to_path_buf()
}

/// Run `program script PORT` against a fresh node; the script asserts and prints `ok`.
fn run_client(program: &Path, script: &Path) {
    assert!(
        program.exists(),
        "{} is missing: run `bash scripts/test.sh` once to install the client drivers",
        program.display()
    );
    let node = Node::start();
    let out = Command::new(program)
        .arg(script)
        .arg(node.port.to_string())
        .current_dir(script.parent().expect("script folder"))
        .output()
        .expect("client runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "{} failed:\n{stdout}\n{}\n--- node log ---\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr),
        node.log()
    );
}

fn python_client(name: &str) {
    let root = checkout();
    run_client(
        &root.join(".venv/bin/python"),
        &root.join("tests/clients/python").join(name),
    );
}

#[test]
fn psycopg3() {
    python_client("psycopg3_client.py");
}

#[test]
fn psycopg2() {
    python_client("psycopg2_client.py");
}

#[test]
fn node_postgres() {
    let root = checkout();
    let node = std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("node"))
                .find(|p| p.exists())
        })
        .expect("node is on the PATH");
    assert!(
        root.join("tests/clients/node/node_modules/pg").exists(),
        "node-postgres is missing: run `bash scripts/test.sh` once to install it"
    );
    run_client(&node, &root.join("tests/clients/node/pg_client.js"));
}

#[test]
fn sqlalchemy() {
    python_client("sqlalchemy_client.py");
}

#[test]
fn pgjdbc() {
    let jar = Path::new("/usr/share/java/postgresql.jar");
    assert!(
        jar.exists(),
        "pgjdbc is missing: run `bash scripts/test.sh` once to install libpostgresql-jdbc-java"
    );
    let node = Node::start();
    let script = checkout().join("tests/clients/java/JdbcClient.java");
    let out = Command::new("java")
        .arg("-cp")
        .arg(jar)
        .arg(&script)
        .arg(node.port.to_string())
        .output()
        .expect("java runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "pgjdbc failed:\n{stdout}\n{}\n--- node log ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        node.log()
    );
}
