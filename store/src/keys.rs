//! The per-person key table: the port, and its PostgreSQL adapter.
//!
//! Personal data in events is sealed with a person key
//! ([`mileage_domain::pii`]). Deleting the key is how a withdrawal or a
//! destruction erases that person from an immutable log.

use std::collections::HashMap;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use mileage_domain::pii::{KEY_LEN, PersonKey};
use rand::RngCore;

use crate::StoreError;
use crate::postgres::{pg_error, pool_error};

/// Where person keys live.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// The key for `key_id`, created with fresh random bytes if absent. After
    /// a deletion this creates a *new* key: data sealed under the old one
    /// stays unreadable.
    async fn get_or_create(&self, key_id: &str) -> Result<PersonKey, StoreError>;
    /// The key for `key_id`, or `None` when it never existed or was deleted.
    async fn get(&self, key_id: &str) -> Result<Option<PersonKey>, StoreError>;
    /// Deletes the key; returns whether it existed. Idempotent.
    async fn delete(&self, key_id: &str) -> Result<bool, StoreError>;
    /// The keys that exist among `key_ids`, in one round trip: readers that
    /// reveal a batch of events at a time use this.
    async fn get_many(&self, key_ids: &[String]) -> Result<HashMap<String, PersonKey>, StoreError>;
}

/// Person keys in the `person_keys` table of the event store's database.
#[derive(Clone)]
pub struct PgKeyStore {
    pool: Pool,
}

impl PgKeyStore {
    /// A key store over `pool` (e.g. [`crate::postgres::PgEventStore::pool`],
    /// whose migrations create the table).
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

fn to_key(key_id: &str, secret: &[u8]) -> Result<PersonKey, StoreError> {
    let secret: [u8; KEY_LEN] = secret.try_into().map_err(|_| {
        StoreError::Backend(format!(
            "person key {key_id} has {} bytes, not {KEY_LEN}",
            secret.len()
        ))
    })?;
    Ok(PersonKey::new(key_id, secret))
}

#[async_trait]
impl KeyStore for PgKeyStore {
    async fn get_or_create(&self, key_id: &str) -> Result<PersonKey, StoreError> {
        let mut secret = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut secret);
        let client = self.pool.get().await.map_err(pool_error)?;
        let inserted = client
            .execute(
                "INSERT INTO person_keys (key_id, secret) VALUES ($1, $2) ON CONFLICT (key_id) DO NOTHING",
                &[&key_id, &secret.as_slice()],
            )
            .await
            .map_err(pg_error)?;
        if inserted == 1 {
            return Ok(PersonKey::new(key_id, secret));
        }
        let row = client
            .query_one(
                "SELECT secret FROM person_keys WHERE key_id = $1",
                &[&key_id],
            )
            .await
            .map_err(pg_error)?;
        to_key(key_id, row.get(0))
    }

    async fn get(&self, key_id: &str) -> Result<Option<PersonKey>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let row = client
            .query_opt(
                "SELECT secret FROM person_keys WHERE key_id = $1",
                &[&key_id],
            )
            .await
            .map_err(pg_error)?;
        row.map(|r| to_key(key_id, r.get(0))).transpose()
    }

    async fn delete(&self, key_id: &str) -> Result<bool, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let deleted = client
            .execute("DELETE FROM person_keys WHERE key_id = $1", &[&key_id])
            .await
            .map_err(pg_error)?;
        Ok(deleted > 0)
    }

    async fn get_many(&self, key_ids: &[String]) -> Result<HashMap<String, PersonKey>, StoreError> {
        if key_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let client = self.pool.get().await.map_err(pool_error)?;
        let rows = client
            .query(
                "SELECT key_id, secret FROM person_keys WHERE key_id = ANY($1)",
                &[&key_ids],
            )
            .await
            .map_err(pg_error)?;
        rows.iter()
            .map(|row| {
                let key_id: String = row.get(0);
                to_key(&key_id, row.get(1)).map(|key| (key_id, key))
            })
            .collect()
    }
}
