//! The `beckon` command as a user runs it: rule files checked with every problem named, the
//! annotated defaults that parse back, and a clear refusal of a bad configuration.

use std::process::Command;

fn beckon(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_beckon"))
        .args(args)
        .env_remove("BECKON_LISTEN")
        .env_remove("BECKON_DATA")
        .env_remove("BECKON_SHARDS")
        .output()
        .expect("the beckon binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_accepts_the_example_rules_and_lists_them() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/demo-rules.toml"
    );
    let (ok, out, err) = beckon(&["rules", "validate", path]);
    assert!(ok, "{err}");
    assert!(out.contains("5 rules, all valid"), "{out}");
    assert!(out.contains("cart-exit-offer"), "{out}");
}

#[test]
fn validate_names_every_problem_of_a_bad_rule_file_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
[[rules]]
id = "typo"
name = "Typo"
when = { all = [
  { var = "cart.valu", op = "gt", value = 0 },
  { var = "page.url", op = "matches", value = "(" },
] }
message = { type = "text", text = "Hi {{ page.titel }}" }
"#,
    )
    .unwrap();
    let (ok, _, err) = beckon(&["rules", "validate", path.to_str().unwrap()]);
    assert!(!ok, "a bad file must fail");
    assert!(
        err.contains("when.all[0].var") && err.contains("did you mean \"cart.value\""),
        "{err}"
    );
    assert!(
        err.contains("when.all[1].value") && err.contains("regular expression"),
        "{err}"
    );
    assert!(
        err.contains("message.text") && err.contains("page.titel"),
        "{err}"
    );
}

#[test]
fn validate_refuses_a_missing_file_and_a_bad_time_zone_clearly() {
    let (ok, _, err) = beckon(&["rules", "validate", "/nonexistent/rules.toml"]);
    assert!(!ok);
    assert!(err.contains("cannot read /nonexistent/rules.toml"), "{err}");
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/demo-rules.toml"
    );
    let (ok, _, err) = beckon(&["rules", "validate", path, "--timezone", "Mars/Olympus"]);
    assert!(!ok);
    assert!(
        err.contains("timezone") && err.contains("Mars/Olympus"),
        "{err}"
    );
}

#[test]
fn the_printed_defaults_are_a_valid_configuration() {
    let (ok, out, _) = beckon(&["default-config"]);
    assert!(ok);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("beckon.toml");
    std::fs::write(&path, &out).unwrap();
    let settings = beckon::settings::Settings::load(Some(&path)).expect("the defaults load");
    assert_eq!(settings.listen, "127.0.0.1:8080");
}

#[test]
fn a_bad_configuration_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("beckon.toml");
    std::fs::write(
        &path,
        "[[sites]]\nid = \"shop\"\nsecret = \"s\"\norigins = [\"*\"]\n[sites.policy]\nholdout_percent = 80.0\n",
    )
    .unwrap();
    let (ok, _, err) = beckon(&["migrate", "--config", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("holdout_percent"), "{err}");
    std::fs::write(&path, "listen = 8080\n").unwrap();
    let (ok, _, err) = beckon(&["migrate", "--config", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("listen"), "{err}");
}

#[test]
fn rules_round_trip_through_import_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("beckon.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &config,
        format!(
            "data = {:?}\n[[sites]]\nid = \"shop\"\nsecret = \"s\"\norigins = [\"*\"]\n",
            data.to_str().unwrap()
        ),
    )
    .unwrap();
    // serve would register the site; migrate plus an import through the same store does too.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = beckon::open_store(&data).await.unwrap();
        store
            .put_site(&beckon::demo_site(vec!["*".into()], Default::default()))
            .await
            .unwrap();
    });
    let rules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/demo-rules.toml"
    );
    let cfg = config.to_str().unwrap();
    let (ok, out, err) = beckon(&["rules", "import", rules, "--site", "demo", "--config", cfg]);
    assert!(ok, "{err}");
    assert!(out.contains("imported 5 rules"), "{out}");
    let (ok, out, err) = beckon(&["rules", "export", "--site", "demo", "--config", cfg]);
    assert!(ok, "{err}");
    let exported =
        beckon_engine::RuleSet::from_toml(&out, beckon_engine::Tz::UTC).expect("export parses");
    let original = beckon_engine::RuleSet::from_toml(
        &std::fs::read_to_string(rules).unwrap(),
        beckon_engine::Tz::UTC,
    )
    .unwrap();
    assert_eq!(exported.to_file(), original.to_file());
    let (ok, _, err) = beckon(&[
        "rules", "import", rules, "--site", "nosuch", "--config", cfg,
    ]);
    assert!(!ok);
    assert!(err.contains("no site \"nosuch\""), "{err}");
}
