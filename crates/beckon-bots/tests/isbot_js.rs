//! Every pattern of the vendored isbot list, as this crate runs it (the six with look-around
//! rewritten, the rest translated where JavaScript's syntax differs), matches exactly what the
//! original matches in JavaScript itself (node, `new RegExp(pattern, "i")`, as isbot tests
//! them): on every crawler of the crawler-user-agents list, every user agent of uap-core's
//! browser fixtures, and strings made around each rewrite's exceptions.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use beckon_bots::patterns::Patterns;
use serde_json::{Value, json};
use support::lists;

mod support;

/// Strings around each rewrite's exceptions, before and after a person's Chrome.
fn edges() -> Vec<String> {
    const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
    let cores = [
        "news", "gnews", "google", "bot", "bots", "bot_", "scan", "http", "java",
    ];
    let before = [
        "",
        " ",
        "g",
        " channel/",
        "google/",
        " cu",
        "cam",
        "lib",
        "x",
        "(",
    ];
    let after = [
        "", ";", "sapphire", "wv", "app", "/google", " pixel", "_", "s", "/1.0", " ",
    ];
    let mut out = Vec::new();
    // Beyond ASCII, where JavaScript counts UTF-16 code units and its `\s` takes Unicode's
    // spaces: around `^[^ ]{50,}$` and the patterns with `\s`.
    for c in [
        "\u{a0}", "\u{3000}", "\u{feff}", "\u{2028}", "\u{85}", "é", "😀",
    ] {
        out.push(format!("{}{c}", "a".repeat(48)));
        out.push(format!("{}{c}", "a".repeat(49)));
        out.push(c.repeat(30));
        out.push(format!("foo;{c}bar;"));
        out.push(format!("mozilla/5.0{c}foo"));
        out.push(format!("mozilla/5.0 (compatible;{c}foo-1 2.0)"));
        out.push(format!("foo/1.0{c}(bar)"));
        out.push(format!("{c}news {c}google {c}bot {c}scan"));
    }
    for core in cores {
        for b in before {
            for a in after {
                out.push(format!("{b}{core}{a}"));
                out.push(format!("{CHROME} {b}{core}{a}"));
                out.push(format!("{b}{core}{a} {CHROME}"));
            }
        }
    }
    out
}

/// Runs the JavaScript peer on `input`.
fn node(input: &Value) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/isbot_peer.js");
    let mut child = Command::new("node")
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start node (./scripts/test.sh installs it): {e}"));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.to_string().as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the isbot peer failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_pattern_matches_what_javascript_matches() {
    let lists = lists();
    let mut agents: Vec<String> = edges();
    agents.extend(
        lists["crawlers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned()),
    );
    agents.extend(
        lists["browsers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["ua"].as_str().unwrap().to_owned()),
    );
    let patterns = Patterns::get();
    let sources: Vec<&str> = patterns.each().iter().map(|p| p.source()).collect();
    let theirs = node(&json!({"patterns": sources, "agents": agents}));
    let mut differences = Vec::new();
    let mut matches = 0;
    for (agent, js) in agents.iter().zip(theirs.as_array().unwrap()) {
        let js: Vec<usize> = js
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap() as usize)
            .collect();
        let lowered = beckon_bots::patterns::js_text(agent);
        let ours: Vec<usize> = patterns
            .each()
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is_match(&lowered))
            .map(|(i, _)| i)
            .collect();
        matches += ours.len();
        if ours != js {
            differences.push((agent.clone(), ours, js));
        }
    }
    println!(
        "{} patterns on {} user agents: {matches} matches, {} differences from JavaScript",
        sources.len(),
        agents.len(),
        differences.len()
    );
    assert!(matches > 2_000, "the corpus exercises the list: {matches}");
    assert!(
        differences.is_empty(),
        "{:#?}",
        &differences[..differences.len().min(10)]
    );
}
