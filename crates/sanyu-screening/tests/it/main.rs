//! The tests of `sanyu-screening`: one test binary, a module per subject.

mod common;
mod instruments;
mod properties;
mod reader;
