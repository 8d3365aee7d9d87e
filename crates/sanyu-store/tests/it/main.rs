//! The tests of `sanyu-store`: one test binary, a module per subject.

mod batch_lookups;
mod common;
mod console_sign_in;
mod digests;
mod migration_cases_without_student;
mod migration_scope;
mod migration_seal_free_text;
mod student_locks;
mod unavailable;
mod unknown_values;
