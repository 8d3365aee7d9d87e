//! The gateway's routes, in-process (issue #14): the router
//! (`sanyu_gateway::router`) on a real database — SQLite, and PostgreSQL when
//! `SANYU_TEST_PG_URL` is set — called with `tower::ServiceExt::oneshot`, no
//! binaries, no HTTP socket. One test binary, so that its tests run in
//! parallel and link once. End-to-end flows across the binaries stay in the
//! workspace's `tests/`.
//!
//! - `matrix`: every route × every role × own/another class and school, as a
//!   table to read against the README's routes table;
//! - `api`, `input`: authentication, validation and the error body;
//! - `casework`: illegal transitions, the case-work role × scope matrix,
//!   watch entries;
//! - `disclosure`, `existence`: what oversight roles see, free text sealed at
//!   rest, no existence oracles;
//! - `console_screening`: the console's screening pages — roles, another
//!   school's import, the upload form's CSRF token and refusals;
//! - `role_grants`: a school's first crisis team confirmed by the deployment
//!   admin; `roster`: an admin imports the own school's rows only;
//! - `calls`: the hotline calls list (API) and the console's calls pages;
//!   `mends`: the queue's filters by role, a closed case's ladder record, a
//!   dead letter's neutral title, a stale case's flag in the queue.
//! - `duty`: the duty roster's refusals (the field that breaks it, another
//!   school's staff as nobody) and who `GET /v1/on-call` names.
//! - `sign_in`: the console's one-time sign-in link (a preview changes
//!   nothing, the button works once) and the choice of SMS for a code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod api;
mod calls;
mod casework;
mod console_screening;
mod disclosure;
mod duty;
mod existence;
mod input;
mod matrix;
mod mends;
mod role_grants;
mod roster;
mod sign_in;
