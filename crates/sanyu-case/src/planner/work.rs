//! The work recorded on a case: a guardian contacted (or not reached), a
//! referral (转介) and its receipt, a follow-up (重点关注) set, done or
//! cancelled.

use sanyu_domain::CaseStatus;
use sanyu_domain::lifecycle::{self, CaseAction};
use sanyu_store::entities::follow_up;

use super::{Entry, Planner, check_text, started};
use crate::allowed::{require_student, require_taken};
use crate::command::{FollowUp, GuardianContact, Referral};
use crate::ladder::FollowUpTimer;
use crate::plan::{Plan, RecordWrite, ReferralDraft, Refusal};
use crate::timer::Timer;

impl Planner<'_> {
    pub(super) fn guardian_contact(&self, req: &GuardianContact) -> Result<Plan, Refusal> {
        let c = self.case();
        let status = require_taken(c)?;
        let at = req.at.unwrap_or(self.ctx.now);
        let detail = if req.contacted {
            let gid = req
                .guardian_id
                .ok_or_else(|| Refusal::invalid("guardian_id", "required when contacted"))?;
            let channel = req
                .channel
                .as_deref()
                .ok_or_else(|| Refusal::invalid("channel", "required when contacted"))?;
            let outcome = req
                .outcome
                .as_deref()
                .ok_or_else(|| Refusal::invalid("outcome", "required when contacted"))?;
            require_student(c)?;
            self.state
                .related
                .guardian
                .as_ref()
                .filter(|g| g.id == gid)
                .ok_or_else(|| Refusal::invalid("guardian_id", "not a guardian of this student"))?;
            if let Some(r) = &req.reason {
                check_text("reason", r.expose())?;
            }
            serde_json::json!({
                "contacted": true,
                "guardian_id": gid,
                "at": at,
                "channel": channel,
                "outcome": outcome,
            })
        } else {
            let reason = req.reason.as_ref().ok_or_else(|| {
                Refusal::invalid("reason", "say why the guardians are not contacted")
            })?;
            check_text("reason", reason.expose())?;
            serde_json::json!({ "contacted": false, "at": at })
        };
        let mut after = c.clone();
        after.status = started(status);
        let entry = Entry::new("guardian_contact", detail).text(req.reason.as_ref());
        self.finish(Plan::about(c, "guardian_contact"), after, entry)
    }

    pub(super) fn refer(&self, req: &Referral) -> Result<Plan, Refusal> {
        let c = self.case();
        let status = require_taken(c)?;
        let now = self.ctx.now;
        let fields = ReferralDraft {
            institution: req.institution.clone(),
            referred_on: req.referred_on,
            receipt_confirmed: req.receipt_confirmed,
            return_assessed_on: req.return_assessment.as_ref().map(|r| r.0),
            return_assessment: req.return_assessment.as_ref().map(|r| r.1.clone()),
        };
        let mut plan = Plan::about(c, "referral");
        let mut after = c.clone();
        let (id, action) = match req.referral_id {
            Some(rid) => {
                let current = self
                    .state
                    .related
                    .referral
                    .as_ref()
                    .filter(|r| r.id == rid && r.case_id == c.id)
                    .ok_or(Refusal::NotFound("referral"))?;
                plan.records.push(RecordWrite::UpdateReferral {
                    current: current.clone(),
                    fields: fields.clone(),
                    at: now,
                });
                (rid, "referral_update")
            }
            None => {
                let next = lifecycle::transition(started(status), CaseAction::Refer)?;
                let id = (self.ctx.ids)();
                plan.records.push(RecordWrite::CreateReferral {
                    id,
                    case_id: c.id,
                    fields: fields.clone(),
                    at: now,
                });
                after.status = next;
                (id, "referral")
            }
        };
        let result = fields.return_assessment.as_ref().map(|r| r.expose());
        let entry = Entry {
            action,
            detail: serde_json::json!({
                "referral_id": id,
                "referred_on": fields.referred_on,
                "receipt_confirmed": fields.receipt_confirmed,
                "return_assessed_on": fields.return_assessed_on,
            }),
            sealed_detail: Some(serde_json::json!({ "return_assessment": result })),
            text: None,
            created_id: Some(id),
        };
        self.finish(plan, after, entry)
    }

    pub(super) fn follow_up(&self, req: &FollowUp) -> Result<Plan, Refusal> {
        let c = self.case();
        let status = require_taken(c)?;
        let now = self.ctx.now;
        let mut plan = Plan::about(c, "follow_up");
        let mut after = c.clone();
        let entry = match req.follow_up_id {
            Some(fid) => {
                let outcome = req.outcome.as_ref().ok_or_else(|| {
                    Refusal::invalid("outcome", "required to complete a follow-up")
                })?;
                check_text("outcome", outcome.expose())?;
                let current = self
                    .state
                    .related
                    .follow_up
                    .as_ref()
                    .filter(|f| f.id == fid && f.case_id == Some(c.id))
                    .ok_or(Refusal::NotFound("follow-up"))?;
                if current.done_at.is_some() {
                    return Err(Refusal::Conflict {
                        message: "this follow-up is already done".into(),
                        allowed: vec![],
                    });
                }
                // The outcome is sealed on the follow-up itself; the reminder
                // timer, if still pending, finds it done and does nothing.
                plan.records.push(RecordWrite::CompleteFollowUp {
                    current: current.clone(),
                    outcome: outcome.clone(),
                    at: now,
                });
                Entry {
                    created_id: Some(fid),
                    ..Entry::new("follow_up_done", serde_json::json!({ "follow_up_id": fid }))
                }
            }
            None => {
                let due = req
                    .due_at
                    .ok_or_else(|| Refusal::invalid("due_at", "required for a new follow-up"))?;
                sanyu_domain::input::time(due, now)
                    .map_err(|e| Refusal::invalid("due_at", e.to_string()))?;
                let student_id = require_student(c)?;
                let next = if status == CaseStatus::Monitoring {
                    status
                } else {
                    lifecycle::transition(started(status), CaseAction::Monitor)?
                };
                let id = (self.ctx.ids)();
                plan.records
                    .push(RecordWrite::CreateFollowUp(follow_up::Model {
                        id,
                        school_id: c.school_id,
                        student_id,
                        case_id: Some(c.id),
                        due_at: due,
                        created_by: self.actor.principal.staff_id,
                        created_at: now,
                        done_at: None,
                        outcome_sealed: None,
                    }));
                plan.timers.push(
                    Timer::FollowUp(FollowUpTimer { follow_up_id: id })
                        .at(due, Some(c.id))
                        .map_err(|e| Refusal::Corrupt(e.to_string()))?,
                );
                after.status = next;
                Entry {
                    created_id: Some(id),
                    ..Entry::new(
                        "follow_up",
                        serde_json::json!({ "follow_up_id": id, "due_at": due }),
                    )
                }
            }
        };
        self.finish(plan, after, entry)
    }
}
