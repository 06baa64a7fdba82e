//! The accounts' story, the same for every backend: each backend's tests call [`run_all`] with
//! one freshly migrated, empty database seen through both interfaces.

use beckon_engine::rules::RuleFile;
use beckon_engine::{Policy, SiteId, Timestamp};

use crate::accounts::{Accounts, ApiToken, Change, LoginRecord, NewUser, Role, SiteEdit};
use crate::{SecretDigest, SiteRecord, Store, StoreError};

/// Runs every chapter.
pub async fn run_all(store: &dyn Store, accounts: &dyn Accounts) {
    people_are_unique_by_address(accounts).await;
    members_see_only_their_sites(store, accounts).await;
    login_sessions_expire(accounts).await;
    tokens_are_found_by_digest_and_revoked_by_their_owner(store, accounts).await;
    rule_saves_refuse_a_stale_base_and_keep_history(store, accounts).await;
    sites_are_created_once_and_edited_field_by_field(store, accounts).await;
}

async fn sites_are_created_once_and_edited_field_by_field(
    store: &dyn Store,
    accounts: &dyn Accounts,
) {
    let first = accounts
        .create_user(&new_user("first@example.test", Role::Admin))
        .await
        .unwrap();
    let second = accounts
        .create_user(&new_user("second@example.test", Role::Admin))
        .await
        .unwrap();
    let id = SiteId::parse("acct-created").unwrap();
    let record = |secret: &str| SiteRecord {
        id: id.clone(),
        secret: SecretDigest::of(secret),
        origins: vec!["https://created.example".to_owned()],
        policy: Policy::default(),
        version: 0,
    };
    accounts
        .create_site(&record("sk_first"), "Created", first.id)
        .await
        .unwrap();
    let again = accounts
        .create_site(&record("sk_second"), "Taken over", second.id)
        .await;
    assert!(
        matches!(again, Err(StoreError::Conflict(_))),
        "a key is created once: {again:?}"
    );
    let stored = store
        .sites()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.id == id)
        .unwrap();
    assert!(stored.secret.matches("sk_first"), "the first secret stands");
    assert_eq!(stored.version, 1);
    assert_eq!(
        accounts.members(&id).await.unwrap().len(),
        1,
        "only its creator"
    );
    assert_eq!(
        accounts
            .site_labels(std::slice::from_ref(&id))
            .await
            .unwrap()[0]
            .name,
        "Created"
    );
    assert!(store.rules(&id).await.unwrap().is_empty());

    // A rotation, then a rename that knows nothing of it: the rotation stands.
    let rotated = accounts
        .edit_site(
            &id,
            &SiteEdit {
                secret: Some(SecretDigest::of("sk_rotated")),
                ..SiteEdit::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(rotated.version, 2);
    let renamed = accounts
        .edit_site(
            &id,
            &SiteEdit {
                name: Some("Renamed".to_owned()),
                origins: Some(vec!["https://new.example".to_owned()]),
                ..SiteEdit::default()
            },
        )
        .await
        .unwrap();
    assert!(renamed.secret.matches("sk_rotated"));
    assert_eq!(renamed.origins, ["https://new.example"]);
    assert_eq!(renamed.version, 3);
    assert!(
        store.rule_set(&id, 3).await.unwrap().is_some(),
        "each version is kept"
    );
    let unchanged = accounts
        .edit_site(
            &id,
            &SiteEdit {
                name: Some("Renamed again".to_owned()),
                ..SiteEdit::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(unchanged.version, 3, "a name is not part of the rule set");
    assert!(matches!(
        accounts
            .edit_site(&SiteId::parse("acct-nope").unwrap(), &SiteEdit::default())
            .await,
        Err(StoreError::NotFound(_))
    ));
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(1_800_000_000_000 + ms)
}

fn new_user(email: &str, role: Role) -> NewUser {
    NewUser {
        email: email.to_owned(),
        name: format!("Person {email}"),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
        role,
        at: at(0),
    }
}

async fn site(store: &dyn Store, key: &str) -> SiteId {
    let id = SiteId::parse(key).unwrap();
    store
        .put_site(&SiteRecord {
            id: id.clone(),
            secret: SecretDigest::of(&format!("sk_{key}")),
            origins: vec!["https://example.test".to_owned()],
            policy: Policy::default(),
            version: 0,
        })
        .await
        .unwrap();
    id
}

async fn people_are_unique_by_address(accounts: &dyn Accounts) {
    let ada = accounts
        .create_user(&new_user("ada@example.test", Role::Admin))
        .await
        .unwrap();
    assert!(ada.id > 0);
    let again = accounts
        .create_user(&new_user("ada@example.test", Role::Agent))
        .await;
    assert!(
        matches!(again, Err(StoreError::Conflict(_))),
        "a second account for one address: {again:?}"
    );
    let found = accounts.user_by_email("ada@example.test").await.unwrap();
    assert_eq!(found.as_ref(), Some(&ada));
    assert_eq!(accounts.user(ada.id).await.unwrap(), Some(ada.clone()));
    assert_eq!(
        accounts.user_by_email("nobody@example.test").await.unwrap(),
        None
    );

    accounts
        .set_password(ada.id, "$argon2id$new")
        .await
        .unwrap();
    let changed = accounts.user(ada.id).await.unwrap().unwrap();
    assert_eq!(changed.password_hash, "$argon2id$new");
    assert!(matches!(
        accounts.set_password(ada.id + 1_000, "x").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(
        accounts
            .users()
            .await
            .unwrap()
            .iter()
            .any(|u| u.id == ada.id)
    );
}

async fn members_see_only_their_sites(store: &dyn Store, accounts: &dyn Accounts) {
    let north = site(store, "acct-north").await;
    let south = site(store, "acct-south").await;
    let nia = accounts
        .create_user(&new_user("nia@example.test", Role::Admin))
        .await
        .unwrap();
    let sam = accounts
        .create_user(&new_user("sam@example.test", Role::Agent))
        .await
        .unwrap();
    accounts.add_member(&north, nia.id).await.unwrap();
    accounts.add_member(&north, nia.id).await.unwrap(); // twice is once
    accounts.add_member(&south, sam.id).await.unwrap();
    accounts.add_member(&north, sam.id).await.unwrap();

    assert_eq!(
        accounts.sites_of(nia.id).await.unwrap(),
        vec![north.clone()]
    );
    assert_eq!(
        accounts.sites_of(sam.id).await.unwrap(),
        vec![north.clone(), south.clone()]
    );
    let members: Vec<_> = accounts
        .members(&north)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(members, vec![nia.id, sam.id]);

    assert!(accounts.remove_member(&north, sam.id).await.unwrap());
    assert!(!accounts.remove_member(&north, sam.id).await.unwrap());
    assert_eq!(
        accounts.sites_of(sam.id).await.unwrap(),
        vec![south.clone()]
    );

    let missing = SiteId::parse("acct-missing").unwrap();
    assert!(matches!(
        accounts.add_member(&missing, nia.id).await,
        Err(StoreError::NotFound(_))
    ));

    accounts.set_site_name(&north, "North shop").await.unwrap();
    let labels = accounts
        .site_labels(&[north.clone(), south.clone(), missing.clone()])
        .await
        .unwrap();
    assert_eq!(labels.len(), 2, "a missing site has no label");
    assert_eq!(labels[0].name, "North shop");
    assert_eq!(labels[1].name, "acct-south", "unnamed: the key");
    assert!(matches!(
        accounts.set_site_name(&missing, "x").await,
        Err(StoreError::NotFound(_))
    ));
}

async fn login_sessions_expire(accounts: &dyn Accounts) {
    let record = LoginRecord {
        id_hash: [7; 32],
        data: r#"{"user":1}"#.to_owned(),
        expires: at(60_000),
    };
    assert!(accounts.create_login(&record).await.unwrap());
    assert!(
        !accounts.create_login(&record).await.unwrap(),
        "an id already in use is refused"
    );
    assert_eq!(
        accounts.login(&[7; 32], at(0)).await.unwrap(),
        Some(record.clone())
    );
    assert_eq!(accounts.login(&[7; 32], at(60_000)).await.unwrap(), None);
    assert_eq!(accounts.login(&[8; 32], at(0)).await.unwrap(), None);

    let longer = LoginRecord {
        data: r#"{"user":1,"csrf":"x"}"#.to_owned(),
        expires: at(120_000),
        ..record.clone()
    };
    accounts.save_login(&longer).await.unwrap();
    assert_eq!(
        accounts.login(&[7; 32], at(90_000)).await.unwrap(),
        Some(longer)
    );

    accounts
        .save_login(&LoginRecord {
            id_hash: [9; 32],
            data: "{}".to_owned(),
            expires: at(10),
        })
        .await
        .unwrap();
    assert_eq!(accounts.prune_logins(at(100_000)).await.unwrap(), 1);
    assert!(accounts.login(&[7; 32], at(0)).await.unwrap().is_some());
    accounts.delete_login(&[7; 32]).await.unwrap();
    assert_eq!(accounts.login(&[7; 32], at(0)).await.unwrap(), None);
}

async fn tokens_are_found_by_digest_and_revoked_by_their_owner(
    store: &dyn Store,
    accounts: &dyn Accounts,
) {
    let shop = site(store, "acct-tokens").await;
    let owner = accounts
        .create_user(&new_user("tess@example.test", Role::Admin))
        .await
        .unwrap();
    let other = accounts
        .create_user(&new_user("otto@example.test", Role::Admin))
        .await
        .unwrap();
    let token = ApiToken {
        id: 0,
        hash: [3; 32],
        prefix: "bk_abcd".to_owned(),
        name: "CRM sync".to_owned(),
        owner: owner.id,
        sites: vec![shop.clone()],
        created: at(5),
        revoked: None,
    };
    let made = accounts.create_token(&token).await.unwrap();
    assert!(made.id > 0);
    assert_eq!(
        accounts.token_by_hash(&[3; 32]).await.unwrap(),
        Some(made.clone())
    );
    assert_eq!(accounts.token_by_hash(&[4; 32]).await.unwrap(), None);
    assert!(matches!(
        accounts.create_token(&token).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        accounts.tokens_of(owner.id).await.unwrap(),
        vec![made.clone()]
    );
    assert!(accounts.tokens_of(other.id).await.unwrap().is_empty());

    assert!(
        !accounts
            .revoke_token(other.id, made.id, at(9))
            .await
            .unwrap(),
        "only its owner revokes a token"
    );
    assert!(
        accounts
            .revoke_token(owner.id, made.id, at(9))
            .await
            .unwrap()
    );
    assert!(
        !accounts
            .revoke_token(owner.id, made.id, at(10))
            .await
            .unwrap()
    );
    let revoked = accounts.token_by_hash(&[3; 32]).await.unwrap().unwrap();
    assert_eq!(revoked.revoked, Some(at(9)));
}

async fn rule_saves_refuse_a_stale_base_and_keep_history(
    store: &dyn Store,
    accounts: &dyn Accounts,
) {
    let shop = site(store, "acct-rules").await;
    let editor = accounts
        .create_user(&new_user("eve@example.test", Role::Admin))
        .await
        .unwrap();
    let file: RuleFile = toml::from_str(
        r#"
        [[rules]]
        id = "exit-offer"
        name = "Exit offer"
        status = "live"
        when = { all = [{ var = "behaviour.exit_intent", op = "equals", value = true }] }
        message = { type = "text", text = "Wait!" }
        "#,
    )
    .unwrap();
    let base = store
        .sites()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.id == shop)
        .unwrap()
        .version;
    let change = Change {
        author: Some(editor.id),
        at: at(100),
        summary: "created \"exit-offer\"".to_owned(),
    };
    let v = accounts
        .save_rules(&shop, base, &file.rules, &change)
        .await
        .unwrap();
    assert_eq!(v, base + 1);
    assert_eq!(store.rules(&shop).await.unwrap(), file.rules);

    let stale = accounts.save_rules(&shop, base, &[], &change).await;
    assert!(
        matches!(stale, Err(StoreError::Conflict(_))),
        "a save from a stale version: {stale:?}"
    );
    assert_eq!(
        store.rules(&shop).await.unwrap(),
        file.rules,
        "nothing written"
    );

    let cleared = Change {
        summary: "archived everything".to_owned(),
        at: at(200),
        ..change.clone()
    };
    accounts.save_rules(&shop, v, &[], &cleared).await.unwrap();

    let history = accounts.rule_history(&shop, u64::MAX, 10).await.unwrap();
    let versions: Vec<u64> = history.iter().map(|h| h.version).collect();
    assert_eq!(
        versions,
        vec![v + 1, v, base],
        "newest first, old ones kept"
    );
    assert_eq!(history[0].change.as_ref(), Some(&cleared));
    assert_eq!(history[1].change.as_ref(), Some(&change));
    assert_eq!(history[1].rules, file.rules);
    assert_eq!(
        history[1].author_name.as_deref(),
        Some(editor.name.as_str())
    );
    assert_eq!(history[2].change, None, "put_site keeps no change record");

    let page = accounts.rule_history(&shop, v + 1, 1).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].version, v);

    let missing = SiteId::parse("acct-none").unwrap();
    assert!(matches!(
        accounts.save_rules(&missing, 1, &[], &change).await,
        Err(StoreError::NotFound(_))
    ));
}
