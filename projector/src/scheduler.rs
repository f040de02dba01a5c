//! The dormancy policy's scheduler: every `DORMANCY_SCAN_SECONDS` a pass
//! registers the members quiet for the whole period as targets and marks
//! the policy's targets dormant once their grace is over (which sends the
//! notice), at most `DORMANCY_RATE` of them a second.
//!
//! Exactly-once because the log decides: a target's id derives from its
//! member and the quiet period ([`mileage_domain::dormancy::target_id`]),
//! and every append's event ids from the target, so a pass run again after
//! a crash, a restart or on a second replica finds its earlier work in the
//! log and appends nothing twice. Each decision is made on the member and
//! the target as the log has them, never on a read model alone.
//!
//! The read side only makes it cheap: the scan is an index range over the
//! members read model in order of last activity, resumed after the last
//! member handled (`dormancy.scheduler`), and the marks read the
//! `dormancy.pending` targets by registration time. One replica acts at a
//! time (an advisory lock, as the consumers have); that saves work, and is
//! not what keeps anything from happening twice.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use mileage_domain::aggregate::stream_name;
use mileage_domain::dormancy::Review;
use mileage_domain::dormant_member::{DormantMember, DormantMemberCommand};
use mileage_domain::envelope::{Actor, Causation};
use mileage_domain::ids::{DormantMemberId, MemberId};
use mileage_domain::member::Member;
use mileage_domain::pii::{Revealed, reveal};
use mileage_read_model::dormancy::{self as table, Progress};
use mileage_store::executor::{EventIds, ExecuteError, Executor};
use mileage_store::keys::{KeyStore, seal};
use mileage_store::{EventStore, StoreError};
use tokio::sync::watch;
use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

use crate::config::DormancySettings;

/// Its name: the actor of what it appends (`system:dormancy-scheduler`),
/// its lock and its database session.
pub(crate) const NAME: &str = "dormancy-scheduler";
/// Members or targets read per page; the scan's place is saved after each.
const PAGE: i64 = 512;
/// Members or targets looked at together (each its own streams; the pace
/// is the rate limiter's); a stop waits for the chunk under way.
const CHUNK: usize = 16;
/// How often a standby replica asks for the lock again.
const LOCK_RETRY: Duration = Duration::from_secs(1);
/// Streams whose folded state the scheduler keeps between uses.
const CACHED_STREAMS: std::num::NonZeroUsize = std::num::NonZeroUsize::new(4096).expect("not zero");
/// The namespace of the ids the scheduler derives.
const NAMESPACE: Uuid = Uuid::from_u128(0x6d69_6c65_6167_6564_6f72_6d61_6e63_7921);

/// What one look at a member or a target came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Registered,
    Marked,
    Lifted,
    /// Nothing to do, or done before.
    Nothing,
}

/// Why a session ended without an error.
enum SessionEnd {
    Shutdown,
}

/// The scheduler of one projector process.
pub(crate) struct Scheduler {
    executor: Executor,
    keys: Arc<dyn KeyStore>,
    read_config: tokio_postgres::Config,
    settings: DormancySettings,
    limiter: DefaultDirectRateLimiter,
    shutdown: watch::Receiver<bool>,
}

impl Scheduler {
    /// A scheduler commanding through `store`, sealing with `keys`, reading
    /// and keeping its place in the read database.
    pub(crate) fn new(
        store: Arc<dyn EventStore>,
        keys: Arc<dyn KeyStore>,
        read_config: tokio_postgres::Config,
        settings: DormancySettings,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let quota = Quota::per_second(settings.rate).allow_burst(NonZeroU32::MIN);
        Self {
            executor: Executor::new(store, CACHED_STREAMS),
            keys,
            read_config,
            limiter: RateLimiter::direct(quota),
            settings,
            shutdown,
        }
    }

    /// Runs passes until shutdown, standing by while another replica holds
    /// the lock and reconnecting after an outage.
    pub(crate) async fn run(self) {
        metrics::gauge!("dormancy_scheduler_active").set(0.0);
        let mut delay = Duration::from_millis(200);
        loop {
            if *self.shutdown.borrow() {
                return;
            }
            let outcome = self.session().await;
            metrics::gauge!("dormancy_scheduler_active").set(0.0);
            match outcome {
                Ok(SessionEnd::Shutdown) => return,
                Err(reason) => {
                    tracing::warn!(%reason, ?delay, "dormancy scheduler interrupted; reconnecting");
                    let mut shutdown = self.shutdown.clone();
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => return,
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn session(&self) -> Result<SessionEnd, String> {
        let mut config = self.read_config.clone();
        config.application_name(format!("mileage-projector:{NAME}"));
        let (client, connection) = config.connect(NoTls).await.map_err(database)?;
        let connection = tokio::spawn(connection);
        let _ends_with_the_session = AbortOnDrop(connection);
        mileage_read_model::create_read_side(&client)
            .await
            .map_err(database)?;
        table::migrate(&client).await.map_err(database)?;
        let mut shutdown = self.shutdown.clone();
        while !crate::runner::try_lock(&client, NAME)
            .await
            .map_err(database)?
        {
            tokio::select! {
                () = tokio::time::sleep(LOCK_RETRY) => {}
                _ = shutdown.changed() => return Ok(SessionEnd::Shutdown),
            }
        }
        metrics::gauge!("dormancy_scheduler_active").set(1.0);
        tracing::info!(
            after_days = self.settings.policy.after_days(),
            grace_days = self.settings.policy.grace_days(),
            rate = self.settings.rate,
            clock_offset = %self.settings.clock.offset(),
            "dormancy scheduler active"
        );
        loop {
            if self.pass(&client).await? == Pass::Stopped {
                return Ok(SessionEnd::Shutdown);
            }
            tokio::select! {
                () = tokio::time::sleep(self.settings.every) => {}
                _ = shutdown.changed() => return Ok(SessionEnd::Shutdown),
            }
        }
    }

    /// One pass: registrations, then marks.
    async fn pass(&self, client: &Client) -> Result<Pass, String> {
        let started = Instant::now();
        let now = self.settings.clock.now();
        table::pass_started(client, Utc::now(), now)
            .await
            .map_err(database)?;
        if self.register_revisits(client, now).await? == Pass::Stopped
            || self.register_quiet(client, now).await? == Pass::Stopped
            || self.mark_due(client, now).await? == Pass::Stopped
        {
            return Ok(Pass::Stopped);
        }
        table::pass_finished(client, Utc::now())
            .await
            .map_err(database)?;
        metrics::gauge!("dormancy_last_pass_seconds").set(started.elapsed().as_secs_f64());
        Ok(Pass::Finished)
    }

    /// Looks again at the members put back under the policy since the last
    /// pass, wherever the scan has got to.
    async fn register_revisits(&self, client: &Client, now: DateTime<Utc>) -> Result<Pass, String> {
        loop {
            let page = table::revisits(client, PAGE).await.map_err(database)?;
            for chunk in page.chunks(CHUNK) {
                if self.stopping() {
                    return Ok(Pass::Stopped);
                }
                let looks = chunk.iter().map(|id| self.consider(client, id, now));
                let outcomes = futures::future::try_join_all(looks).await?;
                let progress = Progress {
                    registered: count_of(&outcomes, Outcome::Registered),
                    ..Progress::default()
                };
                table::advance(client, &progress).await.map_err(database)?;
                table::revisited(client, chunk).await.map_err(database)?;
            }
            if page.len() < usize::try_from(PAGE).unwrap_or(usize::MAX) {
                return Ok(Pass::Finished);
            }
        }
    }

    /// Registers the members quiet at `now`, from where the last pass left
    /// the scan.
    async fn register_quiet(&self, client: &Client, now: DateTime<Utc>) -> Result<Pass, String> {
        let quiet_before = self.settings.policy.quiet_before(now);
        let mut cursor = table::scheduler(client).await.map_err(database)?.cursor;
        loop {
            let page = table::quiet_members(client, quiet_before, cursor.as_ref(), PAGE)
                .await
                .map_err(database)?;
            let mut progress = Progress::default();
            for chunk in page.chunks(CHUNK) {
                if self.stopping() {
                    table::advance(client, &progress).await.map_err(database)?;
                    return Ok(Pass::Stopped);
                }
                let looks = chunk.iter().map(|(_, id)| self.consider(client, id, now));
                let outcomes = futures::future::try_join_all(looks).await?;
                progress.registered += count_of(&outcomes, Outcome::Registered);
                progress.cursor = chunk.last().cloned();
            }
            table::advance(client, &progress).await.map_err(database)?;
            if page.len() < usize::try_from(PAGE).unwrap_or(usize::MAX) {
                return Ok(Pass::Finished);
            }
            cursor = progress.cursor;
        }
    }

    /// Marks dormant the policy's targets whose grace is over at `now`, or
    /// lifts them when their member turns out active.
    async fn mark_due(&self, client: &Client, now: DateTime<Utc>) -> Result<Pass, String> {
        let before = self.settings.policy.registered_before(now);
        let mut after = None;
        loop {
            let page = table::due(client, before, after.as_ref(), PAGE)
                .await
                .map_err(database)?;
            let mut progress = Progress::default();
            for chunk in page.chunks(CHUNK) {
                if self.stopping() {
                    table::advance(client, &progress).await.map_err(database)?;
                    return Ok(Pass::Stopped);
                }
                let looks = chunk.iter().map(|p| self.review(&p.id, &p.member_id, now));
                let outcomes = futures::future::try_join_all(looks).await?;
                progress.marked += count_of(&outcomes, Outcome::Marked);
                progress.lifted += count_of(&outcomes, Outcome::Lifted);
                after = chunk.last().map(|p| (p.registered_at, p.id.clone()));
            }
            table::advance(client, &progress).await.map_err(database)?;
            if page.len() < usize::try_from(PAGE).unwrap_or(usize::MAX) {
                return Ok(Pass::Finished);
            }
        }
    }

    /// Registers member `id` when the log says they are due and no other
    /// target of theirs is open.
    async fn consider(
        &self,
        client: &Client,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Outcome, String> {
        let Ok(member_id) = MemberId::parse(id) else {
            tracing::warn!(member_id = id, "a member id the domain refuses; skipped");
            return Ok(Outcome::Nothing);
        };
        let member_stream = stream_name::<Member>(&member_id);
        let (member, _) = self
            .executor
            .load::<Member>(&member_stream)
            .await
            .map_err(store)?;
        let Some(due) = self.settings.policy.target_for(&member, now) else {
            count("not_due");
            return Ok(Outcome::Nothing);
        };
        let stream = stream_name::<DormantMember>(&due.id);
        let (target, _) = self
            .executor
            .load::<DormantMember>(&stream)
            .await
            .map_err(store)?;
        if target != DormantMember::Unregistered {
            count("registered_before");
            return Ok(Outcome::Nothing);
        }
        if table::other_target_open(client, id, due.id.as_str())
            .await
            .map_err(database)?
        {
            count("operator_target_open");
            return Ok(Outcome::Nothing);
        }
        let Member::Active(active) = &member else {
            return Ok(Outcome::Nothing);
        };
        let (Some(phone), Some(nickname)) = (
            self.open(&active.phone_no).await?,
            self.open(&active.nickname).await?,
        ) else {
            count("erased");
            return Ok(Outcome::Nothing);
        };
        let key = self.keys.get_or_create(&stream).await.map_err(store)?;
        let command = DormantMemberCommand::Register {
            id: due.id.clone(),
            member_id: due.member_id.clone(),
            phone: seal(&key, "phoneNo", &phone),
            nickname: seal(&key, "nickname", &nickname),
            at: now,
            quiet_since: Some(due.quiet_since),
        };
        let appended = self.act(&due.id, "register", command).await?;
        fail::fail_point!("dormancy::after_register", |_| Err(
            "failpoint dormancy::after_register: the process stopped".into()
        ));
        if !appended {
            count("registered_before");
            return Ok(Outcome::Nothing);
        }
        tracing::info!(target_id = %due.id, member_id = id, quiet_since = %due.quiet_since, "quiet member registered as a dormant target");
        Ok(Outcome::Registered)
    }

    /// What the policy does with pending target `id` of `member`, from the
    /// log: mark it dormant, lift it, or nothing yet.
    async fn review(&self, id: &str, member: &str, now: DateTime<Utc>) -> Result<Outcome, String> {
        let (Ok(target_id), Ok(member_id)) = (DormantMemberId::parse(id), MemberId::parse(member))
        else {
            return Ok(Outcome::Nothing);
        };
        let (target, _) = self
            .executor
            .load::<DormantMember>(&stream_name::<DormantMember>(&target_id))
            .await
            .map_err(store)?;
        let (member, _) = self
            .executor
            .load::<Member>(&stream_name::<Member>(&member_id))
            .await
            .map_err(store)?;
        match self.settings.policy.review(&target, &member, now) {
            Review::MarkDormant => {
                let command = DormantMemberCommand::MarkDormant { at: now };
                let appended = self.act(&target_id, "mark", command).await?;
                fail::fail_point!("dormancy::after_mark", |_| Err(
                    "failpoint dormancy::after_mark: the process stopped".into()
                ));
                Ok(if appended {
                    Outcome::Marked
                } else {
                    Outcome::Nothing
                })
            }
            Review::Lift(reason) => {
                let command = DormantMemberCommand::Lift { reason, at: now };
                let appended = self.act(&target_id, "lift", command).await?;
                Ok(if appended {
                    Outcome::Lifted
                } else {
                    Outcome::Nothing
                })
            }
            Review::Wait(_) | Review::Nothing => Ok(Outcome::Nothing),
        }
    }

    /// Appends `command` to target `id`'s stream at the configured pace,
    /// with ids derived from the target and the step: whether it was
    /// appended now (not when the log already had it, or it changed
    /// nothing, or the target refused it).
    async fn act(
        &self,
        id: &DormantMemberId,
        step: &str,
        command: DormantMemberCommand,
    ) -> Result<bool, String> {
        self.limiter.until_ready().await;
        let seed = Uuid::new_v5(&NAMESPACE, format!("{step}/{id}").as_bytes());
        let correlation = Uuid::new_v5(&NAMESPACE, id.as_str().as_bytes());
        let causation = Causation::root(correlation).by(Actor::system(NAME));
        let stream = stream_name::<DormantMember>(id);
        match self
            .executor
            .execute::<DormantMember>(&stream, command, EventIds::DerivedFrom(seed), causation)
            .await
        {
            Ok(done) if done.position.is_some() && !done.replayed => {
                metrics::counter!("dormancy_actions_total", "action" => step.to_owned())
                    .increment(1);
                Ok(true)
            }
            Ok(_) | Err(ExecuteError::Store(StoreError::DuplicateEventId { .. })) => Ok(false),
            Err(ExecuteError::Rejected(refusal)) => {
                tracing::info!(target_id = %id, step, %refusal, "dormancy step refused");
                Ok(false)
            }
            Err(ExecuteError::Contended { .. }) => Err(format!("{stream} kept changing")),
            Err(ExecuteError::Store(e)) => Err(format!("event store: {e}")),
        }
    }

    /// A member's sealed value in clear, `None` once erased.
    async fn open(&self, sealed: &mileage_domain::pii::Sealed) -> Result<Option<String>, String> {
        let key = self.keys.get(&sealed.key_id).await.map_err(store)?;
        match reveal(sealed, key.as_ref()) {
            Ok(Revealed::Clear(value)) => Ok(Some(value)),
            Ok(Revealed::Erased) => Ok(None),
            Err(e) => Err(format!("{}: {e}", sealed.key_id)),
        }
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }
}

/// How many of `outcomes` are `which`.
fn count_of(outcomes: &[Outcome], which: Outcome) -> i64 {
    i64::try_from(outcomes.iter().filter(|o| **o == which).count()).unwrap_or(i64::MAX)
}

/// Whether a pass finished or was stopped.
#[derive(Debug, PartialEq, Eq)]
enum Pass {
    Finished,
    Stopped,
}

/// Counts a member the scan looked at and left.
fn count(outcome: &'static str) {
    metrics::counter!("dormancy_skipped_total", "reason" => outcome).increment(1);
}

/// Registers the scheduler's series, so each is there from the first scrape.
pub(crate) fn series_at_zero() {
    for action in ["register", "mark", "lift"] {
        metrics::counter!("dormancy_actions_total", "action" => action).increment(0);
    }
    for reason in [
        "not_due",
        "registered_before",
        "operator_target_open",
        "erased",
    ] {
        metrics::counter!("dormancy_skipped_total", "reason" => reason).increment(0);
    }
    metrics::counter!("dormancy_lifted_total").increment(0);
    metrics::gauge!("dormancy_scheduler_active").increment(0.0);
    metrics::gauge!("dormancy_last_pass_seconds").increment(0.0);
}

#[expect(clippy::needless_pass_by_value, reason = "used as map_err(database)")]
fn database(error: tokio_postgres::Error) -> String {
    format!("read database: {error}")
}

#[expect(clippy::needless_pass_by_value, reason = "used as map_err(store)")]
fn store(error: StoreError) -> String {
    format!("event store: {error}")
}

/// Ends the connection task when the session ends.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
