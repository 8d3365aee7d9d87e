//! Naming the student of an unidentified caller's case, and the merge into
//! the student's open case that follows when there is one.

use sanyu_domain::{CaseStatus, CaseSubject};
use sanyu_events::NotificationReason;
use sanyu_events::{Payload, v1};
use sanyu_store::cases::NewSignal;
use sanyu_store::entities::case;

use super::{Entry, Planner};
use crate::allowed::{LINK_STUDENT, allowed_names, closed};
use crate::plan::{Plan, RecordWrite, Refusal, TimelineEntry};

impl Planner<'_> {
    /// Name the student of an unidentified caller's case; merge it into the
    /// student's open case if there is one.
    pub(super) fn link_student(&self) -> Result<Plan, Refusal> {
        let c = self.case();
        let related = &self.state.related;
        // The case (role and scope) first, then the student: a caller who
        // may not link learns nothing about which student numbers exist.
        let student = related
            .student
            .as_ref()
            .ok_or(Refusal::NotFound("student"))?;
        if c.student_id.is_some() {
            return Err(Refusal::Conflict {
                message: "this case is already about a student".into(),
                allowed: allowed_names(c),
            });
        }
        if c.status == CaseStatus::Closed {
            return Err(closed(c, "link it to a student"));
        }
        let now = self.ctx.now;
        let mut plan = Plan::about(c, LINK_STUDENT);
        // The hotline calls behind the case now name the student too.
        let call_ids: Vec<uuid::Uuid> =
            related.signals.iter().filter_map(|s| s.source_id).collect();
        if !call_ids.is_empty() {
            plan.records.push(RecordWrite::LinkCalls {
                call_ids,
                student_id: student.id,
                at: now,
            });
        }
        let mut after = c.clone();
        after.student_id = Some(student.id);
        after.class_id = Some(student.class_id);
        after.subject = CaseSubject::Student;
        let Some(target) = related.open_case.as_ref().filter(|t| t.id != c.id) else {
            let detail = serde_json::json!({ "student_id": student.id });
            return self.finish(plan, after, Entry::new(LINK_STUDENT, detail));
        };
        self.merge_into(&mut plan, target)?;
        Self::stop_ladder(&mut plan, &mut after);
        after.status = CaseStatus::Closed;
        after.closed_at = Some(now);
        after.merged_into = Some(target.id);
        let detail = serde_json::json!({
            "student_id": student.id,
            "merged_into": target.id,
            "merged_into_reference": target.reference,
        });
        self.finish(plan, after, Entry::new("merge", detail))
    }

    /// The caller's signals join the student's open case `target`, which
    /// rises (and re-ladders) if the call was more urgent, and whose
    /// timeline notes the merge.
    fn merge_into(&self, plan: &mut Plan, target: &case::Model) -> Result<(), Refusal> {
        let c = self.case();
        let now = self.ctx.now;
        let signals = &self.state.related.signals;
        for s in signals {
            let level = s.level;
            plan.signals.push(NewSignal {
                case_id: target.id,
                event_id: s.event_id.clone(),
                kind: s.kind.clone(),
                source_id: s.source_id,
                level,
                decision: "merged".to_owned(),
                rule_id: s.rule_id.clone(),
                at: now,
            });
            plan.events.push(self.event(
                target,
                format!("case.signal_attached:{}:{}", target.id, s.event_id),
                "signal_attached",
                Payload::CaseSignalAttached(v1::CaseSignalAttached {
                    case_id: target.id.to_string(),
                    reference: target.reference.clone(),
                    signal_event_id: s.event_id.clone(),
                    level: sanyu_events::level_to_proto(level) as i32,
                }),
            ));
        }
        let from = target.level;
        let to = c.level;
        let mut after = target.clone();
        if to > from {
            after.level = to;
            after.level_rank = to.rank();
            plan.events.push(
                self.event(
                    target,
                    format!("case.escalated:{}:merge:{}", target.id, c.id),
                    "escalated",
                    Payload::CaseEscalated(v1::CaseEscalated {
                        case_id: target.id.to_string(),
                        reference: target.reference.clone(),
                        student_id: target.student_id.map(|s| s.to_string()).unwrap_or_default(),
                        previous_level: sanyu_events::level_to_proto(from) as i32,
                        level: sanyu_events::level_to_proto(to) as i32,
                        signal_event_id: signals
                            .first()
                            .map(|s| s.event_id.clone())
                            .unwrap_or_default(),
                        rule_id: "case.merged_unidentified_caller".to_owned(),
                    }),
                ),
            );
            after = self.restart_ladder(plan, &after, NotificationReason::LevelRaised)?;
        }
        plan.write_case(target, &after);
        plan.timeline.push(TimelineEntry {
            id: (self.ctx.ids)(),
            case_id: target.id,
            action: "merged_in".to_owned(),
            actor: self.who(),
            status_after: after.status,
            detail: serde_json::json!({
                "from_case": c.id,
                "from_reference": c.reference,
            }),
            text: None,
            sealed_detail: None,
            at: now,
        });
        Ok(())
    }
}
