//! Arguments of the commands that read events files: `print`, `sort` and `conns`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use ct_core::filter::Follow;
use ct_core::{Format, StreamLimits};

use super::{format_parser, parse_duration, FilterArgs};

/// Arguments of the commands that read an events file.
#[derive(Debug, Args)]
pub struct FileArgs {
    /// JSON Lines events files to read as one stream, in the order given (oldest first
    /// after rotation: events.json.2 events.json.1 events.json), or - for stdin.
    #[arg(value_name = "FILE|-", required = true)]
    pub files: Vec<PathBuf>,

    /// Output format.
    #[arg(long, value_name = "FORMAT", default_value = "multiline", ignore_case = true, value_parser = format_parser())]
    pub format: Format,

    #[command(flatten)]
    pub filters: FilterArgs,

    /// What a filter's match keeps, as collect's --follow: `packet` (the default) keeps
    /// every event of a packet (one tracking.skb, no event more than --window after the
    /// one before) one of whose events matched, before or after that one; `conn` also
    /// every event of its connection (tracking.conn), both directions: print and sort
    /// from --window before its first match on, conns the whole connection; `none`
    /// judges every event on its own. --drops and --drop-reason still judge every event.
    #[arg(
        long,
        value_name = "WHAT",
        default_value = "packet",
        ignore_case = true
    )]
    pub follow: Follow,
}

/// Arguments of `ct-cli print`, `sort` and `conns`, which read their files as a stream.
#[derive(Debug, Args)]
pub struct ViewArgs {
    #[command(flatten)]
    pub input: FileArgs,

    /// How long after a packet's last event more of its events may still come. A packet's
    /// events are microseconds apart, so sort writes a packet's group, conns forgets
    /// which packets it counted, and --follow decides an event, once the file's events
    /// are this far past it: memory depends on this window, not on the file size.
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_WINDOW, value_parser = parse_duration)]
    pub window: Duration,

    /// Most packets held open at once. Past it the oldest is taken as complete before its
    /// window has passed, and the command says how often on stderr. Memory is bounded in
    /// events too: at most 4 per open packet (at least 1024) are held, and 1024 for one
    /// packet; past those the oldest packets are written early and events without a
    /// timestamp are written before the end. With --follow, also the most packets and
    /// connections followed at once (the least recently seen connection goes first).
    #[arg(long, value_name = "N", default_value_t = StreamLimits::DEFAULT_MAX_OPEN, value_parser = parse_max_open)]
    pub max_open: usize,
}

/// `--window`'s default, [`StreamLimits::DEFAULT_WINDOW`] as the parser reads it.
const DEFAULT_WINDOW: &str = "100ms";

impl ViewArgs {
    /// The limits of the streaming views.
    pub fn limits(&self) -> StreamLimits {
        StreamLimits::new(self.window, self.max_open)
    }
}

fn parse_max_open(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) | Err(_) => Err(format!(
            "{s:?} is not a number of packets: give a whole number of at least 1"
        )),
        Ok(n) => Ok(n),
    }
}

/// `print` takes exactly what the other file commands take.
pub type PrintArgs = ViewArgs;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_window_is_the_library_default() {
        assert_eq!(
            parse_duration(DEFAULT_WINDOW).unwrap(),
            StreamLimits::DEFAULT_WINDOW
        );
        assert!(parse_max_open("0").is_err());
        assert_eq!(parse_max_open("12").unwrap(), 12);
    }
}
