//! The `starling` binary as a user runs it.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn starling() -> Command {
    Command::new(env!("CARGO_BIN_EXE_starling"))
}

fn testdata(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fingerprint/testdata").join(path)
}

#[test]
fn fingerprint_prints_every_kind_or_why_not() {
    let out = starling().arg("fingerprint").arg(testdata("corpus/spam-1-00002.eml")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    for kind in ["text", "fuzzy", "url", "domain", "attachment"] {
        assert!(text.lines().any(|l| l.trim_start().starts_with(kind)), "no {kind} line in:\n{text}");
    }
    assert!(text.contains("the message has no attachments"), "{text}");
}

#[test]
fn fingerprint_json_is_one_object_per_message() {
    let out = starling().args(["fingerprint", "--json"]).arg(testdata("malformed")).output().unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let files = std::fs::read_dir(testdata("malformed"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "eml"));
    let emls = files.count();
    // Every regular file under the directory is a message (the generator
    // script and golden files too), so there are at least as many lines.
    assert!(lines.len() >= emls, "{} lines for {emls} messages", lines.len());
    let short = lines.iter().find(|l| l["file"].as_str().unwrap().ends_with("headers-only.eml")).unwrap();
    assert_eq!(short["text"], serde_json::Value::Null);
    assert!(short["skipped_text"].as_array().unwrap().iter().any(|s| s.as_str().unwrap().starts_with("text: ")));
}

#[test]
fn unreadable_files_fail_with_a_clear_message_but_others_are_processed() {
    let out = starling()
        .arg("fingerprint")
        .arg("/nonexistent/mail.eml")
        .arg(testdata("corpus/spam-1-00001.eml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/mail.eml"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("spam-1-00001.eml"));
}

#[test]
fn a_bad_key_file_is_an_error() {
    let dir = std::env::temp_dir().join(format!("starling-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("bad.key");
    std::fs::write(&key, "not hex").unwrap();
    let out = starling()
        .args(["fingerprint", "--key-file"])
        .arg(&key)
        .arg(testdata("corpus/spam-1-00001.eml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a valid key"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A whole protocol session: one reply line per command, errors keep going.
#[test]
fn eval_adapter_speaks_the_line_protocol() {
    let mut child = starling().arg("eval-adapter").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut ask = |line: String| {
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        let mut reply = String::new();
        stdout.read_line(&mut reply).unwrap();
        reply.trim_end().to_owned()
    };
    let spam = testdata("corpus/spam-1-00001.eml");
    let ham = testdata("corpus/easy-ham-1-00001.eml");
    assert_eq!(ask("ping".into()), "ok");
    assert_eq!(ask(format!("check {}", spam.display())), "score 0");
    assert_eq!(ask(format!("report spam {} org1:u1", spam.display())), "ok");
    let score: f32 = ask(format!("check {}", spam.display())).strip_prefix("score ").unwrap().parse().unwrap();
    assert!(score > 0.0);
    assert_eq!(ask(format!("check {}", ham.display())), "score 0");
    assert!(ask("check /nonexistent.eml".into()).starts_with("error cannot read /nonexistent.eml"));
    assert!(ask("bogus".into()).starts_with("error "));
    assert_eq!(ask("quit".into()), "ok");
    assert!(child.wait().unwrap().success());
}
