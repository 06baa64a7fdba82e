//! Regression test of a review finding, fixed since. Before the fix, `Sites::reload` takes the record (and its version) from `sites()` and
//! the rules from a second read, `rules()`, which returns the rules of whatever version is
//! current *then*. An import landing between the two reads gives an engine running the new
//! rules under the old version number; every batch decided meanwhile is logged with the
//! wrong `rules_version`, and the replay of the log diverges from the live decisions.

use std::sync::Arc;
use std::time::Duration;

use crate::found_support::*;
use crate::support::*;
use beckon_engine::{Engine, Policy, RuleSet, SiteId};
use beckon_server::{Options, replay};

const SHOP: &str = "shop";

fn greeting(id: &str) -> String {
    rule(
        id,
        r#"{ all = [ { var = "page.type", op = "equals", value = "home" } ] }"#,
        "",
    )
}

#[tokio::test]
async fn an_import_between_two_reads_never_runs_new_rules_under_an_old_version() {
    let base = memory_store().await;
    let policy = Policy {
        holdout_percent: 0.0,
        arrival_grace: Duration::ZERO,
        ..Policy::default()
    };
    install(
        base.as_ref(),
        &Site::new(SHOP, &greeting("old-greeting"), policy.clone()),
    )
    .await;
    let new_rules = RuleSet::from_toml(&greeting("new-greeting"), Engine::timezone(&policy))
        .unwrap()
        .to_file()
        .rules;
    let hooked = Arc::new(Hooked::new(base.clone()));
    // `beckon rules import` lands right after the server read the site records.
    *hooked.before_rules.lock().unwrap() = Some((1, new_rules));
    let server = beckon_server::start(
        hooked.clone(),
        Options {
            watch_sites: Duration::from_secs(3600),
            ..one_shard()
        },
    )
    .await
    .unwrap();
    let runtime = server.state.sites.get(SHOP).unwrap();
    let site = SiteId::parse(SHOP).unwrap();
    let in_store = base.site_versions().await.unwrap();
    eprintln!(
        "runtime version {} running {:?}; store: {in_store:?}",
        runtime.version(),
        runtime
            .engine
            .rules()
            .to_file()
            .rules
            .iter()
            .map(|r| r.id.to_string())
            .collect::<Vec<_>>()
    );
    let r = submit_as(
        &server,
        SHOP,
        "v_r",
        "s_r",
        vec![page("s_r:1", "home", "/"), bare("s_r:2", "activity")],
    )
    .await
    .unwrap();
    eprintln!(
        "fired live: {:?}",
        r.reply
            .interventions
            .iter()
            .map(|i| &i.rule)
            .collect::<Vec<_>>()
    );
    server.stop().await;
    let rebuilt = replay::replay_site(base.as_ref(), &site).await.unwrap();
    let recorded = replay::recorded(base.as_ref(), &site).await.unwrap();
    assert_eq!(
        rebuilt.fired, recorded,
        "the replay (rules of the logged version) differs from what fired live"
    );
}
