pub mod cases;
pub mod casework;
pub mod ops;
pub mod reports;
pub mod roster;
pub mod screening;
pub mod students;
