//! Table `screening_results`: one row per file row of an import. Scores are
//! sensitive: they are read through the API by counsellors and the crisis
//! team only and never written to logs or events.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "screening_results")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub import_id: Uuid,
    pub row_number: i64,
    /// `None` when the student number is not on the roster.
    pub student_id: Option<Uuid>,
    pub student_no: String,
    pub instrument: String,
    pub administered_on: Date,
    /// `ok` or `reject`.
    pub outcome: String,
    pub reason: Option<String>,
    pub total: Option<i32>,
    pub band: Option<String>,
    /// JSON array of subscale scores.
    pub subscales: Option<String>,
    /// JSON array of flag names (for rejected rows: their suicide alerts).
    pub flags: String,
    /// The signal level suggested to the rules engine, if any.
    pub level: Option<String>,
    /// The INTAKE event this row raised, if any.
    pub event_id: Option<String>,
    pub created_at: DateTimeUtc,
}

no_relations!();
