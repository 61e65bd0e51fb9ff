//! The commands that read events files: `print` (re-render), `sort` (by packet) and
//! `conns` (by connection). Each reads its files as one stream in the order given, reports a
//! malformed line as `FILE: line N: ...` and goes on.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use ct_core::{read_events, Event, EventWriter, LineError};

use crate::cli::FileArgs;
use crate::exit;
use crate::filter::FileFilter;

/// Events files named on the command line (or stdin), opened up front so that a missing
/// one is reported before anything is printed.
pub struct Inputs {
    files: Vec<(String, Box<dyn BufRead>)>,
}

impl Inputs {
    pub fn open(paths: &[PathBuf]) -> anyhow::Result<Self> {
        let stdin_count = paths.iter().filter(|p| *p == Path::new("-")).count();
        if stdin_count > 1 {
            bail!("- (stdin) can be read only once; name it once among the files");
        }
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            files.push(if path == Path::new("-") {
                (
                    "stdin".to_owned(),
                    Box::new(io::stdin().lock()) as Box<dyn BufRead>,
                )
            } else {
                let shown = path.display();
                let file = File::open(path).with_context(|| format!("cannot open {shown}"))?;
                if file.metadata().is_ok_and(|m| m.is_dir()) {
                    bail!("{shown} is a directory; give an events file (JSON Lines) or -");
                }
                (
                    shown.to_string(),
                    Box::new(BufReader::new(file)) as Box<dyn BufRead>,
                )
            });
        }
        Ok(Inputs { files })
    }

    /// How the files are named in the closing count of bad lines.
    pub fn name(&self) -> String {
        match &self.files[..] {
            [(name, _)] => name.clone(),
            files => format!("{} files", files.len()),
        }
    }

    /// Every line of every file in order, with the name of its file; stops at the first
    /// error `each` returns.
    pub fn for_each(
        self,
        mut each: impl FnMut(&str, Result<Event, LineError>) -> io::Result<()>,
    ) -> io::Result<()> {
        for (name, input) in self.files {
            for item in read_events(input) {
                each(&name, item)?;
            }
        }
        Ok(())
    }
}

/// `ct-cli print`: every event that passes the filters, in the chosen format.
pub fn run(args: &FileArgs) -> anyhow::Result<ExitCode> {
    let inputs = Inputs::open(&args.files)?;
    let name = inputs.name();
    let mut filter = FileFilter::new(&args.filters);
    let mut out = EventWriter::new(BufWriter::new(io::stdout().lock()), args.format);
    let (mut bad, mut total) = (0u64, 0u64);
    let result = inputs.for_each(|file, item| {
        total += 1;
        match item {
            Ok(event) if !filter.matches(&event) => Ok(()),
            Ok(event) => out.write(&event),
            Err(err) => {
                bad += 1;
                // Keep stdout and stderr in order when both go to one terminal.
                out.flush().map(|()| eprintln!("ct-cli: {file}: {err}"))
            }
        }
    });
    if let Err(e) = result.and_then(|()| out.flush()) {
        return stdout_failed(e);
    }
    report_undecided(&filter)?;
    Ok(bad_lines(&name, bad, total - bad, "printed"))
}

/// Says on stderr how many events `-f` could not decide (no header bytes); an error when
/// it could decide none.
pub fn report_undecided(filter: &FileFilter) -> Result<(), ct_bpf::Error> {
    match filter.undecided() {
        None => Ok(()),
        Some(Ok(note)) => {
            eprintln!("{note}");
            Ok(())
        }
        Some(Err(err)) => Err(err),
    }
}

pub fn bad_lines(name: &str, bad: u64, good: u64, verb: &str) -> ExitCode {
    if bad == 0 {
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "ct-cli: {name}: {bad} bad line{}, {good} events {verb}",
        if bad == 1 { "" } else { "s" },
    );
    ExitCode::from(exit::GENERIC)
}

/// Every event of the files that passes the filters, reporting bad lines on stderr.
fn read_all(args: &FileArgs) -> anyhow::Result<(String, Vec<Event>, u64)> {
    let inputs = Inputs::open(&args.files)?;
    let name = inputs.name();
    let mut filter = FileFilter::new(&args.filters);
    let mut events = Vec::new();
    let mut bad = 0u64;
    inputs
        .for_each(|file, item| {
            match item {
                Ok(event) if filter.matches(&event) => events.push(event),
                Ok(_) => {}
                Err(err) => {
                    bad += 1;
                    eprintln!("ct-cli: {file}: {err}");
                }
            }
            Ok(())
        })
        .context("reading the events failed")?;
    report_undecided(&filter)?;
    Ok((name, events, bad))
}

/// `ct-cli sort`: the files' events grouped by packet.
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

/// `ct-cli conns`: one entry per connection of the files.
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
