//! Streaming readers for screening export files: CSV (UTF-8 with or without BOM,
//! GBK/GB18030 as written by Excel in China) and XLSX.
//!
//! Rows are yielded one at a time; no reader holds the whole file.
//!
//! * CSV: the first 64 KiB are looked at to choose the encoding (a BOM decides;
//!   otherwise valid UTF-8 means UTF-8, anything else GB18030, a superset of GBK),
//!   then the bytes are decoded on the fly (`encoding_rs_io`) into the `csv` parser.
//!   A file whose first 64 KiB are plain ASCII is read as UTF-8; GBK text after
//!   that point would come out as replacement characters (and such answers are
//!   rejected as invalid, never misread).
//! * XLSX: the worksheet XML is read cell by cell with calamine's
//!   `worksheet_cells_reader` straight from the zip stream. calamine loads the
//!   workbook's shared-string table (the distinct texts of the workbook) when the
//!   workbook is opened, so memory grows with the number of *distinct* strings,
//!   not with the number of rows; numeric answers are not shared strings.
//!   Before calamine sees a workbook, the XLSX guard (`xlsx_guard`) checks what
//!   every part unpacks to against [`XlsxLimits`]; a row may hold at most
//!   [`MAX_ROW_TEXT_BYTES`] of text (cells may repeat one shared string).

use std::fs::File;
use std::io::{self, BufReader, Chain, Cursor, Read, Seek};
use std::path::Path;

use calamine::{DataRef, Reader, Xlsx, XlsxCellReader};
use csv::StringRecord;
use encoding_rs::{Encoding, GB18030, UTF_8};
use encoding_rs_io::{DecodeReaderBytes, DecodeReaderBytesBuilder};

use crate::ScreeningError;
use crate::catalogue::Instrument;
use crate::coding::Coding;
use crate::columns::{ColumnLayout, ColumnProfile, SourceRow};
use crate::xlsx_guard::{self, XlsxLimits, XlsxRefusal};

/// How many bytes are looked at to choose a CSV file's encoding.
pub const SNIFF_BYTES: usize = 64 * 1024;

/// The most text one XLSX row may hold (its cells may all repeat one long
/// shared string, so the guard's bound on the file does not bound a row).
pub const MAX_ROW_TEXT_BYTES: usize = 4 << 20;

/// Choose the encoding of a CSV file from its first bytes. `complete` says
/// whether `prefix` is the whole file (so a multi-byte sequence cut at its end is
/// an error rather than the edge of the sample).
pub fn detect_encoding(prefix: &[u8], complete: bool) -> &'static Encoding {
    if let Some((encoding, _)) = Encoding::for_bom(prefix) {
        return encoding;
    }
    match std::str::from_utf8(prefix) {
        Ok(_) => UTF_8,
        Err(e) if e.error_len().is_none() && !complete => UTF_8,
        Err(_) => GB18030,
    }
}

/// Entry points for reading screening files.
pub struct ScreeningReader;

type Decoded<R> = DecodeReaderBytes<Chain<Cursor<Vec<u8>>, R>, Vec<u8>>;

impl ScreeningReader {
    /// Open a CSV export. Checks the coding against the instrument and the header
    /// against the instrument (and profile); a file that does not fit is refused
    /// here, before any row is read.
    pub fn open_csv<R: Read>(
        mut reader: R,
        instrument: &Instrument,
        coding: Coding,
        profile: &ColumnProfile,
    ) -> Result<CsvRows<R>, ScreeningError> {
        instrument.check_coding(coding)?;
        let mut prefix = Vec::with_capacity(SNIFF_BYTES.min(8192));
        let complete = read_prefix(&mut reader, &mut prefix, SNIFF_BYTES)?;
        let encoding = detect_encoding(&prefix, complete);
        let decoded = DecodeReaderBytesBuilder::new()
            .encoding(Some(encoding))
            .bom_override(true)
            .strip_bom(true)
            .build(Cursor::new(prefix).chain(reader));
        let mut records = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(decoded);

        let header_row = profile.header_row();
        let mut record = StringRecord::new();
        let header = loop {
            let more = records
                .read_record(&mut record)
                .map_err(|source| ScreeningError::Csv {
                    row: source.position().map_or(0, csv::Position::line),
                    source,
                })?;
            if !more {
                return Err(ScreeningError::NoHeader(header_row));
            }
            let line = record.position().map_or(0, csv::Position::line);
            if line >= header_row {
                break record.iter().map(str::to_string).collect::<Vec<_>>();
            }
        };
        let layout = ColumnLayout::from_headers(instrument, &header, profile)
            .map_err(ScreeningError::Columns)?;
        Ok(CsvRows {
            records,
            layout,
            encoding,
            record,
            done: false,
        })
    }

    /// Open a CSV file by path (see [`ScreeningReader::open_csv`]).
    pub fn open_csv_path(
        path: impl AsRef<Path>,
        instrument: &Instrument,
        coding: Coding,
        profile: &ColumnProfile,
    ) -> Result<CsvRows<BufReader<File>>, ScreeningError> {
        let file = BufReader::new(File::open(path)?);
        Self::open_csv(file, instrument, coding, profile)
    }

    /// Open an XLSX workbook from any seekable reader, refusing it first if it
    /// would unpack to more than `limits` allow.
    pub fn open_xlsx<RS: Read + Seek>(
        reader: RS,
        limits: &XlsxLimits,
    ) -> Result<XlsxWorkbook<RS>, ScreeningError> {
        XlsxWorkbook::open(reader, limits)
    }
}

/// Read up to `limit` bytes; `true` when the reader is exhausted.
fn read_prefix<R: Read>(reader: &mut R, buf: &mut Vec<u8>, limit: usize) -> io::Result<bool> {
    let mut chunk = [0u8; 8192];
    while buf.len() < limit {
        let want = chunk.len().min(limit - buf.len());
        match reader.read(&mut chunk[..want]) {
            Ok(0) => return Ok(true),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// The rows of a CSV file, one at a time.
pub struct CsvRows<R: Read> {
    records: csv::Reader<Decoded<R>>,
    layout: ColumnLayout,
    encoding: &'static Encoding,
    record: StringRecord,
    done: bool,
}

impl<R: Read> CsvRows<R> {
    /// Where the student number and the items were found.
    pub fn layout(&self) -> &ColumnLayout {
        &self.layout
    }

    /// The encoding the file is being decoded from (`UTF-8`, `gb18030`, `UTF-16LE`...).
    pub fn encoding(&self) -> &'static str {
        self.encoding.name()
    }
}

impl<R: Read> Iterator for CsvRows<R> {
    type Item = Result<SourceRow, ScreeningError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            match self.records.read_record(&mut self.record) {
                Ok(false) => self.done = true,
                Ok(true) => {
                    let line = self.record.position().map_or(0, csv::Position::line);
                    let fields: Vec<&str> = self.record.iter().collect();
                    if let Some(row) = self.layout.extract(line, &fields, true) {
                        return Some(Ok(row));
                    }
                }
                Err(source) => {
                    let row = source.position().map_or(0, csv::Position::line);
                    // An I/O error ends the stream; a malformed record does not.
                    if matches!(source.kind(), csv::ErrorKind::Io(_)) {
                        self.done = true;
                    }
                    return Some(Err(ScreeningError::Csv { row, source }));
                }
            }
        }
        None
    }
}

/// An XLSX workbook opened for reading screening rows.
pub struct XlsxWorkbook<RS: Read + Seek> {
    book: Xlsx<RS>,
}

impl XlsxWorkbook<BufReader<File>> {
    pub fn open_path(path: impl AsRef<Path>, limits: &XlsxLimits) -> Result<Self, ScreeningError> {
        Self::open(BufReader::new(File::open(path)?), limits)
    }
}

impl<RS: Read + Seek> XlsxWorkbook<RS> {
    /// Check the workbook against `limits` (the one place both the upload and
    /// the import pass through), then open it.
    pub fn open(mut reader: RS, limits: &XlsxLimits) -> Result<Self, ScreeningError> {
        xlsx_guard::check(&mut reader, limits)?;
        Ok(Self {
            book: Xlsx::new(reader)?,
        })
    }

    pub fn sheet_names(&self) -> Vec<String> {
        self.book.sheet_names()
    }

    /// Stream the rows of a worksheet (`None`: the first sheet). The coding and
    /// the header are checked as for CSV; row numbers are the worksheet's.
    pub fn rows(
        &mut self,
        sheet: Option<&str>,
        instrument: &Instrument,
        coding: Coding,
        profile: &ColumnProfile,
    ) -> Result<XlsxRows<'_, RS>, ScreeningError> {
        instrument.check_coding(coding)?;
        let name = match sheet {
            Some(s) => s.to_string(),
            None => self
                .book
                .sheet_names()
                .into_iter()
                .next()
                .ok_or_else(|| ScreeningError::SheetNotFound("(first sheet)".to_string()))?,
        };
        if !self.book.sheet_names().contains(&name) {
            return Err(ScreeningError::SheetNotFound(name));
        }
        let cells = self.book.worksheet_cells_reader(&name)?;
        let mut rows = XlsxRows {
            cells,
            pending: None,
            cells_done: false,
            layout: None,
            done: false,
        };
        let header_row = profile.header_row();
        let header = loop {
            match rows.next_raw_row()? {
                None => return Err(ScreeningError::NoHeader(header_row)),
                Some((number, cells)) if number >= header_row => break cells,
                Some(_) => {}
            }
        };
        rows.layout = Some(
            ColumnLayout::from_headers(instrument, &header, profile)
                .map_err(ScreeningError::Columns)?,
        );
        Ok(rows)
    }
}

/// A cell's `(row, column)` (0-based) and its text.
type PositionedText = ((u32, u32), String);

/// The rows of a worksheet, one at a time.
pub struct XlsxRows<'a, RS: Read + Seek> {
    cells: XlsxCellReader<'a, RS>,
    /// The first cell of the next row, read ahead while finishing the previous one.
    pending: Option<PositionedText>,
    /// The cell reader reached the end of the sheet data; it must not be asked again.
    cells_done: bool,
    layout: Option<ColumnLayout>,
    done: bool,
}

fn cell_text(value: &DataRef<'_>) -> String {
    match value {
        DataRef::Int(i) => i.to_string(),
        DataRef::Float(f) => {
            if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 {
                // Integral and small: the conversion is exact.
                #[allow(clippy::cast_possible_truncation)]
                let i = *f as i64;
                i.to_string()
            } else {
                f.to_string()
            }
        }
        DataRef::String(s) => s.clone(),
        DataRef::SharedString(s) => (*s).to_string(),
        DataRef::Bool(b) => b.to_string(),
        DataRef::DateTime(d) => d.as_f64().to_string(),
        DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => s.clone(),
        DataRef::Error(e) => format!("#{e}"),
        DataRef::Empty => String::new(),
    }
}

impl<RS: Read + Seek> XlsxRows<'_, RS> {
    /// Where the student number and the items were found.
    pub fn layout(&self) -> Option<&ColumnLayout> {
        self.layout.as_ref()
    }

    fn next_cell(&mut self) -> Result<Option<PositionedText>, ScreeningError> {
        if let Some(p) = self.pending.take() {
            return Ok(Some(p));
        }
        if self.cells_done {
            return Ok(None);
        }
        let cell = self.cells.next_cell()?;
        self.cells_done = cell.is_none();
        Ok(cell.map(|c| (c.get_position(), cell_text(c.get_value()))))
    }

    /// The next row as `(1-based row number, cells by column)`.
    fn next_raw_row(&mut self) -> Result<Option<(u64, Vec<String>)>, ScreeningError> {
        let Some(((row, col), text)) = self.next_cell()? else {
            return Ok(None);
        };
        let mut cells = Vec::new();
        let mut text_bytes = text.len();
        put(&mut cells, col, text);
        loop {
            match self.next_cell()? {
                Some(((r, c), t)) if r == row => {
                    text_bytes += t.len();
                    if text_bytes > MAX_ROW_TEXT_BYTES {
                        return Err(XlsxRefusal::RowTooLarge {
                            row: u64::from(row) + 1,
                            limit: MAX_ROW_TEXT_BYTES as u64,
                        }
                        .into());
                    }
                    put(&mut cells, c, t);
                }
                Some(other) => {
                    self.pending = Some(other);
                    break;
                }
                None => break,
            }
        }
        Ok(Some((u64::from(row) + 1, cells)))
    }
}

/// Put a cell's text at its column (columns beyond Excel's 16,384 are ignored).
fn put(cells: &mut Vec<String>, col: u32, text: String) {
    let col = usize::try_from(col).unwrap_or(usize::MAX);
    if col < 1 << 14 {
        if cells.len() <= col {
            cells.resize(col + 1, String::new());
        }
        cells[col] = text;
    }
}

impl<RS: Read + Seek> Iterator for XlsxRows<'_, RS> {
    type Item = Result<SourceRow, ScreeningError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            match self.next_raw_row() {
                Ok(None) => self.done = true,
                Ok(Some((number, cells))) => {
                    let fields: Vec<&str> = cells.iter().map(String::as_str).collect();
                    let row = self
                        .layout
                        .as_ref()
                        .and_then(|l| l.extract(number, &fields, false));
                    if let Some(row) = row {
                        return Some(Ok(row));
                    }
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use encoding_rs::{UTF_16BE, UTF_16LE};

    #[test]
    fn a_bom_decides_the_encoding() {
        assert_eq!(detect_encoding(b"\xEF\xBB\xBFstudent_no", false), UTF_8);
        assert_eq!(detect_encoding(b"\xFF\xFEs\0", false), UTF_16LE);
        assert_eq!(detect_encoding(b"\xFE\xFF\0s", false), UTF_16BE);
    }

    #[test]
    fn valid_utf8_is_utf8_and_anything_else_is_gb18030() {
        assert_eq!(detect_encoding("学号,第1题".as_bytes(), true), UTF_8);
        let (gbk, _, _) = GB18030.encode("学号,第1题");
        assert_eq!(detect_encoding(&gbk, true), GB18030);
    }

    #[test]
    fn a_utf8_character_cut_by_the_sample_edge_is_still_utf8() {
        let bytes = "学号".as_bytes();
        assert_eq!(detect_encoding(&bytes[..4], false), UTF_8);
        assert_eq!(detect_encoding(&bytes[..4], true), GB18030);
    }
}
