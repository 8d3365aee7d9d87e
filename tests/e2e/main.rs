//! End-to-end flows across the real binaries, NATS, SMTP and databases: one
//! test binary, a module per flow. Run one flow with
//! `cargo test -p sanyu-e2e --test e2e <module>::`.

mod after_ack;
mod api;
mod audit;
mod availability;
mod backup;
mod casework;
mod cluster;
mod console;
mod console_screening;
mod digest;
mod docs;
mod duty;
mod escalation;
mod exactly_once;
mod hotline;
mod metrics;
mod openapi;
mod replicas;
mod report_to_email;
mod roster_and_tokens;
mod rules;
mod scope;
mod screening;
mod sign_in;
mod sms;
mod telemetry;
mod tls;
mod upgrade;
mod voice;
mod work_im;
mod zero_reports;
