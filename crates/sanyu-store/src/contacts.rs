//! Verified contact methods (issue 16): which staff members' mobile numbers
//! and email addresses a code sent to them verified (`contact_verifications`,
//! written by the console's sign-in, [`crate::console`]). A verification
//! holds for the address verified: once the roster changes the number, it
//! is unverified again.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::Result;
use crate::entities::{contact_verification as verification, staff};

pub const SMS: &str = "sms";
pub const EMAIL: &str = "email";

/// The verified addresses of some staff members.
#[derive(Debug, Clone, Default)]
pub struct Verified(HashMap<(Uuid, String), String>);

impl Verified {
    /// Whether `person`'s mobile number, as the roster has it now, is verified.
    pub fn phone(&self, person: &staff::Model) -> bool {
        self.holds(person, SMS, person.phone.as_deref())
    }

    /// Whether `person`'s email address, as the roster has it now, is verified.
    pub fn email(&self, person: &staff::Model) -> bool {
        self.holds(person, EMAIL, person.email.as_deref())
    }

    fn holds(&self, person: &staff::Model, channel: &str, now: Option<&str>) -> bool {
        match (now, self.0.get(&(person.id, channel.to_owned()))) {
            (Some(address), Some(verified)) => {
                !address.trim().is_empty() && address.trim() == verified.trim()
            }
            _ => false,
        }
    }

    /// A set with these verifications (tests; the database's own are read
    /// with [`verified`]).
    pub fn of(entries: impl IntoIterator<Item = (Uuid, &'static str, String)>) -> Self {
        Self(
            entries
                .into_iter()
                .map(|(id, channel, address)| ((id, channel.to_owned()), address))
                .collect(),
        )
    }
}

/// The verifications of the staff members `ids`.
pub async fn verified(conn: &impl ConnectionTrait, ids: &[Uuid]) -> Result<Verified> {
    let mut out = HashMap::new();
    for chunk in ids.chunks(500) {
        for v in verification::Entity::find()
            .filter(verification::Column::StaffId.is_in(chunk.iter().copied()))
            .all(conn)
            .await?
        {
            out.insert((v.staff_id, v.channel), v.address);
        }
    }
    Ok(Verified(out))
}

/// Record that a code sent to `address` on `channel` (`sms`, `email`) was
/// typed in by `staff_id`.
pub async fn record(
    conn: &impl ConnectionTrait,
    staff_id: Uuid,
    channel: &str,
    address: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    verification::Entity::insert(verification::ActiveModel {
        staff_id: Set(staff_id),
        channel: Set(channel.to_owned()),
        address: Set(address.trim().to_owned()),
        verified_at: Set(at),
    })
    .on_conflict(
        OnConflict::columns([verification::Column::StaffId, verification::Column::Channel])
            .update_columns([
                verification::Column::Address,
                verification::Column::VerifiedAt,
            ])
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(())
}
