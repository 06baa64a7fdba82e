//! The `beckon` command as a user runs it: rule files checked with every problem named, the
//! annotated defaults that parse back, and a clear refusal of a bad configuration.

use std::process::Command;

fn beckon(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_beckon"))
        .args(args)
        .env_remove("BECKON_LISTEN")
        .env_remove("BECKON_DATA")
        .env_remove("BECKON_DATABASE")
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
    // The documented [limits] are the server's own defaults, line by line.
    assert!(out.contains("\n[limits]\n"), "{out}");
    assert_eq!(
        settings.limits.to_limits().expect("valid limits"),
        beckon_server::limits::Limits::default()
    );
}

/// Loads `[limits]` with `lines`: the limits, or the error.
fn limits(lines: &str) -> Result<beckon_server::limits::Limits, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("beckon.toml");
    std::fs::write(&path, format!("[limits]\n{lines}\n")).unwrap();
    beckon::settings::Settings::load(Some(&path)).map(|s| s.limits.to_limits().unwrap())
}

#[test]
fn the_limits_table_takes_durations_as_text_and_keeps_defaults_for_the_rest() {
    let l = limits(
        "drain_timeout = \"3s\"\nheader_read_timeout = 5\nretention = \"30days\"\n\
         per_ip_per_second = 0\ntrusted_proxy_header = \"X-Forwarded-For\"",
    )
    .expect("valid");
    assert_eq!(l.drain_timeout, std::time::Duration::from_secs(3));
    assert_eq!(l.header_read_timeout, std::time::Duration::from_secs(5));
    assert_eq!(l.retention, std::time::Duration::from_secs(30 * 24 * 3600));
    assert_eq!(l.per_ip_per_second, 0, "0 turns the limit off");
    assert_eq!(l.trusted_proxy_header.as_deref(), Some("x-forwarded-for"));
    assert_eq!(
        l.max_connections,
        beckon_server::limits::Limits::default().max_connections
    );
}

#[test]
fn a_bad_limit_is_refused_naming_its_field() {
    let cases = [
        ("max_conections = 5", "max_conections"),
        (
            "max_connections = 0",
            "limits.max_connections must be at least 1",
        ),
        ("per_ip_burst = 0", "limits.per_ip_burst must be at least 1"),
        ("drain_timeout = \"soon\"", "drain_timeout"),
        (
            "request_timeout = \"0s\"",
            "limits.request_timeout must be longer than 0s",
        ),
        ("ws_ping = \"2m\"", "limits.ws_idle_timeout"),
        (
            "trusted_proxy_header = \"x forwarded\"",
            "limits.trusted_proxy_header",
        ),
    ];
    for (line, words) in cases {
        let err = limits(line).expect_err(line);
        assert!(err.contains(words), "{line}: {err}");
    }
    // Turning a rate off needs no burst.
    assert!(limits("per_site_per_second = 0\nper_site_burst = 0").is_ok());
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

#[test]
fn migrate_rules_and_copy_work_on_postgresql_named_by_the_database_url() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let scratch = rt.block_on(beckon_store_postgres::testing::Scratch::new());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("beckon.toml");
    std::fs::write(&config, format!("database = {:?}\n", scratch.url())).unwrap();
    let cfg = config.to_str().unwrap();

    let (ok, out, err) = beckon(&["migrate", "--config", cfg]);
    assert!(ok, "{err}");
    assert!(
        out.contains("PostgreSQL at") && out.contains("is up to date"),
        "{out}"
    );
    let store = rt.block_on(scratch.store());
    let tables: i64 = rt.block_on(
        sqlx::query_scalar("SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()")
            .fetch_one(store.pool()),
    )
    .unwrap();
    assert!(tables >= 25, "the schema is made: {tables} tables");

    // An embedded installation with the demo's rules, copied in.
    let data = dir.path().join("data");
    rt.block_on(async {
        let sqlite = beckon::open_store(&data).await.unwrap();
        sqlite
            .put_site(&beckon::demo_site(vec!["*".into()], Default::default()))
            .await
            .unwrap();
    });
    let rules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/demo-rules.toml"
    );
    let data_arg = data.to_str().unwrap();
    let (ok, out, err) = beckon(&["rules", "import", rules, "--site", "demo", "--config", &{
        let c = dir.path().join("sqlite.toml");
        std::fs::write(&c, format!("data = {data_arg:?}\n")).unwrap();
        c.to_str().unwrap().to_owned()
    }]);
    assert!(ok, "{err}");
    assert!(out.contains("imported 5 rules"), "{out}");
    let url = scratch.url();
    let (ok, out, err) = beckon(&["copy", "--from", data_arg, "--to", &url]);
    assert!(ok, "{err}");
    assert!(out.contains("copied") && out.contains("rows from"), "{out}");

    // The PostgreSQL installation now serves the demo's rules to `rules export`.
    let (ok, out, err) = beckon(&["rules", "export", "--site", "demo", "--config", cfg]);
    assert!(ok, "{err}");
    let exported = beckon_engine::RuleSet::from_toml(&out, beckon_engine::Tz::UTC).unwrap();
    assert_eq!(exported.len(), 5);

    // A copy to no URL at all is refused with what is wanted.
    let (ok, _, err) = beckon(&["copy", "--from", data_arg, "--to", " "]);
    assert!(!ok);
    assert!(err.contains("--to"), "{err}");

    // A second copy is refused; a URL of another database kind is refused at load.
    let (ok, _, err) = beckon(&["copy", "--from", data_arg, "--to", &url]);
    assert!(!ok);
    assert!(err.contains("already holds data"), "{err}");
    std::fs::write(&config, "database = \"mysql://root@db/beckon\"\n").unwrap();
    let (ok, _, err) = beckon(&["migrate", "--config", cfg]);
    assert!(!ok);
    assert!(err.contains("PostgreSQL"), "{err}");
    rt.block_on(async {
        store.pool().close().await;
        scratch.drop().await;
    });
}

/// Runs `beckon` with `stdin` as its standard input.
fn beckon_with_input(args: &[&str], stdin: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_beckon"))
        .args(args)
        .env_remove("BECKON_LISTEN")
        .env_remove("BECKON_DATA")
        .env_remove("BECKON_DATABASE")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the beckon binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn user_add_makes_the_first_account_and_refuses_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("beckon.toml");
    std::fs::write(&config, format!("data = {:?}\n", dir.path().join("data"))).unwrap();
    let config = config.to_str().unwrap();

    // A strong password is made and shown once.
    let (ok, out, err) = beckon(&[
        "user",
        "add",
        "--email",
        "Ada@Example.com",
        "--config",
        config,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("created ada@example.com (admin)"), "{out}");
    let password = out
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .expect("the password is printed");
    assert_eq!(password.len(), 20);

    // The same address again, a role that does not exist, an unknown site, a short password.
    let (ok, _, err) = beckon(&[
        "user",
        "add",
        "--email",
        "ada@example.com",
        "--config",
        config,
    ]);
    assert!(!ok && err.contains("already has an account"), "{err}");
    let (ok, _, err) = beckon(&[
        "user",
        "add",
        "--email",
        "b@example.com",
        "--role",
        "owner",
        "--config",
        config,
    ]);
    assert!(!ok && err.contains("not admin or agent"), "{err}");
    let (ok, _, err) = beckon(&[
        "user",
        "add",
        "--email",
        "b@example.com",
        "--site",
        "nowhere",
        "--config",
        config,
    ]);
    assert!(!ok && err.contains("no site \"nowhere\""), "{err}");
    let (ok, _, err) = beckon_with_input(
        &[
            "user",
            "add",
            "--email",
            "b@example.com",
            "--password-stdin",
            "--config",
            config,
        ],
        "short\n",
    );
    assert!(!ok && err.contains("at least 10"), "{err}");
    let (ok, _, err) = beckon(&[
        "user",
        "add",
        "--email",
        "not-an-address",
        "--config",
        config,
    ]);
    assert!(!ok && err.contains("not an e-mail address"), "{err}");

    // A password from standard input is taken as typed, and not printed.
    let (ok, out, err) = beckon_with_input(
        &[
            "user",
            "add",
            "--email",
            "sam@example.com",
            "--role",
            "agent",
            "--password-stdin",
            "--config",
            config,
        ],
        "a long enough passphrase\n",
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("created sam@example.com (agent)") && !out.contains("passphrase"),
        "{out}"
    );
}

#[test]
fn backtest_tells_how_often_a_draft_would_have_fired_and_refuses_what_cannot_run() {
    use beckon_store::{
        Applied, BatchContext, LoggedBatch, LoggedEvent, Source, Verdict, VisitBegin, WriteBatch,
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = beckon::open_store(&data).await.unwrap();
        let policy = beckon_engine::Policy {
            arrival_grace: std::time::Duration::ZERO,
            holdout_percent: 0.0,
            ..Default::default()
        };
        store
            .put_site(&beckon::demo_site(vec!["*".into()], policy))
            .await
            .unwrap();
        store
            .replace_rules(&beckon_engine::SiteId::parse("demo").unwrap(), &[])
            .await
            .unwrap();
        // Three visitors moved the pointer on the pricing page an hour ago; one of them was a
        // crawler.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let mut write = WriteBatch::default();
        for (i, bot) in [(1, false), (2, false), (3, true)] {
            let (touch, key) = (format!("s_cli{i:0>17}:1"), format!("s_cli{i:0>17}:2"));
            write.batches.push(LoggedBatch {
                site: beckon_engine::SiteId::parse("demo").unwrap(),
                visitor: beckon_engine::VisitorId::parse(&format!("v_cli{i:0>17}")).unwrap(),
                session: Some(beckon_engine::SessionId::parse(&format!("s_cli{i:0>17}")).unwrap()),
                at: beckon_engine::Timestamp::from_millis(now - 3_600_000 + i),
                source: Source::Browser,
                context: BatchContext::default(),
                verdict: if bot {
                    Verdict::Bot { reason: "user agent".into() }
                } else {
                    Verdict::Human
                },
                rules_version: 2,
                begins: Some(VisitBegin {
                    start: Default::default(),
                    fresh_profile: true,
                }),
                events: vec![
                    LoggedEvent {
                        key: touch.clone(),
                        id: beckon_engine::EventId::parse(&touch).unwrap(),
                        kind: "activity".into(),
                        body: format!(r#"{{"id":"{touch}","type":"activity"}}"#),
                        applied: if bot { Applied::Logged } else { Applied::Decided },
                    },
                    LoggedEvent {
                        key: key.clone(),
                        id: beckon_engine::EventId::parse(&key).unwrap(),
                        kind: "page".into(),
                        body: format!(
                            r#"{{"id":"{key}","type":"page","url":"https://shop.example/pricing","path":"/pricing","page_type":"pricing"}}"#
                        ),
                        applied: if bot { Applied::Logged } else { Applied::Decided },
                    },
                ],
            });
        }
        store.commit(&write).await.unwrap();
    });
    let draft = dir.path().join("draft.toml");
    std::fs::write(
        &draft,
        r#"
[[rules]]
id = "pricing-hello"
name = "Hello on pricing"
status = "draft"
when = { all = [ { var = "page.type", op = "equals", value = "pricing" } ] }
message = { type = "text", text = "Questions about the plans?" }
"#,
    )
    .unwrap();
    let data_arg = data.to_str().unwrap();
    let (ok, out, err) = beckon(&[
        "backtest",
        draft.to_str().unwrap(),
        "--data",
        data_arg,
        "--days",
        "1",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("pricing-hello would have fired 2 times for 2 visitors"),
        "the crawler is left out: {out}"
    );
    assert!(out.contains("/pricing"), "{out}");

    let (ok, _, err) = beckon(&[
        "backtest",
        draft.to_str().unwrap(),
        "--data",
        data_arg,
        "--days",
        "0",
    ]);
    assert!(!ok);
    assert!(err.contains("--days 0"), "{err}");
    let (ok, _, err) = beckon(&[
        "backtest",
        draft.to_str().unwrap(),
        "--data",
        data_arg,
        "--rule",
        "nosuch",
    ]);
    assert!(!ok);
    assert!(err.contains("no rule \"nosuch\""), "{err}");
    let (ok, _, err) = beckon(&[
        "backtest",
        draft.to_str().unwrap(),
        "--data",
        "/nonexistent/dir",
    ]);
    assert!(!ok);
    assert!(err.contains("no database"), "{err}");
}

#[test]
fn the_three_node_example_configurations_load_as_one_cluster_on_postgresql() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/cluster");
    let mut names = std::collections::HashSet::new();
    let mut addresses = std::collections::HashSet::new();
    for n in 1..=3 {
        let path = std::path::PathBuf::from(format!("{dir}/node-{n}.toml"));
        let s = beckon::settings::Settings::load(Some(&path))
            .unwrap_or_else(|e| panic!("node-{n}.toml: {e}"));
        assert!(matches!(
            s.location().unwrap(),
            beckon::Location::Postgres(_)
        ));
        let cluster = s.cluster.expect("a [cluster] table");
        assert_eq!(cluster.redis_url(), Ok("redis://redis:6379"));
        names.insert(cluster.name);
        addresses.insert(cluster.address);
        assert!(cluster.heartbeat < cluster.lease);
    }
    assert_eq!(
        (names.len(), addresses.len()),
        (3, 3),
        "three distinct nodes"
    );
    let haproxy = std::fs::read_to_string(format!("{dir}/haproxy.cfg")).unwrap();
    for n in 1..=3 {
        assert!(haproxy.contains(&format!("server beckon-{n} beckon-{n}:8080 check")));
    }
    assert!(haproxy.contains("option httpchk GET /readyz"));
}

#[test]
fn a_cluster_without_postgresql_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("beckon.toml");
    std::fs::write(
        &path,
        "[cluster]\nname = \"node-1\"\naddress = \"10.0.0.1:8080\"\n",
    )
    .unwrap();
    let (ok, _, err) = beckon(&["migrate", "--config", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("[cluster]") && err.contains("PostgreSQL"),
        "{err}"
    );
    std::fs::write(
        &path,
        "database = \"postgres://db/beckon\"\n[cluster]\nname = \"node-1\"\naddress = \"a:1\"\nlease = \"1s\"\nheartbeat = \"2s\"\n",
    )
    .unwrap();
    let (ok, _, err) = beckon(&["migrate", "--config", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("heartbeat"), "{err}");
    // Several nodes share one Redis too: without its URL, or with another kind of URL, the
    // node is refused with what is wanted.
    let base =
        "database = \"postgres://db/beckon\"\n[cluster]\nname = \"node-1\"\naddress = \"a:1\"\n";
    std::fs::write(&path, base).unwrap();
    let (ok, _, err) = beckon(&["migrate", "--config", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("[cluster]") && err.contains("redis://"),
        "{err}"
    );
    for url in ["http://secret@cache:6379", "rediss://:secret@cache:6379"] {
        std::fs::write(&path, format!("{base}redis = {url:?}\n")).unwrap();
        let (ok, _, err) = beckon(&["migrate", "--config", path.to_str().unwrap()]);
        assert!(!ok);
        assert!(err.contains("redis://") && !err.contains("secret"), "{err}");
    }
}
