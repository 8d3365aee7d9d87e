//! Measurements of processes, seeding, a reproducible mix.

use anyhow::{Context, Result};
use chrono::Utc;
use sanyu_store::entities::{class, student};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

/// Peak resident memory of this process (VmHWM), in MiB.
pub fn peak_rss_mib() -> f64 {
    peak_rss_mib_of(std::process::id())
}

/// Peak resident memory (VmHWM) of process `pid`, in MiB.
pub fn peak_rss_mib_of(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Insert `n` students `<prefix>0000000`… into the first class of school
/// `code`, 2,000 per statement; their ids in order.
pub async fn insert_students(
    db: &sanyu_store::Db,
    code: &str,
    prefix: &str,
    n: usize,
) -> Result<Vec<Uuid>> {
    let school = sanyu_store::roster::school_by_code(db, code)
        .await?
        .context("school")?;
    let class = class::Entity::find()
        .filter(class::Column::SchoolId.eq(school.id))
        .one(db)
        .await?
        .context("class")?;
    let now = Utc::now();
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    for (c, chunk) in ids.chunks(2000).enumerate() {
        let rows: Vec<student::ActiveModel> = chunk
            .iter()
            .enumerate()
            .map(|(k, id)| {
                let k = c * 2000 + k;
                student::ActiveModel {
                    id: Set(*id),
                    school_id: Set(school.id),
                    class_id: Set(class.id),
                    student_no: Set(format!("{prefix}{k:07}")),
                    name: Set(format!("Bench {k}")),
                    gender: Set(None),
                    active: Set(true),
                    created_at: Set(now),
                    updated_at: Set(now),
                }
            })
            .collect();
        student::Entity::insert_many(rows)
            .exec_without_returning(db)
            .await?;
    }
    Ok(ids)
}

/// xorshift: a reproducible mix.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
