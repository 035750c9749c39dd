//! psql 15's backslash commands against a real node print exactly what they print
//! against PostgreSQL 15 for the same schema. `tests/psql/expected.out` was recorded
//! from a real PostgreSQL 15 server with `tests/psql/regenerate.sh`; `\l`, whose
//! database list necessarily differs, is checked on its own.

use std::process::Command;

use tessera_tests::Node;

fn psql(node: &Node, args: &[&str]) -> String {
    let out = Command::new("psql")
        .args(["-X", "-h", "127.0.0.1", "-U", "root", "-d", "tessera"])
        .args(["-p", &node.port.to_string()])
        .args(args)
        .output()
        .expect("psql runs");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "psql {args:?}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn backslash_commands_print_what_postgresql_prints() {
    let dir = tessera_tests::package_dir().join("psql");
    let node = Node::start();
    let schema = dir.join("schema.sql");
    psql(
        &node,
        &[
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            schema.to_str().unwrap(),
        ],
    );
    let commands = std::fs::read_to_string(dir.join("commands.txt")).unwrap();
    let mut got = String::new();
    for cmd in commands.lines().filter(|l| !l.is_empty()) {
        got.push_str(&format!("== {cmd}\n"));
        got.push_str(&psql(&node, &["-c", cmd]));
    }
    let want = std::fs::read_to_string(dir.join("expected.out")).unwrap();
    if got != want {
        for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
            if g != w {
                panic!("line {}: tessera printed\n{g}\nPostgreSQL printed\n{w}\n--- all of it ---\n{got}", i + 1);
            }
        }
        panic!("outputs differ in length:\n{got}");
    }

    let list = psql(&node, &["-c", "\\l"]);
    assert!(list.contains("List of databases"), "{list}");
    assert!(
        list.lines()
            .any(|l| l.trim_start().starts_with("tessera ") && l.contains("UTF8")),
        "{list}"
    );
}
