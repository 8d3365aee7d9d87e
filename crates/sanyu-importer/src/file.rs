//! The file side of an import: which format it is, its rows one at a time
//! (never the whole file in memory), and an estimate of its row count.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use sanyu_screening::{
    Coding, ColumnProfile, Instrument, ScreeningError, ScreeningReader, SourceRow, XlsxLimits,
    XlsxWorkbook,
};

/// The formats an import accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Csv,
    Xlsx,
}

impl FileFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Xlsx => "xlsx",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "csv" => Some(Self::Csv),
            "xlsx" => Some(Self::Xlsx),
            _ => None,
        }
    }

    /// An XLSX workbook is a zip file (`PK\x03\x04`); anything else is read as CSV.
    pub fn detect(path: &Path) -> std::io::Result<Self> {
        let mut magic = [0u8; 4];
        let mut file = File::open(path)?;
        let mut read = 0;
        while read < magic.len() {
            match file.read(&mut magic[read..])? {
                0 => break,
                n => read += n,
            }
        }
        Ok(if read == 4 && magic == *b"PK\x03\x04" {
            Self::Xlsx
        } else {
            Self::Csv
        })
    }
}

/// What to read: the declaration of an import.
#[derive(Debug, Clone, Copy)]
pub struct Reading<'a> {
    pub format: FileFormat,
    pub instrument: &'a Instrument,
    pub coding: Coding,
    pub sheet: Option<&'a str>,
    pub profile: &'a ColumnProfile,
    /// What an XLSX file may unpack to: checked before it is read, at upload
    /// and again by the import.
    pub xlsx_limits: &'a XlsxLimits,
}

/// The rows of a file, as the library streams them.
pub type Rows<'r> = dyn Iterator<Item = Result<SourceRow, ScreeningError>> + 'r;

/// Open `path` and hand its rows to `visit`. The header is checked against the
/// instrument and coding first: a file that does not fit is refused here,
/// before any row is read. Blocking: call from a blocking thread.
pub fn with_rows<T>(
    path: &Path,
    reading: Reading<'_>,
    visit: impl FnOnce(&mut Rows<'_>) -> T,
) -> Result<T, ScreeningError> {
    match reading.format {
        FileFormat::Csv => {
            let file = BufReader::new(File::open(path)?);
            let mut rows = ScreeningReader::open_csv(
                file,
                reading.instrument,
                reading.coding,
                reading.profile,
            )?;
            Ok(visit(&mut rows))
        }
        FileFormat::Xlsx => {
            let mut book = XlsxWorkbook::open_path(path, reading.xlsx_limits)?;
            let mut rows = book.rows(
                reading.sheet,
                reading.instrument,
                reading.coding,
                reading.profile,
            )?;
            Ok(visit(&mut rows))
        }
    }
}

/// The number of data rows of a CSV file (records after the header row), for
/// progress. Counted on the raw bytes: the delimiters of UTF-8 and GBK files
/// are ASCII and never part of a multi-byte character.
pub fn count_csv_rows(path: &Path, header_row: u64) -> std::io::Result<i64> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(BufReader::new(File::open(path)?));
    let mut record = csv::ByteRecord::new();
    let mut rows = 0i64;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map_or(0, csv::Position::line);
                if line > header_row && record.iter().any(|f| !f.is_empty()) {
                    rows += 1;
                }
            }
            Err(e) if matches!(e.kind(), csv::ErrorKind::Io(_)) => {
                return Err(std::io::Error::other(e.to_string()));
            }
            // A malformed record still counts as a row (it becomes a row error).
            Err(_) => rows += 1,
        }
    }
    Ok(rows)
}
