//! Table `console_sign_in_codes`: one-time sign-in codes of the console.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "console_sign_in_codes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub challenge_hash: String,
    pub identifier_hash: String,
    pub staff_id: Option<Uuid>,
    pub code_hash: String,
    pub client_addr: String,
    pub return_to: Option<String>,
    pub attempts: i32,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub used_at: Option<DateTimeUtc>,
    /// The keyed hash of the sign-in link's token (an emailed code only).
    pub link_hash: Option<String>,
    /// How the code went: `email` or `sms`.
    pub channel: String,
    /// The keyed hash of the address the code went to (see
    /// `crate::console::channel::mark_verified`); none for codes sent before it.
    pub sent_to_hash: Option<String>,
}

no_relations!();
