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

/// The workspace's own packages, as `cargo metadata --no-deps` lists them.
fn workspace_metadata() -> Vec<Value> {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--no-deps"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let metadata: Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    metadata["packages"].as_array().unwrap().clone()
}

/// The normal dependencies a package (an entry of [`workspace_metadata`])
/// names itself in its manifest.
fn direct_dependencies(package: &Value) -> BTreeSet<String> {
    package["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"].is_null())
        .map(|d| d["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Every package `package` compiles when it is built on its own (`cargo
/// tree -p`: features resolved for it alone, not unified with the rest of
/// the workspace as `cargo metadata` does).
fn built_alone(package: &str) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO"))
        .args(["tree", "--locked", "-p", package, "-e", "normal", "--prefix", "none"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.split(' ').next()).map(str::to_owned).collect()
}

/// Only `starling-proto` knows the wire encoding: the agent keeps the
/// fingerprint sets of users' reports through proto's functions, and the
/// node speaks gRPC through proto's generated services, neither with
/// prost itself.
#[test]
fn only_proto_encodes_the_wire() {
    let packages = workspace_metadata();
    assert!(packages.len() >= 10, "the workspace is read: {} packages", packages.len());
    for package in packages.iter().filter(|p| p["name"] != "starling-proto") {
        assert!(!direct_dependencies(package).contains("prost"), "{} uses prost directly", package["name"]);
    }
}

/// The agent is a client beside a mail server: it links neither the
/// console's web stack (the console links the agent, not the other way)
/// nor any HTTP server.
#[test]
fn the_agent_links_no_console_or_web_server() {
    let deps = built_alone("starling-agent");
    for forbidden in ["starling-console", "askama", "axum"] {
        assert!(!deps.contains(forbidden), "starling-agent depends on {forbidden}");
    }
}

/// The network node sees fingerprints and pseudonyms only: it links no
/// agent, console, mail-store client or the agent's SQLite state.
#[test]
fn the_network_links_no_agent_console_or_mail_store() {
    let deps = built_alone("starling-network");
    for forbidden in ["starling-agent", "starling-console", "rusqlite", "async-imap", "mail-parser"] {
        assert!(!deps.contains(forbidden), "starling-network depends on {forbidden}");
    }
}

/// The protocol is types and the wire: no storage and no mail parsing.
#[test]
fn proto_has_no_storage_or_mail_parsing() {
    let deps = built_alone("starling-proto");
    for forbidden in ["redb", "rusqlite", "redis", "mail-parser", "async-imap", "starling-agent", "starling-network"] {
        assert!(!deps.contains(forbidden), "starling-proto depends on {forbidden}");
    }
}

/// The protocol and the network node speak the fingerprint vocabulary
/// only: built on their own (as `cargo tree -p` resolves them) they compile
/// no MIME parser, charset detector or HTML scanner — `starling-fingerprint`'s
/// `engine` feature is off for them.
#[test]
fn proto_and_network_take_only_the_fingerprint_vocabulary() {
    for package in ["starling-proto", "starling-network"] {
        let deps = built_alone(package);
        assert!(deps.contains("starling-fingerprint"), "{package} uses the vocabulary");
        for engine in ["mail-parser", "chardetng", "htmlize", "linkify", "encoding_rs"] {
            assert!(!deps.contains(engine), "{package} compiles {engine}");
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

/// The modules of one crate and the crate's modules each one names
/// (`crate::name`, `use crate::{a, b::c}`), from its source files; test
/// modules and comments are left out. A module is a file or folder
/// directly under `src/` (a folder's files count for it).
fn module_graph(src: &std::path::Path) -> HashMap<String, BTreeSet<String>> {
    fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("readable source folder").flatten() {
            let path = entry.path();
            if path.is_dir() {
                files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let ident =
        |text: &str| -> String { text.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect() };
    let mut all = Vec::new();
    files(src, &mut all);
    let mut graph: HashMap<String, BTreeSet<String>> = HashMap::new();
    for path in all {
        let relative = path.strip_prefix(src).expect("below src");
        let first = relative.components().next().expect("a file").as_os_str().to_string_lossy();
        let module = first.trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable source");
        let code: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap_or_default()
            .lines()
            .map(|line| line.split("//").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        let names = graph.entry(module.clone()).or_default();
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a, b::{c, d}, e}`: the first name of each item.
                let mut depth = 0;
                let mut item_start = true;
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => item_start = true,
                        c if item_start && (c.is_ascii_alphabetic() || c == '_') => {
                            names.insert(ident(&group[i..]));
                            item_start = false;
                        }
                        _ => {}
                    }
                }
            } else {
                names.insert(ident(rest));
            }
        }
        names.remove(&module);
    }
    graph
}

/// Strongly connected groups of more than one module (import cycles).
fn cycles(graph: &HashMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Tarjan's algorithm over the crate's own modules.
    struct Walk<'g> {
        graph: &'g HashMap<String, BTreeSet<String>>,
        index: HashMap<&'g str, usize>,
        low: HashMap<&'g str, usize>,
        stack: Vec<&'g str>,
        found: Vec<Vec<String>>,
    }
    impl<'g> Walk<'g> {
        fn visit(&mut self, v: &'g str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            for w in self.graph[v].iter().filter(|w| self.graph.contains_key(w.as_str())) {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.stack.contains(&w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut group = Vec::new();
                while let Some(w) = self.stack.pop() {
                    group.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if group.len() > 1 {
                    group.sort();
                    self.found.push(group);
                }
            }
        }
    }
    let mut walk = Walk { graph, index: HashMap::new(), low: HashMap::new(), stack: Vec::new(), found: Vec::new() };
    let mut modules: Vec<&str> = graph.keys().map(String::as_str).collect();
    modules.sort();
    for module in modules {
        if !walk.index.contains_key(module) {
            walk.visit(module);
        }
    }
    walk.found
}

/// No crate's modules import each other in a circle: each crate's files
/// form layers (ARCHITECTURE.md, "Rules"), so a module can be read, tested
/// and moved with what it imports alone.
#[test]
fn no_crate_has_an_import_cycle_between_its_modules() {
    let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&crates).expect("the crates folder").flatten() {
        let src = entry.path().join("src");
        if src.is_dir() {
            for cycle in cycles(&module_graph(&src)) {
                found.push(format!("{}: {}", entry.file_name().to_string_lossy(), cycle.join(" ↔ ")));
            }
        }
    }
    assert!(found.is_empty(), "modules importing each other in a circle:\n{}", found.join("\n"));
}

/// The cycle finder finds a circle through three modules, and none in a
/// chain.
#[test]
fn the_cycle_finder_sees_circles_and_not_chains() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g: HashMap<String, BTreeSet<String>> = HashMap::new();
        for (a, b) in edges {
            g.entry((*a).to_owned()).or_default().insert((*b).to_owned());
            g.entry((*b).to_owned()).or_default();
        }
        g
    };
    assert_eq!(cycles(&graph(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])), vec![vec!["a", "b", "c"]]);
    assert!(cycles(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])).is_empty());
}
