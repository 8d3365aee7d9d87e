//! The tests of `sanyu-importer`: one test binary, a module per subject.

mod field_count;
mod import;
mod xlsx_limits;
