//! `export` / `import`: the log as JSON lines, one envelope per event (id,
//! stream, version, type, schema version, data, correlation, causation,
//! recorded time), read from and appended to the configured store. Import
//! checks the whole archive first (JSON, known event types and versions),
//! then compares it with the target (a clash or an archive imported before
//! is a named error before anything is appended), then appends stream by
//! stream with the archived versions and event ids; an import cut off
//! resumes where it stopped when run again.

use std::io::{BufRead, Write};
use std::path::Path;

use mileage_domain::envelope::{Causation, Envelope};
use mileage_store::{EventStore, ExpectedVersion, NewEvent, Position, StoreError};
use serde::Serialize;

use super::Context;

/// Events read per page while exporting.
const PAGE: usize = 1000;

/// What an export or import did.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Archived {
    /// Events written to the archive, or appended to the store.
    pub events: u64,
    /// On import: events the store already held (a rerun).
    pub already_there: u64,
}

/// How long `export` waits for events committed before it started that are
/// still behind an older open transaction (the log's visibility horizon).
const HORIZON_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Writes the whole log as it was when the export started to `out`, in
/// global order. Events committed before the start but not yet readable (an
/// older transaction anywhere on the server is still open) are waited for,
/// up to [`HORIZON_WAIT`], so the archive is never silently short.
pub async fn export(ctx: &Context, out: &mut impl Write) -> anyhow::Result<Archived> {
    let committed = ctx.log_size().await;
    let bar = ctx.bar("export", committed);
    let mut after: Option<Position> = None;
    let mut events = 0;
    let mut waiting_since: Option<std::time::Instant> = None;
    loop {
        let page = ctx.store.read_all(after, PAGE).await?;
        for event in &page {
            serde_json::to_writer(&mut *out, &event.to_envelope()?)?;
            out.write_all(b"\n")?;
            after = Some(event.position);
            events += 1;
        }
        bar.set_position(events);
        if page.len() == PAGE {
            waiting_since = None;
            continue;
        }
        let Some(expected) = committed.filter(|&expected| events < expected) else {
            break;
        };
        let since = *waiting_since.get_or_insert_with(std::time::Instant::now);
        anyhow::ensure!(
            since.elapsed() < HORIZON_WAIT,
            "exported {events} of the {expected} events committed when the export started: \
             the rest are behind a transaction open on the server for over {} s; \
             the archive is incomplete",
            HORIZON_WAIT.as_secs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    out.flush()?;
    bar.finish_and_clear();
    Ok(Archived {
        events,
        already_there: 0,
    })
}

/// Reads and checks every line of `path`.
fn read_archive(path: &Path) -> anyhow::Result<Vec<Envelope>> {
    let file = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("cannot open the archive {}: {e}", path.display()))?;
    let mut envelopes = Vec::new();
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let number = index + 1;
        let line =
            line.map_err(|e| anyhow::anyhow!("{}:{number}: unreadable: {e}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let envelope: Envelope = serde_json::from_str(&line).map_err(|e| {
            anyhow::anyhow!("{}:{number}: not a valid event line: {e}", path.display())
        })?;
        super::upcast::current(&envelope).map_err(|e| {
            anyhow::anyhow!("{}:{number}: {e} (no upcaster reads it)", path.display())
        })?;
        envelopes.push(envelope);
    }
    anyhow::ensure!(
        !envelopes.is_empty(),
        "the archive {} holds no events",
        path.display()
    );
    Ok(envelopes)
}

/// Why an import appended nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Every event of the archive is in the target store already.
    #[error(
        "archive already imported: all {events} events of {archive} are in the target store \
         already (same ids at the same stream versions); nothing appended"
    )]
    AlreadyImported {
        /// The archive's path.
        archive: String,
        events: u64,
    },
    /// The target holds other events where the archive's go.
    #[error(
        "{archive}: event {event_id} ({stream} #{version}) clashes with what the target store \
         holds there ({stored}); nothing appended"
    )]
    Clash {
        /// The archive's path.
        archive: String,
        /// The archived event.
        event_id: uuid::Uuid,
        stream: String,
        version: u64,
        /// What the store holds there instead.
        stored: String,
    },
}

/// One stream's consecutive events of the archive, appended together.
struct Run<'a> {
    events: &'a [Envelope],
    /// How many of them the target holds already.
    present: usize,
}

/// Appends the archive at `path` to the configured store, keeping ids,
/// versions, causal metadata and the times the events were first recorded
/// (each store keeps them, see `NewEvent::recorded_at`). First every stream is compared with the target: events already
/// there (same ids at the same versions: an import cut off and run again)
/// are skipped, a clash stops the import before anything is appended, and
/// an archive entirely there already is [`ImportError::AlreadyImported`].
pub async fn import(ctx: &Context, path: &Path) -> anyhow::Result<Archived> {
    let envelopes = read_archive(path)?;
    let archive = path.display().to_string();
    let target = &*ctx.store;
    let mut runs = Vec::new();
    let mut start = 0;
    while start < envelopes.len() {
        let first = &envelopes[start];
        let mut end = start + 1;
        while end < envelopes.len()
            && envelopes[end].stream == first.stream
            && envelopes[end].stream_version == envelopes[end - 1].stream_version + 1
            && end - start < 500
        {
            end += 1;
        }
        let events = &envelopes[start..end];
        let present = present_in(target, &archive, events).await?;
        runs.push(Run { events, present });
        start = end;
    }
    let total = envelopes.len() as u64;
    let already_there: usize = runs.iter().map(|r| r.present).sum();
    if already_there as u64 == total {
        return Err(ImportError::AlreadyImported {
            archive,
            events: total,
        }
        .into());
    }
    let bar = ctx.bar("import", Some(total));
    let mut report = Archived {
        events: 0,
        already_there: already_there as u64,
    };
    let mut done = 0;
    for run in &runs {
        let missing = &run.events[run.present..];
        if !missing.is_empty() {
            append_run(target, &archive, missing).await?;
            report.events += missing.len() as u64;
        }
        done += run.events.len() as u64;
        bar.set_position(done);
    }
    bar.finish_and_clear();
    Ok(report)
}

/// How many of `run`'s events (a prefix) the target holds already, or the
/// clash when it holds others there.
async fn present_in(
    target: &dyn EventStore,
    archive: &str,
    run: &[Envelope],
) -> anyhow::Result<usize> {
    let first = &run[0];
    let stored = target
        .read_stream(&first.stream, first.stream_version, run.len())
        .await
        .map_err(|e| anyhow::anyhow!("reading {} from the target store: {e}", first.stream))?;
    for (s, e) in stored.iter().zip(run) {
        if s.event_id != e.event_id || s.stream_version != e.stream_version {
            return Err(ImportError::Clash {
                archive: archive.to_owned(),
                event_id: e.event_id,
                stream: e.stream.clone(),
                version: e.stream_version,
                stored: format!("event {} at #{}", s.event_id, s.stream_version),
            }
            .into());
        }
    }
    Ok(stored.len().min(run.len()))
}

/// Appends `run` (one stream's consecutive events) under the version the
/// archive says precedes it.
async fn append_run(
    target: &dyn EventStore,
    archive: &str,
    run: &[Envelope],
) -> anyhow::Result<()> {
    let first = &run[0];
    let expected = match first.stream_version {
        0 => ExpectedVersion::NoStream,
        v => ExpectedVersion::Exact(v - 1),
    };
    let events: Vec<NewEvent> = run
        .iter()
        .map(|e| NewEvent {
            event_id: e.event_id,
            event_type: e.event_type.clone(),
            schema_version: e.version,
            data: serde_json::to_vec(&e.data).unwrap_or_default().into(),
            causation: Causation {
                correlation_id: e.metadata.correlation_id,
                causation_id: e.metadata.causation_id,
                trace: e.metadata.trace,
                actor: e.metadata.actor.clone(),
            },
            recorded_at: Some(e.metadata.recorded_at),
            request: None,
        })
        .collect();
    match target.append(&first.stream, expected, &events).await {
        Ok(_) => Ok(()),
        Err(
            e @ (StoreError::WrongExpectedVersion { .. } | StoreError::DuplicateEventId { .. }),
        ) => Err(ImportError::Clash {
            archive: archive.to_owned(),
            event_id: first.event_id,
            stream: first.stream.clone(),
            version: first.stream_version,
            stored: format!("{e}; written meanwhile by someone else?"),
        }
        .into()),
        Err(e) => Err(anyhow::anyhow!(
            "appending {} #{}: {e}; run the import again to resume",
            first.stream,
            first.stream_version
        )),
    }
}
