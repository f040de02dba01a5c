//! The per-person key table: the port, and its PostgreSQL adapter.
//!
//! Personal data in events is sealed with a person key
//! ([`mileage_domain::pii`]). Deleting the key is how a withdrawal or a
//! destruction erases that person from an immutable log.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use deadpool_postgres::Pool;
use mileage_domain::pii::{KEY_LEN, NONCE_LEN, PersonKey, Sealed};
use rand::RngCore;
use tokio::sync::{Mutex, mpsc, oneshot};

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
/// Keys asked for at once are created together, one statement for the
/// whole batch (as the event store's group commit shares one among
/// appends): a join asks for two, and one statement of its own for each
/// cost it more than its append did.
#[derive(Clone)]
pub struct PgKeyStore {
    pool: Pool,
    /// Where new keys are inserted: `pool`, or connections whose commits do
    /// not wait for the disk (see [`PgKeyStore::sharing_wal_with_events`]).
    create_pool: Pool,
    /// The queue of keys to create, shared by the store's clones; its
    /// writers start on the first key asked for.
    creates: Arc<OnceLock<mpsc::UnboundedSender<Create>>>,
}

/// A key asked for by [`KeyStore::get_or_create`]: its name, the bytes it
/// gets if it is new, and where the key goes.
struct Create {
    key_id: String,
    secret: [u8; KEY_LEN],
    reply: oneshot::Sender<Result<PersonKey, StoreError>>,
}

/// Tasks writing the queue of new keys, each a batch at a time.
const CREATE_WRITERS: usize = 2;

/// Most keys one batch creates.
const MAX_CREATE_BATCH: usize = 256;

impl PgKeyStore {
    /// A key store over `pool` (e.g. [`crate::postgres::PgEventStore::pool`],
    /// whose migrations create the table). Every write is durable when it
    /// returns.
    pub fn new(pool: Pool) -> Self {
        Self {
            create_pool: pool.clone(),
            pool,
            creates: Arc::default(),
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
            creates: Arc::default(),
        })
    }

    /// The queue of new keys, its writers started on first use (inside
    /// the runtime that asks for a key).
    fn creates(&self) -> &mpsc::UnboundedSender<Create> {
        self.creates.get_or_init(|| {
            let (sender, queue) = mpsc::unbounded_channel();
            let queue = Arc::new(Mutex::new(queue));
            for _ in 0..CREATE_WRITERS {
                tokio::spawn(create_forever(self.create_pool.clone(), Arc::clone(&queue)));
            }
            sender
        })
    }
}

/// Creates the queued keys, a batch at a time, until every sender is gone.
async fn create_forever(pool: Pool, queue: Arc<Mutex<mpsc::UnboundedReceiver<Create>>>) {
    while let Some(batch) = crate::batch::next_batch(&queue, MAX_CREATE_BATCH, |_| 1).await {
        match create_batch(&pool, &batch).await {
            Ok(keys) => {
                // A name asked for twice in one batch: both askers get its key.
                for create in batch {
                    let key = keys.get(&create.key_id).cloned().map_or_else(
                        || {
                            Err(StoreError::Backend(format!(
                                "person key {} was neither created nor found",
                                create.key_id
                            )))
                        },
                        Ok,
                    );
                    let _ = create.reply.send(key);
                }
            }
            Err(error) => {
                let message = error.to_string();
                for create in batch {
                    let _ = create.reply.send(Err(StoreError::Backend(message.clone())));
                }
            }
        }
    }
}

/// One batch of [`KeyStore::get_or_create`]: every new name inserted in
/// one statement (a name asked for twice gets the first asker's bytes),
/// then the names that were there already read in a second one (a new
/// statement: it sees a key another writer committed while the insert
/// waited for it). Answers each name's key, shared by all its askers.
async fn create_batch(
    pool: &Pool,
    batch: &[Create],
) -> Result<HashMap<String, PersonKey>, StoreError> {
    let mut seen = HashSet::new();
    let (mut ids, mut secrets) = (Vec::new(), Vec::new());
    for create in batch {
        if seen.insert(create.key_id.as_str()) {
            ids.push(create.key_id.as_str());
            secrets.push(create.secret.as_slice());
        }
    }
    let client = pool.get().await.map_err(pool_error)?;
    let insert = client.prepare_cached(INSERT_KEYS).await.map_err(pg_error)?;
    let created: HashSet<String> = client
        .query(&insert, &[&ids, &secrets])
        .await
        .map_err(pg_error)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let existing: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| !created.contains(*id))
        .collect();
    let stored: HashMap<String, Option<Vec<u8>>> = if existing.is_empty() {
        HashMap::new()
    } else {
        client
            .query(
                "SELECT key_id, secret FROM person_keys WHERE key_id = ANY($1)",
                &[&existing],
            )
            .await
            .map_err(pg_error)?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
    };
    let mut keys = HashMap::with_capacity(ids.len());
    for (id, secret) in ids.iter().zip(&secrets) {
        let key = match stored.get(*id) {
            // There before this batch (only those were read back).
            Some(Some(stored)) => to_key(id, stored)?,
            // Created now with these bytes; or erased (or discarded this
            // instant): the fresh bytes, never stored, so nothing sealed
            // under them can be opened.
            _ => to_key(id, secret)?,
        };
        keys.insert((*id).to_owned(), key);
    }
    Ok(keys)
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

/// Creates each key unless one exists under its name; returns the names
/// created.
const INSERT_KEYS: &str = "INSERT INTO person_keys (key_id, secret)
     SELECT * FROM unnest($1::text[], $2::bytea[])
     ON CONFLICT (key_id) DO NOTHING RETURNING key_id";

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
        let (reply, key) = oneshot::channel();
        let gone = || StoreError::Backend("the person key writer stopped".into());
        self.creates()
            .send(Create {
                key_id: key_id.to_owned(),
                secret,
                reply,
            })
            .map_err(|_| gone())?;
        key.await.map_err(|_| gone())?
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
