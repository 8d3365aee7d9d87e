pub mod cases;
pub mod casework;
pub mod hotline;
pub mod ops;
pub mod reports;
pub mod roster;
pub mod students;
pub mod zero_reports;
