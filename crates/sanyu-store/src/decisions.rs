//! The rules engine's decisions (one row per decided signal) and its
//! key-population list. Written by the rules engine in the transaction of the
//! decision; read back as the students' recent history, by `GET /v1/cases/{id}`
//! to explain a case, and by `sanyu rules simulate` to replay history.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

use crate::db::insert_chunks;
use crate::entities::{decision, student, watch_entry};
use crate::{Result, db};

/// Ids per `IN (…)` list.
const IN_CHUNK: usize = 500;

/// A decided signal, as written.
#[derive(Debug, Clone)]
pub struct NewDecision {
    pub signal_id: String,
    pub message_id: String,
    pub student_id: Uuid,
    pub school_id: Uuid,
    pub source: String,
    pub signal_at: DateTime<Utc>,
    pub level: Option<sanyu_domain::RiskLevel>,
    pub instrument: Option<String>,
    pub band: Option<String>,
    pub flags: Vec<String>,
    pub category: Option<String>,
    pub decision: String,
    pub case_id: Option<Uuid>,
    pub case_level: Option<sanyu_domain::RiskLevel>,
    pub follow_up_on: Option<NaiveDate>,
    pub rule_id: String,
    pub rules_version: String,
    pub used: Vec<String>,
    pub decided_at: DateTime<Utc>,
}

impl NewDecision {
    fn into_active(self) -> decision::ActiveModel {
        decision::ActiveModel {
            id: Set(Uuid::now_v7()),
            signal_id: Set(self.signal_id),
            message_id: Set(self.message_id),
            student_id: Set(self.student_id),
            school_id: Set(self.school_id),
            source: Set(self.source),
            signal_at: Set(self.signal_at),
            level: Set(self.level),
            instrument: Set(self.instrument),
            band: Set(self.band),
            flags: Set(self.flags.join(",")),
            category: Set(self.category),
            decision: Set(self.decision),
            case_id: Set(self.case_id),
            case_level: Set(self.case_level),
            follow_up_on: Set(self.follow_up_on),
            rule_id: Set(self.rule_id),
            rules_version: Set(self.rules_version),
            used: Set(serde_json::to_string(&self.used).unwrap_or_else(|_| "[]".to_owned())),
            decided_at: Set(self.decided_at),
        }
    }
}

/// The flags of a stored decision.
pub fn flags_of(row: &decision::Model) -> Vec<String> {
    row.flags
        .split(',')
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The signal ids a stored decision used.
pub fn used_of(row: &decision::Model) -> Vec<String> {
    serde_json::from_str(&row.used).unwrap_or_default()
}

/// Write decisions in multi-row inserts. A signal already decided makes the
/// insert fail (unique `signal_id`): callers check [`decided`] first, under
/// the students' locks.
pub async fn insert_many(conn: &impl ConnectionTrait, rows: Vec<NewDecision>) -> Result<()> {
    for chunk in insert_chunks(rows.into_iter().map(NewDecision::into_active)) {
        decision::Entity::insert_many(chunk)
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

/// Which of these signals are already decided.
pub async fn decided(
    conn: &impl ConnectionTrait,
    signal_ids: &[String],
) -> Result<HashSet<String>> {
    let mut out = HashSet::new();
    for chunk in signal_ids.chunks(IN_CHUNK) {
        let found: Vec<String> = decision::Entity::find()
            .select_only()
            .column(decision::Column::SignalId)
            .filter(decision::Column::SignalId.is_in(chunk.iter().cloned()))
            .into_tuple()
            .all(conn)
            .await?;
        out.extend(found);
    }
    Ok(out)
}

/// The students' decided signals since `since`, oldest first.
pub async fn recent_for_students(
    conn: &impl ConnectionTrait,
    students: &[Uuid],
    since: DateTime<Utc>,
) -> Result<Vec<decision::Model>> {
    if conn.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        // One index probe (student, time) per student (see `db::probe_ids`).
        let json = crate::db::probe_ids("decisions", students)?;
        return Ok(decision::Entity::find()
            .from_raw_sql(sea_orm::Statement::from_sql_and_values(
                sea_orm::DatabaseBackend::Postgres,
                "SELECT d.* FROM json_array_elements_text($1::json) AS s(id) \
                 CROSS JOIN LATERAL (SELECT * FROM decisions \
                 WHERE student_id = s.id::uuid AND signal_at >= $2 OFFSET 0) AS d \
                 ORDER BY d.signal_at",
                [json.into(), since.into()],
            ))
            .all(conn)
            .await?);
    }
    let mut out = Vec::new();
    for chunk in students.chunks(IN_CHUNK) {
        out.extend(
            decision::Entity::find()
                .filter(decision::Column::StudentId.is_in(chunk.iter().copied()))
                .filter(decision::Column::SignalAt.gte(since))
                .order_by_asc(decision::Column::SignalAt)
                .all(conn)
                .await?,
        );
    }
    Ok(out)
}

/// The decisions that concern a case, in order.
pub async fn for_case(conn: &impl ConnectionTrait, case_id: Uuid) -> Result<Vec<decision::Model>> {
    Ok(decision::Entity::find()
        .filter(decision::Column::CaseId.eq(case_id))
        .order_by_asc(decision::Column::DecidedAt)
        .all(conn)
        .await?)
}

/// Decisions by signal id.
pub async fn by_signal_ids(
    conn: &impl ConnectionTrait,
    signal_ids: &[String],
) -> Result<Vec<decision::Model>> {
    let mut out = Vec::new();
    for chunk in signal_ids.chunks(IN_CHUNK) {
        out.extend(
            decision::Entity::find()
                .filter(decision::Column::SignalId.is_in(chunk.iter().cloned()))
                .all(conn)
                .await?,
        );
    }
    Ok(out)
}

/// Every decided signal in `[from, to)`, oldest first (for simulation).
pub async fn in_range(
    conn: &impl ConnectionTrait,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<decision::Model>> {
    Ok(decision::Entity::find()
        .filter(decision::Column::SignalAt.gte(from))
        .filter(decision::Column::SignalAt.lt(to))
        .order_by_asc(decision::Column::SignalAt)
        .order_by_asc(decision::Column::DecidedAt)
        .all(conn)
        .await?)
}

/// Number of decisions (tests and benches).
pub async fn count(conn: &impl ConnectionTrait) -> Result<u64> {
    use sea_orm::PaginatorTrait;
    Ok(decision::Entity::find().count(conn).await?)
}

/// The advisory-lock space of the per-student locks ("SANY").
const STUDENT_LOCK_SPACE: i32 = 0x5341_4e59;

/// A student's advisory-lock key: the student id folded to 32 bits. Two
/// students sharing a key only wait for each other.
fn student_lock_key(id: Uuid) -> i32 {
    let v = id.as_u128();
    let folded = (v as u64) ^ ((v >> 64) as u64);
    ((folded as u32) ^ ((folded >> 32) as u32)) as i32
}

/// The students, locked for the transaction: on PostgreSQL one
/// transaction-scoped advisory lock per student (`pg_advisory_xact_lock`),
/// taken in key order so that two engines locking overlapping sets never
/// deadlock, and released by the commit or rollback. This is what keeps two
/// rules engines from deciding about one student at once. Advisory locks live
/// in memory: unlike `SELECT … FOR UPDATE`, they write nothing to the student
/// rows or the WAL. SQLite serialises writers anyway. Unknown ids are simply
/// absent from the answer.
pub async fn lock_students(
    conn: &impl ConnectionTrait,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, student::Model>> {
    let mut sorted: Vec<Uuid> = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if db::supports_row_locks(conn) && !sorted.is_empty() {
        let mut keys: Vec<i32> = sorted.iter().map(|id| student_lock_key(*id)).collect();
        keys.sort_unstable();
        keys.dedup();
        let list = keys
            .iter()
            .map(i32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        // Integers only in the statement text; taken one by one in key order.
        conn.execute_unprepared(&format!(
            "SELECT pg_advisory_xact_lock({STUDENT_LOCK_SPACE}, k) \
             FROM (SELECT k FROM unnest(ARRAY[{list}]::int4[]) AS k ORDER BY k OFFSET 0) AS keys"
        ))
        .await?;
    }
    let mut out = HashMap::with_capacity(sorted.len());
    for chunk in sorted.chunks(IN_CHUNK) {
        for s in student::Entity::find()
            .filter(student::Column::Id.is_in(chunk.iter().copied()))
            .all(conn)
            .await?
        {
            out.insert(s.id, s);
        }
    }
    Ok(out)
}

// ------------------------------------------------------------ watch list

/// A student the rules put on the key-population list.
#[derive(Debug, Clone)]
pub struct NewWatch {
    pub student_id: Uuid,
    pub school_id: Uuid,
    pub class_id: Uuid,
    pub since: DateTime<Utc>,
    pub follow_up_on: NaiveDate,
    pub signal_id: String,
    pub rule_id: String,
    pub rules_version: String,
}

/// Active (not done) watch entries of these students.
pub async fn active_watches(
    conn: &impl ConnectionTrait,
    students: &[Uuid],
) -> Result<HashMap<Uuid, watch_entry::Model>> {
    let mut out = HashMap::new();
    if conn.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        // One index probe per student (see `db::probe_ids`).
        let json = crate::db::probe_ids("watch_list", students)?;
        for w in watch_entry::Entity::find()
            .from_raw_sql(sea_orm::Statement::from_sql_and_values(
                sea_orm::DatabaseBackend::Postgres,
                "SELECT w.* FROM json_array_elements_text($1::json) AS s(id) \
                 CROSS JOIN LATERAL (SELECT * FROM watch_list \
                 WHERE student_id = s.id::uuid AND done_at IS NULL OFFSET 0) AS w",
                [json.into()],
            ))
            .all(conn)
            .await?
        {
            out.insert(w.student_id, w);
        }
        return Ok(out);
    }
    for chunk in students.chunks(IN_CHUNK) {
        for w in watch_entry::Entity::find()
            .filter(watch_entry::Column::StudentId.is_in(chunk.iter().copied()))
            .filter(watch_entry::Column::DoneAt.is_null())
            .all(conn)
            .await?
        {
            out.insert(w.student_id, w);
        }
    }
    Ok(out)
}

/// Record a watch entry's follow-up as done (by whom, when): it leaves the
/// list and its reminder does nothing. `false` when it was done already.
pub async fn finish_watch(
    conn: &impl ConnectionTrait,
    id: Uuid,
    by: Option<Uuid>,
    at: DateTime<Utc>,
) -> Result<bool> {
    let result = watch_entry::Entity::update_many()
        .col_expr(
            watch_entry::Column::DoneAt,
            sea_orm::sea_query::Expr::value(at),
        )
        .col_expr(
            watch_entry::Column::DoneBy,
            sea_orm::sea_query::Expr::value(by),
        )
        .filter(watch_entry::Column::Id.eq(id))
        .filter(watch_entry::Column::DoneAt.is_null())
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// One watch entry.
pub async fn watch_entry(
    conn: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<watch_entry::Model>> {
    Ok(watch_entry::Entity::find_by_id(id).one(conn).await?)
}

/// Put a student on the list, or bring an existing entry's follow-up forward
/// (never later: the earlier promise to look again stands). The entry as
/// written, or `None` when nothing changed (its follow-up reminder is the
/// caller's to schedule).
pub async fn watch(
    conn: &impl ConnectionTrait,
    existing: Option<&watch_entry::Model>,
    new: NewWatch,
) -> Result<Option<watch_entry::Model>> {
    match existing {
        Some(w) if w.follow_up_on <= new.follow_up_on => Ok(None),
        Some(w) => {
            watch_entry::Entity::update(watch_entry::ActiveModel {
                id: sea_orm::ActiveValue::Unchanged(w.id),
                follow_up_on: Set(new.follow_up_on),
                ..Default::default()
            })
            .exec(conn)
            .await?;
            Ok(Some(watch_entry::Model {
                follow_up_on: new.follow_up_on,
                ..w.clone()
            }))
        }
        None => {
            let entry = watch_entry::Model {
                id: Uuid::now_v7(),
                student_id: new.student_id,
                school_id: new.school_id,
                class_id: new.class_id,
                since: new.since,
                follow_up_on: new.follow_up_on,
                signal_id: new.signal_id,
                rule_id: new.rule_id,
                rules_version: new.rules_version,
                done_at: None,
                done_by: None,
            };
            insert_watches(conn, vec![entry.clone()]).await?;
            Ok(Some(entry))
        }
    }
}

/// Insert new watch-list entries (a batch's) in multi-row inserts.
pub async fn insert_watches(
    conn: &impl ConnectionTrait,
    entries: Vec<watch_entry::Model>,
) -> Result<()> {
    use sea_orm::{ActiveModelTrait, IntoActiveModel};
    for chunk in insert_chunks(
        entries
            .into_iter()
            .map(|m| m.into_active_model().reset_all()),
    ) {
        watch_entry::Entity::insert_many(chunk)
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

/// The school's students on the rules' watch list.
pub async fn watches_of_school(
    conn: &impl ConnectionTrait,
    school_id: Uuid,
    class_id: Option<Uuid>,
) -> Result<Vec<watch_entry::Model>> {
    let mut q = watch_entry::Entity::find()
        .filter(watch_entry::Column::SchoolId.eq(school_id))
        .filter(watch_entry::Column::DoneAt.is_null());
    if let Some(class_id) = class_id {
        q = q.filter(watch_entry::Column::ClassId.eq(class_id));
    }
    Ok(q.order_by_asc(watch_entry::Column::FollowUpOn)
        .all(conn)
        .await?)
}
