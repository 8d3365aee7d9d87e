//! Writing a batch in one transaction: results, errors, dead letters, the
//! signals (one alone per suicide alert, the rest in one
//! `ScreeningResultBatch`), and the job's progress and checkpoint.

use super::*;

/// The event id of a screening signal: one per student, instrument,
/// administration and level, whichever import (or row) carries it.
pub fn signal_event_id(
    school_code: &str,
    student_id: Uuid,
    instrument: &str,
    administered_on: NaiveDate,
    level: RiskLevel,
) -> String {
    format!(
        "screening:{school_code}:{student_id}:{instrument}:{administered_on}:{}",
        level.as_str()
    )
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn signal(
    ctx: &JobContext,
    student: &student::Model,
    result_id: Uuid,
    level: RiskLevel,
    band: Option<String>,
    flags: Vec<String>,
    rejected: bool,
    alert: bool,
) -> PendingSignal {
    let partition = student_partition(student.id);
    let event_id = signal_event_id(
        &ctx.school.code,
        student.id,
        ctx.instrument.id(),
        ctx.administered_on,
        level,
    );
    let administered_at = ctx.administered_on.and_time(NaiveTime::MIN).and_utc();
    PendingSignal {
        result: v1::ScreeningResultRecorded {
            result_id: result_id.to_string(),
            import_id: ctx.job_id.to_string(),
            student_id: student.id.to_string(),
            instrument: ctx.instrument.id().to_owned(),
            band: band.unwrap_or_default(),
            flags,
            administered_at: Some(sanyu_events::timestamp(administered_at)),
            suggested_level: sanyu_events::level_to_proto(level) as i32,
            rejected,
            signal_id: String::new(),
        },
        event_id,
        partition,
        alone: alert,
    }
}

/// The outbox row of a signal that travels alone (a suicide alert): its
/// envelope's event id is the signal id.
pub(crate) fn alone_event(
    ctx: &JobContext,
    signal: PendingSignal,
    now: DateTime<Utc>,
) -> OutboxEvent {
    let envelope = sanyu_events::envelope(
        signal.event_id.clone(),
        now,
        ctx.school.code.clone(),
        signal.partition,
        Payload::ScreeningResult(signal.result),
    );
    OutboxEvent::new(
        subjects::screening_result(&ctx.school.code, signal.partition),
        &envelope,
        sanyu_platform::trace::current_traceparent(),
    )
}

/// The event id of an import's `sequence`th `ScreeningResultBatch`: the same
/// whichever process writes it (the sequence is stored with each batch).
pub fn batch_event_id(import_id: Uuid, sequence: u32) -> String {
    format!("screening.batch:{import_id}:{sequence}")
}

/// The outbox row of a batch's other signals: one `ScreeningResultBatch`,
/// each result carrying its own signal id.
pub(crate) fn batch_event(
    ctx: &JobContext,
    signals: Vec<PendingSignal>,
    now: DateTime<Utc>,
) -> OutboxEvent {
    let sequence = u32::try_from(ctx.signal_batches).unwrap_or(u32::MAX);
    let event_id = batch_event_id(ctx.job_id, sequence);
    let results = signals
        .into_iter()
        .map(|s| v1::ScreeningResultRecorded {
            signal_id: s.event_id,
            ..s.result
        })
        .collect();
    let envelope = sanyu_events::envelope(
        event_id.clone(),
        now,
        ctx.school.code.clone(),
        0,
        Payload::ScreeningBatch(v1::ScreeningResultBatch {
            import_id: ctx.job_id.to_string(),
            sequence,
            results,
        }),
    );
    OutboxEvent::new(
        subjects::screening_batch(&ctx.school.code),
        &envelope,
        sanyu_platform::trace::current_traceparent(),
    )
}

/// Write one batch in one transaction: results, errors, signals, dead letters,
/// progress and checkpoint.
pub(crate) async fn write_batch(
    db: &Db,
    waker: &Waker,
    ctx: &mut JobContext,
    batch: Vec<Item>,
    options: &ProcessOptions,
) -> Result<(), ImportError> {
    let rows: Vec<i64> = batch.iter().filter_map(Item::row).collect();
    let Some(checkpoint_row) = rows.iter().max().copied() else {
        return Ok(());
    };
    let txn = begin_write(db).await?;
    // Fenced by the lease: a process whose lease passed on writes nothing.
    if !store::renew_lease(&*txn, ctx.job_id, &ctx.worker, ctx.lease).await? {
        txn.rollback().await?;
        return Err(ImportError::LeaseLost(ctx.job_id));
    }
    let stored = store::stored_rows(&*txn, ctx.job_id, &rows).await?;
    let batch: Vec<Item> = batch
        .into_iter()
        .filter(|i| i.row().is_some_and(|r| !stored.contains(&r)))
        .collect();
    let numbers: BTreeSet<String> = batch
        .iter()
        .filter_map(|i| match i {
            Item::Row { student_no, .. } if !student_no.is_empty() => Some(student_no.clone()),
            _ => None,
        })
        .collect();
    let students: HashMap<String, student::Model> =
        store::students_by_no(&*txn, ctx.school.id, &numbers)
            .await?
            .into_iter()
            .map(|s| (s.student_no.clone(), s))
            .collect();
    let mut progress = BatchProgress {
        checkpoint_row,
        ..BatchProgress::default()
    };
    let mut results = Vec::with_capacity(batch.len());
    let mut errors = Vec::new();
    let mut events = Vec::new();
    let mut batched = Vec::new();
    let mut letters = Vec::new();
    let now = Utc::now();
    for item in batch {
        let student = match &item {
            Item::Row { student_no, .. } => students.get(student_no),
            _ => None,
        };
        let Some(record) = assess(ctx, item, student) else {
            continue;
        };
        progress.rows_read += 1;
        if record.accepted {
            progress.rows_accepted += 1;
        } else {
            progress.rows_rejected += 1;
        }
        if record.alert {
            progress.alerts_raised += 1;
        }
        results.push(record.result);
        errors.extend(record.errors);
        match record.event {
            Some(signal) if signal.alone => events.push(alone_event(ctx, signal, now)),
            Some(signal) => batched.push(signal),
            None => {}
        }
        letters.extend(record.dead_letter);
    }
    if !batched.is_empty() {
        events.push(batch_event(ctx, batched, now));
        progress.signal_batches = 1;
    }
    mark_worse_than_previous(&*txn, ctx, &mut results, options.worse_margin_percent).await?;
    let wake = !events.is_empty();
    store::record_batch(&*txn, ctx.job_id, results, errors, progress).await?;
    outbox::enqueue_all(&*txn, events).await?;
    for letter in letters {
        tracing::warn!(
            "screening suicide alert for a student number not on the roster: dead letter recorded"
        );
        dead_letters::record(&*txn, letter).await?;
    }
    txn.commit().await?;
    ctx.signal_batches += progress.signal_batches;
    if wake {
        waker.wake();
    }
    if let Some(report) = &options.progress
        && let Some(job) = store::get(db, ctx.job_id).await?
    {
        report(Progress::from(&job));
    }
    Ok(())
}
