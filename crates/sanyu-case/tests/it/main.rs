//! The tests of `sanyu-case`: one test binary, a module per subject.

mod ladder;
mod planner;
mod rule_planner;
mod writer;
