//! Table `screening_imports`: one import of one screening file.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "screening_imports")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub school_id: Uuid,
    /// Catalogue id of the instrument (`phq9`).
    pub instrument: String,
    /// Declared response coding (`0-3`).
    pub coding: String,
    pub administered_on: Date,
    pub file_name: String,
    /// `csv` or `xlsx`.
    pub file_format: String,
    pub sheet: Option<String>,
    /// Column profile as JSON.
    pub profile: Option<String>,
    /// Where the uploaded file waits on the importing process's disk.
    pub spool_path: Option<String>,
    /// `queued`, `running`, `done`, `failed`, `refused`.
    pub state: String,
    pub rows_read: i64,
    pub rows_accepted: i64,
    pub rows_rejected: i64,
    pub alerts_raised: i64,
    pub rows_total: Option<i64>,
    /// The last file row whose result is committed.
    pub checkpoint_row: i64,
    pub error: Option<String>,
    /// Token that created the import (the CLI leaves it empty).
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    /// The process running the job, while its lease lasts.
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTimeUtc>,
    /// `ScreeningResultBatch` messages written so far (the next one's sequence).
    pub signal_batches: i32,
}

no_relations!();
