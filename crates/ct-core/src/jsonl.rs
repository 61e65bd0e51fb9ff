//! JSON Lines: one [`Event`] object per line, read as [`read_events`] says.

use std::io::{self, BufRead};

use crate::Event;
use read::SchemaReader;

/// Longest line [`EventReader`] accepts unless told otherwise: 1 MiB, far above any real
/// event (a few hundred bytes).
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

/// Writes `event` as one JSON line (the object and `\n`).
///
/// The `"ct"` key holds exactly the ct section's JSON; absent sections are left out. The
/// bytes are exactly what `serde_json::to_writer` writes for the event (the serde derives
/// are the schema and what reads it back), produced by a hand-written writer several times
/// faster. The line goes to `out` in one `write_all` unless it is longer than 1.5 KiB; give
/// it a `BufWriter` for files and pipes all the same.
pub fn write_event_json<W: io::Write>(event: &Event, out: W) -> io::Result<()> {
    write::write_event_line(event, out)
}

/// A line that could not be read as an event.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct LineError {
    /// 1-based line number in the input.
    pub line: u64,
    /// What was wrong.
    pub kind: LineErrorKind,
}

/// What was wrong with a line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LineErrorKind {
    /// The input itself could not be read; reading stops here.
    #[error("could not read the input: {0}")]
    Io(#[from] io::Error),
    /// Longer than the limit; skipped without being held in memory.
    #[error(
        "longer than {limit} bytes, skipped: an event is a few hundred bytes, so this is not \
         an events file or it is corrupt"
    )]
    TooLong {
        /// The limit, in bytes.
        limit: usize,
    },
    /// Not UTF-8.
    #[error(
        "not valid UTF-8 (bad byte at column {column}), skipped: events files are UTF-8 JSON \
         Lines; the file may be corrupt"
    )]
    NotUtf8 {
        /// 1-based byte column of the first bad byte.
        column: usize,
    },
    /// Not JSON.
    #[error(
        "not valid JSON at column {column}: {message}; each line must be one JSON event object"
    )]
    Syntax {
        /// 1-based column.
        column: usize,
        /// The JSON parser's message.
        message: String,
    },
    /// JSON that ends before its object does.
    #[error(
        "JSON ends early at column {column}: {message}; the line is incomplete (was the file \
         cut off while it was written?)"
    )]
    Truncated {
        /// 1-based column.
        column: usize,
        /// The JSON parser's message.
        message: String,
    },
    /// JSON, but not an event (a wrong type or value).
    #[error("not a valid event at column {column}: {message}")]
    Invalid {
        /// 1-based column.
        column: usize,
        /// The JSON parser's message.
        message: String,
    },
}

impl LineErrorKind {
    fn from_json(err: serde_json::Error) -> Self {
        use serde_json::error::Category;
        let column = err.column();
        let mut message = err.to_string();
        // serde_json appends " at line L column C"; the line is always 1 here and the
        // column is reported separately.
        if let Some(at) = message.rfind(" at line ") {
            message.truncate(at);
        }
        // The message quotes the input (an unknown field or variant, a bad string): the
        // file's text must not reach a terminal as control or reordering characters.
        let message = crate::escape::escaped(&message).into_owned();
        match err.classify() {
            Category::Io => {
                LineErrorKind::Io(io::Error::other(format!("unexpected I/O error: {message}")))
            }
            Category::Syntax => LineErrorKind::Syntax { column, message },
            Category::Eof => LineErrorKind::Truncated { column, message },
            Category::Data => LineErrorKind::Invalid { column, message },
        }
    }
}

/// Parses one line (without its line end) as an event.
///
/// The serde derives of the model are the schema: a reader specialised for it reads the
/// lines events files hold, and gives every other line (unusual JSON, and anything that
/// is not a valid event) to serde, which accepts what it accepts and words the errors.
pub fn parse_event_line(line: &str) -> Result<Event, LineErrorKind> {
    parse_line(&mut SchemaReader::default(), line)
}

/// [`parse_event_line`] with a reader that keeps what it learnt between lines.
fn parse_line(schema: &mut SchemaReader, line: &str) -> Result<Event, LineErrorKind> {
    match schema.parse(line) {
        Some(event) => Ok(event),
        None => parse_with_serde(line),
    }
}

/// The line as the serde model reads it: the schema, and the words of every error.
fn parse_with_serde(line: &str) -> Result<Event, LineErrorKind> {
    serde_json::from_str(line).map_err(LineErrorKind::from_json)
}

/// Iterator over the events of a JSON Lines input; see [`read_events`].
///
/// Yields `Ok(event)` or `Err(LineError)` per non-blank line; after an I/O error it yields
/// nothing more.
#[derive(Debug)]
pub struct EventReader<R> {
    reader: R,
    /// Number of the line last read (0 before the first).
    line: u64,
    max_line_bytes: usize,
    buf: Vec<u8>,
    done: bool,
    schema: SchemaReader,
}

/// Reads events from `reader`, one JSON object per line.
///
/// Reading is per line and forgiving of the file around a bad line: a malformed line gives a
/// [`LineError`] (with its 1-based line number) and reading goes on with the next one. Blank
/// lines are skipped, a trailing `\r` and a UTF-8 byte-order mark on the first line are
/// ignored, unknown keys are ignored and missing optional keys take their defaults. A line
/// longer than the limit ([`DEFAULT_MAX_LINE_BYTES`] unless set) is reported without being
/// held in memory.
pub fn read_events<R: BufRead>(reader: R) -> EventReader<R> {
    EventReader::new(reader)
}

/// How a raw line ended.
enum RawLine {
    /// In `buf`, line end removed.
    Complete,
    /// Longer than the limit; its bytes were discarded.
    TooLong,
    /// No more input.
    Eof,
}

impl<R: BufRead> EventReader<R> {
    /// A reader of `reader` with the default line limit.
    pub fn new(reader: R) -> Self {
        EventReader {
            reader,
            line: 0,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            buf: Vec::new(),
            done: false,
            schema: SchemaReader::default(),
        }
    }

    /// Sets the longest line accepted, in bytes without the line end.
    pub fn with_max_line_bytes(mut self, max: usize) -> Self {
        self.max_line_bytes = max;
        self
    }

    /// Number of the line last read (0 before the first).
    pub fn line_number(&self) -> u64 {
        self.line
    }

    /// The underlying reader.
    pub fn into_inner(self) -> R {
        self.reader
    }

    /// Reads the next line into `buf`, keeping at most `max_line_bytes` of it in memory.
    fn read_raw_line(&mut self) -> io::Result<RawLine> {
        self.buf.clear();
        let mut seen_any = false;
        let mut too_long = false;
        loop {
            let available = match self.reader.fill_buf() {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                return Ok(match (seen_any, too_long) {
                    (false, _) => RawLine::Eof,
                    (true, false) => RawLine::Complete,
                    (true, true) => RawLine::TooLong,
                });
            }
            seen_any = true;
            let newline = memchr::memchr(b'\n', available);
            let chunk = &available[..newline.unwrap_or(available.len())];
            if !too_long {
                if self.buf.len() + chunk.len() > self.max_line_bytes {
                    too_long = true;
                    self.buf.clear();
                } else {
                    self.buf.extend_from_slice(chunk);
                }
            }
            let used = chunk.len() + usize::from(newline.is_some());
            self.reader.consume(used);
            if newline.is_some() {
                return Ok(if too_long {
                    RawLine::TooLong
                } else {
                    RawLine::Complete
                });
            }
        }
    }
}

impl<R: BufRead> Iterator for EventReader<R> {
    type Item = Result<Event, LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            let raw = self.read_raw_line();
            let line = self.line + 1;
            let fail = |kind| Some(Err(LineError { line, kind }));
            match raw {
                Err(e) => {
                    self.done = true;
                    self.line = line;
                    return fail(LineErrorKind::Io(e));
                }
                Ok(RawLine::Eof) => {
                    self.done = true;
                    return None;
                }
                Ok(RawLine::TooLong) => {
                    self.line = line;
                    return fail(LineErrorKind::TooLong {
                        limit: self.max_line_bytes,
                    });
                }
                Ok(RawLine::Complete) => self.line = line,
            }
            let mut bytes = self.buf.as_slice();
            if let [rest @ .., b'\r'] = bytes {
                bytes = rest;
            }
            if line == 1 {
                bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
            }
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let text = match ascii_or_utf8(bytes) {
                Ok(text) => text,
                Err(e) => {
                    return fail(LineErrorKind::NotUtf8 {
                        column: e.valid_up_to() + 1,
                    })
                }
            };
            return Some(
                parse_line(&mut self.schema, text).map_err(|kind| LineError { line, kind }),
            );
        }
    }
}

mod read;
/// The line as text: ASCII (what events files are) is checked a word at a time.
fn ascii_or_utf8(bytes: &[u8]) -> Result<&str, std::str::Utf8Error> {
    if bytes.is_ascii() {
        // SAFETY: ASCII is valid UTF-8.
        Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes)
    }
}

#[cfg(test)]
mod tests;
mod write;
