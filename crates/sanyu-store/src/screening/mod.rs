//! Screening imports: the job record, the per-row results and the row errors.
//!
//! The importer writes a batch of rows in one transaction: results, row
//! errors, the batch's signals (outbox) and the job's progress and checkpoint.
//! A resumed or repeated job skips the rows already stored
//! ([`stored_rows`]), and the database refuses a second result for one
//! `(import, row)`.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Statement,
};
use uuid::Uuid;

use crate::Result;
use crate::db::insert_chunks;
use crate::entities::{screening_import, screening_result, screening_row_error, student};

mod lease;

pub use lease::{Lease, claim, release_lease, renew_lease, unleased};

/// Job states.
pub mod state {
    pub const QUEUED: &str = "queued";
    pub const RUNNING: &str = "running";
    pub const DONE: &str = "done";
    pub const FAILED: &str = "failed";
    /// The file does not fit the declared instrument or coding: nothing was imported.
    pub const REFUSED: &str = "refused";
}

/// Row outcomes.
pub mod outcome {
    pub const OK: &str = "ok";
    pub const REJECT: &str = "reject";
}

#[derive(Debug, Clone)]
pub struct NewImport {
    pub id: Uuid,
    pub school_id: Uuid,
    pub instrument: String,
    pub coding: String,
    pub administered_on: NaiveDate,
    pub file_name: String,
    pub file_format: String,
    pub sheet: Option<String>,
    pub profile: Option<String>,
    pub spool_path: Option<String>,
    pub state: &'static str,
    pub error: Option<String>,
    pub rows_total: Option<i64>,
    pub created_by: Option<Uuid>,
}

pub async fn create(conn: &impl ConnectionTrait, job: NewImport) -> Result<()> {
    let now = Utc::now();
    let finished = matches!(job.state, state::REFUSED | state::FAILED).then_some(now);
    screening_import::Entity::insert(screening_import::ActiveModel {
        id: Set(job.id),
        school_id: Set(job.school_id),
        instrument: Set(job.instrument),
        coding: Set(job.coding),
        administered_on: Set(job.administered_on),
        file_name: Set(job.file_name),
        file_format: Set(job.file_format),
        sheet: Set(job.sheet),
        profile: Set(job.profile),
        spool_path: Set(job.spool_path),
        state: Set(job.state.to_owned()),
        rows_read: Set(0),
        rows_accepted: Set(0),
        rows_rejected: Set(0),
        alerts_raised: Set(0),
        rows_total: Set(job.rows_total),
        checkpoint_row: Set(0),
        error: Set(job.error),
        created_by: Set(job.created_by),
        created_at: Set(now),
        updated_at: Set(now),
        started_at: Set(None),
        finished_at: Set(finished),
        lease_owner: Set(None),
        lease_until: Set(None),
        signal_batches: Set(0),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

pub async fn get(conn: &impl ConnectionTrait, id: Uuid) -> Result<Option<screening_import::Model>> {
    Ok(screening_import::Entity::find_by_id(id).one(conn).await?)
}

/// Jobs a restarted process should take up again.
pub async fn unfinished(conn: &impl ConnectionTrait) -> Result<Vec<screening_import::Model>> {
    Ok(screening_import::Entity::find()
        .filter(screening_import::Column::State.is_in([state::QUEUED, state::RUNNING]))
        .order_by_asc(screening_import::Column::CreatedAt)
        .all(conn)
        .await?)
}

/// The job ended: `done`, `failed` or `refused`, with a message for the last two.
pub async fn finish(
    conn: &impl ConnectionTrait,
    id: Uuid,
    final_state: &'static str,
    error: Option<String>,
) -> Result<()> {
    let now = Utc::now();
    screening_import::Entity::update_many()
        .col_expr(screening_import::Column::State, Expr::value(final_state))
        .col_expr(screening_import::Column::Error, Expr::value(error))
        .col_expr(screening_import::Column::UpdatedAt, Expr::value(now))
        .col_expr(screening_import::Column::FinishedAt, Expr::value(Some(now)))
        .col_expr(
            screening_import::Column::LeaseOwner,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            screening_import::Column::LeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(screening_import::Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}

/// One row's result.
#[derive(Debug, Clone)]
pub struct NewResult {
    pub id: Uuid,
    pub row_number: i64,
    pub student_id: Option<Uuid>,
    pub student_no: String,
    pub instrument: String,
    pub administered_on: NaiveDate,
    pub outcome: &'static str,
    pub reason: Option<String>,
    pub total: Option<i32>,
    pub band: Option<String>,
    pub subscales: Option<String>,
    pub flags: String,
    pub level: Option<String>,
    pub event_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewRowError {
    pub row_number: i64,
    pub seq: i32,
    pub column: String,
    pub reason: String,
}

/// What one batch adds to the job's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchProgress {
    pub rows_read: i64,
    pub rows_accepted: i64,
    pub rows_rejected: i64,
    pub alerts_raised: i64,
    /// The last file row of the batch.
    pub checkpoint_row: i64,
    /// `ScreeningResultBatch` messages the batch wrote (0 or 1).
    pub signal_batches: i32,
}

/// The row numbers among `rows` that already have a result in this import.
pub async fn stored_rows(
    conn: &impl ConnectionTrait,
    import_id: Uuid,
    rows: &[i64],
) -> Result<BTreeSet<i64>> {
    let (Some(min), Some(max)) = (rows.iter().min(), rows.iter().max()) else {
        return Ok(BTreeSet::new());
    };
    let found: Vec<i64> = screening_result::Entity::find()
        .select_only()
        .column(screening_result::Column::RowNumber)
        .filter(screening_result::Column::ImportId.eq(import_id))
        .filter(screening_result::Column::RowNumber.between(*min, *max))
        .into_tuple()
        .all(conn)
        .await?;
    Ok(found.into_iter().collect())
}

/// Write a batch of results and row errors, and move the job's counters and
/// checkpoint, inside the caller's transaction. Rows already stored are
/// skipped by the database as well (unique `(import, row)`).
pub async fn record_batch(
    conn: &impl ConnectionTrait,
    import_id: Uuid,
    results: Vec<NewResult>,
    errors: Vec<NewRowError>,
    progress: BatchProgress,
) -> Result<()> {
    let now = Utc::now();
    if conn.get_database_backend() == DatabaseBackend::Postgres {
        insert_results_pg(conn, import_id, &results, now).await?;
    } else {
        insert_results(conn, import_id, results, now).await?;
    }
    for chunk in insert_chunks(
        errors
            .into_iter()
            .map(|e| screening_row_error::ActiveModel {
                id: Set(Uuid::now_v7()),
                import_id: Set(import_id),
                row_number: Set(e.row_number),
                seq: Set(e.seq),
                column: Set(e.column),
                reason: Set(e.reason),
            }),
    ) {
        screening_row_error::Entity::insert_many(chunk)
            .on_conflict(
                OnConflict::columns([
                    screening_row_error::Column::ImportId,
                    screening_row_error::Column::RowNumber,
                    screening_row_error::Column::Seq,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(conn)
            .await?;
    }
    use screening_import::Column as C;
    screening_import::Entity::update_many()
        .col_expr(C::RowsRead, Expr::col(C::RowsRead).add(progress.rows_read))
        .col_expr(
            C::RowsAccepted,
            Expr::col(C::RowsAccepted).add(progress.rows_accepted),
        )
        .col_expr(
            C::RowsRejected,
            Expr::col(C::RowsRejected).add(progress.rows_rejected),
        )
        .col_expr(
            C::AlertsRaised,
            Expr::col(C::AlertsRaised).add(progress.alerts_raised),
        )
        .col_expr(C::CheckpointRow, Expr::value(progress.checkpoint_row))
        .col_expr(
            C::SignalBatches,
            Expr::col(C::SignalBatches).add(progress.signal_batches),
        )
        .col_expr(C::UpdatedAt, Expr::value(now))
        .filter(C::Id.eq(import_id))
        .filter(C::CheckpointRow.lt(progress.checkpoint_row))
        .exec(conn)
        .await?;
    Ok(())
}

/// Result rows through sea-orm's multi-row INSERT (the SQLite path; on
/// PostgreSQL the bench's earlier reference), `INSERT_CHUNK` rows per
/// statement.
pub async fn insert_results(
    conn: &impl ConnectionTrait,
    import_id: Uuid,
    results: Vec<NewResult>,
    now: DateTime<Utc>,
) -> Result<()> {
    for chunk in insert_chunks(results.into_iter().map(|r| screening_result::ActiveModel {
        id: Set(r.id),
        import_id: Set(import_id),
        row_number: Set(r.row_number),
        student_id: Set(r.student_id),
        student_no: Set(r.student_no),
        instrument: Set(r.instrument),
        administered_on: Set(r.administered_on),
        outcome: Set(r.outcome.to_owned()),
        reason: Set(r.reason),
        total: Set(r.total),
        band: Set(r.band),
        subscales: Set(r.subscales),
        flags: Set(r.flags),
        level: Set(r.level),
        event_id: Set(r.event_id),
        created_at: Set(now),
    })) {
        screening_result::Entity::insert_many(chunk)
            .on_conflict(
                OnConflict::columns([
                    screening_result::Column::ImportId,
                    screening_result::Column::RowNumber,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

/// One result row as `json_to_recordset` reads it.
#[derive(serde::Serialize)]
struct ResultJson<'a> {
    id: Uuid,
    row_number: i64,
    student_id: Option<Uuid>,
    student_no: &'a str,
    instrument: &'a str,
    administered_on: NaiveDate,
    outcome: &'a str,
    reason: Option<&'a str>,
    total: Option<i32>,
    band: Option<&'a str>,
    subscales: Option<&'a str>,
    flags: &'a str,
    level: Option<&'a str>,
    event_id: Option<&'a str>,
}

/// Result rows on PostgreSQL: the whole batch as one JSON parameter, unpacked
/// by `json_to_recordset` into one multi-row INSERT. Three bound values
/// whatever the batch size, instead of sixteen per row (which PostgreSQL has
/// to parse, plan and bind one by one).
pub async fn insert_results_pg(
    conn: &impl ConnectionTrait,
    import_id: Uuid,
    results: &[NewResult],
    now: DateTime<Utc>,
) -> Result<()> {
    if results.is_empty() {
        return Ok(());
    }
    let rows: Vec<ResultJson<'_>> = results
        .iter()
        .map(|r| ResultJson {
            id: r.id,
            row_number: r.row_number,
            student_id: r.student_id,
            student_no: &r.student_no,
            instrument: &r.instrument,
            administered_on: r.administered_on,
            outcome: r.outcome,
            reason: r.reason.as_deref(),
            total: r.total,
            band: r.band.as_deref(),
            subscales: r.subscales.as_deref(),
            flags: &r.flags,
            level: r.level.as_deref(),
            event_id: r.event_id.as_deref(),
        })
        .collect();
    let json = serde_json::to_string(&rows).map_err(|e| crate::StoreError::Corrupt {
        table: "screening_results",
        detail: format!("encoding a batch: {e}"),
    })?;
    conn.execute_raw(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        "INSERT INTO screening_results (id, import_id, row_number, student_id, student_no, \
         instrument, administered_on, outcome, reason, total, band, subscales, flags, level, \
         event_id, created_at) \
         SELECT r.id, $2, r.row_number, r.student_id, r.student_no, r.instrument, \
         r.administered_on, r.outcome, r.reason, r.total, r.band, r.subscales, r.flags, \
         r.level, r.event_id, $3 \
         FROM json_to_recordset($1::json) AS r(id uuid, row_number bigint, student_id uuid, \
         student_no text, instrument text, administered_on date, outcome text, reason text, \
         total integer, band text, subscales text, flags text, level text, event_id text) \
         ON CONFLICT (import_id, row_number) DO NOTHING",
        [json.into(), import_id.into(), now.into()],
    ))
    .await?;
    Ok(())
}

/// The total of each student's latest accepted result on `instrument`
/// administered before `before`.
pub async fn previous_totals(
    conn: &impl ConnectionTrait,
    instrument: &str,
    before: NaiveDate,
    students: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, i32>> {
    let rows: Vec<(Option<Uuid>, Option<i32>)> = screening_result::Entity::find()
        .select_only()
        .column(screening_result::Column::StudentId)
        .column(screening_result::Column::Total)
        .filter(screening_result::Column::StudentId.is_in(students.iter().copied()))
        .filter(screening_result::Column::Instrument.eq(instrument))
        .filter(screening_result::Column::AdministeredOn.lt(before))
        .filter(screening_result::Column::Outcome.eq("ok"))
        .filter(screening_result::Column::Total.is_not_null())
        .order_by_desc(screening_result::Column::AdministeredOn)
        .order_by_desc(screening_result::Column::CreatedAt)
        .into_tuple()
        .all(conn)
        .await?;
    let mut latest = std::collections::HashMap::new();
    for (student, total) in rows {
        if let (Some(student), Some(total)) = (student, total) {
            latest.entry(student).or_insert(total);
        }
    }
    Ok(latest)
}

/// Active students of a school among `student_nos`, by student number.
pub async fn students_by_no(
    conn: &impl ConnectionTrait,
    school_id: Uuid,
    student_nos: &BTreeSet<String>,
) -> Result<Vec<student::Model>> {
    if student_nos.is_empty() {
        return Ok(Vec::new());
    }
    if conn.get_database_backend() == DatabaseBackend::Postgres {
        // One statement text whatever the count (prepared once per
        // connection), the numbers as one JSON parameter.
        let numbers =
            serde_json::to_string(student_nos).map_err(|e| crate::StoreError::Corrupt {
                table: "students",
                detail: format!("encoding student numbers: {e}"),
            })?;
        return Ok(student::Entity::find()
            .from_raw_sql(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT * FROM students WHERE school_id = $1 AND active \
                 AND student_no IN (SELECT json_array_elements_text($2::json))",
                [school_id.into(), numbers.into()],
            ))
            .all(conn)
            .await?);
    }
    Ok(student::Entity::find()
        .filter(student::Column::SchoolId.eq(school_id))
        .filter(student::Column::StudentNo.is_in(student_nos.iter().cloned()))
        .filter(student::Column::Active.eq(true))
        .all(conn)
        .await?)
}

/// Results of an import in file order, after file row `after_row`.
pub async fn results(
    conn: &impl ConnectionTrait,
    import_id: Uuid,
    after_row: i64,
    limit: u64,
) -> Result<Vec<screening_result::Model>> {
    Ok(screening_result::Entity::find()
        .filter(screening_result::Column::ImportId.eq(import_id))
        .filter(screening_result::Column::RowNumber.gt(after_row))
        .order_by_asc(screening_result::Column::RowNumber)
        .limit(limit)
        .all(conn)
        .await?)
}

/// Row errors of an import in file order, after the `(row, seq)` given.
pub async fn row_errors(
    conn: &impl ConnectionTrait,
    import_id: Uuid,
    after: (i64, i32),
    limit: u64,
) -> Result<Vec<screening_row_error::Model>> {
    use screening_row_error::Column as C;
    Ok(screening_row_error::Entity::find()
        .filter(C::ImportId.eq(import_id))
        .filter(
            sea_orm::Condition::any().add(C::RowNumber.gt(after.0)).add(
                sea_orm::Condition::all()
                    .add(C::RowNumber.eq(after.0))
                    .add(C::Seq.gt(after.1)),
            ),
        )
        .order_by_asc(C::RowNumber)
        .order_by_asc(C::Seq)
        .limit(limit)
        .all(conn)
        .await?)
}

/// A school's imports, the newest first, at most `limit`.
pub async fn list(
    conn: &impl ConnectionTrait,
    school_id: Uuid,
    limit: u64,
) -> Result<Vec<screening_import::Model>> {
    Ok(screening_import::Entity::find()
        .filter(screening_import::Column::SchoolId.eq(school_id))
        .order_by_desc(screening_import::Column::CreatedAt)
        .order_by_desc(screening_import::Column::Id)
        .limit(limit)
        .all(conn)
        .await?)
}

/// How many accepted rows of an import fell in one band of one instrument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BandCount {
    pub instrument: String,
    pub band: String,
    pub count: i64,
}

/// The accepted rows of an import counted per instrument and band (rows
/// without a band, and rejected rows, are not counted), by instrument and
/// band name; the caller orders bands as its catalogue does.
pub async fn band_counts(conn: &impl ConnectionTrait, import_id: Uuid) -> Result<Vec<BandCount>> {
    use screening_result::Column as C;
    let rows: Vec<(String, String, i64)> = screening_result::Entity::find()
        .select_only()
        .column(C::Instrument)
        .column(C::Band)
        .column_as(Expr::col(C::Id).count(), "n")
        .filter(C::ImportId.eq(import_id))
        .filter(C::Outcome.eq(outcome::OK))
        .filter(C::Band.is_not_null())
        .group_by(C::Instrument)
        .group_by(C::Band)
        .order_by_asc(C::Instrument)
        .order_by_asc(C::Band)
        .into_tuple()
        .all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(instrument, band, count)| BandCount {
            instrument,
            band,
            count,
        })
        .collect())
}
