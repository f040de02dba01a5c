//! `replay forecast`: for one member, when the dormancy policy makes them
//! a target and marks that target dormant, as things stand in the log, and
//! where the target of their present quiet period is, if it exists.

use chrono::{DateTime, Utc};
use mileage_domain::Aggregate;
use mileage_domain::aggregate::stream_name;
use mileage_domain::dormancy::{Forecast, Policy};
use mileage_domain::dormant_member::DormantMember;
use mileage_domain::ids::MemberId;
use mileage_domain::member::Member;
use mileage_store::EventStore;
use serde::Serialize;

use crate::Context;

/// What `replay forecast` reports.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The member asked about.
    pub member_id: String,
    /// `scheduled`, `excluded`, `withdrawn` or `not joined`.
    pub state: &'static str,
    /// Their last activity in the log.
    pub last_active_at: Option<DateTime<Utc>>,
    /// The target this quiet period makes.
    pub target_id: Option<String>,
    /// When it is made, without further activity.
    pub target_at: Option<DateTime<Utc>>,
    /// When that target is marked dormant, at the earliest.
    pub dormant_at: Option<DateTime<Utc>>,
    /// That target's status, when the log has it.
    pub target_status: Option<String>,
    /// The operator's reason, when excluded.
    pub excluded_because: Option<String>,
    /// The policy's period without activity, in days.
    pub after_days: i64,
    /// The policy's grace, in days.
    pub grace_days: i64,
}

/// The forecast for `member` under `policy`.
pub async fn forecast(ctx: &Context, member: &str, policy: Policy) -> anyhow::Result<Report> {
    let id = MemberId::parse(member).map_err(|e| anyhow::anyhow!("member id {member:?}: {e}"))?;
    let state: Member = fold(&*ctx.store, &stream_name::<Member>(&id)).await?;
    let mut report = Report {
        member_id: id.to_string(),
        state: "not joined",
        last_active_at: None,
        target_id: None,
        target_at: None,
        dormant_at: None,
        target_status: None,
        excluded_because: None,
        after_days: policy.after_days(),
        grace_days: policy.grace_days(),
    };
    match policy.forecast(&state) {
        Forecast::Scheduled {
            last_active_at,
            target,
            target_at,
            dormant_at,
        } => {
            let existing: DormantMember =
                fold(&*ctx.store, &stream_name::<DormantMember>(&target)).await?;
            report.state = "scheduled";
            report.last_active_at = Some(last_active_at);
            report.target_status = existing.status().map(|s| s.as_str().to_owned());
            report.target_id = Some(target.to_string());
            report.target_at = Some(target_at);
            report.dormant_at = Some(match &existing {
                DormantMember::Registered(t) => t.registered_at + (dormant_at - target_at),
                DormantMember::Unregistered => dormant_at,
            });
        }
        Forecast::Excluded { reason } => {
            report.state = "excluded";
            report.excluded_because = Some(reason);
        }
        Forecast::Withdrawn => report.state = "withdrawn",
        Forecast::NotJoined => {}
    }
    Ok(report)
}

/// The text `replay forecast` prints.
pub fn render(report: &Report) -> String {
    let policy = format!(
        "(policy: {} days quiet, {} days' grace)",
        report.after_days, report.grace_days
    );
    match report.state {
        "scheduled" => {
            let mut text = format!(
                "member {} last active {}\n  becomes target {} at {}\n  marked dormant at {}\n",
                report.member_id,
                show(report.last_active_at),
                report.target_id.as_deref().unwrap_or("-"),
                show(report.target_at),
                show(report.dormant_at),
            );
            if let Some(status) = &report.target_status {
                text += "  that target is ";
                text += status;
                text += " now\n";
            }
            text + "  " + &policy + "\n"
        }
        "excluded" => format!(
            "member {} is excluded from the policy: {}\n",
            report.member_id,
            report.excluded_because.as_deref().unwrap_or("")
        ),
        other => format!(
            "member {} is {other}: nothing scheduled\n",
            report.member_id
        ),
    }
}

fn show(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(|| "-".into(), |t| t.to_rfc3339())
}

/// `stream` folded into its state.
async fn fold<A: Aggregate>(store: &dyn EventStore, stream: &str) -> anyhow::Result<A> {
    let mut state = A::default();
    let mut from = 0;
    loop {
        let page = store.read_stream(stream, from, 500).await?;
        for recorded in &page {
            let event: A::Event = recorded.decode()?;
            state = state.evolve(&event);
            from = recorded.stream_version + 1;
        }
        if page.len() < 500 {
            return Ok(state);
        }
    }
}
