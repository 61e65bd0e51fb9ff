//! The commands that read an events file: `print` (re-render), `sort` (by packet) and
//! `conns` (by connection). Each reports a malformed line as `line N: ...` and goes on.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use ct_core::{read_events, Event, EventWriter};

use crate::cli::FileArgs;
use crate::exit;

/// The file named on the command line (or stdin), ready to read.
fn open(args: &FileArgs) -> anyhow::Result<(String, Box<dyn BufRead>)> {
    Ok(if args.file == Path::new("-") {
        ("stdin".into(), Box::new(io::stdin().lock()))
    } else {
        let shown = args.file.display();
        let file = File::open(&args.file).with_context(|| format!("cannot open {shown}"))?;
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            anyhow::bail!("{shown} is a directory; give an events file (JSON Lines) or -");
        }
        (shown.to_string(), Box::new(BufReader::new(file)))
    })
}

/// `ct-cli print`: every event that passes the filters, in the chosen format.
pub fn run(args: &FileArgs) -> anyhow::Result<ExitCode> {
    let (name, input) = open(args)?;
    let filter = args.filters.event_filter()?;
    let mut out = EventWriter::new(BufWriter::new(io::stdout().lock()), args.format);
    let (mut bad, mut total) = (0u64, 0u64);
    for item in read_events(input) {
        total += 1;
        let written = match item {
            Ok(event) if !filter.matches(&event) => Ok(()),
            Ok(event) => out.write(&event),
            Err(err) => {
                bad += 1;
                // Keep stdout and stderr in order when both go to one terminal.
                out.flush().map(|()| eprintln!("ct-cli: {name}: {err}"))
            }
        };
        if let Err(e) = written {
            return stdout_failed(e);
        }
    }
    if let Err(e) = out.flush() {
        return stdout_failed(e);
    }
    Ok(bad_lines(&name, bad, total - bad, "printed"))
}

fn bad_lines(name: &str, bad: u64, good: u64, verb: &str) -> ExitCode {
    if bad == 0 {
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "ct-cli: {name}: {bad} bad line{}, {good} events {verb}",
        if bad == 1 { "" } else { "s" },
    );
    ExitCode::from(exit::GENERIC)
}

/// Every event of the file that passes the filters, reporting bad lines on stderr.
fn read_all(args: &FileArgs) -> anyhow::Result<(String, Vec<Event>, u64)> {
    let (name, input) = open(args)?;
    let filter = args.filters.event_filter()?;
    let mut events = Vec::new();
    let mut bad = 0u64;
    for item in read_events(input) {
        match item {
            Ok(event) if filter.matches(&event) => events.push(event),
            Ok(_) => {}
            Err(err) => {
                bad += 1;
                eprintln!("ct-cli: {name}: {err}");
            }
        }
    }
    Ok((name, events, bad))
}

/// `ct-cli sort`: the file's events grouped by packet.
pub fn sort(args: &FileArgs) -> anyhow::Result<ExitCode> {
    let (name, events, bad) = read_all(args)?;
    let groups = ct_core::group_packets(&events);
    if let Err(e) =
        ct_core::write_packets_io(BufWriter::new(io::stdout().lock()), &groups, args.format)
    {
        return stdout_failed(e);
    }
    Ok(bad_lines(&name, bad, events.len() as u64, "sorted"))
}

/// `ct-cli conns`: one entry per connection of the file.
pub fn conns(args: &FileArgs) -> anyhow::Result<ExitCode> {
    let (name, events, bad) = read_all(args)?;
    let conns = ct_core::connections(&events);
    if let Err(e) =
        ct_core::write_conns_io(BufWriter::new(io::stdout().lock()), &conns, args.format)
    {
        return stdout_failed(e);
    }
    Ok(bad_lines(&name, bad, events.len() as u64, "read"))
}

/// A reader that stopped reading (`| head`) is not an error; anything else is.
fn stdout_failed(e: io::Error) -> anyhow::Result<ExitCode> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        return Ok(ExitCode::SUCCESS);
    }
    Err(e).context("writing to stdout failed")
}
