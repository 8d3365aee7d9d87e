//! Table `referrals` (转介): a case referred to a hospital or specialist.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "referrals")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub case_id: Uuid,
    /// Where the student was referred, sealed with the data key.
    pub institution_sealed: Option<Vec<u8>>,
    pub referred_on: Date,
    pub receipt_confirmed: bool,
    /// 复学评估: date and result of the return-to-school assessment.
    pub return_assessed_on: Option<Date>,
    pub return_assessment_sealed: Option<Vec<u8>>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

no_relations!();
