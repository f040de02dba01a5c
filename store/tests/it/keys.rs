//! The person-key table: create once, read back, erase for good (the name
//! stays erased), discard what sealed nothing.

use mileage_domain::pii::{NONCE_LEN, Revealed, reveal};
use mileage_store::keys::{KeyStore, PgKeyStore};

use crate::helpers::pg_store;

#[tokio::test]
async fn a_key_is_created_once_and_deleted_for_good() {
    let store = pg_store().await;
    created_once_and_deleted_for_good(&PgKeyStore::new(store.pool().clone())).await;
}

#[tokio::test]
async fn a_key_store_beside_the_log_behaves_the_same() {
    let store = pg_store().await;
    created_once_and_deleted_for_good(&PgKeyStore::sharing_wal_with_events(&store).unwrap()).await;
}

/// Only key creation skips the wait for the disk, and only on the pool
/// meant for it; the store's own connections (appends, deletions) commit
/// synchronously.
#[tokio::test]
async fn only_the_key_creation_pool_commits_without_waiting_for_the_disk() {
    let store = pg_store().await;
    let setting = |pool: deadpool_postgres::Pool, name: &'static str| async move {
        let client = pool.get().await.unwrap();
        let row = client
            .query_one(&format!("SHOW {name}"), &[])
            .await
            .unwrap();
        row.get::<_, String>(0)
    };
    let lazy = store.lazy_commit_pool(1).unwrap();
    assert_eq!(setting(lazy.clone(), "synchronous_commit").await, "off");
    assert_eq!(
        setting(lazy, "enable_seqscan").await,
        "off",
        "its tables grow fast: no plan made while they were small reads them whole"
    );
    assert_eq!(
        setting(store.pool().clone(), "synchronous_commit").await,
        "on"
    );
}

/// Keys asked for at once share batches: every asker of one name gets the
/// same key, the one stored (a name asked for twice in one batch too),
/// every name its own, and an erased name stays erased for all of them.
#[tokio::test]
async fn keys_asked_for_at_once_are_created_once_each() {
    let store = pg_store().await;
    let keys = PgKeyStore::sharing_wal_with_events(&store).unwrap();
    keys.get_or_create("member-erased").await.expect("create");
    assert!(keys.delete("member-erased").await.expect("erase"));
    let names: Vec<String> = (0..400)
        .map(|n| match n % 4 {
            0 => "member-erased".to_owned(),
            1 => "member-shared".to_owned(),
            _ => format!("member-{n}"),
        })
        .collect();
    let asked = futures::future::join_all(names.iter().map(|name| keys.get_or_create(name))).await;
    let mut by_name: std::collections::HashMap<&str, Vec<_>> = std::collections::HashMap::new();
    for (name, key) in names.iter().zip(asked) {
        by_name
            .entry(name.as_str())
            .or_default()
            .push(key.expect("a key for every asker"));
    }
    let shared = &by_name["member-shared"];
    assert_eq!(shared.len(), 100);
    assert!(shared.iter().all(|k| k == &shared[0]), "one key per name");
    assert_eq!(
        keys.get("member-shared").await.expect("get"),
        Some(shared[0].clone()),
        "the key every asker got is the one stored"
    );
    let erased = &by_name["member-erased"];
    let sealed = erased[0].seal("phoneNo", "01085581234", [7; NONCE_LEN]);
    assert_eq!(keys.get("member-erased").await.expect("get"), None);
    assert_eq!(reveal(&sealed, None), Ok(Revealed::Erased));
    for (name, asked) in &by_name {
        if *name != "member-erased" {
            assert!(asked.iter().all(|k| k == &asked[0]), "{name}: one key");
            assert_eq!(
                keys.get(name).await.expect("get"),
                Some(asked[0].clone()),
                "{name} is stored as answered"
            );
        }
    }
}

async fn created_once_and_deleted_for_good(keys: &PgKeyStore) {
    let key = keys.get_or_create("member-1").await.expect("create");
    assert_eq!(
        keys.get_or_create("member-1").await.expect("again"),
        key,
        "same key the second time"
    );
    assert_eq!(keys.get("member-1").await.expect("get"), Some(key.clone()));
    let sealed = key.seal("phoneNo", "01085581234", [5; NONCE_LEN]);

    assert!(keys.delete("member-1").await.expect("delete"));
    assert!(
        !keys.delete("member-1").await.expect("delete again"),
        "idempotent"
    );
    let gone = keys.get("member-1").await.expect("get after delete");
    assert_eq!(gone, None);
    assert_eq!(reveal(&sealed, gone.as_ref()), Ok(Revealed::Erased));

    let fresh = keys.get_or_create("member-1").await.expect("recreate");
    assert_ne!(fresh, key, "a deleted key is never resurrected");
    assert!(fresh.open(&sealed).is_err(), "old data stays unreadable");
    // The name stays erased: what is sealed under it now opens for no one.
    let later = fresh.seal("phoneNo", "01085581234", [6; NONCE_LEN]);
    assert_eq!(keys.get("member-1").await.expect("get"), None);
    assert_ne!(keys.get_or_create("member-1").await.expect("again"), fresh);
    assert_eq!(reveal(&later, None), Ok(Revealed::Erased));
}

#[tokio::test]
async fn an_erased_name_stays_taken_and_a_discarded_one_does_not() {
    let store = pg_store().await;
    let keys = PgKeyStore::new(store.pool().clone());
    // Erased before any key was made under it (the log named the key of
    // someone erased): no key is made under it afterwards.
    assert!(!keys.delete("dormantMember-9").await.unwrap());
    keys.get_or_create("dormantMember-9").await.unwrap();
    assert_eq!(keys.get("dormantMember-9").await.unwrap(), None);
    // Discarded (an attempt whose key sealed nothing that was kept): the
    // name is free again, and a discard never lifts an erasure.
    let first = keys.get_or_create("member-3").await.unwrap();
    keys.discard("member-3").await.unwrap();
    let second = keys.get_or_create("member-3").await.unwrap();
    assert_ne!(first, second);
    assert_eq!(keys.get("member-3").await.unwrap(), Some(second));
    keys.discard("dormantMember-9").await.unwrap();
    keys.get_or_create("dormantMember-9").await.unwrap();
    assert_eq!(keys.get("dormantMember-9").await.unwrap(), None);
}

#[tokio::test]
async fn a_key_made_while_its_name_is_erased_is_never_kept() {
    let store = pg_store().await;
    let keys = PgKeyStore::new(store.pool().clone());
    for round in 0..50 {
        let name = format!("member-{round}");
        let (made, erased) = tokio::join!(keys.get_or_create(&name), keys.delete(&name));
        let (made, _) = (made.unwrap(), erased.unwrap());
        assert_eq!(keys.get(&name).await.unwrap(), None, "{name}");
        assert_ne!(keys.get_or_create(&name).await.unwrap(), made, "{name}");
    }
}

#[tokio::test]
async fn keys_are_per_person() {
    let store = pg_store().await;
    let keys = PgKeyStore::new(store.pool().clone());
    let a = keys.get_or_create("member-1").await.unwrap();
    let b = keys.get_or_create("dormantMember-1").await.unwrap();
    assert_ne!(a.secret(), b.secret());
    assert_eq!(keys.get("member-404").await.unwrap(), None);
}

#[tokio::test]
async fn many_keys_are_read_in_one_call_and_deleted_ones_are_absent() {
    let store = pg_store().await;
    let keys = PgKeyStore::new(store.pool().clone());
    let a = keys.get_or_create("member-1").await.unwrap();
    keys.get_or_create("member-2").await.unwrap();
    keys.delete("member-2").await.unwrap();
    let found = keys
        .get_many(&["member-1".into(), "member-2".into(), "member-3".into()])
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "{:?}", found.keys());
    assert_eq!(found.get("member-1"), Some(&a));
    assert!(keys.get_many(&[]).await.unwrap().is_empty());
}
