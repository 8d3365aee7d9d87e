//! The pure planner: a command and the case as it is → a [`Plan`] or a
//! [`Refusal`]. No I/O, no clock (the time and new ids come in [`PlanCtx`]).
//!
//! Every plan that goes through [`finish`] has the command's timeline entry,
//! its case event and its audit record; the checks come first, in the order
//! the API has always answered them, so a refused command plans nothing.

use sanyu_domain::lifecycle::{self, CaseAction, IllegalTransition};
use sanyu_domain::{CaseStatus, LadderState, RiskLevel, Role};
use sanyu_events::NotificationReason;
use sanyu_events::{Payload, v1};
use sanyu_store::audit::AuditEntry;
use sanyu_store::entities::case;
use sanyu_store::outbox::OutboxEvent;

use crate::after_ack;
use crate::allowed::{closed, require_taken};
use crate::command::{AckChannel, Actor, Command, Secret};
use crate::ladder::{self, RUNG_TIMER, people_in};
use crate::plan::{ActorRef, Plan, PlanCtx, Refusal, TimelineEntry};
use crate::snapshot::CaseSnapshot;

mod link;
mod work;

/// Plan `cmd` by `actor` on the case of `state`.
pub fn plan(
    state: &CaseSnapshot,
    actor: &Actor,
    cmd: &Command,
    ctx: &PlanCtx<'_>,
) -> Result<Plan, Refusal> {
    let p = Planner {
        state,
        actor,
        ctx,
        cmd,
    };
    match cmd {
        Command::Acknowledge { via } => p.acknowledge(*via),
        Command::Assign { staff_id } => p.assign(*staff_id),
        Command::Note { text } => p.note(text),
        Command::ContactGuardian(c) => p.guardian_contact(c),
        Command::Refer(r) => p.refer(r),
        Command::FollowUp(f) => p.follow_up(f),
        Command::SetLevel { level, reason } => p.set_level(*level, reason),
        Command::Close { outcome, summary } => p.close(outcome, summary.as_ref()),
        Command::Reopen { reason } => p.reopen(reason),
        Command::LinkStudent { .. } => p.link_student(),
    }
}

/// Move a case that has been acknowledged to `in_progress` when work starts.
fn started(status: CaseStatus) -> CaseStatus {
    if status == CaseStatus::Acknowledged {
        CaseStatus::InProgress
    } else {
        status
    }
}

fn check_text(field: &str, text: &str) -> Result<(), Refusal> {
    if text.trim().is_empty() {
        return Err(Refusal::invalid(field, "must not be empty"));
    }
    sanyu_domain::input::text(text, sanyu_domain::input::MAX_TEXT)
        .map_err(|e| Refusal::invalid(field, e.to_string()))
}

/// What the command leaves on the timeline of its case.
struct Entry {
    action: &'static str,
    detail: serde_json::Value,
    sealed_detail: Option<serde_json::Value>,
    text: Option<Secret>,
    created_id: Option<uuid::Uuid>,
}

impl Entry {
    fn new(action: &'static str, detail: serde_json::Value) -> Self {
        Self {
            action,
            detail,
            sealed_detail: None,
            text: None,
            created_id: None,
        }
    }

    fn text(mut self, text: Option<&Secret>) -> Self {
        self.text = text.cloned();
        self
    }
}

pub(crate) struct Planner<'a> {
    state: &'a CaseSnapshot,
    actor: &'a Actor,
    ctx: &'a PlanCtx<'a>,
    cmd: &'a Command,
}

impl Planner<'_> {
    fn case(&self) -> &case::Model {
        &self.state.case
    }

    fn who(&self) -> ActorRef {
        ActorRef::from(&self.actor.principal)
    }

    /// A case event of `case` (its school's subject and the case's partition).
    fn event(
        &self,
        case: &case::Model,
        id: String,
        subject_event: &str,
        payload: Payload,
    ) -> OutboxEvent {
        let school = &self.state.school_code;
        self.ctx
            .case_event(case, school, id, subject_event, payload)
    }

    /// Restart `case`'s ladder at its level (with `why` as the reason its
    /// first contacts are told).
    fn restart_ladder(
        &self,
        plan: &mut Plan,
        case: &case::Model,
        why: NotificationReason,
    ) -> Result<case::Model, Refusal> {
        let start = ladder::plan_start(
            case,
            self.ctx.policy,
            &self.state.school_code,
            |roles| people_in(&self.state.staff, roles),
            &self.state.duty,
            why,
            self.ctx.now,
            self.ctx.traceparent.clone(),
        )?;
        Ok(plan.ladder(start))
    }

    /// Stop `case`'s ladder: its pending rungs are cancelled.
    fn stop_ladder(plan: &mut Plan, case: &mut case::Model) {
        plan.cancel(case.id, RUNG_TIMER);
        case.ladder_state = LadderState::Stopped;
    }

    /// The command's case row (`after`), timeline entry, case event and
    /// audit record.
    fn finish(
        &self,
        mut plan: Plan,
        mut after: case::Model,
        entry: Entry,
    ) -> Result<Plan, Refusal> {
        let before = self.case();
        let entry_id = (self.ctx.ids)();
        self.after_ack_timers(&mut plan, &mut after, entry_id)?;
        plan.write_case(before, &after);
        let status = after.status;
        let p = &self.actor.principal;
        let payload = match entry.action {
            "acknowledge" => Payload::CaseAcknowledged(v1::CaseAcknowledged {
                case_id: after.id.to_string(),
                reference: after.reference.clone(),
                staff_id: p.staff_id.map(|s| s.to_string()).unwrap_or_default(),
                channel: entry.detail["via"].as_str().unwrap_or_default().to_owned(),
            }),
            "close" | "merge" => Payload::CaseClosed(v1::CaseClosed {
                case_id: after.id.to_string(),
                reference: after.reference.clone(),
                outcome: if entry.action == "close" {
                    "closed"
                } else {
                    "merged"
                }
                .into(),
            }),
            action => Payload::CaseAction(v1::CaseActionRecorded {
                case_id: after.id.to_string(),
                reference: after.reference.clone(),
                action: action.to_owned(),
                status: after.status.as_str().to_owned(),
                level: sanyu_events::level_to_proto(after.level) as i32,
                actor_role: p.role.as_str().to_owned(),
            }),
        };
        let subject_event = match entry.action {
            "acknowledge" => "acknowledged",
            "close" | "merge" => "closed",
            _ => "action",
        };
        // One event per timeline entry: its id is the entry's.
        let event = self.event(
            &after,
            format!("case.action:{entry_id}"),
            subject_event,
            payload,
        );
        plan.events.push(event);
        // How an acknowledgement came is part of where it came from.
        let source = match entry.detail["via"].as_str() {
            Some(via) if via != AckChannel::Api.as_str() => {
                format!("{} via {via}", self.actor.source)
            }
            _ => self.actor.source.clone(),
        };
        plan.timeline.push(TimelineEntry {
            id: entry_id,
            case_id: after.id,
            action: entry.action.to_owned(),
            actor: self.who(),
            status_after: status,
            detail: entry.detail,
            text: entry.text,
            sealed_detail: entry.sealed_detail.map(|d| Secret(d.to_string())),
            at: self.ctx.now,
        });
        plan.audit.push(AuditEntry {
            actor_token_id: Some(p.token_id),
            actor_role: p.role.as_str().to_owned(),
            actor_staff_id: p.staff_id,
            school_id: Some(p.school_id),
            action: format!("case.{}", entry.action),
            target: format!("case:{}", after.id),
            source,
        });
        plan.created_id = entry.created_id;
        entry.action.clone_into(&mut plan.action);
        plan.case = after;
        Ok(plan)
    }

    /// What an action or an acknowledgement does to the timers that follow
    /// one ([`crate::after_ack`]): an action (the one rule,
    /// [`Command::counts_as_action`]) is recorded on the case and cancels the
    /// after-acknowledgement rungs; both restart the stale reminder (none
    /// once the case is closed).
    fn after_ack_timers(
        &self,
        plan: &mut Plan,
        after: &mut case::Model,
        entry_id: uuid::Uuid,
    ) -> Result<(), Refusal> {
        let acknowledged = matches!(self.cmd, Command::Acknowledge { .. });
        if self.cmd.counts_as_action() {
            after.last_action_at = Some(self.ctx.now);
            plan.cancel(after.id, after_ack::ACTION_TIMER);
        }
        if self.cmd.counts_as_action() || acknowledged || after.status == CaseStatus::Closed {
            plan.cancel(after.id, after_ack::STALE_TIMER);
        }
        if after.status == CaseStatus::Closed {
            plan.cancel(after.id, after_ack::ACTION_TIMER);
        } else if self.cmd.counts_as_action() || acknowledged {
            let period = self.ctx.policy.stale_after_days.of(after.level);
            plan.timers.extend(after_ack::stale_timer(
                after.id,
                period,
                entry_id,
                self.ctx.now,
            )?);
        }
        Ok(())
    }

    /// The first rung of the ladder that follows an acknowledgement without
    /// action, scheduled (the after-acknowledgement ladder snapshotted with
    /// the case's ladder; for a ladder snapshotted before there was one, the
    /// policy's, snapshotted now).
    fn schedule_after_ack(&self, plan: &mut Plan, after: &mut case::Model) -> Result<(), Refusal> {
        plan.cancel(after.id, after_ack::ACTION_TIMER);
        let mut snapshot = ladder::ladder_of(after)?;
        let after_ack = match snapshot.as_ref().and_then(|l| l.after_ack.clone()) {
            Some(a) => a,
            None => {
                let Some(a) = self.ctx.policy.after_ack.of(after.level).cloned() else {
                    return Ok(());
                };
                if let Some(l) = snapshot.as_mut() {
                    l.after_ack = Some(a.clone());
                    after.ladder = Some(
                        serde_json::to_string(l)
                            .map_err(|e| Refusal::Corrupt(format!("ladder: {e}")))?,
                    );
                }
                a
            }
        };
        plan.timers.extend(after_ack::action_timer(
            after.id,
            &after_ack,
            after.ladder_epoch,
            1,
            self.ctx.now,
        )?);
        Ok(())
    }

    fn acknowledge(&self, via: AckChannel) -> Result<Plan, Refusal> {
        let c = self.case();
        let status = c.status;
        let next = if status == CaseStatus::Open {
            lifecycle::transition(status, CaseAction::Acknowledge)?
        } else if status != CaseStatus::Closed && c.ladder_state != LadderState::Stopped {
            // The level was raised after the case was taken: acknowledge again.
            status
        } else {
            return Err(IllegalTransition {
                from: status,
                action: CaseAction::Acknowledge,
                allowed: lifecycle::allowed_actions(status),
            }
            .into());
        };
        let p = &self.actor.principal;
        let mut plan = Plan::about(c, "acknowledge");
        let mut after = c.clone();
        Self::stop_ladder(&mut plan, &mut after);
        let assignee = match (after.assignee_staff_id, p.role) {
            (None, Role::Counsellor) => p.staff_id,
            (current, _) => current,
        };
        after.status = next;
        after.acknowledged_at = Some(self.ctx.now);
        after.acknowledged_by = p.staff_id;
        after.assignee_staff_id = assignee;
        self.schedule_after_ack(&mut plan, &mut after)?;
        let detail = serde_json::json!({ "assignee_staff_id": assignee, "via": via.as_str() });
        self.finish(plan, after, Entry::new("acknowledge", detail))
    }

    fn assign(&self, to: uuid::Uuid) -> Result<Plan, Refusal> {
        let c = self.case();
        let status = c.status;
        if status == CaseStatus::Closed {
            return Err(closed(c, "assign it"));
        }
        let person = self
            .state
            .related
            .assignee
            .as_ref()
            .filter(|s| s.id == to)
            .filter(|s| s.role == Role::Counsellor.as_str() || s.role == Role::CrisisTeam.as_str())
            .ok_or_else(|| {
                Refusal::invalid(
                    "staff_id",
                    "not an active counsellor or crisis-team member of this school",
                )
            })?;
        let mut after = c.clone();
        after.assignee_staff_id = Some(person.id);
        after.status = started(status);
        let detail = serde_json::json!({ "assignee_staff_id": person.id });
        self.finish(
            Plan::about(c, "assign"),
            after,
            Entry::new("assign", detail),
        )
    }

    fn note(&self, text: &Secret) -> Result<Plan, Refusal> {
        let c = self.case();
        let status = require_taken(c)?;
        let mut after = c.clone();
        after.status = started(status);
        let entry = Entry::new("note", serde_json::json!({})).text(Some(text));
        self.finish(Plan::about(c, "note"), after, entry)
    }

    fn set_level(&self, to: RiskLevel, why: &Secret) -> Result<Plan, Refusal> {
        let c = self.case();
        if c.status == CaseStatus::Closed {
            return Err(closed(c, "change its level"));
        }
        let from = c.level;
        if from == to {
            return Err(Refusal::invalid(
                "level",
                format!("the case is already {from}"),
            ));
        }
        let mut plan = Plan::about(c, "level");
        let mut after = c.clone();
        after.level = to;
        after.level_rank = to.rank();
        let ladder_running = after.ladder_state != LadderState::Stopped;
        if to.rank() > from.rank() || ladder_running {
            let reason = if to.rank() > from.rank() {
                NotificationReason::LevelRaised
            } else {
                NotificationReason::LevelChanged
            };
            after = self.restart_ladder(&mut plan, &after, reason)?;
        }
        let detail = serde_json::json!({ "from": from.as_str(), "to": to.as_str() });
        self.finish(plan, after, Entry::new("level", detail).text(Some(why)))
    }

    fn close(&self, outcome: &Secret, summary: Option<&Secret>) -> Result<Plan, Refusal> {
        let c = self.case();
        let next = lifecycle::transition(c.status, CaseAction::Close)?;
        let mut plan = Plan::about(c, "close");
        let mut after = c.clone();
        Self::stop_ladder(&mut plan, &mut after);
        after.status = next;
        after.closed_at = Some(self.ctx.now);
        let entry = Entry {
            sealed_detail: Some(serde_json::json!({ "outcome": outcome.expose() })),
            ..Entry::new("close", serde_json::json!({})).text(summary)
        };
        self.finish(plan, after, entry)
    }

    fn reopen(&self, why: &Secret) -> Result<Plan, Refusal> {
        let c = self.case();
        let next = lifecycle::transition(c.status, CaseAction::Reopen)?;
        if c.merged_into.is_some() {
            return Err(Refusal::Conflict {
                message: format!(
                    "this case was merged into the student's case {}; work that one instead",
                    self.state
                        .related
                        .merged_into_reference
                        .clone()
                        .unwrap_or_default()
                ),
                allowed: vec![],
            });
        }
        if let Some(other) = self
            .state
            .related
            .open_case
            .as_ref()
            .filter(|o| c.student_id.is_some() && o.student_id == c.student_id && o.id != c.id)
        {
            return Err(Refusal::Conflict {
                message: format!(
                    "the student has another open case ({}); work that one instead",
                    other.reference
                ),
                allowed: vec![],
            });
        }
        let mut plan = Plan::about(c, "reopen");
        let mut after = c.clone();
        after.status = next;
        after.closed_at = None;
        after.acknowledged_at = None;
        after.acknowledged_by = None;
        let after = self.restart_ladder(&mut plan, &after, NotificationReason::CaseReopened)?;
        self.finish(
            plan,
            after,
            Entry::new("reopen", serde_json::json!({})).text(Some(why)),
        )
    }
}
