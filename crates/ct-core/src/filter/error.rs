//! Where and why a filter expression could not be parsed.

/// A filter expression that could not be parsed: where and why. `Display` shows the
/// expression with a caret under the offending column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at column {column}\n  {input}\n  {caret}^", caret = " ".repeat(self.column.saturating_sub(1)))]
pub struct FilterError {
    pub input: String,
    /// 1-based character column.
    pub column: usize,
    pub message: String,
}

impl FilterError {
    /// The error `message` about `input` at byte offset `byte` (clamped to the input).
    pub fn at(input: &str, byte: usize, message: impl Into<String>) -> Self {
        let byte = byte.min(input.len());
        let column = input.char_indices().take_while(|(i, _)| *i < byte).count() + 1;
        FilterError {
            input: input.to_owned(),
            column,
            message: message.into(),
        }
    }
}
