//! Screening instruments for Sanyu: a pure library (no database, no network).
//!
//! * [`catalogue`]: the instruments as data (PHQ-9, PHQ-A, GAD-7, SCL-90, MHT,
//!   UPI, SDQ, K10, C-SSRS screener), each rule citing its source.
//! * [`Coding`]: how a file codes its answers (`0-3`, `1-4`, `yes1-no2`...).
//! * [`Instrument::score_row`]: one row → [`RowOutcome`]: scored, or rejected
//!   with the column and reason of every problem. **A rejected row whose suicide
//!   item is itself valid and positive still carries the suicide flag** in
//!   `alert_flags`.
//! * [`suggested_level`]: the default signal level for the rules engine.
//! * [`ScreeningReader`]: streaming CSV (UTF-8, GBK/GB18030) and XLSX readers
//!   yielding [`SourceRow`]s one at a time; files whose columns do not fit the
//!   instrument are refused as a whole, and an XLSX file that would unpack to
//!   more than its [`XlsxLimits`] is refused before it is read.
//!
//! ```
//! use sanyu_screening::{instrument, Coding, Flag, RowAnswers};
//!
//! let phq9 = instrument("PHQ-9").unwrap();
//! let row = RowAnswers::numbered(Coding::One4, ["1", "1", "2", "1", "1", "1", "1", "1", "2"]);
//! let result = phq9.score_row(&row);
//! let scored = result.scored().unwrap();
//! assert_eq!(scored.total, 2);
//! assert_eq!(scored.band.as_deref(), Some("minimal"));
//! assert!(scored.has_flag(Flag::SuicideItem));
//! ```

pub mod catalogue;
pub mod coding;
pub mod columns;
mod error;
pub mod reader;
pub mod scoring;
pub mod signal;
mod xlsx_guard;
mod xml_scan;

pub use catalogue::{
    Band, Catalogue, Instrument, ItemDef, ItemFlagRule, Method, Subscale, SubscaleRole, catalogue,
    instrument,
};
pub use coding::Coding;
pub use columns::{ColumnLayout, ColumnMismatch, ColumnProfile, SourceRow};
pub use error::ScreeningError;
pub use reader::{CsvRows, ScreeningReader, XlsxRows, XlsxWorkbook, detect_encoding};
pub use scoring::{
    Flag, RowAnswers, RowError, RowOutcome, RowProblem, ScoreResult, SubscaleScore, item_column,
};
pub use signal::{suggested_level, suggested_level_for};
pub use xlsx_guard::{XlsxLimits, XlsxRefusal};
