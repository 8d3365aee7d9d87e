//! The XLSX guard: whether calamine may open a workbook, decided before it
//! allocates anything for it.
//!
//! An XLSX file is a zip of XML parts, and a part's packed size says little
//! about what it unpacks to: 1 MB of deflate unpacks to 1 GiB. calamine loads
//! some parts whole (the shared-string table, styles, the workbook and its
//! relationships; it even reserves room for as many shared strings as the table
//! *declares*) and streams the worksheet, but its XML reader buffers each piece
//! of text whole. So every part of a workbook is judged here first:
//!
//! 1. by the sizes the zip directory declares: a bomb that tells the truth is
//!    refused before a byte is inflated;
//! 2. then by inflating it through a counter that stops one byte past its
//!    declared size (declared sizes can lie) and at the limits, while a
//!    constant-memory scan ([`crate::xml_scan`]) counts cells, shared strings
//!    and the records calamine keeps one object for (styles, fonts, sheets,
//!    relationships, defined names) and bounds every piece of text or markup,
//!    every cell and every shared string.
//!
//! Nothing inflated is kept: memory stays at one 64 KiB buffer whatever the
//! file. The price is that an accepted workbook is inflated twice (here, then
//! by calamine), which costs about a second per 500 MB of worksheet XML.
//!
//! Which parts calamine loads whole is decided by name: the workbook (named by
//! `_rels/.rels`), the shared strings, the styles and every `.rels` file are
//! held to `max_part_bytes`; a `.xml` file directly in a `worksheets` folder is
//! a worksheet, which calamine streams, and may use the whole
//! `max_inflated_bytes`. Any other part (drawings, themes, images) is held to
//! `max_part_bytes` too; parts with an image or binary extension are inflated
//! and counted but not scanned as XML.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};

use calamine::XlsxError;
use serde::{Deserialize, Serialize};
use zip::ZipArchive;

use crate::ScreeningError;
use crate::xml_scan::{Sink, Stop, Tag, XmlScan, attribute};

const MIB: u64 = 1 << 20;

/// Parts that unpack to at most this much are exempt from the ratio (small
/// repetitive XML compresses well and is harmless).
pub const RATIO_GRACE_BYTES: u64 = MIB;
/// The longest piece of text or markup (and so the largest buffer calamine's
/// XML reader may grow). Excel itself caps a cell at 32,767 characters.
pub const MAX_PIECE_BYTES: u64 = MIB;
/// The largest cell (`<c>…</c>`) or shared string (`<si>…</si>`), markup included.
pub const MAX_ELEMENT_BYTES: u64 = MIB;
/// The most records of one kind calamine keeps an object for (Excel allows
/// 64,000 cell formats).
pub const MAX_RECORDS: u64 = 100_000;
/// The elements counted against [`MAX_RECORDS`], each on its own.
const RECORDS: [&str; 10] = [
    "xf",
    "font",
    "fill",
    "border",
    "numFmt",
    "dxf",
    "cellStyle",
    "sheet",
    "definedName",
    "Relationship",
];
/// Parts read as bytes, never parsed as XML by calamine.
const BINARY_EXTENSIONS: [&str; 16] = [
    ".png", ".jpg", ".jpeg", ".jfif", ".gif", ".bmp", ".tif", ".tiff", ".emf", ".wmf", ".wdp",
    ".webp", ".ico", ".bin", ".odttf", ".fntdata",
];

/// Bounds on what an XLSX file may unpack to (`[screening.xlsx]` in the
/// configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct XlsxLimits {
    /// Unpacked size of all the parts of a workbook together.
    pub max_inflated_bytes: u64,
    /// Unpacked size of any one part other than a worksheet: calamine holds
    /// these whole in memory (shared strings, styles, the workbook).
    pub max_part_bytes: u64,
    /// Unpacked size ÷ packed size of any part above 1 MiB unpacked.
    pub max_ratio: u64,
    /// Cells (`<c>` elements) in the whole workbook.
    pub max_cells: u64,
    /// Entries of the shared-string table (and the count it declares).
    pub max_shared_strings: u64,
}

impl Default for XlsxLimits {
    /// Room for a district's screening (200,000 students × 100 columns), and a
    /// gateway that stays well under 256 MiB whatever it is sent.
    fn default() -> Self {
        Self {
            max_inflated_bytes: 1024 * MIB,
            max_part_bytes: 64 * MIB,
            max_ratio: 100,
            max_cells: 20_000_000,
            max_shared_strings: 1_000_000,
        }
    }
}

/// Why an XLSX file was refused before it was read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XlsxRefusal {
    #[error(
        "it unpacks to more than {} in all (limit [screening.xlsx] max_inflated_bytes)",
        Size(*limit)
    )]
    TooLargeInAll { limit: u64 },
    #[error(
        "its part `{part}` unpacks to more than {} (limit [screening.xlsx] max_part_bytes)",
        Size(*limit)
    )]
    PartTooLarge { part: String, limit: u64 },
    #[error(
        "its part `{part}` unpacks to more than {limit} times its packed size: a decompression bomb (limit [screening.xlsx] max_ratio)"
    )]
    Ratio { part: String, limit: u64 },
    #[error("its part `{part}` unpacks to more than the size its zip directory declares")]
    LargerThanDeclared { part: String },
    #[error("it has more than {limit} cells (limit [screening.xlsx] max_cells)")]
    TooManyCells { limit: u64 },
    #[error("it has more than {limit} shared strings (limit [screening.xlsx] max_shared_strings)")]
    TooManySharedStrings { limit: u64 },
    #[error("it has more than {limit} `{element}` records")]
    TooManyRecords { element: &'static str, limit: u64 },
    #[error("its part `{part}` holds a piece of text or markup longer than {}", Size(*limit))]
    PieceTooLong { part: String, limit: u64 },
    #[error("its part `{part}` holds a cell or shared string longer than {}", Size(*limit))]
    ElementTooLarge { part: String, limit: u64 },
    #[error("its row {row} holds more than {} of text", Size(*limit))]
    RowTooLarge { row: u64, limit: u64 },
}

/// A byte count for people: `64 MiB`, or bytes when not whole MiB.
struct Size(u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 >= MIB && self.0.is_multiple_of(MIB) {
            write!(f, "{} MiB", self.0 / MIB)
        } else {
            write!(f, "{} bytes", self.0)
        }
    }
}

/// How calamine treats a part, and so which limit holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Streamed cell by cell: bounded by the workbook's total.
    Worksheet,
    /// Parsed whole (or not at all): bounded by `max_part_bytes`.
    Loaded,
    /// Never parsed as XML: bounded by `max_part_bytes`, not scanned.
    Binary,
}

impl Kind {
    /// `key` is the normalised name (lower case, `/`), as calamine looks parts up.
    fn of(key: &str, workbook: Option<&str>) -> Self {
        let (dir, file) = key.rsplit_once('/').unwrap_or(("", key));
        let parent = dir.rsplit('/').next().unwrap_or("");
        if Some(key) == workbook
            || file.ends_with(".rels")
            || file == "sharedstrings.xml"
            || file == "styles.xml"
        {
            Self::Loaded
        } else if parent == "worksheets" && file.ends_with(".xml") {
            Self::Worksheet
        } else if BINARY_EXTENSIONS.iter().any(|ext| file.ends_with(ext)) {
            Self::Binary
        } else {
            Self::Loaded
        }
    }
}

/// One entry of the zip directory.
struct Part {
    index: usize,
    /// Lower case with `/`, as calamine matches names.
    key: String,
    /// For messages: the name as written, printable and short.
    shown: String,
    declared: u64,
    packed: u64,
}

fn shown(name: &str) -> String {
    let mut s: String = name.chars().filter(|c| !c.is_control()).take(120).collect();
    if name.chars().count() > 120 {
        s.push('…');
    }
    s
}

/// Check a workbook against `limits`, then rewind the reader for calamine.
pub(crate) fn check<R: Read + Seek>(
    reader: &mut R,
    limits: &XlsxLimits,
) -> Result<(), ScreeningError> {
    let file_len = reader.seek(SeekFrom::End(0))?;
    reader.seek(SeekFrom::Start(0))?;
    {
        // Not a zip (a password-protected workbook is an OLE file): nothing
        // can be inflated, and calamine says what the file is.
        let Ok(mut zip) = ZipArchive::new(&mut *reader) else {
            reader.seek(SeekFrom::Start(0))?;
            return Ok(());
        };
        let mut parts = Vec::with_capacity(zip.len());
        for index in 0..zip.len() {
            let entry = zip.by_index_data(index).map_err(XlsxError::Zip)?;
            let name = entry.name().map_err(XlsxError::Zip)?;
            parts.push(Part {
                index,
                key: name.replace('\\', "/").to_ascii_lowercase(),
                shown: shown(&name),
                declared: entry.size(),
                packed: entry.compressed_size().min(file_len),
            });
        }
        let mut guard = Guard::new(limits);
        // The package relationships name the workbook part (and so where
        // calamine looks for everything else).
        let rels = parts.iter().position(|p| p.key == "_rels/.rels");
        let workbook = match rels {
            Some(i) => {
                guard.check_declared(&parts[i], Kind::Loaded)?;
                guard.inflate(&mut zip, &parts[i], Kind::Loaded, true)?
            }
            None => None,
        };
        let kinds: Vec<Kind> = parts
            .iter()
            .map(|p| Kind::of(&p.key, workbook.as_deref()))
            .collect();
        for (part, kind) in parts.iter().zip(&kinds) {
            if Some(part.index) != rels {
                guard.check_declared(part, *kind)?;
            }
        }
        for (part, kind) in parts.iter().zip(&kinds) {
            if Some(part.index) != rels {
                guard.inflate(&mut zip, part, *kind, false)?;
            }
        }
    }
    reader.seek(SeekFrom::Start(0))?;
    Ok(())
}

/// The running totals of one workbook.
struct Guard<'l> {
    limits: &'l XlsxLimits,
    declared: u64,
    inflated: u64,
    cells: u64,
    shared_strings: u64,
    records: [u64; RECORDS.len()],
    buf: Vec<u8>,
}

impl<'l> Guard<'l> {
    fn new(limits: &'l XlsxLimits) -> Self {
        Self {
            limits,
            declared: 0,
            inflated: 0,
            cells: 0,
            shared_strings: 0,
            records: [0; RECORDS.len()],
            buf: vec![0; 64 * 1024],
        }
    }

    fn part_limit(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Worksheet => self.limits.max_inflated_bytes,
            Kind::Loaded | Kind::Binary => self.limits.max_part_bytes,
        }
    }

    /// The sizes the zip directory declares.
    fn check_declared(&mut self, part: &Part, kind: Kind) -> Result<(), XlsxRefusal> {
        let limit = self.part_limit(kind);
        if part.declared > limit {
            return Err(XlsxRefusal::PartTooLarge {
                part: part.shown.clone(),
                limit,
            });
        }
        self.declared = self.declared.saturating_add(part.declared);
        if self.declared > self.limits.max_inflated_bytes {
            return Err(XlsxRefusal::TooLargeInAll {
                limit: self.limits.max_inflated_bytes,
            });
        }
        if part.declared > RATIO_GRACE_BYTES
            && part.declared > part.packed.saturating_mul(self.limits.max_ratio)
        {
            return Err(XlsxRefusal::Ratio {
                part: part.shown.clone(),
                limit: self.limits.max_ratio,
            });
        }
        Ok(())
    }

    /// Inflate a part whose declared sizes passed, never past its declared
    /// size (which [`Self::check_declared`] held to the limits and the ratio),
    /// scanning it unless it is binary. Returns the workbook's name when
    /// `package_rels` and the part names one.
    fn inflate<R: Read + Seek>(
        &mut self,
        zip: &mut ZipArchive<R>,
        part: &Part,
        kind: Kind,
        package_rels: bool,
    ) -> Result<Option<String>, ScreeningError> {
        let mut file = zip.by_index(part.index).map_err(XlsxError::Zip)?;
        let mut buf = std::mem::take(&mut self.buf);
        let mut scan = (kind != Kind::Binary).then(|| XmlScan::new(MAX_PIECE_BYTES));
        let mut sink = PartSink {
            guard: self,
            part,
            package_rels,
            workbook: None,
            open: None,
        };
        let mut seen = 0u64;
        let result = loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The zip crate stops a part at its declared size itself.
                Err(e)
                    if e.kind() == io::ErrorKind::InvalidData
                        && e.to_string().contains("declared uncompressed size") =>
                {
                    break Err(XlsxRefusal::LargerThanDeclared {
                        part: part.shown.clone(),
                    }
                    .into());
                }
                Err(e) => break Err(ScreeningError::Xlsx(XlsxError::Io(e))),
            };
            seen += n as u64;
            if seen > part.declared {
                break Err(XlsxRefusal::LargerThanDeclared {
                    part: part.shown.clone(),
                }
                .into());
            }
            sink.guard.inflated += n as u64;
            if sink.guard.inflated > sink.guard.limits.max_inflated_bytes {
                break Err(XlsxRefusal::TooLargeInAll {
                    limit: sink.guard.limits.max_inflated_bytes,
                }
                .into());
            }
            if let Some(scan) = scan.as_mut()
                && let Err(stop) = scan.feed(&buf[..n], &mut sink)
            {
                break Err(match stop {
                    Stop::PieceTooLong => XlsxRefusal::PieceTooLong {
                        part: part.shown.clone(),
                        limit: MAX_PIECE_BYTES,
                    },
                    Stop::Sink(refusal) => refusal,
                }
                .into());
            }
        };
        let result = result.and_then(|()| match scan {
            Some(scan) => sink.check_open(scan.offset()).map_err(Into::into),
            None => Ok(()),
        });
        let workbook = sink.workbook.take();
        self.buf = buf;
        result.map(|()| workbook)
    }

    fn count_record(&mut self, local: &[u8]) -> Result<(), XlsxRefusal> {
        if let Some(i) = RECORDS.iter().position(|r| r.as_bytes() == local) {
            self.records[i] += 1;
            if self.records[i] > MAX_RECORDS {
                return Err(XlsxRefusal::TooManyRecords {
                    element: RECORDS[i],
                    limit: MAX_RECORDS,
                });
            }
        }
        Ok(())
    }
}

/// A cell or shared string being read: its qualified name and where it began.
struct OpenElement {
    name: [u8; 64],
    len: usize,
    start: u64,
}

/// What the scan of one part reports to.
struct PartSink<'g, 'l> {
    guard: &'g mut Guard<'l>,
    part: &'g Part,
    package_rels: bool,
    workbook: Option<String>,
    open: Option<OpenElement>,
}

impl PartSink<'_, '_> {
    fn check_open(&self, at: u64) -> Result<(), XlsxRefusal> {
        match &self.open {
            Some(open) if at.saturating_sub(open.start) > MAX_ELEMENT_BYTES => {
                Err(XlsxRefusal::ElementTooLarge {
                    part: self.part.shown.clone(),
                    limit: MAX_ELEMENT_BYTES,
                })
            }
            _ => Ok(()),
        }
    }

    /// calamine's reading of the package relationships: the officeDocument
    /// target, split into folder and name.
    fn office_document(&mut self, attrs: &[u8]) {
        let is_office_document =
            attribute(attrs, b"Type").is_some_and(|t| t.ends_with("/relationships/officeDocument"));
        if let Some(target) = attribute(attrs, b"Target").filter(|_| is_office_document) {
            let (dir, name) = match target.rfind('/') {
                Some(i) => target.split_at(i + 1),
                None => ("", target.as_str()),
            };
            let dir = dir.strip_prefix('/').unwrap_or(dir);
            let name = if name.is_empty() {
                "workbook.xml"
            } else {
                name
            };
            self.workbook = Some(
                format!("{dir}{name}")
                    .replace('\\', "/")
                    .to_ascii_lowercase(),
            );
        }
    }
}

impl Sink for PartSink<'_, '_> {
    type Error = XlsxRefusal;

    fn wants_attrs(&self, local: &[u8]) -> bool {
        local == b"sst" || (self.package_rels && local == b"Relationship")
    }

    fn start(&mut self, tag: &Tag<'_>, at: u64) -> Result<(), XlsxRefusal> {
        self.check_open(at)?;
        let limits = self.guard.limits;
        match tag.local {
            b"c" => {
                self.guard.cells += 1;
                if self.guard.cells > limits.max_cells {
                    return Err(XlsxRefusal::TooManyCells {
                        limit: limits.max_cells,
                    });
                }
            }
            b"si" => {
                self.guard.shared_strings += 1;
                if self.guard.shared_strings > limits.max_shared_strings {
                    return Err(XlsxRefusal::TooManySharedStrings {
                        limit: limits.max_shared_strings,
                    });
                }
            }
            b"sst" => {
                // calamine reserves room for this many strings up front.
                let declared = attribute(tag.attrs, b"uniqueCount")
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                if declared > limits.max_shared_strings {
                    return Err(XlsxRefusal::TooManySharedStrings {
                        limit: limits.max_shared_strings,
                    });
                }
            }
            b"Relationship" if self.package_rels => self.office_document(tag.attrs),
            local => self.guard.count_record(local)?,
        }
        if matches!(tag.local, b"c" | b"si") && !tag.empty && self.open.is_none() {
            let mut name = [0u8; 64];
            let len = tag.name.len().min(name.len());
            name[..len].copy_from_slice(&tag.name[..len]);
            self.open = Some(OpenElement {
                name,
                len,
                start: at,
            });
        }
        Ok(())
    }

    fn end(&mut self, name: &[u8], at: u64) -> Result<(), XlsxRefusal> {
        self.check_open(at)?;
        if self
            .open
            .as_ref()
            .is_some_and(|open| &open.name[..open.len] == name)
        {
            self.open = None;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_held_to_the_limit_of_what_calamine_does_with_them() {
        let wb = Some("xl/workbook.xml");
        assert_eq!(Kind::of("xl/worksheets/sheet1.xml", wb), Kind::Worksheet);
        assert_eq!(Kind::of("xl/sharedstrings.xml", wb), Kind::Loaded);
        assert_eq!(Kind::of("xl/styles.xml", wb), Kind::Loaded);
        assert_eq!(Kind::of("xl/workbook.xml", wb), Kind::Loaded);
        assert_eq!(
            Kind::of("xl/worksheets/_rels/sheet1.xml.rels", wb),
            Kind::Loaded
        );
        assert_eq!(Kind::of("xl/media/image1.png", wb), Kind::Binary);
        assert_eq!(Kind::of("xl/drawings/drawing1.xml", wb), Kind::Loaded);
        // A workbook, styles or shared strings hidden among the worksheets are
        // still loaded whole by calamine, and held to the part limit.
        let hidden = Some("xl/worksheets/book.xml");
        assert_eq!(Kind::of("xl/worksheets/book.xml", hidden), Kind::Loaded);
        assert_eq!(Kind::of("xl/worksheets/styles.xml", hidden), Kind::Loaded);
        assert_eq!(
            Kind::of("xl/worksheets/sharedstrings.xml", hidden),
            Kind::Loaded
        );
        // A sheet stored elsewhere, or with another extension, gets the
        // stricter limit (and is still scanned, unless binary).
        assert_eq!(Kind::of("xl/sheet1.xml", wb), Kind::Loaded);
    }

    #[test]
    fn sizes_read_for_people() {
        assert_eq!(Size(64 * MIB).to_string(), "64 MiB");
        assert_eq!(Size(1000).to_string(), "1000 bytes");
    }
}
