//! Writing a stream of events in one output format, with the right separators.

use std::fmt;
use std::io;

use serde::Serialize;

use crate::fast::Sink;
use crate::jsonl::write_event_json;
use crate::render::{Layout, Render};
use crate::{render, Event};

/// An output format for a stream of events: a text layout, or JSON Lines. Its names
/// (`FromStr`, `Display`, [`Format::NAMES`]) are `multiline`, `singleline` and `json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Text in a layout: multi-line events are separated by a blank line, single-line
    /// ones are one per line.
    Text(Layout),
    /// JSON Lines: one object per line.
    Json,
}

impl Default for Format {
    fn default() -> Self {
        Format::Text(Layout::default())
    }
}

impl Format {
    /// Every format, in the order of [`Format::NAMES`].
    pub const ALL: [Format; 3] = [
        Format::Text(Layout::MultiLine),
        Format::Text(Layout::SingleLine),
        Format::Json,
    ];

    /// The name of each format, as parsed and displayed.
    pub const NAMES: [&'static str; 3] = ["multiline", "singleline", "json"];

    /// The text layout, or `None` for JSON.
    pub fn layout(self) -> Option<Layout> {
        match self {
            Format::Text(layout) => Some(layout),
            Format::Json => None,
        }
    }

    /// The format's name (`multiline`, `singleline`, `json`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Text(layout) => layout.into(),
            Format::Json => "json",
        }
    }
}

/// The names as `strum` lists them, for command-line parsers.
impl strum::VariantNames for Format {
    const VARIANTS: &'static [&'static str] = &Format::NAMES;
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is none of [`Format::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown format {name:?}: use multiline, singleline or json")]
pub struct UnknownFormat {
    /// The name given.
    pub name: String,
}

/// Parses a format name, in any case.
impl std::str::FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, UnknownFormat> {
        Format::ALL
            .into_iter()
            .find(|format| format.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownFormat { name: s.to_owned() })
    }
}

/// Writes events one after the other in one [`Format`].
///
/// Every event ends with a newline, so the output is complete after each
/// [`write`](EventWriter::write); multi-line events are separated by one blank line (written
/// before every event but the first). Wrap files and pipes in a `BufWriter`, and
/// [`flush`](EventWriter::flush) before exit.
#[derive(Debug)]
pub struct EventWriter<W: io::Write> {
    out: W,
    format: Format,
    indent: usize,
    written: u64,
}

impl<W: io::Write> EventWriter<W> {
    /// A writer of events to `out` in `format`.
    pub fn new(out: W, format: Format) -> Self {
        EventWriter {
            out,
            format,
            indent: 0,
            written: 0,
        }
    }

    /// Indents text output by `indent` spaces (JSON is never indented).
    pub fn with_indent(mut self, indent: usize) -> Self {
        self.indent = indent;
        self
    }

    /// The format it writes.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Writes one event and its line end.
    pub fn write(&mut self, event: &Event) -> io::Result<()> {
        match self.format.layout() {
            None => write_event_json(event, &mut self.out)?,
            Some(layout) => {
                if layout == Layout::MultiLine && self.written > 0 {
                    self.out.write_all(b"\n")?;
                }
                let mut sink = IoSink::new(&mut self.out);
                let result = render::write_event(&mut sink, event, layout, self.indent);
                sink.finish(result)?;
                self.out.write_all(b"\n")?;
            }
        }
        self.written += 1;
        Ok(())
    }

    /// How many events were written.
    pub fn count(&self) -> u64 {
        self.written
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The underlying writer.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// The underlying writer, mutably (writing to it directly breaks the separators).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Writes a list of items that have both a text layout and a JSON form (the `sort` and
/// `conns` views) in one [`Format`]: every item ends with a newline; multi-line items are
/// separated by one blank line; JSON is one object per line.
pub(crate) fn write_items<'a, W, T, I>(w: &mut W, items: I, format: Format) -> fmt::Result
where
    W: fmt::Write + ?Sized,
    T: Render + Serialize + 'a,
    I: IntoIterator<Item = &'a T>,
{
    for (i, item) in items.into_iter().enumerate() {
        match format.layout() {
            None => {
                // serde_json writes into `io::Write`; a line is small, so go through a string.
                let line = serde_json::to_string(item).map_err(|_| fmt::Error)?;
                w.write_str(&line)?;
            }
            Some(layout) => {
                if layout == Layout::MultiLine && i > 0 {
                    w.write_char('\n')?;
                }
                item.render(w, layout, 0)?;
            }
        }
        w.write_char('\n')?;
    }
    Ok(())
}

/// [`write_items`] into an [`io::Write`], keeping the I/O error.
pub(crate) fn write_items_io<'a, W, T, I>(out: W, items: I, format: Format) -> io::Result<()>
where
    W: io::Write,
    T: Render + Serialize + 'a,
    I: IntoIterator<Item = &'a T>,
{
    let mut sink = IoSink::new(out);
    let result = write_items(&mut sink, items, format);
    sink.finish(result)?;
    sink.into_inner().flush()
}

/// An [`io::Write`] for the crate's writers: the text layouts write into it as a
/// [`fmt::Write`], keeping the I/O error that a `fmt::Error` cannot carry; the JSON writer
/// hands it its buffer directly. Each piece is passed on as written: wrap files and pipes
/// in a `BufWriter`.
#[derive(Debug)]
pub struct IoSink<W> {
    inner: W,
    error: Option<io::Error>,
}

impl<W: io::Write> IoSink<W> {
    /// A sink writing into `inner`.
    pub fn new(inner: W) -> Self {
        IoSink { inner, error: None }
    }

    /// Turns the result of a writer into the I/O error that caused it, if any.
    pub fn finish(&mut self, result: fmt::Result) -> io::Result<()> {
        match (result, self.error.take()) {
            (_, Some(e)) => Err(e),
            (Ok(()), None) => Ok(()),
            (Err(fmt::Error), None) => Err(io::Error::other("formatting the event failed")),
        }
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: io::Write> fmt::Write for IoSink<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.inner.write_all(s.as_bytes()).map_err(|e| {
            self.error = Some(e);
            fmt::Error
        })
    }
}

/// The JSON writer's buffer goes straight to the writer; the error is returned, not kept.
impl<W: io::Write> Sink for IoSink<W> {
    type Error = io::Error;

    #[inline]
    fn take(&mut self, text: &str) -> io::Result<()> {
        self.inner.write_all(text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FullDisk;
    use crate::CtEvent;

    fn untracked() -> Event {
        Event {
            ct: Some(CtEvent::untracked()),
            ..Event::default()
        }
    }

    fn with_header() -> Event {
        Event {
            timestamp: Some(7),
            ..untracked()
        }
    }

    fn output(format: Format, events: &[Event]) -> String {
        let mut w = EventWriter::new(Vec::new(), format);
        for e in events {
            w.write(e).unwrap();
        }
        assert_eq!(w.count(), events.len() as u64);
        String::from_utf8(w.into_inner()).unwrap()
    }

    #[test]
    fn each_format_separates_events_its_own_way() {
        let cases = [
            // Multiline: events separated by one blank line.
            (
                Format::Text(Layout::MultiLine),
                vec![with_header(), with_header(), untracked()],
                "7\n  ct_state UNTRACKED\n\n7\n  ct_state UNTRACKED\n\nct_state UNTRACKED\n",
            ),
            // Singleline: one line per event.
            (
                Format::Text(Layout::SingleLine),
                vec![with_header(), untracked()],
                "7 ct_state UNTRACKED\nct_state UNTRACKED\n",
            ),
            // JSON: one object per line.
            (
                Format::Json,
                vec![untracked(), with_header()],
                "{\"ct\":{\"state\":\"untracked\",\"base\":null,\"parent\":null}}\n\
                 {\"timestamp\":7,\"ct\":{\"state\":\"untracked\",\"base\":null,\"parent\":null}}\n",
            ),
        ];
        for (format, events, expected) in cases {
            assert_eq!(output(format, &events), expected, "{format}");
        }
    }

    #[test]
    fn indent_applies_to_text() {
        let mut w = EventWriter::new(Vec::new(), Format::Text(Layout::MultiLine)).with_indent(3);
        w.write(&with_header()).unwrap();
        assert_eq!(
            String::from_utf8(w.into_inner()).unwrap(),
            "   7\n     ct_state UNTRACKED\n"
        );
    }

    #[test]
    fn format_names() {
        assert_eq!(
            "multiline".parse::<Format>().unwrap(),
            Format::Text(Layout::MultiLine)
        );
        assert_eq!(
            "SingleLine".parse::<Format>().unwrap(),
            Format::Text(Layout::SingleLine)
        );
        assert_eq!("json".parse::<Format>().unwrap(), Format::Json);
        assert!("yaml".parse::<Format>().is_err());
        assert_eq!(Format::Text(Layout::SingleLine).to_string(), "singleline");
        // One name each, the layouts' own for text.
        for (format, name) in Format::ALL.into_iter().zip(Format::NAMES) {
            assert_eq!(format.to_string(), name);
            assert_eq!(name.parse::<Format>(), Ok(format));
        }
        for layout in <Layout as strum::IntoEnumIterator>::iter() {
            assert!(Format::NAMES.contains(&layout.to_string().as_str()));
        }
    }

    #[test]
    fn io_errors_are_reported() {
        for format in [
            Format::Text(Layout::MultiLine),
            Format::Text(Layout::SingleLine),
            Format::Json,
        ] {
            let err = EventWriter::new(FullDisk, format)
                .write(&untracked())
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::StorageFull, "{format}");
        }
    }
}
