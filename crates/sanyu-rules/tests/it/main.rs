//! The tests of `sanyu-rules`: one test binary, a module per subject.

mod engine;
mod screening;
