//! Architecture invariants from ARCHITECTURE.md, checked against the real
//! dependency graph (`cargo metadata`).

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

use serde_json::Value;

/// Every package `package` depends on, transitively (normal dependencies).
fn dependencies_of(package: &str) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let metadata: Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let names: HashMap<&str, &str> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: HashMap<&str, Vec<&str>> = metadata["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let normal = n["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["dep_kinds"].as_array().unwrap().iter().any(|k| k["kind"].is_null()))
                .map(|d| d["pkg"].as_str().unwrap())
                .collect();
            (n["id"].as_str().unwrap(), normal)
        })
        .collect();
    let root = names.iter().find(|(_, name)| **name == package).map(|(id, _)| *id).expect("package exists");
    let mut seen = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        for &dep in &nodes[id] {
            if seen.insert(names[dep].to_owned()) {
                stack.push(dep);
            }
        }
    }
    seen
}

/// The fingerprint engine is pure: no async runtime, no network, no storage.
#[test]
fn fingerprint_has_no_runtime_network_or_storage() {
    let deps = dependencies_of("starling-fingerprint");
    for forbidden in
        ["tokio", "mio", "hyper", "tonic", "reqwest", "redb", "rusqlite", "redis", "axum", "starling-proto"]
    {
        assert!(!deps.contains(forbidden), "starling-fingerprint depends on {forbidden}");
    }
}

/// The model learns from hashed feature ids alone: no runtime, no store,
/// no protocol, not even the fingerprint engine or a MIME parser.
#[test]
fn the_model_is_pure_and_never_sees_the_network() {
    let deps = dependencies_of("starling-model");
    for forbidden in [
        "tokio",
        "mio",
        "hyper",
        "tonic",
        "redb",
        "rusqlite",
        "axum",
        "starling-proto",
        "starling-fingerprint",
        "mail-parser",
    ] {
        assert!(!deps.contains(forbidden), "starling-model depends on {forbidden}");
    }
}

/// The agent and its console run beside a mail server; the network node is
/// another service. Neither links the node's engine, store or gRPC server:
/// the console shares only its listener (`starling-listener`).
#[test]
fn the_agent_and_the_console_do_not_link_the_network_node() {
    for package in ["starling-agent", "starling-console"] {
        let deps = dependencies_of(package);
        for forbidden in ["starling-network", "redb", "redis"] {
            assert!(!deps.contains(forbidden), "{package} depends on {forbidden}");
        }
    }
}

/// The normal dependencies `package` names itself in its manifest.
fn direct_dependencies(package: &str) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--no-deps"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    let metadata: Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let found = metadata["packages"].as_array().unwrap().iter().find(|p| p["name"] == package).expect("package");
    found["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"].is_null())
        .map(|d| d["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Only `starling-proto` knows the wire encoding: the agent keeps the
/// fingerprint sets of users' reports through proto's functions, not with
/// prost itself.
#[test]
fn only_proto_encodes_the_wire() {
    for package in ["starling-agent", "starling-console", "starling-fingerprint", "starling-model"] {
        assert!(!direct_dependencies(package).contains("prost"), "{package} uses prost directly");
    }
}

/// The protocol and the network node speak the fingerprint vocabulary
/// only: built on their own (as `cargo tree -p` resolves them) they compile
/// no MIME parser, charset detector or HTML scanner — `starling-fingerprint`'s
/// `engine` feature is off for them.
#[test]
fn proto_and_network_take_only_the_fingerprint_vocabulary() {
    for package in ["starling-proto", "starling-network"] {
        let out = Command::new(env!("CARGO"))
            .args(["tree", "--locked", "-p", package, "-e", "normal", "--prefix", "none"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("cargo tree runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let tree = String::from_utf8_lossy(&out.stdout);
        assert!(tree.contains("starling-fingerprint"), "{package} uses the vocabulary");
        for engine in ["mail-parser", "chardetng", "htmlize", "linkify", "encoding_rs"] {
            assert!(!tree.lines().any(|l| l.starts_with(&format!("{engine} "))), "{package} compiles {engine}");
        }
    }
}

/// One TLS stack (rustls with ring): no OpenSSL and no aws-lc C build.
#[test]
fn no_openssl_or_aws_lc_anywhere() {
    let deps = dependencies_of("starling");
    for forbidden in ["openssl-sys", "aws-lc-sys", "aws-lc-rs", "native-tls"] {
        assert!(!deps.contains(forbidden), "the starling binary depends on {forbidden}");
    }
}
