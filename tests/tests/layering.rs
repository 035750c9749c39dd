//! The architecture's dependency rules (DESIGN.md §1), read from `cargo metadata`:
//! crates depend only downwards (server -> query -> cluster -> storage), and each heavy
//! dependency is used only in its own layer.

use std::collections::HashMap;
use std::process::Command;

fn declared_dependencies() -> HashMap<String, Vec<String>> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(tessera_tests::package_dir().join(".."))
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata json");
    let mut deps = HashMap::new();
    for p in meta["packages"].as_array().expect("packages") {
        let name = p["name"].as_str().unwrap().to_string();
        let list = p["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].is_null()) // normal dependencies, not dev/build
            .map(|d| d["name"].as_str().unwrap().to_string())
            .collect();
        deps.insert(name, list);
    }
    deps
}

const LAYERS: [&str; 4] = [
    "tessera-storage",
    "tessera-cluster",
    "tessera-query",
    "tessera-server",
];

fn layer(name: &str) -> Option<usize> {
    LAYERS.iter().position(|l| *l == name)
}

fn violations(deps: &HashMap<String, Vec<String>>) -> Vec<String> {
    let homes = [
        ("rocksdb", "tessera-storage"),
        ("librocksdb-sys", "tessera-storage"),
        ("raft", "tessera-cluster"),
        ("protobuf", "tessera-cluster"),
        ("datafusion", "tessera-query"),
        ("sqlparser", "tessera-query"),
        ("pgwire", "tessera-server"),
    ];
    let mut bad = Vec::new();
    for (krate, list) in deps {
        for dep in list {
            if let (Some(me), Some(other)) = (layer(krate), layer(dep)) {
                if other > me {
                    bad.push(format!("{krate} depends on {dep}, which sits above it"));
                }
            }
            for (heavy, home) in homes {
                if (dep == heavy || dep.starts_with(&format!("{heavy}-")))
                    && krate != home
                    && layer(krate).is_some()
                {
                    bad.push(format!("{krate} uses {dep}, which belongs to {home}"));
                }
            }
        }
    }
    bad.sort();
    bad
}

#[test]
fn dependencies_point_down_and_heavy_crates_stay_home() {
    let deps = declared_dependencies();
    for l in LAYERS {
        assert!(deps.contains_key(l), "workspace has no {l}");
    }
    let bad = violations(&deps);
    assert!(bad.is_empty(), "layering violations:\n{}", bad.join("\n"));
}

/// The check itself notices violations.
#[test]
fn the_check_catches_violations() {
    let mut deps = HashMap::new();
    deps.insert(
        "tessera-storage".to_string(),
        vec!["tessera-query".to_string()],
    );
    deps.insert(
        "tessera-server".to_string(),
        vec!["datafusion".to_string(), "tessera-query".to_string()],
    );
    deps.insert("tessera-query".to_string(), vec!["datafusion".to_string()]);
    let bad = violations(&deps);
    assert_eq!(
        bad,
        vec![
            "tessera-server uses datafusion, which belongs to tessera-query".to_string(),
            "tessera-storage depends on tessera-query, which sits above it".to_string(),
        ]
    );
}
