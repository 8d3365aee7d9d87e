//! sea-orm entities, one module per table.
pub mod api_token;
pub mod audit_head;
pub mod audit_record;
pub mod case;
pub mod case_signal;
pub mod class;
pub mod dead_letter;
pub mod delivery;
pub mod grade;
pub mod guardian;
pub mod idempotency_key;
pub mod outbox;
pub mod processed_message;
pub mod report;
pub mod school;
pub mod staff;
pub mod student;
