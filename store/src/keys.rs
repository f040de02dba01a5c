//! The per-person key table: the port, and its PostgreSQL adapter.
//!
//! Personal data in events is sealed with a person key
//! ([`mileage_domain::pii`]). Deleting the key is how a withdrawal or a
//! destruction erases that person from an immutable log.

use std::collections::HashMap;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use mileage_domain::pii::{KEY_LEN, NONCE_LEN, PersonKey, Sealed};
use rand::RngCore;

use crate::StoreError;
use crate::postgres::{pg_error, pool_error};

/// Seals `value` as `field` under `key` with a fresh random nonce: how
/// every service seals what it appends (the domain draws no random
/// numbers).
pub fn seal(key: &PersonKey, field: &str, value: &str) -> Sealed {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    key.seal(field, value, nonce)
}

/// Where person keys live.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// The key for `key_id`, created with fresh random bytes if absent. An
    /// erased name stays erased: it answers a key that is never kept, so
    /// whatever is sealed under it is unreadable from the start.
    async fn get_or_create(&self, key_id: &str) -> Result<PersonKey, StoreError>;
    /// The key for `key_id`, or `None` when it never existed or was erased.
    async fn get(&self, key_id: &str) -> Result<Option<PersonKey>, StoreError>;
    /// Erases the key: its secret goes and its name stays taken for good (a
    /// tombstone), also when no key was made under it yet. Returns whether
    /// a live key was erased. Idempotent.
    async fn delete(&self, key_id: &str) -> Result<bool, StoreError>;
    /// Removes a live key that sealed nothing the log kept (an attempt that
    /// was refused, or found another attempt's append first): unlike
    /// [`KeyStore::delete`], the name may be used again. Never removes a
    /// tombstone.
    async fn discard(&self, key_id: &str) -> Result<(), StoreError>;
    /// The keys that exist among `key_ids`, in one round trip: readers that
    /// reveal a batch of events at a time use this.
    async fn get_many(&self, key_ids: &[String]) -> Result<HashMap<String, PersonKey>, StoreError>;
}

/// Person keys in the `person_keys` table of the event store's database.
#[derive(Clone)]
pub struct PgKeyStore {
    pool: Pool,
    /// Where new keys are inserted: `pool`, or connections whose commits do
    /// not wait for the disk (see [`PgKeyStore::sharing_wal_with_events`]).
    create_pool: Pool,
}

impl PgKeyStore {
    /// A key store over `pool` (e.g. [`crate::postgres::PgEventStore::pool`],
    /// whose migrations create the table). Every write is durable when it
    /// returns.
    pub fn new(pool: Pool) -> Self {
        Self {
            create_pool: pool.clone(),
            pool,
        }
    }

    /// A key store in the database of `events`, the PostgreSQL event store
    /// that also holds the log: a new key commits without waiting for the
    /// write-ahead log to reach the disk. That is safe because a key
    /// matters only once an event sealed with it is appended, and that
    /// append's synchronous commit flushes the log up to itself, the key's
    /// earlier commit included: after a crash the key is there whenever an
    /// event sealed with it is. It saves a disk flush per join. Deleting a
    /// key stays durable when it returns. Never use it with a log in
    /// another server (EventStoreDB), whose commits flush nothing here.
    pub fn sharing_wal_with_events(
        events: &crate::postgres::PgEventStore,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            pool: events.pool().clone(),
            create_pool: events.lazy_commit_pool(4)?,
        })
    }
}

/// What one pass of [`PgKeyStore::sweep_unused`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Keys found in use (their stream has events), now marked checked.
    pub in_use: u64,
    /// Keys whose stream had no event after the grace period, deleted.
    pub deleted: u64,
}

/// Keys looked at per round trip of a sweep.
const SWEEP_BATCH: i64 = 500;

impl PgKeyStore {
    /// Deletes the keys that seal nothing: created more than `grace` ago
    /// for a stream (the key id is the stream's name) that still has no
    /// event, or for one claim on a shared stream (`{stream}#{id}`) that
    /// no event there names, because the process stopped between creating
    /// the key and the append that would have used it, or the append was
    /// refused. Keys found in use are marked, so
    /// each key is checked once. `grace` must outlast any append still
    /// under way (an hour in the services). Safe to run on several
    /// instances at once.
    pub async fn sweep_unused(
        &self,
        events: &dyn crate::EventStore,
        grace: std::time::Duration,
    ) -> Result<Swept, StoreError> {
        let grace_secs = grace.as_secs_f64();
        let mut swept = Swept::default();
        loop {
            let client = self.pool.get().await.map_err(pool_error)?;
            let rows = client
                .query(
                    "SELECT key_id FROM person_keys
                      WHERE NOT checked AND secret IS NOT NULL
                        AND created_at < now() - make_interval(secs => $1)
                      ORDER BY created_at LIMIT $2",
                    &[&grace_secs, &SWEEP_BATCH],
                )
                .await
                .map_err(pg_error)?;
            drop(client);
            let (mut used, mut unused) = (Vec::new(), Vec::new());
            for row in &rows {
                let key_id: String = row.get(0);
                if seals_something(events, &key_id).await? {
                    used.push(key_id);
                } else {
                    unused.push(key_id);
                }
            }
            let client = self.pool.get().await.map_err(pool_error)?;
            swept.in_use += client
                .execute(
                    "UPDATE person_keys SET checked = true WHERE key_id = ANY($1)",
                    &[&used],
                )
                .await
                .map_err(pg_error)?;
            swept.deleted += client
                .execute(
                    "DELETE FROM person_keys
                      WHERE key_id = ANY($1) AND NOT checked AND secret IS NOT NULL",
                    &[&unused],
                )
                .await
                .map_err(pg_error)?;
            if rows.len() < usize::try_from(SWEEP_BATCH).unwrap_or(usize::MAX) {
                return Ok(swept);
            }
        }
    }
}

/// Events of one stream read per page while looking for a key's use.
const SEALED_PAGE: usize = 500;

/// Whether the log holds what the key `key_id` was made for: an event of
/// its stream, or, for a key of one claim on a shared stream
/// (`memberPhone-{hash}#{claim event id}`), an event there that names the
/// key (a value sealed under it).
async fn seals_something(events: &dyn crate::EventStore, key_id: &str) -> Result<bool, StoreError> {
    let Some((stream, _)) = key_id.split_once('#') else {
        return Ok(!events.read_stream(key_id, 0, 1).await?.is_empty());
    };
    let named = format!("\"{key_id}\"");
    let named = named.as_bytes();
    let mut from = 0;
    loop {
        let page = events.read_stream(stream, from, SEALED_PAGE).await?;
        if page
            .iter()
            .any(|event| event.data.windows(named.len()).any(|w| w == named))
        {
            return Ok(true);
        }
        if page.len() < SEALED_PAGE {
            return Ok(false);
        }
        from += SEALED_PAGE as u64;
    }
}

/// Creates a key unless one exists; true when it was created.
const INSERT_KEY: &str =
    "INSERT INTO person_keys (key_id, secret) VALUES ($1, $2) ON CONFLICT (key_id) DO NOTHING";

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
        let client = self.create_pool.get().await.map_err(pool_error)?;
        let insert = client.prepare_cached(INSERT_KEY).await.map_err(pg_error)?;
        let inserted = client
            .execute(&insert, &[&key_id, &secret.as_slice()])
            .await
            .map_err(pg_error)?;
        if inserted == 1 {
            return Ok(PersonKey::new(key_id, secret));
        }
        let row = client
            .query_opt(
                "SELECT secret FROM person_keys WHERE key_id = $1",
                &[&key_id],
            )
            .await
            .map_err(pg_error)?;
        match row.and_then(|row| row.get::<_, Option<&[u8]>>(0).map(<[u8]>::to_vec)) {
            Some(stored) => to_key(key_id, &stored),
            // Erased (or discarded this instant): the fresh bytes, never
            // stored, so nothing sealed under them can be opened.
            None => Ok(PersonKey::new(key_id, secret)),
        }
    }

    async fn get(&self, key_id: &str) -> Result<Option<PersonKey>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let row = client
            .query_opt(
                "SELECT secret FROM person_keys WHERE key_id = $1 AND secret IS NOT NULL",
                &[&key_id],
            )
            .await
            .map_err(pg_error)?;
        row.map(|r| to_key(key_id, r.get(0))).transpose()
    }

    async fn delete(&self, key_id: &str) -> Result<bool, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        // One statement: the row is the name's lock, so a key being made
        // under it at the same time either is erased here or finds the
        // tombstone.
        let erased: bool = client
            .query_one(
                "WITH before AS (
                     SELECT secret IS NOT NULL AS live FROM person_keys WHERE key_id = $1
                 ), upserted AS (
                     INSERT INTO person_keys (key_id, secret, erased_at, checked)
                     VALUES ($1, NULL, now(), true)
                     ON CONFLICT (key_id) DO UPDATE
                        SET secret = NULL, erased_at = coalesce(person_keys.erased_at, now())
                     RETURNING 1
                 )
                 SELECT coalesce((SELECT live FROM before), false)
                        AND EXISTS (SELECT 1 FROM upserted)",
                &[&key_id],
            )
            .await
            .map_err(pg_error)?
            .get(0);
        Ok(erased)
    }

    async fn discard(&self, key_id: &str) -> Result<(), StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        client
            .execute(
                "DELETE FROM person_keys WHERE key_id = $1 AND secret IS NOT NULL",
                &[&key_id],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn get_many(&self, key_ids: &[String]) -> Result<HashMap<String, PersonKey>, StoreError> {
        if key_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let client = self.pool.get().await.map_err(pool_error)?;
        let rows = client
            .query(
                "SELECT key_id, secret FROM person_keys
                  WHERE key_id = ANY($1) AND secret IS NOT NULL",
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
