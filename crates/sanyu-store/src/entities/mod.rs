//! sea-orm entities, one module per table.

/// The tail every table module shares: no sea-orm relations (the repositories write their joins as
/// queries) and the default `ActiveModelBehavior`.
macro_rules! no_relations {
    () => {
        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    };
}

pub mod api_token;
pub mod audit_head;
pub mod audit_record;
pub mod case;
pub mod case_action;
pub mod case_signal;
pub mod class;
pub mod console_session;
pub mod console_sign_in_code;
pub mod contact_verification;
pub mod dead_letter;
pub mod decision;
pub mod delivery;
pub mod delivery_attempt;
pub mod duty_override;
pub mod duty_rotation;
pub mod duty_rotation_member;
pub mod follow_up;
pub mod grade;
pub mod guardian;
pub mod hotline_call;
pub mod idempotency_key;
pub mod notification_digest;
pub mod notification_digest_member;
pub mod notification_preference;
pub mod outbox;
pub mod processed_message;
pub mod referral;
pub mod report;
pub mod role_grant;
pub mod school;
pub mod screening_import;
pub mod screening_result;
pub mod screening_row_error;
pub mod staff;
pub mod student;
pub mod timer;
pub mod watch_entry;
pub mod zero_report;
