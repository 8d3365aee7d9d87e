pub mod cases;
pub mod casework;
pub mod ops;
pub mod receipts;
pub mod reports;
pub mod roster;
pub mod students;
