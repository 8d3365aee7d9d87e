pub mod cases;
pub mod ops;
pub mod reports;
pub mod roster;
