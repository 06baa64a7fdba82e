//! Schemathesis, the property-based API tester, against the admin API's own OpenAPI document
//! on a running demo with a valid token: every operation, generated valid and invalid
//! requests, and every check it has (no 5xx, every answer as the document says, invalid input
//! refused, valid input accepted). The test command installs schemathesis; this test finds it
//! through `BECKON_SCHEMATHESIS` or the `PATH`.

mod browser_support;

use std::process::Command;

use serde_json::{Value, json};

#[tokio::test]
async fn schemathesis_finds_no_failure_in_the_admin_api() {
    let program = std::env::var("BECKON_SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".into());
    assert!(
        Command::new(&program)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "schemathesis is not installed ({program}); ./scripts/test.sh installs it"
    );
    let demo = browser_support::Served::demo().await;
    let (client, csrf) = demo.signed_in().await;
    let made: Value = client
        .post(format!("{}/api/v1/tokens", demo.base))
        .header("origin", &demo.base)
        .header("x-csrf-token", csrf)
        .json(&json!({"name": "schemathesis", "sites": ["demo"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = made["secret"].as_str().unwrap().to_owned();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/schemathesis.toml");
    let url = format!("{}/api/openapi.json", demo.base);
    let out = tokio::task::spawn_blocking(move || {
        // Its cache of past failures goes in a folder of its own, not in the source tree.
        let scratch = tempfile::tempdir().unwrap();
        Command::new(program)
            .current_dir(scratch.path())
            .args(["--config-file", config, "run", &url, "--checks", "all"])
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .args(["--max-examples", "30", "--seed", "1"])
            // Revoking its own token would only end the run early.
            .args(["--exclude-name", "DELETE /api/v1/tokens/{token}"])
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let cases = report
        .lines()
        .find(|l| l.contains(" generated, "))
        .unwrap_or("no summary line")
        .trim()
        .to_owned();
    println!("schemathesis: {cases}");
    assert!(
        out.status.success(),
        "schemathesis failed:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated: u64 = cases
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(generated >= 500, "schemathesis ran only {cases}");
    demo.stop().await;
}
