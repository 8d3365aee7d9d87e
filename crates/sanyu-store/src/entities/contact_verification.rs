//! Table `contact_verifications`: the address of a staff member's channel
//! (`sms`: the mobile number; `email`) that a code sent to it verified.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "contact_verifications")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub staff_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub channel: String,
    pub address: String,
    pub verified_at: DateTimeUtc,
}

no_relations!();
