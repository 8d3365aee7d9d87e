//! Table `case_actions`: the case timeline. `detail` is JSON of ids, dates
//! and codes; free text is sealed: notes and reasons in `text_sealed`, free
//! text of the detail (a close's outcome, a return assessment) as a JSON
//! object in `detail_sealed`.
use sanyu_domain::CaseStatus;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "case_actions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub case_id: Uuid,
    pub action: String,
    pub actor_role: String,
    pub actor_staff_id: Option<Uuid>,
    pub actor_token_id: Option<Uuid>,
    pub status_after: CaseStatus,
    pub detail: String,
    pub text_sealed: Option<Vec<u8>>,
    pub detail_sealed: Option<Vec<u8>>,
    pub at: DateTimeUtc,
}

no_relations!();
