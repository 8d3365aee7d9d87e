//! Table `follow_ups` (重点关注): a due date per student, done with an outcome.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "follow_ups")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub school_id: Uuid,
    pub student_id: Uuid,
    pub case_id: Option<Uuid>,
    pub due_at: DateTimeUtc,
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub done_at: Option<DateTimeUtc>,
    pub outcome_sealed: Option<Vec<u8>>,
}

no_relations!();
