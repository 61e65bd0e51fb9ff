//! `ct-cli print`: re-render a JSON Lines events file.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use ct_core::{read_events, EventWriter};

use crate::cli::PrintArgs;
use crate::exit;

pub fn run(args: &PrintArgs) -> anyhow::Result<ExitCode> {
    let (name, input): (String, Box<dyn BufRead>) = if args.file == Path::new("-") {
        ("stdin".into(), Box::new(io::stdin().lock()))
    } else {
        let shown = args.file.display();
        let file = File::open(&args.file).with_context(|| format!("cannot open {shown}"))?;
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            anyhow::bail!("{shown} is a directory; give an events file (JSON Lines) or -");
        }
        (shown.to_string(), Box::new(BufReader::new(file)))
    };

    let mut out = EventWriter::new(BufWriter::new(io::stdout().lock()), args.format);
    let (mut bad, mut total) = (0u64, 0u64);
    for item in read_events(input) {
        total += 1;
        let written = match item {
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
    if bad > 0 {
        eprintln!(
            "ct-cli: {name}: {bad} bad line{}, {} events printed",
            if bad == 1 { "" } else { "s" },
            total - bad
        );
        return Ok(ExitCode::from(exit::GENERIC));
    }
    Ok(ExitCode::SUCCESS)
}

/// A reader that stopped reading (`| head`) is not an error; anything else is.
fn stdout_failed(e: io::Error) -> anyhow::Result<ExitCode> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        return Ok(ExitCode::SUCCESS);
    }
    Err(e).context("writing to stdout failed")
}
