//! `replay`: the operators' tool for the log and the read models: rebuild,
//! verify, inspect, trace, export, import, status. Human output by default,
//! `--json` for scripts; progress bars on stderr for long work.
//!
//! Exit codes: 0 done (verify: equal), 1 verify found differences,
//! 2 error, 130 interrupted (a rebuild resumes when run again).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mileage_replay::{Context, adopt, archive, forecast, inspect, rebuild, status, verify};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = "replay",
    version,
    about = "Rebuild, verify and inspect Mileage's event log and read models"
)]
struct Cli {
    /// The PostgreSQL database: the event store (unless EventStoreDB is
    /// configured) and the person keys.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    /// The EventStoreDB event store (`esdb://...`), when the services use
    /// it: every command then reads and writes it instead of PostgreSQL.
    #[arg(long, env = "EVENTSTOREDB_URL", global = true, hide_env_values = true)]
    eventstoredb_url: Option<String>,
    /// The read models' database (default: the event store's).
    #[arg(long, env = "READ_DATABASE_URL", global = true, hide_env_values = true)]
    read_database_url: Option<String>,
    /// One JSON object (or JSON lines) on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Rebuild a projection from position zero into shadow tables while the
    /// live one serves, then swap it in. Ctrl-C stops; run again to resume.
    Rebuild {
        /// managerpage, members or messages.
        projection: String,
        /// Events per transaction.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
    },
    /// Rebuild into scratch tables and compare with the live read model.
    /// Exit code 0 only when equal.
    Verify {
        /// managerpage, members or messages.
        projection: String,
        /// Differences to show.
        #[arg(long, default_value_t = 10)]
        show: i64,
        /// Events per transaction.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
    },
    /// Print events as JSON lines.
    Inspect {
        /// Only this stream, e.g. `dormantMember-1`.
        #[arg(long)]
        stream: Option<String>,
        /// Only this event type.
        #[arg(long = "type")]
        event_type: Option<String>,
        /// Recorded at or after (RFC 3339).
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Recorded before (RFC 3339).
        #[arg(long)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// Only this correlation id.
        #[arg(long)]
        correlation: Option<uuid::Uuid>,
        /// Only events caused by this actor (`manager:kim`, `system:notices`,
        /// `public`): who did what.
        #[arg(long)]
        actor: Option<mileage_domain::envelope::Actor>,
        /// At most this many events.
        #[arg(long)]
        limit: Option<usize>,
        /// Show personal data in clear where its key still exists.
        #[arg(long)]
        reveal: bool,
        /// Show old schema versions upcast to the current one.
        #[arg(long)]
        upcast: bool,
    },
    /// Show the causal chain of one correlation id as a tree.
    Trace {
        /// The correlation id (the X-Correlation-Id of the request).
        correlation: uuid::Uuid,
    },
    /// Write the whole log as JSON lines.
    Export {
        /// The archive to write (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Append an archive's events to the configured store, keeping ids,
    /// versions and metadata. A cut-off import resumes; an archive imported
    /// already is refused.
    Import {
        /// The archive.
        archive: PathBuf,
    },
    /// Every projection and process manager: state, checkpoint, lag.
    Status,
    /// When the dormancy policy makes a member a target and marks it
    /// dormant, from their events in the log.
    Forecast {
        /// The member's id.
        member: String,
        /// Days without activity before a member becomes a target, as the
        /// projector is configured.
        #[arg(long, env = "DORMANCY_AFTER_DAYS", default_value_t = mileage_domain::dormancy::Policy::DEFAULT_AFTER_DAYS)]
        after_days: i64,
        /// Days a target stays `PRE_DORMANT`, as the projector is configured.
        #[arg(long, env = "DORMANCY_GRACE_DAYS", default_value_t = mileage_domain::dormancy::Policy::DEFAULT_GRACE_DAYS)]
        grace_days: i64,
    },
    /// Move a consumer whose checkpoint belongs to another event store (a
    /// migration) to the same place in the configured store: right after
    /// the last event it handled, found by its id, so what it had not done
    /// yet is done there.
    Adopt {
        /// The consumer (see `replay status`).
        consumer: String,
        /// Move it to the configured store's head: only for a checkpoint
        /// that does not name its last event, and only once `replay
        /// status` on the old store showed it with no lag.
        #[arg(long)]
        at_head: bool,
    },
}

/// What a command prints.
fn print(json: bool, value: &impl Serialize, text: impl FnOnce() -> String) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    if json {
        serde_json::to_writer(&mut stdout, value)?;
        writeln!(stdout)?;
    } else {
        write!(stdout, "{}", text())?;
    }
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let database_url = cli
        .database_url
        .ok_or_else(|| anyhow::anyhow!("DATABASE_URL is not set (or pass --database-url)"))?;
    let read_url = cli
        .read_database_url
        .unwrap_or_else(|| database_url.clone());
    let progress = !cli.json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let eventstoredb_url = cli.eventstoredb_url.filter(|url| !url.is_empty());
    let ctx = Context::connect(
        &database_url,
        eventstoredb_url.as_deref(),
        &read_url,
        progress,
    )
    .await?;
    let json = cli.json;
    match cli.command {
        Command::Rebuild { projection, batch } => run_rebuild(&ctx, json, &projection, batch).await,
        Command::Verify {
            projection,
            show,
            batch,
        } => run_verify(&ctx, json, &projection, batch, show).await,
        Command::Inspect {
            stream,
            event_type,
            since,
            until,
            correlation,
            actor,
            limit,
            reveal,
            upcast,
        } => {
            let filter = inspect::Filter {
                stream,
                event_type,
                since,
                until,
                correlation,
                actor,
                limit,
                reveal,
                upcast,
            };
            let mut stdout = std::io::stdout().lock();
            inspect::inspect(&ctx, &filter, &mut stdout).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Trace { correlation } => {
            let chains = inspect::trace(&ctx, correlation).await?;
            anyhow::ensure!(
                !chains.is_empty(),
                "no events carry correlation id {correlation}"
            );
            print(json, &chains, || inspect::render_trace(&chains))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Export { out } => run_export(&ctx, json, out).await,
        Command::Import { archive: path } => run_import(&ctx, json, &path).await,
        Command::Status => run_status(&ctx, json).await,
        Command::Forecast {
            member,
            after_days,
            grace_days,
        } => {
            let policy = mileage_domain::dormancy::Policy::new(after_days, grace_days)?;
            let report = forecast::forecast(&ctx, &member, policy).await?;
            print(json, &report, || forecast::render(&report))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Adopt { consumer, at_head } => {
            let adopted = adopt::adopt(&ctx, &consumer, at_head).await?;
            print(json, &adopted, || {
                format!(
                    "{} moved from {} to {} at {}; {}{} events to handle there\n",
                    adopted.consumer,
                    adopted.from_store,
                    adopted.to_store,
                    adopted.position.as_deref().unwrap_or("the start"),
                    adopted.pending_events,
                    if adopted.pending_more { "+" } else { "" },
                )
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `replay rebuild`: 0 when swapped in, 130 when interrupted.
async fn run_rebuild(
    ctx: &Context,
    json: bool,
    projection: &str,
    batch: usize,
) -> anyhow::Result<ExitCode> {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match rebuild::rebuild(ctx, projection, batch, interrupt).await? {
        rebuild::Outcome::Done(done) => {
            print(json, &done, || {
                format!(
                    "rebuilt {} ({} events{}) in {:.1} s and swapped it in at {}\n",
                    done.projection,
                    done.events,
                    if done.resumed { ", resumed" } else { "" },
                    done.seconds,
                    done.position.as_deref().unwrap_or("the start")
                )
            })?;
            Ok(ExitCode::SUCCESS)
        }
        rebuild::Outcome::Interrupted { position } => {
            let at = position.map_or_else(|| "the start".to_owned(), |p| p.to_string());
            print(
                json,
                &serde_json::json!({ "interrupted": true, "position": at }),
                || {
                    format!(
                        "interrupted at {at}; run `replay rebuild {projection}` again to resume\n"
                    )
                },
            )?;
            Ok(ExitCode::from(130))
        }
    }
}

/// `replay verify`: 0 when equal, 1 when different.
async fn run_verify(
    ctx: &Context,
    json: bool,
    projection: &str,
    batch: usize,
    show: i64,
) -> anyhow::Result<ExitCode> {
    use std::fmt::Write as _;
    let report = verify::verify(ctx, projection, batch, show).await?;
    print(json, &report, || {
        let mut text = String::new();
        for t in &report.tables {
            let _ = writeln!(
                text,
                "{}.{}: {} live rows, {} rebuilt, {} changed since {}, {} different",
                report.projection,
                t.table,
                t.live_rows,
                t.rebuilt_rows,
                t.changed_since,
                report.position.as_deref().unwrap_or("the start"),
                t.differences
            );
        }
        for d in &report.first_differences {
            let _ = writeln!(
                text,
                "  {} {}:\n    live:    {}\n    rebuilt: {}",
                d.table,
                d.key,
                d.live.as_deref().unwrap_or("(missing)"),
                d.rebuilt.as_deref().unwrap_or("(missing)")
            );
        }
        text.push_str(if report.equal() {
            "equal\n"
        } else {
            "DIFFERENT\n"
        });
        text
    })?;
    Ok(if report.equal() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `replay export`: to a file (reporting the count) or to standard output.
async fn run_export(ctx: &Context, json: bool, out: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let report = match &out {
        Some(path) => {
            let file = std::fs::File::create(path)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            archive::export(ctx, &mut std::io::BufWriter::new(file)).await?
        }
        None => {
            archive::export(ctx, &mut std::io::BufWriter::new(std::io::stdout().lock())).await?
        }
    };
    if out.is_some() {
        print(json, &report, || {
            format!("exported {} events\n", report.events)
        })?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `replay import`: into the configured store.
async fn run_import(ctx: &Context, json: bool, path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let report = archive::import(ctx, path).await?;
    print(json, &report, || {
        format!(
            "imported {} events ({} were already there)\n",
            report.events, report.already_there
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `replay status`: a table of every consumer.
async fn run_status(ctx: &Context, json: bool) -> anyhow::Result<ExitCode> {
    use std::fmt::Write as _;
    let consumers = status::status(ctx).await?;
    print(json, &consumers, || {
        let mut text = format!(
            "{:<14} {:<11} {:<16} {:>10} {:>9}  {}\n",
            "consumer", "state", "checkpoint", "lag", "lag s", "error"
        );
        for c in &consumers {
            let _ = writeln!(
                text,
                "{:<14} {:<11} {:<16} {:>10} {:>9.1}  {}",
                c.name,
                c.state,
                if c.same_store {
                    c.checkpoint.as_deref().unwrap_or("-")
                } else {
                    "other store"
                },
                format!("{}{}", c.lag_events, if c.lag_more { "+" } else { "" }),
                c.lag_seconds,
                c.error.as_deref().unwrap_or("")
            );
        }
        text
    })?;
    Ok(ExitCode::SUCCESS)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("replay: error: {error:#}");
            ExitCode::from(2)
        }
    }
}
