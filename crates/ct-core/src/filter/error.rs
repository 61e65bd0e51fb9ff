//! Where and why a filter expression could not be parsed.

/// A filter expression that could not be parsed: where and why. `Display` shows the
/// expression with a caret under the offending column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at column {column}\n  {input}\n  {caret}^", caret = " ".repeat(self.column.saturating_sub(1)))]
pub struct FilterError {
    /// The expression as given.
    pub input: String,
    /// 1-based character column.
    pub column: usize,
    /// What was wrong.
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

/// A value of a conntrack or drop filter option (`--ct-state`, `--ct-mark`, `--ct-status`,
/// `--drop-reason`) that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OptionValueError {
    /// Not one of the ctinfo states.
    #[error(
        "unknown ct state {0:?}: use new, established, related, reply, related_reply, \
         untracked"
    )]
    CtState(String),
    /// A mark or mask that is not a 32-bit number.
    #[error("{0:?} is not a 32-bit number (decimal or 0x hex)")]
    Mark(String),
    /// Not the name of a conntrack status bit.
    #[error("unknown status bit {name:?}: use one of {known}")]
    StatusBit {
        /// The name given.
        name: String,
        /// The names there are, comma-separated.
        known: String,
    },
    /// Not shaped like a drop reason name.
    #[error("drop reason {0:?}: expected a name such as NETFILTER_DROP or NO_SOCKET")]
    DropReason(String),
}
