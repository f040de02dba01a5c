//! The dormancy policy: after how long without activity a member becomes a
//! dormant target, and how long a target stays `PRE_DORMANT` before it is
//! marked `DORMANT` (which sends the notice). Pure: the scheduler passes in
//! the time, the member and the target as the log has them.
//!
//! A policy target's id is derived from the member and the activity that
//! began the quiet period ([`target_id`]): however often the policy is
//! applied to one quiet period, by one scheduler or several, it names the
//! same target, so the log holds it at most once.

use chrono::{DateTime, TimeDelta, Utc};

use crate::dormant_member::{DormantMember, DormantStatus, DormantTarget};
use crate::ids::{DormantMemberId, MAX_ID_LEN, MemberId};
use crate::member::Member;

/// The policy's two periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    after: TimeDelta,
    grace: TimeDelta,
}

/// A policy that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A period outside 1 to [`Policy::MAX_DAYS`] days.
    #[error("{name} must be 1 to {max} days, got {days}", max = Policy::MAX_DAYS)]
    OutOfRange {
        /// Which period.
        name: &'static str,
        /// The days given.
        days: i64,
    },
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            after: TimeDelta::days(Self::DEFAULT_AFTER_DAYS),
            grace: TimeDelta::days(Self::DEFAULT_GRACE_DAYS),
        }
    }
}

impl Policy {
    /// Days without activity before a member becomes a target: with the
    /// grace, a year, the common legal rule for Korean services.
    pub const DEFAULT_AFTER_DAYS: i64 = 335;
    /// Days a target stays `PRE_DORMANT` (the notice ahead of time).
    pub const DEFAULT_GRACE_DAYS: i64 = 30;
    /// The longest period accepted, in days (ten years).
    pub const MAX_DAYS: i64 = 3650;

    /// A policy of `after_days` without activity and `grace_days` more.
    pub fn new(after_days: i64, grace_days: i64) -> Result<Self, PolicyError> {
        let days = |name, days: i64| {
            if (1..=Self::MAX_DAYS).contains(&days) {
                Ok(TimeDelta::days(days))
            } else {
                Err(PolicyError::OutOfRange { name, days })
            }
        };
        Ok(Self {
            after: days("DORMANCY_AFTER_DAYS", after_days)?,
            grace: days("DORMANCY_GRACE_DAYS", grace_days)?,
        })
    }

    /// The period without activity, in days.
    pub fn after_days(&self) -> i64 {
        self.after.num_days()
    }

    /// The grace before `DORMANT`, in days.
    pub fn grace_days(&self) -> i64 {
        self.grace.num_days()
    }

    /// Members last active at or before this are quiet at `now`.
    pub fn quiet_before(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - self.after
    }

    /// Targets registered at or before this are due to be marked dormant
    /// at `now`.
    pub fn registered_before(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - self.grace
    }

    /// The target `member` is due to become at `now`, if any: an active
    /// member, not excluded, quiet for the whole period.
    pub fn target_for(&self, member: &Member, now: DateTime<Utc>) -> Option<Due> {
        let Member::Active(active) = member else {
            return None;
        };
        if active.dormancy_exclusion.is_some() || active.last_active_at > self.quiet_before(now) {
            return None;
        }
        Some(Due {
            id: target_id(&active.member_id, active.last_active_at),
            member_id: active.member_id.clone(),
            quiet_since: active.last_active_at,
        })
    }

    /// What the policy does now with `target`, given its member as the log
    /// has them. Only the policy's own targets still `PRE_DORMANT` are its
    /// business; an operator's are left to the operator.
    pub fn review(&self, target: &DormantMember, member: &Member, now: DateTime<Utc>) -> Review {
        let DormantMember::Registered(DormantTarget {
            status: DormantStatus::PreDormant,
            quiet_since: Some(quiet_since),
            registered_at,
            ..
        }) = target
        else {
            return Review::Nothing;
        };
        match member {
            Member::Withdrawn { .. } => Review::Lift("the member withdrew".into()),
            Member::NotJoined => Review::Nothing,
            Member::Active(active) if active.last_active_at > *quiet_since => {
                Review::Lift(format!("active again at {}", active.last_active_at))
            }
            Member::Active(active) => match &active.dormancy_exclusion {
                Some(reason) => Review::Lift(format!("excluded from the policy: {reason}")),
                None if *registered_at <= self.registered_before(now) => Review::MarkDormant,
                None => Review::Wait(*registered_at + self.grace),
            },
        }
    }

    /// When `member` becomes a target and then dormant, as things stand.
    pub fn forecast(&self, member: &Member) -> Forecast {
        match member {
            Member::Active(active) if active.dormancy_exclusion.is_none() => {
                let target_at = active.last_active_at + self.after;
                Forecast::Scheduled {
                    last_active_at: active.last_active_at,
                    target: target_id(&active.member_id, active.last_active_at),
                    target_at,
                    dormant_at: target_at + self.grace,
                }
            }
            Member::Active(active) => Forecast::Excluded {
                reason: active.dormancy_exclusion.clone().unwrap_or_default(),
            },
            Member::Withdrawn { .. } => Forecast::Withdrawn,
            Member::NotJoined => Forecast::NotJoined,
        }
    }
}

/// A target the policy is to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// Its id, derived from the member and the quiet period.
    pub id: DormantMemberId,
    /// The quiet member.
    pub member_id: MemberId,
    /// The last activity, which began the quiet period.
    pub quiet_since: DateTime<Utc>,
}

/// What the policy does with a target now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Review {
    /// The grace is over: mark it dormant (the notice follows).
    MarkDormant,
    /// Take it off the list, for this reason.
    Lift(String),
    /// Nothing yet; due to be marked dormant at this time.
    Wait(DateTime<Utc>),
    /// Not the policy's business (an operator's target, or no longer
    /// `PRE_DORMANT`).
    Nothing,
}

/// When a member becomes a target and dormant, as things stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forecast {
    /// Under the policy.
    Scheduled {
        /// The last activity.
        last_active_at: DateTime<Utc>,
        /// The target this quiet period would be.
        target: DormantMemberId,
        /// When they become a target, without further activity.
        target_at: DateTime<Utc>,
        /// When that target is marked dormant (at the earliest).
        dormant_at: DateTime<Utc>,
    },
    /// Taken out of the policy by an operator.
    Excluded {
        /// The operator's reason.
        reason: String,
    },
    /// The member withdrew: nothing to schedule.
    Withdrawn,
    /// No member under this id.
    NotJoined,
}

/// The id of the policy's target for `member` quiet since `quiet_since`:
/// `q-{member}-{microseconds}`, or, when that would be longer than an id
/// may be, `q-` and a digest of the same (a name-based UUID).
pub fn target_id(member: &MemberId, quiet_since: DateTime<Utc>) -> DormantMemberId {
    let readable = format!("q-{member}-{}", quiet_since.timestamp_micros());
    let id = if readable.len() <= MAX_ID_LEN {
        readable
    } else {
        let digest = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, readable.as_bytes());
        format!("q-{}", digest.simple())
    };
    DormantMemberId::parse(&id).expect("made of id characters, within the length")
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::Aggregate;
    use crate::dormant_member::{DormantMemberCommand, DormantMemberEvent};
    use crate::member::{ActiveMember, MemberCommand};
    use crate::pii::PersonKey;
    use crate::values::{Points, Reason};

    fn day(n: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap() + TimeDelta::days(n)
    }

    fn member(last_active_day: i64) -> Member {
        let key = PersonKey::new("member-12", [1; 32]);
        Member::Active(ActiveMember {
            member_id: MemberId::parse("12").unwrap(),
            phone_no: key.seal("phoneNo", "01012345678", [1; 24]),
            nickname: key.seal("nickname", "kim", [2; 24]),
            balance: Points::ZERO,
            last_active_at: day(last_active_day),
            dormancy_exclusion: None,
        })
    }

    fn target_of(member: &Member, registered: i64) -> DormantMember {
        let due = Policy::default()
            .target_for(member, day(registered))
            .unwrap();
        let Member::Active(active) = member else {
            unreachable!()
        };
        let events = DormantMember::default()
            .decide(DormantMemberCommand::Register {
                id: due.id,
                member_id: due.member_id,
                phone: active.phone_no.clone(),
                nickname: active.nickname.clone(),
                at: day(registered),
                quiet_since: Some(due.quiet_since),
            })
            .unwrap();
        events
            .iter()
            .fold(DormantMember::default(), Aggregate::evolve)
    }

    #[test]
    fn a_member_quiet_for_the_whole_period_is_due_and_not_a_day_before() {
        let policy = Policy::default();
        assert_eq!(policy.target_for(&member(0), day(334)), None);
        let due = policy.target_for(&member(0), day(335)).unwrap();
        assert_eq!(due.quiet_since, day(0));
        assert_eq!(
            due.id.as_str(),
            format!("q-12-{}", day(0).timestamp_micros())
        );
    }

    #[test]
    fn one_quiet_period_names_one_target_and_activity_starts_another() {
        let policy = Policy::default();
        let once = policy.target_for(&member(0), day(335)).unwrap();
        let later = policy.target_for(&member(0), day(400)).unwrap();
        assert_eq!(once.id, later.id, "the same period, the same target");
        let again = policy.target_for(&member(10), day(400)).unwrap();
        assert_ne!(once.id, again.id, "a new period, a new target");
    }

    #[test]
    fn an_excluded_or_withdrawn_member_is_never_due() {
        let excluded = member(0)
            .decide(MemberCommand::ExcludeFromDormancy {
                reason: Reason::parse("VIP contract").unwrap(),
                at: day(1),
            })
            .unwrap()
            .iter()
            .fold(member(0), Aggregate::evolve);
        assert_eq!(Policy::default().target_for(&excluded, day(900)), None);
        let gone = Member::Withdrawn {
            member_id: MemberId::parse("12").unwrap(),
        };
        assert_eq!(Policy::default().target_for(&gone, day(900)), None);
        assert_eq!(
            Policy::default().forecast(&excluded),
            Forecast::Excluded {
                reason: "VIP contract".into()
            }
        );
    }

    #[test]
    fn a_target_is_marked_dormant_after_the_grace_and_lifted_by_activity() {
        let policy = Policy::default();
        let target = target_of(&member(0), 335);
        assert_eq!(
            policy.review(&target, &member(0), day(364)),
            Review::Wait(day(365))
        );
        assert_eq!(
            policy.review(&target, &member(0), day(365)),
            Review::MarkDormant
        );
        let Review::Lift(reason) = policy.review(&target, &member(340), day(365)) else {
            panic!("activity on day 340 lifts the target");
        };
        assert!(reason.starts_with("active again"), "{reason}");
        let gone = Member::Withdrawn {
            member_id: MemberId::parse("12").unwrap(),
        };
        assert!(matches!(
            policy.review(&target, &gone, day(340)),
            Review::Lift(_)
        ));
    }

    #[test]
    fn an_operators_target_and_a_target_past_pre_dormant_are_not_the_policys() {
        let policy = Policy::default();
        let mut manual = target_of(&member(0), 335);
        if let DormantMember::Registered(t) = &mut manual {
            t.quiet_since = None;
        }
        assert_eq!(
            policy.review(&manual, &member(0), day(900)),
            Review::Nothing
        );
        let target = target_of(&member(0), 335);
        let dormant = target
            .decide(DormantMemberCommand::MarkDormant { at: day(365) })
            .unwrap()
            .iter()
            .fold(target, |s: DormantMember, e: &DormantMemberEvent| {
                s.evolve(e)
            });
        assert_eq!(
            policy.review(&dormant, &member(340), day(900)),
            Review::Nothing
        );
    }

    #[test]
    fn the_forecast_counts_from_the_last_activity() {
        let Forecast::Scheduled {
            target_at,
            dormant_at,
            ..
        } = Policy::new(10, 5).unwrap().forecast(&member(3))
        else {
            panic!("an active member is scheduled");
        };
        assert_eq!((target_at, dormant_at), (day(13), day(18)));
    }

    #[test]
    fn periods_out_of_range_are_refused_by_name() {
        assert_eq!(
            Policy::new(0, 30),
            Err(PolicyError::OutOfRange {
                name: "DORMANCY_AFTER_DAYS",
                days: 0
            })
        );
        assert!(Policy::new(335, 3651).is_err());
    }

    #[test]
    fn a_long_member_id_still_makes_a_valid_and_distinct_target_id() {
        let long = MemberId::parse(&"7".repeat(64)).unwrap();
        let a = target_id(&long, day(0));
        let b = target_id(&long, day(1));
        assert!(a.as_str().len() <= MAX_ID_LEN && a.as_str().starts_with("q-"));
        assert_ne!(a, b);
    }
}
