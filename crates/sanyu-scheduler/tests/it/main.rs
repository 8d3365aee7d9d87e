//! The tests of `sanyu-scheduler`: one test binary, a module per subject.

mod audit_race;
#[allow(clippy::unwrap_used)]
mod common;
mod ladder;
mod unknown_timer;
mod watch;
mod zero_report;
