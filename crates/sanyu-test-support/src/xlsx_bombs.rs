//! Hand-built XLSX files for the decompression-bomb tests, made in the test
//! itself (no binary blobs in the repository).
//!
//! A part is `head`, then `chunk` repeated `times`, then `tail`. Each of the
//! three is deflated once by a fresh compressor ending in a full flush, so its
//! compressed bytes stand alone and can be repeated: a part that inflates to
//! 1 GiB costs about 1 MB and a few milliseconds to build. The zip container is
//! written here too, so a test can make a part's declared size lie.

use flate2::{Compress, Compression, FlushCompress};

/// One part of a workbook.
#[derive(Debug, Clone)]
pub struct Part {
    pub name: String,
    pub head: Vec<u8>,
    pub chunk: Vec<u8>,
    pub times: u64,
    pub tail: Vec<u8>,
    /// The uncompressed size written in the zip headers instead of the true one.
    pub declared_size: Option<u32>,
}

impl Part {
    /// A part holding exactly `bytes`.
    pub fn plain(name: &str, bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            name: name.to_owned(),
            head: bytes.into(),
            chunk: Vec::new(),
            times: 0,
            tail: Vec::new(),
            declared_size: None,
        }
    }

    /// A part of `head`, `chunk` × `times` and `tail`.
    pub fn repeated(
        name: &str,
        head: impl Into<Vec<u8>>,
        chunk: impl Into<Vec<u8>>,
        times: u64,
        tail: impl Into<Vec<u8>>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            head: head.into(),
            chunk: chunk.into(),
            times,
            tail: tail.into(),
            declared_size: None,
        }
    }

    /// Declare this uncompressed size in the zip headers (a lie, for tests).
    pub fn declaring(mut self, size: u32) -> Self {
        self.declared_size = Some(size);
        self
    }

    /// The part's true uncompressed size.
    pub fn size(&self) -> u64 {
        self.head.len() as u64 + self.chunk.len() as u64 * self.times + self.tail.len() as u64
    }
}

/// Deflate `data` as a stand-alone, non-final, byte-aligned run of blocks.
fn deflate_segment(data: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new(Compression::best(), false);
    let mut out = Vec::with_capacity(data.len() + 4096);
    loop {
        let consumed = usize::try_from(compress.total_in()).expect("input offset");
        compress
            .compress_vec(&data[consumed..], &mut out, FlushCompress::Full)
            .expect("deflate");
        let done = usize::try_from(compress.total_in()).expect("input offset") == data.len();
        if done && out.len() < out.capacity() {
            return out;
        }
        out.reserve(out.capacity().max(4096));
    }
}

/// A final, empty block with fixed Huffman codes: the end of a deflate stream.
const FINAL_EMPTY_BLOCK: [u8; 2] = [0x03, 0x00];

fn crc_of(data: &[u8]) -> crc32fast::Hasher {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(data);
    hasher
}

/// The CRC-32 of `chunk` repeated `times`, by combining (never hashing it all).
fn crc_repeated(chunk: &[u8], mut times: u64) -> crc32fast::Hasher {
    let mut result = crc32fast::Hasher::new();
    let mut power = crc_of(chunk);
    while times > 0 {
        if times & 1 == 1 {
            result.combine(&power);
        }
        let square = power.clone();
        power.combine(&square);
        times >>= 1;
    }
    result
}

struct Entry {
    name: String,
    crc: u32,
    compressed: u32,
    declared: u32,
    offset: u32,
}

fn u16_le(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn u32_le(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// A zip file of `parts`, each deflated (method 8).
pub fn build(parts: &[Part]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut entries = Vec::new();
    for part in parts {
        let head = deflate_segment(&part.head);
        let chunk = deflate_segment(&part.chunk);
        let tail = deflate_segment(&part.tail);
        let compressed_len = head.len() as u64
            + chunk.len() as u64 * part.times
            + tail.len() as u64
            + FINAL_EMPTY_BLOCK.len() as u64;
        let mut crc = crc_of(&part.head);
        crc.combine(&crc_repeated(&part.chunk, part.times));
        crc.combine(&crc_of(&part.tail));
        let entry = Entry {
            name: part.name.clone(),
            crc: crc.finalize(),
            compressed: u32::try_from(compressed_len).expect("part under 4 GiB compressed"),
            declared: part
                .declared_size
                .unwrap_or_else(|| u32::try_from(part.size()).expect("part under 4 GiB")),
            offset: u32::try_from(out.len()).expect("zip under 4 GiB"),
        };
        u32_le(&mut out, 0x0403_4b50);
        u16_le(&mut out, 20); // version needed
        u16_le(&mut out, 0x0800); // flags: UTF-8 names
        u16_le(&mut out, 8); // deflate
        u16_le(&mut out, 0); // time
        u16_le(&mut out, 0x21); // date: 1980-01-01
        u32_le(&mut out, entry.crc);
        u32_le(&mut out, entry.compressed);
        u32_le(&mut out, entry.declared);
        u16_le(
            &mut out,
            u16::try_from(entry.name.len()).expect("name length"),
        );
        u16_le(&mut out, 0); // extra
        out.extend_from_slice(entry.name.as_bytes());
        out.extend_from_slice(&head);
        for _ in 0..part.times {
            out.extend_from_slice(&chunk);
        }
        out.extend_from_slice(&tail);
        out.extend_from_slice(&FINAL_EMPTY_BLOCK);
        entries.push(entry);
    }
    let directory_start = out.len();
    for entry in &entries {
        u32_le(&mut out, 0x0201_4b50);
        u16_le(&mut out, 20); // made by
        u16_le(&mut out, 20); // needed
        u16_le(&mut out, 0x0800);
        u16_le(&mut out, 8);
        u16_le(&mut out, 0);
        u16_le(&mut out, 0x21);
        u32_le(&mut out, entry.crc);
        u32_le(&mut out, entry.compressed);
        u32_le(&mut out, entry.declared);
        u16_le(
            &mut out,
            u16::try_from(entry.name.len()).expect("name length"),
        );
        u16_le(&mut out, 0); // extra
        u16_le(&mut out, 0); // comment
        u16_le(&mut out, 0); // disk
        u16_le(&mut out, 0); // internal attributes
        u32_le(&mut out, 0); // external attributes
        u32_le(&mut out, entry.offset);
        out.extend_from_slice(entry.name.as_bytes());
    }
    let directory_len = out.len() - directory_start;
    let count = u16::try_from(entries.len()).expect("entry count");
    u32_le(&mut out, 0x0605_4b50);
    u16_le(&mut out, 0);
    u16_le(&mut out, 0);
    u16_le(&mut out, count);
    u16_le(&mut out, count);
    u32_le(
        &mut out,
        u32::try_from(directory_len).expect("directory size"),
    );
    u32_le(
        &mut out,
        u32::try_from(directory_start).expect("directory offset"),
    );
    u16_le(&mut out, 0);
    out
}

const MAIN_NS: &str = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";
const REL_NS: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
const PKG_REL_NS: &str = "http://schemas.openxmlformats.org/package/2006/relationships";

/// The parts every workbook needs around its sheet (and shared strings).
pub fn frame(with_shared_strings: bool) -> Vec<Part> {
    let shared_override = if with_shared_strings {
        r#"<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>"#
    } else {
        ""
    };
    let shared_rel = if with_shared_strings {
        format!(
            r#"<Relationship Id="rId2" Type="{REL_NS}/sharedStrings" Target="sharedStrings.xml"/>"#
        )
    } else {
        String::new()
    };
    vec![
        Part::plain(
            "[Content_Types].xml",
            format!(
                r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>{shared_override}</Types>"#
            ),
        ),
        Part::plain(
            "_rels/.rels",
            format!(
                r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="{PKG_REL_NS}"><Relationship Id="rId1" Type="{REL_NS}/officeDocument" Target="xl/workbook.xml"/></Relationships>"#
            ),
        ),
        Part::plain(
            "xl/workbook.xml",
            format!(
                r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><workbook xmlns="{MAIN_NS}" xmlns:r="{REL_NS}"><sheets><sheet name="PHQ9" sheetId="1" r:id="rId1"/></sheets></workbook>"#
            ),
        ),
        Part::plain(
            "xl/_rels/workbook.xml.rels",
            format!(
                r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="{PKG_REL_NS}"><Relationship Id="rId1" Type="{REL_NS}/worksheet" Target="worksheets/sheet1.xml"/>{shared_rel}</Relationships>"#
            ),
        ),
    ]
}

/// The PHQ-9 header row as inline strings: `学号`, `第1题` … `第9题`.
fn inline_header_cells() -> String {
    let mut cells = String::from(r#"<c r="A1" t="inlineStr"><is><t>学号</t></is></c>"#);
    for n in 1..=9u8 {
        let col = char::from(b'A' + n);
        cells.push_str(&format!(
            r#"<c r="{col}1" t="inlineStr"><is><t>第{n}题</t></is></c>"#
        ));
    }
    cells
}

/// How many bytes one repeated chunk holds (the bomb's unit).
const CHUNK: usize = 1 << 20;

/// Shape 1: a sheet that inflates to about `inflated` bytes: a PHQ-9 header row,
/// then a data row whose first cell holds one enormous text.
pub fn sheet_bomb(inflated: u64) -> Vec<u8> {
    let mut parts = frame(false);
    let head = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><worksheet xmlns="{MAIN_NS}"><sheetData><row r="1">{}</row><row r="2"><c r="A2" t="inlineStr"><is><t>"#,
        inline_header_cells()
    );
    parts.push(Part::repeated(
        "xl/worksheets/sheet1.xml",
        head,
        vec![b'0'; CHUNK],
        inflated / CHUNK as u64,
        "</t></is></c></row></sheetData></worksheet>",
    ));
    build(&parts)
}

/// Shape 2: a shared-string table that inflates to about `inflated` bytes: the
/// PHQ-9 header's ten strings (which the sheet uses), then millions of tiny ones.
pub fn shared_strings_bomb(inflated: u64) -> Vec<u8> {
    let mut parts = frame(true);
    let mut head = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><sst xmlns="{MAIN_NS}" count="10" uniqueCount="10"><si><t>学号</t></si>"#
    );
    for n in 1..=9 {
        head.push_str(&format!("<si><t>第{n}题</t></si>"));
    }
    let unit = b"<si><t>0</t></si>";
    let chunk: Vec<u8> = unit
        .iter()
        .copied()
        .cycle()
        .take(CHUNK / unit.len() * unit.len())
        .collect();
    let times = inflated / chunk.len() as u64;
    parts.push(Part::repeated(
        "xl/sharedStrings.xml",
        head,
        chunk,
        times,
        "</sst>",
    ));
    let mut cells = String::from(r#"<c r="A1" t="s"><v>0</v></c>"#);
    for n in 1..=9u8 {
        let col = char::from(b'A' + n);
        cells.push_str(&format!(r#"<c r="{col}1" t="s"><v>{n}</v></c>"#));
    }
    parts.push(Part::plain(
        "xl/worksheets/sheet1.xml",
        format!(
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><worksheet xmlns="{MAIN_NS}"><sheetData><row r="1">{cells}</row></sheetData></worksheet>"#
        ),
    ));
    build(&parts)
}

/// A small valid PHQ-9 workbook built the same way: header and `rows` of
/// `(student_no, answers)`.
pub fn phq9_workbook(rows: &[(&str, [u8; 9])]) -> Vec<u8> {
    let mut parts = frame(false);
    let mut data = String::new();
    for (i, (student_no, answers)) in rows.iter().enumerate() {
        let r = i + 2;
        data.push_str(&format!(
            r#"<row r="{r}"><c r="A{r}" t="inlineStr"><is><t>{student_no}</t></is></c>"#
        ));
        for (c, v) in answers.iter().enumerate() {
            let col = char::from(b'B' + u8::try_from(c).expect("column"));
            data.push_str(&format!(r#"<c r="{col}{r}"><v>{v}</v></c>"#));
        }
        data.push_str("</row>");
    }
    parts.push(Part::plain(
        "xl/worksheets/sheet1.xml",
        format!(
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><worksheet xmlns="{MAIN_NS}"><sheetData><row r="1">{}</row>{data}</sheetData></worksheet>"#,
            inline_header_cells()
        ),
    ));
    build(&parts)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Read;

    fn inflate(zip: &[u8], name: &str) -> Vec<u8> {
        // Find the local header of `name` and inflate its data.
        let mut at = 0;
        loop {
            assert_eq!(&zip[at..at + 4], &[0x50, 0x4b, 0x03, 0x04], "local header");
            let field = |o: usize| u32::from_le_bytes(zip[at + o..at + o + 4].try_into().unwrap());
            let compressed = field(18) as usize;
            let name_len = u16::from_le_bytes(zip[at + 26..at + 28].try_into().unwrap()) as usize;
            let start = at + 30 + name_len;
            if &zip[at + 30..start] == name.as_bytes() {
                let mut out = Vec::new();
                flate2::read::DeflateDecoder::new(&zip[start..start + compressed])
                    .read_to_end(&mut out)
                    .unwrap();
                let crc = field(14);
                assert_eq!(crc32fast::hash(&out), crc, "crc of {name}");
                return out;
            }
            at = start + compressed;
        }
    }

    #[test]
    fn a_repeated_part_inflates_to_head_chunks_and_tail_with_its_crc() {
        let part = Part::repeated("p.xml", "<a>", "xyz".repeat(1000), 5, "</a>");
        let zip = build(&[Part::plain("first.xml", "<x/>"), part.clone()]);
        let bytes = inflate(&zip, "p.xml");
        assert_eq!(bytes.len() as u64, part.size());
        assert!(bytes.starts_with(b"<a>xyzxyz") && bytes.ends_with(b"xyz</a>"));
        assert_eq!(inflate(&zip, "first.xml"), b"<x/>");
    }
}
