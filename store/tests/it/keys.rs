//! The person-key table: create once, read back, delete for good.

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
    let setting = |pool: deadpool_postgres::Pool| async move {
        let client = pool.get().await.unwrap();
        let row = client
            .query_one("SHOW synchronous_commit", &[])
            .await
            .unwrap();
        row.get::<_, String>(0)
    };
    assert_eq!(setting(store.lazy_commit_pool(1).unwrap()).await, "off");
    assert_eq!(setting(store.pool().clone()).await, "on");
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
