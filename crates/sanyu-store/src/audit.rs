//! The audit log: who read or did what, when and from where — never a
//! narrative. Append-only (database triggers) and chained: each record carries
//! an HMAC over its fields and the previous record's HMAC, under a key derived
//! from the data key, and a MAC'd head row names the last record. `verify`
//! finds an edited, deleted or truncated record.

use chrono::{DateTime, SubsecRound, Utc};
use hmac::{Hmac, Mac};
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseBackend, EntityTrait, QueryOrder, QuerySelect,
    Statement, sea_query::OnConflict,
};
use sha2::Sha256;
use uuid::Uuid;

use crate::entities::{audit_head, audit_record};
use crate::{Db, Result, begin_write};

type HmacSha256 = Hmac<Sha256>;

const GENESIS: &str = "genesis";
const HEAD_ID: i32 = 1;
/// Serialises appenders on PostgreSQL (SQLite has one writer anyway).
const APPEND_LOCK: i64 = 0x5341_4e59_5541_5544;

/// The chain's key, derived from the data key (never stored in the database).
#[derive(Clone)]
pub struct AuditKey([u8; 32]);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(<redacted>)")
    }
}

impl AuditKey {
    pub fn from_data_key(data_key_base64: &str) -> Result<Self> {
        Ok(Self(crate::crypto::derive_key(
            data_key_base64,
            b"sanyu-audit-chain-v1",
        )?))
    }

    fn mac(&self, parts: &[&str]) -> String {
        // HMAC accepts keys of any length: this cannot fail.
        let Ok(mut mac) = HmacSha256::new_from_slice(&self.0) else {
            return String::new();
        };
        for part in parts {
            mac.update(part.as_bytes());
            mac.update(&[0x1f]);
        }
        hex::encode(mac.finalize().into_bytes())
    }
}

/// One thing to record.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor_token_id: Option<Uuid>,
    pub actor_role: String,
    pub actor_staff_id: Option<Uuid>,
    pub school_id: Option<Uuid>,
    /// e.g. `case.read`, `case.list`, `report.submit`, `roster.import`.
    pub action: String,
    /// e.g. `case:<id>`; ids only.
    pub target: String,
    /// Where the request came from (peer address).
    pub source: String,
}

fn opt(id: Option<Uuid>) -> String {
    id.map(|u| u.to_string()).unwrap_or_default()
}

fn record_hash(key: &AuditKey, seq: i64, at: DateTime<Utc>, prev: &str, e: &AuditEntry) -> String {
    key.mac(&[
        &seq.to_string(),
        &at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        &opt(e.actor_token_id),
        &e.actor_role,
        &opt(e.actor_staff_id),
        &opt(e.school_id),
        &e.action,
        &e.target,
        &e.source,
        prev,
    ])
}

fn head_mac(key: &AuditKey, seq: i64, hash: &str) -> String {
    key.mac(&["head", &seq.to_string(), hash])
}

/// Append one record in its own write transaction. Returns its sequence number.
pub async fn append(db: &Db, key: &AuditKey, entry: AuditEntry) -> Result<i64> {
    let txn = begin_write(db).await?;
    let seq = append_in(&*txn, key, entry).await?;
    txn.commit().await?;
    Ok(seq)
}

/// Append one record inside the caller's write transaction, so that an action
/// and its audit record commit together.
pub async fn append_in(
    txn: &impl ConnectionTrait,
    key: &AuditKey,
    entry: AuditEntry,
) -> Result<i64> {
    if txn.get_database_backend() == DatabaseBackend::Postgres {
        txn.execute_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            format!("SELECT pg_advisory_xact_lock({APPEND_LOCK})"),
        ))
        .await?;
    }
    let head = audit_head::Entity::find_by_id(HEAD_ID).one(txn).await?;
    let (last_seq, prev) = head
        .map(|h| (h.last_seq, h.last_hash))
        .unwrap_or((0, GENESIS.to_owned()));
    let seq = last_seq + 1;
    let at = Utc::now().trunc_subsecs(6);
    let hash = record_hash(key, seq, at, &prev, &entry);
    audit_record::Entity::insert(audit_record::ActiveModel {
        seq: Set(seq),
        at: Set(at),
        actor_token_id: Set(entry.actor_token_id),
        actor_role: Set(entry.actor_role),
        actor_staff_id: Set(entry.actor_staff_id),
        school_id: Set(entry.school_id),
        action: Set(entry.action),
        target: Set(entry.target),
        source: Set(entry.source),
        prev_hash: Set(prev),
        hash: Set(hash.clone()),
    })
    .exec_without_returning(txn)
    .await?;
    audit_head::Entity::insert(audit_head::ActiveModel {
        id: Set(HEAD_ID),
        last_seq: Set(seq),
        last_hash: Set(hash.clone()),
        mac: Set(head_mac(key, seq, &hash)),
    })
    .on_conflict(
        OnConflict::column(audit_head::Column::Id)
            .update_columns([
                audit_head::Column::LastSeq,
                audit_head::Column::LastHash,
                audit_head::Column::Mac,
            ])
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(seq)
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub records: u64,
    /// `None` when the chain is intact.
    pub problem: Option<String>,
}

/// Walk the whole chain.
pub async fn verify(db: &impl ConnectionTrait, key: &AuditKey) -> Result<Verification> {
    const PAGE: u64 = 1000;
    let mut expected_seq = 1i64;
    let mut prev = GENESIS.to_owned();
    let mut records = 0u64;
    let broken = |records, problem: String| {
        Ok(Verification {
            records,
            problem: Some(problem),
        })
    };
    loop {
        let rows = audit_record::Entity::find()
            .order_by_asc(audit_record::Column::Seq)
            .offset(records)
            .limit(PAGE)
            .all(db)
            .await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            if row.seq != expected_seq {
                return broken(
                    records,
                    format!("record {expected_seq} is missing (found {} next)", row.seq),
                );
            }
            if row.prev_hash != prev {
                return broken(
                    records,
                    format!("record {} does not follow record {}", row.seq, row.seq - 1),
                );
            }
            let entry = AuditEntry {
                actor_token_id: row.actor_token_id,
                actor_role: row.actor_role.clone(),
                actor_staff_id: row.actor_staff_id,
                school_id: row.school_id,
                action: row.action.clone(),
                target: row.target.clone(),
                source: row.source.clone(),
            };
            if record_hash(key, row.seq, row.at, &row.prev_hash, &entry) != row.hash {
                return broken(records, format!("record {} was altered", row.seq));
            }
            prev = row.hash.clone();
            expected_seq += 1;
            records += 1;
        }
    }
    let head = audit_head::Entity::find_by_id(HEAD_ID).one(db).await?;
    match head {
        None if records == 0 => {}
        None => return broken(records, "the head record is missing".into()),
        Some(h) => {
            if h.mac != head_mac(key, h.last_seq, &h.last_hash) {
                return broken(records, "the head record was altered".into());
            }
            if h.last_seq != expected_seq - 1 || h.last_hash != prev {
                return broken(
                    records,
                    format!(
                        "the log was truncated: the head names record {}, the log ends at {}",
                        h.last_seq,
                        expected_seq - 1
                    ),
                );
            }
        }
    }
    Ok(Verification {
        records,
        problem: None,
    })
}
