//! Writing a stream of events in one output format, with the right separators.

use std::fmt;
use std::io;

use serde::Serialize;

use crate::jsonl::write_event_json;
use crate::render::{IoSink, Layout, Render};
use crate::{render, Event};

/// An output format for a stream of events (`multiline`, `singleline`, `json`).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    strum::Display,
    strum::EnumString,
    strum::EnumIter,
    strum::VariantNames,
)]
#[strum(serialize_all = "lowercase", ascii_case_insensitive)]
pub enum Format {
    /// Text, one section per line, events separated by a blank line.
    #[default]
    Multiline,
    /// Text, one event per line.
    Singleline,
    /// JSON Lines: one event object per line.
    Json,
}

impl Format {
    /// The text layout, or `None` for JSON.
    pub fn layout(self) -> Option<Layout> {
        match self {
            Format::Multiline => Some(Layout::MultiLine),
            Format::Singleline => Some(Layout::SingleLine),
            Format::Json => None,
        }
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

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn get_ref(&self) -> &W {
        &self.out
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

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

#[cfg(test)]
mod tests {
    use super::*;
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
    fn multiline_events_are_separated_by_one_blank_line() {
        let events = [with_header(), with_header(), untracked()];
        assert_eq!(
            output(Format::Multiline, &events),
            "7\n  ct_state UNTRACKED\n\n7\n  ct_state UNTRACKED\n\nct_state UNTRACKED\n"
        );
    }

    #[test]
    fn singleline_is_one_line_per_event() {
        let events = [with_header(), untracked()];
        assert_eq!(
            output(Format::Singleline, &events),
            "7 ct_state UNTRACKED\nct_state UNTRACKED\n"
        );
    }

    #[test]
    fn json_is_one_object_per_line() {
        let events = [untracked(), with_header()];
        assert_eq!(
            output(Format::Json, &events),
            "{\"ct\":{\"state\":\"untracked\",\"base\":null,\"parent\":null}}\n\
             {\"timestamp\":7,\"ct\":{\"state\":\"untracked\",\"base\":null,\"parent\":null}}\n"
        );
    }

    #[test]
    fn indent_applies_to_text() {
        let mut w = EventWriter::new(Vec::new(), Format::Multiline).with_indent(3);
        w.write(&with_header()).unwrap();
        assert_eq!(
            String::from_utf8(w.into_inner()).unwrap(),
            "   7\n     ct_state UNTRACKED\n"
        );
    }

    #[test]
    fn format_names() {
        assert_eq!("multiline".parse::<Format>().unwrap(), Format::Multiline);
        assert_eq!("SingleLine".parse::<Format>().unwrap(), Format::Singleline);
        assert_eq!("json".parse::<Format>().unwrap(), Format::Json);
        assert!("yaml".parse::<Format>().is_err());
        assert_eq!(Format::Singleline.to_string(), "singleline");
    }

    #[test]
    fn io_errors_are_reported() {
        struct Full;
        impl io::Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        for format in [Format::Multiline, Format::Singleline, Format::Json] {
            let err = EventWriter::new(Full, format)
                .write(&untracked())
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::StorageFull, "{format}");
        }
    }
}
