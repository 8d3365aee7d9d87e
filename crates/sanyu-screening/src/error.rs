//! The one error type of this crate.

use crate::columns::ColumnMismatch;

/// Everything that can go wrong in this crate outside a single row.
///
/// Problems with one row's answers are not errors: they come back as
/// [`RowOutcome::Rejected`](crate::RowOutcome::Rejected) so that the rest of the
/// file keeps flowing and a rejected row can still raise a suicide alert.
#[derive(Debug, thiserror::Error)]
pub enum ScreeningError {
    /// The instrument catalogue (built-in or supplied) is not valid.
    #[error("invalid instrument catalogue: {0}")]
    Catalogue(String),

    /// No instrument with this id or name in the catalogue.
    #[error("unknown instrument `{0}`")]
    UnknownInstrument(String),

    /// A coding name that this crate does not know.
    #[error("unknown response coding `{value}`; expected one of: {expected}")]
    UnknownCoding {
        value: String,
        expected: &'static str,
    },

    /// The declared coding is not one the instrument accepts.
    #[error("{instrument} files cannot be coded `{coding}`; accepted codings: {accepted}")]
    CodingNotAccepted {
        instrument: String,
        coding: String,
        accepted: String,
    },

    /// The file's header does not fit the declared instrument: refused as a whole.
    #[error("{0}")]
    Columns(Box<ColumnMismatch>),

    /// The file has no header row (it is empty, or shorter than the profile's `header_row`).
    #[error("the file has no header row (expected it at row {0})")]
    NoHeader(u64),

    /// The named worksheet does not exist (or the workbook has no worksheet).
    #[error("worksheet `{0}` not found in the workbook")]
    SheetNotFound(String),

    /// The CSV could not be parsed at this row (row numbers are the file's lines; the header is row 1).
    #[error("CSV error at row {row}: {source}")]
    Csv {
        row: u64,
        #[source]
        source: csv::Error,
    },

    /// The XLSX file would unpack to more than the limits allow (a
    /// decompression bomb, or far larger than a screening export): refused
    /// before calamine reads it.
    #[error("XLSX file refused: {0}")]
    XlsxRefused(#[from] crate::xlsx_guard::XlsxRefusal),

    /// The XLSX could not be read.
    #[error("XLSX error: {0}")]
    Xlsx(#[from] calamine::XlsxError),

    /// Reading the underlying file failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}
