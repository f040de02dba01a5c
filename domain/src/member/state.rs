//! A member's state and its decide/evolve pair.

use chrono::{DateTime, Utc};

use crate::aggregate::Aggregate;
use crate::ids::MemberId;
use crate::pii::Sealed;
use crate::values::Points;

use super::command::MemberCommand;
use super::error::MemberError;
use super::event::{
    ExcludedFromDormancy, IncludedInDormancy, MemberEvent, MemberJoined, MemberWithdrawn,
    PointsEarned, PointsForfeited, PointsUsed,
};
use super::limits::PointLimits;

/// A member, as folded from the `member-{id}` stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Member {
    /// Nobody has joined under this id.
    #[default]
    NotJoined,
    /// A member who can earn and use points.
    Active(ActiveMember),
    /// A member who left. Terminal.
    Withdrawn { member_id: MemberId },
}

/// What an active member holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveMember {
    pub member_id: MemberId,
    /// Sealed phone number.
    pub phone_no: Sealed,
    /// Sealed nickname.
    pub nickname: Sealed,
    /// Current balance; never negative by construction.
    pub balance: Points,
    /// The member's last activity (see [`MemberEvent::activity_at`]): what
    /// the dormancy policy counts from.
    pub last_active_at: DateTime<Utc>,
    /// Why an operator took the member out of the dormancy policy, while
    /// they are out.
    pub dormancy_exclusion: Option<String>,
}

impl Member {
    /// The current balance (zero unless active).
    pub fn balance(&self) -> Points {
        match self {
            Self::Active(member) => member.balance,
            Self::NotJoined | Self::Withdrawn { .. } => Points::ZERO,
        }
    }

    fn active(&self) -> Result<&ActiveMember, MemberError> {
        match self {
            Self::Active(member) => Ok(member),
            Self::NotJoined => Err(MemberError::NotFound),
            Self::Withdrawn { .. } => Err(MemberError::Withdrawn),
        }
    }
}

impl Aggregate for Member {
    type Command = MemberCommand;
    type Event = MemberEvent;
    type Error = MemberError;

    const CATEGORY: &'static str = "member";

    fn decide(&self, command: MemberCommand) -> Result<Vec<MemberEvent>, MemberError> {
        match command {
            MemberCommand::Join {
                member_id,
                phone,
                nickname,
                at,
                rejoining,
            } => match self {
                Self::NotJoined => Ok(vec![
                    MemberJoined {
                        member_id,
                        phone_no: phone,
                        nickname,
                        joined_at: at,
                        rejoining,
                    }
                    .into(),
                ]),
                Self::Active(_) | Self::Withdrawn { .. } => Err(MemberError::AlreadyJoined),
            },
            MemberCommand::EarnPoints { amount, at, limits } => {
                let member = self.active()?;
                let amount = within(amount, limits)?;
                let balance = member
                    .balance
                    .checked_add(amount)
                    .filter(|b| *b <= limits.max_balance())
                    .ok_or(MemberError::BalanceLimit {
                        max: limits.max_balance(),
                    })?;
                Ok(vec![
                    PointsEarned {
                        member_id: member.member_id.clone(),
                        amount,
                        balance,
                        at,
                        expires_at: at + super::POINTS_VALID_FOR,
                    }
                    .into(),
                ])
            }
            MemberCommand::UsePoints { amount, at, limits } => {
                let member = self.active()?;
                let amount = within(amount, limits)?;
                let balance =
                    member
                        .balance
                        .checked_sub(amount)
                        .ok_or(MemberError::InsufficientPoints {
                            balance: member.balance,
                            requested: amount,
                        })?;
                Ok(vec![
                    PointsUsed {
                        member_id: member.member_id.clone(),
                        amount,
                        balance,
                        at,
                    }
                    .into(),
                ])
            }
            MemberCommand::ExcludeFromDormancy { .. } | MemberCommand::IncludeInDormancy { .. } => {
                self.exclusion(command)
            }
            MemberCommand::Withdraw { at } => {
                let member = self.active()?;
                let member_id = member.member_id.clone();
                let mut events = Vec::with_capacity(2);
                if member.balance > Points::ZERO {
                    events.push(
                        PointsForfeited {
                            member_id: member_id.clone(),
                            amount: member.balance,
                            at,
                        }
                        .into(),
                    );
                }
                events.push(MemberWithdrawn { member_id, at }.into());
                Ok(events)
            }
        }
    }

    fn evolve(self, event: &MemberEvent) -> Self {
        match (self, event) {
            (Self::NotJoined, MemberEvent::MemberJoined(e)) => Self::Active(ActiveMember {
                member_id: e.member_id.clone(),
                phone_no: e.phone_no.clone(),
                nickname: e.nickname.clone(),
                balance: Points::ZERO,
                last_active_at: e.joined_at,
                dormancy_exclusion: None,
            }),
            (
                Self::Active(mut m),
                MemberEvent::PointsEarned(PointsEarned { balance, at, .. })
                | MemberEvent::PointsUsed(PointsUsed { balance, at, .. }),
            ) => {
                m.balance = *balance;
                m.last_active_at = m.last_active_at.max(*at);
                Self::Active(m)
            }
            (Self::Active(mut m), MemberEvent::ExcludedFromDormancy(e)) => {
                m.dormancy_exclusion = Some(e.reason.clone());
                Self::Active(m)
            }
            (Self::Active(mut m), MemberEvent::IncludedInDormancy(_)) => {
                m.dormancy_exclusion = None;
                Self::Active(m)
            }
            (Self::Active(mut m), MemberEvent::PointsForfeited(_)) => {
                m.balance = Points::ZERO;
                Self::Active(m)
            }
            (Self::Active(m), MemberEvent::MemberWithdrawn(_)) => Self::Withdrawn {
                member_id: m.member_id,
            },
            (state, _) => state,
        }
    }
}

impl Member {
    /// An operator's exclusion from the dormancy policy, or its end; a
    /// repeat changes nothing.
    fn exclusion(&self, command: MemberCommand) -> Result<Vec<MemberEvent>, MemberError> {
        let member = self.active()?;
        let member_id = member.member_id.clone();
        Ok(match (command, &member.dormancy_exclusion) {
            (MemberCommand::ExcludeFromDormancy { reason, at }, None) => vec![
                ExcludedFromDormancy {
                    member_id,
                    reason: reason.as_str().to_owned(),
                    at,
                }
                .into(),
            ],
            (MemberCommand::IncludeInDormancy { at }, Some(_)) => {
                vec![IncludedInDormancy { member_id, at }.into()]
            }
            _ => vec![],
        })
    }
}

/// A command's amount: positive and at most the per-command limit.
fn within(amount: i64, limits: PointLimits) -> Result<Points, MemberError> {
    let amount = Points::positive(amount)?;
    if amount > limits.max_amount() {
        return Err(MemberError::AmountTooLarge {
            max: limits.max_amount(),
        });
    }
    Ok(amount)
}
