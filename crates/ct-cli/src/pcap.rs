//! `ct-cli pcap`: events files collected with `--raw-headers` to a pcapng capture.

use std::io::{self, BufWriter, IsTerminal, Stdout, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use ct_pcapng::{PcapngOptions, PcapngStats, PcapngWriter};

use crate::cli::PcapArgs;
use crate::filter::FileFilter;
use crate::output::{Framing, OutputFile};
use crate::print::{bad_lines, Inputs};

/// Where the capture goes.
enum Sink {
    File(OutputFile),
    Stdout(BufWriter<Stdout>),
}

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Sink::File(f) => f.write(data),
            Sink::Stdout(s) => s.write(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::File(f) => f.flush(),
            Sink::Stdout(s) => s.flush(),
        }
    }
}

/// `shb_userappl` of the captures ct-cli writes.
pub fn application() -> String {
    format!("ct-cli {}", env!("CARGO_PKG_VERSION"))
}

pub fn run(args: &PcapArgs) -> anyhow::Result<ExitCode> {
    let inputs = Inputs::open(&args.files)?;
    let name = inputs.name();
    let mut filter = FileFilter::new(&args.filters);
    let to_stdout = args.out == Path::new("-");
    let sink = if to_stdout {
        if io::stdout().is_terminal() {
            bail!(
                "a pcapng capture is binary: not written to a terminal; give -o FILE.pcapng, \
                 or pipe it (-o - | tshark -r -)"
            );
        }
        Sink::Stdout(BufWriter::new(io::stdout()))
    } else {
        let mut file = OutputFile::create(&args.out, args.force)?.with_framing(Framing::Writes);
        file.start()?;
        Sink::File(file)
    };
    let shown = if to_stdout {
        "stdout".to_owned()
    } else {
        args.out.display().to_string()
    };
    let options = PcapngOptions {
        application: Some(application()),
        // Files hold time since boot, and no wall-clock time to add to it.
        clock_offset_ns: 0,
    };
    let mut writer =
        PcapngWriter::new(sink, options).with_context(|| format!("writing {shown} failed"))?;
    let (mut bad, mut read) = (0u64, 0u64);
    let result = inputs.for_each(|file, item| match item {
        Ok(event) => {
            read += 1;
            if filter.matches(&event) {
                writer.write(&event)?;
            }
            Ok(())
        }
        Err(err) => {
            bad += 1;
            eprintln!("ct-cli: {file}: {err}");
            Ok(())
        }
    });
    result
        .and_then(|()| writer.flush())
        .with_context(|| match writer.get_ref() {
            Sink::File(f) => format!(
                "writing {shown} failed; it keeps the {} complete blocks written before",
                f.lines()
            ),
            Sink::Stdout(_) => "writing to stdout failed".to_owned(),
        })?;
    let stats = writer.stats();
    if stats.packets == 0 && stats.no_header_bytes > 0 {
        if let Sink::File(file) = writer.into_inner() {
            file.abandon();
        }
        bail!(
            "{name}: none of its {} events with an IP header carries the header bytes a capture \
             is made of: collect with --raw-headers (or write the capture while collecting, \
             with -w)",
            stats.no_header_bytes
        );
    }
    crate::print::report_undecided(&filter)?;
    eprintln!("ct-cli: {}", summary(stats, &shown));
    Ok(bad_lines(&name, bad, read, "read"))
}

/// `12 packets written to x.pcapng (4 events not written: 3 without an IP header, 1 without
/// header bytes)`, each reason only when it counts something.
pub fn summary(stats: PcapngStats, shown: &str) -> String {
    let mut line = format!(
        "{} packet{} written to {shown}",
        stats.packets,
        if stats.packets == 1 { "" } else { "s" }
    );
    let mut reasons = Vec::new();
    if stats.no_ip_header > 0 {
        reasons.push(format!("{} without an IP header", stats.no_ip_header));
    }
    if stats.no_header_bytes > 0 {
        reasons.push(format!("{} without header bytes", stats.no_header_bytes));
    }
    if !reasons.is_empty() {
        let skipped = stats.skipped();
        let events = if skipped == 1 { "event" } else { "events" };
        line.push_str(&format!(
            " ({skipped} {events} not written: {})",
            reasons.join(", ")
        ));
    }
    line
}
