//! The one writer of plans: everything a [`Plan`] lists, written inside the
//! caller's transaction (the caller commits), so a case change, its timeline,
//! its events, its timers, its notifications, its alarms and its audit
//! record commit together or not at all.

use std::collections::HashSet;

use sanyu_store::audit::AuditKey;
use sanyu_store::crypto::Sealer;
use sanyu_store::entities::{case, case_action, follow_up, hotline_call, referral};
use sanyu_store::sea_orm::sea_query::Expr;
use sanyu_store::sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel,
    QueryFilter,
};
use sanyu_store::{StoreError, cases, dead_letters, outbox, timers};

use uuid::Uuid;

use crate::CaseError;
use crate::ladder::LadderStart;
use crate::plan::{CaseWrite, Plan, RecordWrite, ReferralDraft, TimelineEntry};

/// The keys the writer needs: free text is sealed, audit records chained.
#[derive(Clone, Copy)]
pub struct Keys<'a> {
    pub sealer: &'a Sealer,
    pub audit_key: &'a AuditKey,
}

/// Write `plan` in `txn`. Returns the plan's case as written (its new
/// version), or as it was when the plan left it unchanged.
pub async fn apply(
    txn: &impl ConnectionTrait,
    plan: &Plan,
    keys: Keys<'_>,
) -> Result<case::Model, CaseError> {
    write(txn, plan, Some(keys)).await
}

/// Write `plan`, which seals no text and chains no audit record (a ladder
/// stopped, a rung fired), in `txn`; the plan's case as written.
pub async fn apply_unsealed(
    txn: &impl ConnectionTrait,
    plan: &Plan,
) -> Result<case::Model, CaseError> {
    write(txn, plan, None).await
}

/// Write several plans in `txn` (the rules engine's batch), as if one by
/// one in order, but in as few statements as that allows: plans are merged
/// into one write until a plan rewrites a case (or restarts its ladder) that
/// an earlier plan of the merge wrote, and that merge is written first, so a
/// case is always rewritten at the version it has in the database and a
/// restarted ladder's old rungs are cancelled after they are written.
/// `keys` may be `None` when no plan seals text or chains an audit record.
pub async fn apply_all(
    txn: &impl ConnectionTrait,
    plans: Vec<Plan>,
    keys: Option<Keys<'_>>,
) -> Result<(), CaseError> {
    let mut merged: Option<Plan> = None;
    let mut touched: HashSet<Uuid> = HashSet::new();
    for plan in plans {
        if plan.is_empty() {
            continue;
        }
        let rewrites: Vec<Uuid> = plan
            .cases
            .iter()
            .map(|w| w.after.id)
            .chain(plan.cancel_timers.iter().map(|c| c.case_id))
            .collect();
        if rewrites.iter().any(|id| touched.contains(id))
            && let Some(m) = merged.take()
        {
            write(txn, &m, keys).await?;
            touched.clear();
        }
        touched.extend(plan.written_cases());
        touched.extend(plan.signals.iter().map(|s| s.case_id));
        match merged.as_mut() {
            Some(m) => m.absorb(plan),
            None => merged = Some(plan),
        }
    }
    if let Some(m) = merged {
        write(txn, &m, keys).await?;
    }
    Ok(())
}

/// Everything of `plan`, in order: old rungs cancelled, new cases, case
/// rewrites, records, signals, timeline, events, notifications, timers,
/// alarms, audit.
async fn write(
    txn: &impl ConnectionTrait,
    plan: &Plan,
    keys: Option<Keys<'_>>,
) -> Result<case::Model, CaseError> {
    let keys = match keys {
        Some(k) => Some(k),
        None if plan.records.is_empty() && plan.timeline.is_empty() && plan.audit.is_empty() => {
            None
        }
        None => {
            return Err(CaseError::Corrupt {
                case_id: plan.case.id,
                detail: "a plan with sealed text or audit records needs the keys".into(),
            });
        }
    };
    for c in &plan.cancel_timers {
        timers::cancel_for_case(txn, c.case_id, c.kind).await?;
    }
    cases::insert_many(txn, plan.opened.clone()).await?;
    let mut main = plan.case.clone();
    for w in &plan.cases {
        let written = write_case(txn, w).await?;
        if written.id == main.id {
            main = written;
        }
    }
    if let Some(keys) = keys {
        for r in &plan.records {
            write_record(txn, r, keys.sealer).await?;
        }
    }
    cases::attach_many(txn, plan.signals.clone()).await?;
    if let Some(keys) = keys {
        for e in &plan.timeline {
            write_entry(txn, e, keys.sealer).await?;
        }
    }
    outbox::enqueue_all(txn, plan.events.clone()).await?;
    outbox::enqueue_all(txn, plan.notifications.clone()).await?;
    timers::schedule_all(txn, plan.timers.clone()).await?;
    for a in &plan.alarms {
        tracing::error!(alarm = %a.source_key, "escalation rung reaches nobody");
        dead_letters::record(txn, a.clone()).await?;
    }
    if let Some(keys) = keys {
        for entry in &plan.audit {
            sanyu_store::audit::append_in(txn, keys.audit_key, entry.clone()).await?;
        }
    }
    Ok(main)
}

/// Write a ladder (re)start of `before` (as [`crate::ladder::plan_start`]
/// planned it): its old rungs cancelled, the case, the first contacts'
/// requests, the next rung, the alarm. Returns the case as written.
pub async fn apply_ladder(
    txn: &impl ConnectionTrait,
    before: &case::Model,
    start: &LadderStart,
) -> Result<case::Model, CaseError> {
    timers::cancel_for_case(txn, before.id, crate::ladder::RUNG_TIMER).await?;
    let written = write_case(
        txn,
        &CaseWrite {
            before: before.clone(),
            after: start.case.clone(),
        },
    )
    .await?;
    outbox::enqueue_all(txn, start.requests.clone()).await?;
    if let Some(alarm) = &start.alarm {
        tracing::error!(case_id = %before.id, rung = 0, "escalation rung reaches nobody");
        dead_letters::record(txn, alarm.clone()).await?;
    }
    timers::schedule_all(txn, start.timer.iter().cloned().collect()).await?;
    Ok(written)
}

/// Write `w.after` over the case if it is still at `w.before`'s version.
async fn write_case(txn: &impl ConnectionTrait, w: &CaseWrite) -> Result<case::Model, StoreError> {
    let a = &w.after;
    cases::update(
        txn,
        &w.before,
        case::ActiveModel {
            school_id: Set(a.school_id),
            class_id: Set(a.class_id),
            student_id: Set(a.student_id),
            level: Set(a.level),
            level_rank: Set(a.level_rank),
            status: Set(a.status),
            closed_at: Set(a.closed_at),
            ladder: Set(a.ladder.clone()),
            ladder_epoch: Set(a.ladder_epoch),
            ladder_state: Set(a.ladder_state),
            ladder_started_at: Set(a.ladder_started_at),
            ack_deadline: Set(a.ack_deadline),
            acknowledged_at: Set(a.acknowledged_at),
            acknowledged_by: Set(a.acknowledged_by),
            assignee_staff_id: Set(a.assignee_staff_id),
            subject: Set(a.subject),
            merged_into: Set(a.merged_into),
            last_action_at: Set(a.last_action_at),
            ..Default::default()
        },
    )
    .await
}

async fn write_entry(
    txn: &impl ConnectionTrait,
    e: &TimelineEntry,
    sealer: &Sealer,
) -> Result<(), StoreError> {
    let text_sealed = e
        .text
        .as_ref()
        .map(|t| sealer.seal(t.expose()))
        .transpose()?;
    let detail_sealed = e
        .sealed_detail
        .as_ref()
        .map(|d| sealer.seal(d.expose()))
        .transpose()?;
    case_action::Entity::insert(case_action::ActiveModel {
        id: Set(e.id),
        case_id: Set(e.case_id),
        action: Set(e.action.clone()),
        actor_role: Set(e.actor.role.clone()),
        actor_staff_id: Set(e.actor.staff_id),
        actor_token_id: Set(e.actor.token_id),
        status_after: Set(e.status_after),
        detail: Set(e.detail.to_string()),
        text_sealed: Set(text_sealed),
        detail_sealed: Set(detail_sealed),
        at: Set(e.at),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// A referral's sealed columns.
struct SealedReferral {
    institution: Vec<u8>,
    return_assessment: Option<Vec<u8>>,
}

fn seal_referral(f: &ReferralDraft, sealer: &Sealer) -> Result<SealedReferral, StoreError> {
    Ok(SealedReferral {
        institution: sealer.seal(f.institution.expose())?,
        return_assessment: f
            .return_assessment
            .as_ref()
            .map(|r| sealer.seal(r.expose()))
            .transpose()?,
    })
}

async fn write_record(
    txn: &impl ConnectionTrait,
    r: &RecordWrite,
    sealer: &Sealer,
) -> Result<(), StoreError> {
    match r {
        RecordWrite::CreateReferral {
            id,
            case_id,
            fields,
            at,
        } => {
            let sealed = seal_referral(fields, sealer)?;
            referral::ActiveModel {
                id: Set(*id),
                case_id: Set(*case_id),
                institution_sealed: Set(Some(sealed.institution)),
                referred_on: Set(fields.referred_on),
                receipt_confirmed: Set(fields.receipt_confirmed),
                return_assessed_on: Set(fields.return_assessed_on),
                return_assessment_sealed: Set(sealed.return_assessment),
                created_at: Set(*at),
                updated_at: Set(*at),
            }
            .insert(txn)
            .await?;
        }
        RecordWrite::UpdateReferral {
            current,
            fields,
            at,
        } => {
            let sealed = seal_referral(fields, sealer)?;
            let mut row = current.clone().into_active_model();
            row.institution_sealed = Set(Some(sealed.institution));
            row.referred_on = Set(fields.referred_on);
            row.receipt_confirmed = Set(fields.receipt_confirmed);
            row.return_assessed_on = Set(fields.return_assessed_on);
            row.return_assessment_sealed = Set(sealed.return_assessment);
            row.updated_at = Set(*at);
            row.update(txn).await?;
        }
        RecordWrite::CreateFollowUp(f) => {
            follow_up::ActiveModel {
                id: Set(f.id),
                school_id: Set(f.school_id),
                student_id: Set(f.student_id),
                case_id: Set(f.case_id),
                due_at: Set(f.due_at),
                created_by: Set(f.created_by),
                created_at: Set(f.created_at),
                done_at: Set(f.done_at),
                outcome_sealed: Set(f.outcome_sealed.clone()),
            }
            .insert(txn)
            .await?;
        }
        RecordWrite::CompleteFollowUp {
            current,
            outcome,
            at,
        } => {
            let mut row = current.clone().into_active_model();
            row.done_at = Set(Some(*at));
            row.outcome_sealed = Set(Some(sealer.seal(outcome.expose())?));
            row.update(txn).await?;
        }
        RecordWrite::LinkCalls {
            call_ids,
            student_id,
            at,
        } => {
            hotline_call::Entity::update_many()
                .col_expr(hotline_call::Column::StudentId, Expr::value(*student_id))
                .col_expr(hotline_call::Column::LinkedAt, Expr::value(*at))
                .filter(hotline_call::Column::Id.is_in(call_ids.iter().copied()))
                .filter(hotline_call::Column::StudentId.is_null())
                .exec(txn)
                .await?;
        }
    }
    Ok(())
}
