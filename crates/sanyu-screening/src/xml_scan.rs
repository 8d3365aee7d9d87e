//! A constant-memory scan of XML bytes for the XLSX guard.
//!
//! It tells its [`Sink`] about every start and end tag (name, and the
//! attributes of the few elements the sink asks for) and refuses any single
//! piece of text or markup longer than a bound, without building anything from
//! the document. calamine's XML reader (quick-xml) buffers each piece whole, so
//! this bound is also the largest buffer calamine can be made to grow.
//!
//! It knows just enough XML for that: text, start and end tags (quoted
//! attribute values may hold `>`), comments, CDATA sections, processing
//! instructions and declarations. Input arrives in chunks of any size; a piece
//! may straddle chunks.

/// Names longer than this are never ones the guard looks for.
const NAME_CAP: usize = 64;
/// Attribute bytes kept for a tag whose attributes are wanted.
const ATTRS_CAP: usize = 4096;

/// A start tag as the scanner saw it.
pub(crate) struct Tag<'a> {
    /// The qualified name (`x:c`).
    pub name: &'a [u8],
    /// The local name (`c`).
    pub local: &'a [u8],
    /// The raw attributes (up to 4 KiB), only where [`Sink::wants_attrs`] said so.
    pub attrs: &'a [u8],
    /// `<c/>`: no content and no end tag follow.
    pub empty: bool,
}

/// What the scan reports to.
pub(crate) trait Sink {
    type Error;
    /// Whether the attributes of a start tag with this local name are wanted.
    fn wants_attrs(&self, local: &[u8]) -> bool;
    /// A start tag ended at byte offset `at` of the part.
    fn start(&mut self, tag: &Tag<'_>, at: u64) -> Result<(), Self::Error>;
    /// An end tag `</name>` ended at byte offset `at`.
    fn end(&mut self, name: &[u8], at: u64) -> Result<(), Self::Error>;
}

/// Why a scan stopped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stop<E> {
    /// A piece of text or markup is longer than the bound.
    PieceTooLong,
    Sink(E),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Text,
    /// Just after `<`.
    Open,
    /// A start tag's name.
    Name,
    /// A start tag after its name; `quote` is the open quote or 0.
    Attrs {
        quote: u8,
        slash: bool,
    },
    /// An end tag's name, then anything up to `>`.
    EndName {
        done: bool,
    },
    /// After `<!`.
    Bang,
    /// After `<!-` (a second `-` opens a comment).
    BangDash,
    /// After `<!`: this much of `[CDATA[` matched.
    BangCdata(u8),
    Comment {
        dashes: u8,
    },
    Cdata {
        brackets: u8,
    },
    /// `<!DOCTYPE …>` and other declarations.
    Decl {
        quote: u8,
        depth: u32,
    },
    /// `<?…?>`.
    Pi {
        question: bool,
    },
}

const CDATA: &[u8] = b"[CDATA[";

/// The scanner of one part.
pub(crate) struct XmlScan {
    state: State,
    max_piece: u64,
    /// Where the piece being read began.
    piece_start: u64,
    /// Bytes consumed so far (kept exact whenever the sink is called).
    offset: u64,
    name: [u8; NAME_CAP],
    name_len: usize,
    name_overflow: bool,
    capture: bool,
    attrs: Vec<u8>,
}

impl XmlScan {
    pub(crate) fn new(max_piece: u64) -> Self {
        Self {
            state: State::Text,
            max_piece,
            piece_start: 0,
            offset: 0,
            name: [0; NAME_CAP],
            name_len: 0,
            name_overflow: false,
            capture: false,
            attrs: Vec::new(),
        }
    }

    /// Bytes fed so far.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// The piece that began at `piece_start` reaches `end`: refuse it if too long.
    fn check_piece<E>(&self, end: u64) -> Result<(), Stop<E>> {
        if end.saturating_sub(self.piece_start) > self.max_piece {
            Err(Stop::PieceTooLong)
        } else {
            Ok(())
        }
    }

    fn push_name(&mut self, b: u8) {
        if self.name_len < NAME_CAP {
            self.name[self.name_len] = b;
            self.name_len += 1;
        } else {
            self.name_overflow = true;
        }
    }

    fn local_name(&self) -> &[u8] {
        let name = &self.name[..self.name_len];
        match name.iter().rposition(|b| *b == b':') {
            Some(i) => &name[i + 1..],
            None => name,
        }
    }

    fn name_done<S: Sink>(&mut self, sink: &S) {
        self.capture = !self.name_overflow && sink.wants_attrs(self.local_name());
        self.attrs.clear();
    }

    /// A piece of markup ended at `self.offset`; text begins.
    fn piece_done<E>(&mut self) -> Result<(), Stop<E>> {
        self.check_piece(self.offset)?;
        self.state = State::Text;
        self.piece_start = self.offset;
        Ok(())
    }

    fn tag_done<S: Sink>(&mut self, sink: &mut S, empty: bool) -> Result<(), Stop<S::Error>> {
        self.piece_done()?;
        if self.name_overflow || self.name_len == 0 {
            return Ok(());
        }
        let name = &self.name[..self.name_len];
        let tag = Tag {
            name,
            local: self.local_name(),
            attrs: if self.capture { &self.attrs } else { &[] },
            empty,
        };
        sink.start(&tag, self.offset).map_err(Stop::Sink)
    }

    fn end_done<S: Sink>(&mut self, sink: &mut S) -> Result<(), Stop<S::Error>> {
        self.piece_done()?;
        if self.name_overflow || self.name_len == 0 {
            return Ok(());
        }
        sink.end(&self.name[..self.name_len], self.offset)
            .map_err(Stop::Sink)
    }

    /// Scan the next bytes of the part. Text and the attributes of a tag are
    /// skipped over with `memchr`; names and the rarer constructs go byte by
    /// byte.
    pub(crate) fn feed<S: Sink>(
        &mut self,
        bytes: &[u8],
        sink: &mut S,
    ) -> Result<(), Stop<S::Error>> {
        let base = self.offset;
        let at = |i: usize| base + i as u64;
        let mut i = 0;
        while i < bytes.len() {
            let rest = &bytes[i..];
            match self.state {
                State::Text => {
                    let Some(k) = memchr::memchr(b'<', rest) else {
                        break;
                    };
                    self.check_piece(at(i + k))?;
                    self.piece_start = at(i + k);
                    self.state = State::Open;
                    self.name_len = 0;
                    self.name_overflow = false;
                    i += k + 1;
                }
                State::Attrs { quote, slash } if !self.capture => {
                    if quote != 0 {
                        let Some(k) = memchr::memchr(quote, rest) else {
                            break;
                        };
                        self.state = State::Attrs {
                            quote: 0,
                            slash: false,
                        };
                        i += k + 1;
                        continue;
                    }
                    let Some(k) = memchr::memchr3(b'>', b'"', b'\'', rest) else {
                        self.state = State::Attrs {
                            quote: 0,
                            slash: rest.last() == Some(&b'/'),
                        };
                        break;
                    };
                    let slash = if k == 0 { slash } else { rest[k - 1] == b'/' };
                    i += k + 1;
                    if rest[k] == b'>' {
                        self.offset = at(i);
                        self.tag_done(sink, slash)?;
                    } else {
                        self.state = State::Attrs {
                            quote: rest[k],
                            slash: false,
                        };
                    }
                }
                _ => {
                    i += 1;
                    self.offset = at(i);
                    self.step(rest[0], sink)?;
                }
            }
        }
        self.offset = at(bytes.len());
        self.check_piece(self.offset)
    }

    /// One byte of a name, a tag whose attributes are kept, or a comment,
    /// CDATA section, declaration or processing instruction.
    fn step<S: Sink>(&mut self, b: u8, sink: &mut S) -> Result<(), Stop<S::Error>> {
        match self.state {
            State::Text => {}
            State::Open => match b {
                b'/' => self.state = State::EndName { done: false },
                b'!' => self.state = State::Bang,
                b'?' => self.state = State::Pi { question: false },
                b'>' => self.piece_done()?,
                _ if b.is_ascii_whitespace() => {
                    self.name_done(sink);
                    self.state = State::Attrs {
                        quote: 0,
                        slash: false,
                    };
                }
                _ => {
                    self.push_name(b);
                    self.state = State::Name;
                }
            },
            State::Name => match b {
                b'>' => {
                    self.name_done(sink);
                    self.tag_done(sink, false)?;
                }
                b'/' => {
                    self.name_done(sink);
                    self.state = State::Attrs {
                        quote: 0,
                        slash: true,
                    };
                }
                _ if b.is_ascii_whitespace() => {
                    self.name_done(sink);
                    self.state = State::Attrs {
                        quote: 0,
                        slash: false,
                    };
                }
                _ => self.push_name(b),
            },
            // Only a tag whose attributes are kept comes here byte by byte.
            State::Attrs { quote, slash } => {
                if quote == 0 && b == b'>' {
                    return self.tag_done(sink, slash);
                }
                if self.attrs.len() < ATTRS_CAP {
                    self.attrs.push(b);
                }
                self.state = match b {
                    _ if quote != 0 => State::Attrs {
                        quote: if b == quote { 0 } else { quote },
                        slash: false,
                    },
                    b'"' | b'\'' => State::Attrs {
                        quote: b,
                        slash: false,
                    },
                    _ => State::Attrs {
                        quote,
                        slash: b == b'/',
                    },
                };
            }
            State::EndName { done } => match b {
                b'>' => self.end_done(sink)?,
                _ if done => {}
                _ if b.is_ascii_whitespace() => self.state = State::EndName { done: true },
                _ => self.push_name(b),
            },
            State::Bang => {
                self.state = match b {
                    b'-' => State::BangDash,
                    b'[' => State::BangCdata(1),
                    _ => State::Decl { quote: 0, depth: 0 },
                }
            }
            State::BangDash => {
                self.state = if b == b'-' {
                    State::Comment { dashes: 0 }
                } else {
                    State::Decl { quote: 0, depth: 0 }
                }
            }
            State::BangCdata(matched) => {
                let matched = usize::from(matched);
                self.state = if CDATA.get(matched) == Some(&b) {
                    if matched + 1 == CDATA.len() {
                        State::Cdata { brackets: 0 }
                    } else {
                        State::BangCdata(u8::try_from(matched + 1).unwrap_or(u8::MAX))
                    }
                } else {
                    State::Decl { quote: 0, depth: 1 }
                };
            }
            State::Comment { dashes } => match b {
                b'-' => {
                    self.state = State::Comment {
                        dashes: dashes.saturating_add(1).min(2),
                    }
                }
                b'>' if dashes >= 2 => self.piece_done()?,
                _ => self.state = State::Comment { dashes: 0 },
            },
            State::Cdata { brackets } => match b {
                b']' => {
                    self.state = State::Cdata {
                        brackets: brackets.saturating_add(1).min(2),
                    }
                }
                b'>' if brackets >= 2 => self.piece_done()?,
                _ => self.state = State::Cdata { brackets: 0 },
            },
            State::Decl { quote, depth } => {
                self.state = match b {
                    _ if quote != 0 => State::Decl {
                        quote: if b == quote { 0 } else { quote },
                        depth,
                    },
                    b'"' | b'\'' => State::Decl { quote: b, depth },
                    b'[' => State::Decl {
                        quote,
                        depth: depth.saturating_add(1),
                    },
                    b']' => State::Decl {
                        quote,
                        depth: depth.saturating_sub(1),
                    },
                    b'>' if depth == 0 => return self.piece_done(),
                    _ => State::Decl { quote, depth },
                };
            }
            State::Pi { question } => {
                if b == b'>' && question {
                    self.piece_done()?;
                } else {
                    self.state = State::Pi {
                        question: b == b'?',
                    };
                }
            }
        }
        Ok(())
    }
}

/// The value of attribute `name` (matched by its local name) in raw attribute
/// bytes, with XML's character references decoded; `None` when absent or
/// malformed.
pub(crate) fn attribute(attrs: &[u8], name: &[u8]) -> Option<String> {
    let mut rest = attrs;
    loop {
        let start = rest.iter().position(|b| !b.is_ascii_whitespace())?;
        rest = &rest[start..];
        let eq = rest.iter().position(|b| *b == b'=')?;
        let key = rest[..eq].trim_ascii();
        let local = match key.iter().rposition(|b| *b == b':') {
            Some(i) => &key[i + 1..],
            None => key,
        };
        rest = rest[eq + 1..].trim_ascii_start();
        let quote = *rest.first()?;
        if quote != b'"' && quote != b'\'' {
            return None;
        }
        let end = rest[1..].iter().position(|b| *b == quote)?;
        let value = &rest[1..=end];
        if local == name {
            return decode_references(value);
        }
        rest = &rest[end + 2..];
    }
}

/// `&amp;` `&lt;` `&gt;` `&quot;` `&apos;` `&#NN;` `&#xNN;` → characters.
fn decode_references(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let semi = after.find(';')?;
        let entity = &after[..semi];
        let c = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = entity.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()?
                } else {
                    entity.strip_prefix('#')?.parse().ok()?
                };
                char::from_u32(code)?
            }
        };
        out.push(c);
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Records what the scan reports.
    #[derive(Default)]
    struct Log {
        events: Vec<String>,
    }

    impl Sink for Log {
        type Error = ();
        fn wants_attrs(&self, local: &[u8]) -> bool {
            local == b"sst"
        }
        fn start(&mut self, tag: &Tag<'_>, _at: u64) -> Result<(), ()> {
            self.events.push(format!(
                "<{}|{}|{}|{}>",
                String::from_utf8_lossy(tag.name),
                String::from_utf8_lossy(tag.local),
                String::from_utf8_lossy(tag.attrs),
                if tag.empty { "/" } else { "" }
            ));
            Ok(())
        }
        fn end(&mut self, name: &[u8], _at: u64) -> Result<(), ()> {
            self.events
                .push(format!("</{}>", String::from_utf8_lossy(name)));
            Ok(())
        }
    }

    fn scan_in_chunks(xml: &[u8], chunk: usize, max_piece: u64) -> Result<Vec<String>, Stop<()>> {
        let mut scan = XmlScan::new(max_piece);
        let mut log = Log::default();
        for part in xml.chunks(chunk) {
            scan.feed(part, &mut log)?;
        }
        Ok(log.events)
    }

    const SAMPLE: &[u8] = br#"<?xml version="1.0"?><!DOCTYPE x [<!ELEMENT x ANY>]><!-- <c r="Z9"> --><sst count="2" uniqueCount='2 > 1'><x:si><t>a &lt; b</t></x:si><![CDATA[<c>]]><c r="A1"/><col min="1"/><c
 r="B1" t="s"><v>0</v></c ></sst>"#;

    #[test]
    fn tags_are_reported_with_local_names_whatever_the_chunking() {
        let expected = [
            "<sst|sst|count=\"2\" uniqueCount='2 > 1'|>",
            "<x:si|si||>",
            "<t|t||>",
            "</t>",
            "</x:si>",
            "<c|c||/>",
            "<col|col||/>",
            "<c|c||>",
            "<v|v||>",
            "</v>",
            "</c>",
            "</sst>",
        ];
        for chunk in [1, 2, 3, 7, 64, SAMPLE.len()] {
            assert_eq!(
                scan_in_chunks(SAMPLE, chunk, 1024).unwrap(),
                expected,
                "chunks of {chunk}"
            );
        }
    }

    #[test]
    fn a_piece_longer_than_the_bound_stops_the_scan() {
        let mut text = b"<t>".to_vec();
        text.extend(std::iter::repeat_n(b'0', 100));
        text.extend_from_slice(b"</t>");
        assert!(scan_in_chunks(&text, 7, 100).is_ok());
        assert_eq!(scan_in_chunks(&text, 7, 99), Err(Stop::PieceTooLong));
        let mut comment = b"<!--".to_vec();
        comment.extend(b"<c/> ".iter().cycle().take(500));
        comment.extend_from_slice(b"-->");
        assert_eq!(scan_in_chunks(&comment, 13, 100), Err(Stop::PieceTooLong));
        let mut tag = b"<c r=\"".to_vec();
        tag.extend(b"<>".iter().cycle().take(500));
        tag.extend_from_slice(b"\"/>");
        assert_eq!(scan_in_chunks(&tag, 13, 100), Err(Stop::PieceTooLong));
    }

    #[test]
    fn attributes_are_found_by_local_name_and_decoded() {
        let attrs = br#"Id="rId1" r:Type = 'a&amp;b' Target="x&#x2F;y&#47;z.xml""#;
        assert_eq!(attribute(attrs, b"Id").as_deref(), Some("rId1"));
        assert_eq!(attribute(attrs, b"Type").as_deref(), Some("a&b"));
        assert_eq!(attribute(attrs, b"Target").as_deref(), Some("x/y/z.xml"));
        assert_eq!(attribute(attrs, b"Mode"), None);
        assert_eq!(attribute(b"broken", b"Id"), None);
    }
}
