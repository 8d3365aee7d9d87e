//! The one writer of plans: everything a [`Plan`] lists, written inside the
//! caller's transaction (the caller commits), so a case change, its timeline,
//! its events, its timers, its notifications, its alarms and its audit
//! record commit together or not at all.

use std::collections::HashSet;

use sanyu_store::audit::AuditKey;
use sanyu_store::casework::{self, ReferralFields};
use sanyu_store::crypto::Sealer;
use sanyu_store::entities::case;
use sanyu_store::{Conn, StoreError, cases, dead_letters, hotline, outbox, timers};

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
pub async fn apply(txn: &impl Conn, plan: &Plan, keys: Keys<'_>) -> Result<case::Model, CaseError> {
    write(txn, plan, Some(keys)).await
}

/// Write `plan`, which seals no text and chains no audit record (a ladder
/// stopped, a rung fired), in `txn`; the plan's case as written.
pub async fn apply_unsealed(txn: &impl Conn, plan: &Plan) -> Result<case::Model, CaseError> {
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
    txn: &impl Conn,
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
    txn: &impl Conn,
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
    txn: &impl Conn,
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
async fn write_case(txn: &impl Conn, w: &CaseWrite) -> Result<case::Model, StoreError> {
    cases::rewrite(txn, &w.before, &w.after).await
}

async fn write_entry(
    txn: &impl Conn,
    e: &TimelineEntry,
    sealer: &Sealer,
) -> Result<(), StoreError> {
    let seal = |t: &Option<crate::command::Secret>| {
        t.as_ref().map(|t| sealer.seal(t.expose())).transpose()
    };
    cases::record_action(
        txn,
        cases::NewAction {
            id: e.id,
            case_id: e.case_id,
            action: e.action.clone(),
            actor_role: e.actor.role.clone(),
            actor_staff_id: e.actor.staff_id,
            actor_token_id: e.actor.token_id,
            status_after: e.status_after,
            detail: e.detail.clone(),
            text_sealed: seal(&e.text)?,
            detail_sealed: seal(&e.sealed_detail)?,
            at: e.at,
        },
    )
    .await
}

/// A referral's fields with their free text sealed.
fn seal_referral(f: &ReferralDraft, sealer: &Sealer) -> Result<ReferralFields, StoreError> {
    Ok(ReferralFields {
        institution_sealed: sealer.seal(f.institution.expose())?,
        referred_on: f.referred_on,
        receipt_confirmed: f.receipt_confirmed,
        return_assessed_on: f.return_assessed_on,
        return_assessment_sealed: f
            .return_assessment
            .as_ref()
            .map(|r| sealer.seal(r.expose()))
            .transpose()?,
    })
}

async fn write_record(txn: &impl Conn, r: &RecordWrite, sealer: &Sealer) -> Result<(), StoreError> {
    match r {
        RecordWrite::CreateReferral {
            id,
            case_id,
            fields,
            at,
        } => {
            casework::create_referral(txn, *id, *case_id, seal_referral(fields, sealer)?, *at).await
        }
        RecordWrite::UpdateReferral {
            current,
            fields,
            at,
        } => {
            let fields = seal_referral(fields, sealer)?;
            casework::update_referral(txn, current.clone(), fields, *at)
                .await
                .map(drop)
        }
        RecordWrite::CreateFollowUp(f) => casework::create_follow_up(txn, f.clone()).await,
        RecordWrite::CompleteFollowUp {
            current,
            outcome,
            at,
        } => {
            let outcome = sealer.seal(outcome.expose())?;
            casework::complete_follow_up(txn, current.clone(), outcome, *at)
                .await
                .map(drop)
        }
        RecordWrite::LinkCalls {
            call_ids,
            student_id,
            at,
        } => hotline::link_calls(txn, call_ids.clone(), *student_id, *at).await,
    }
}
