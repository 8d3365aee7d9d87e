//! What the bench binaries share: the database argument, process
//! measurements, seeding, the screening upload and the four services as
//! processes, the settings a bench states.

pub mod common;
pub mod imports;
pub mod pg_args;
pub mod services;
pub mod settings;
