//! Table `zero_reports`: every version of a unit's zero report for a period.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "zero_reports")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub period_id: String,
    pub school_id: Uuid,
    /// The class, for a class's report; none for the school's own report.
    pub class_id: Option<Uuid>,
    /// `school` or the class code.
    pub unit: String,
    pub version: i32,
    /// The newest version of this unit's report for the period.
    pub current: bool,
    pub zero: bool,
    pub incident_count: i32,
    /// JSON list of the incidents without narratives (student_no, category, level, report_id).
    pub incidents: String,
    pub late: bool,
    pub request_hash: String,
    pub submitted_by: Uuid,
    pub submitted_at: DateTimeUtc,
}

no_relations!();
