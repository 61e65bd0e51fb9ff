//! Text that came from a file or the kernel, shown to a person: the characters that would
//! change what a terminal shows rather than be shown escaped. Control characters move the
//! cursor, end lines or start escape sequences; bidirectional format characters reorder
//! what follows them, so that a name or an error message can read as something else.

use std::borrow::Cow;
use std::fmt::{self, Write};

/// Whether `c` is shown escaped: a control character or a bidirectional format
/// character (embeddings and overrides U+202A-U+202E, isolates U+2066-U+2069, the marks
/// U+200E, U+200F and U+061C).
pub(crate) fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// Writes `s` with every character [`needs_escape`] says so of as a Rust escape (`\n`,
/// `\u{202e}`).
pub(crate) fn write_escaped<W: Write + ?Sized>(w: &mut W, s: &str) -> fmt::Result {
    if !s.chars().any(needs_escape) {
        return w.write_str(s);
    }
    for c in s.chars() {
        if needs_escape(c) {
            write!(w, "{}", c.escape_default())?;
        } else {
            w.write_char(c)?;
        }
    }
    Ok(())
}

/// `s` escaped as [`write_escaped`] writes it; borrowed when nothing needs escaping.
pub(crate) fn escaped(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    // Writing to a String cannot fail.
    let _ = write_escaped(&mut out, s);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_bidi_characters_are_escaped() {
        assert_eq!(escaped("eth0"), "eth0");
        assert!(matches!(escaped("café"), Cow::Borrowed(_)));
        assert_eq!(escaped("a\nb\x1b[2J"), "a\\nb\\u{1b}[2J");
        for c in [
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}',
        ] {
            let text = format!("x{c}y");
            let shown = escaped(&text);
            assert!(!shown.contains(c), "{c:?} shown as is");
            assert_eq!(shown, format!("x{}y", c.escape_default()));
        }
        // Other format characters that do not reorder text stay as they are.
        assert_eq!(escaped("a\u{200D}b"), "a\u{200D}b");
    }
}
