//! The commands that read events files: `print` (re-render), `sort` (by packet) and
//! `conns` (by connection). Each reads its files as one stream in the order given, reports a
//! malformed line as `FILE: line N: ...` and goes on.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use ct_core::filter::Follow;
use ct_core::{
    read_events, write_packet_io, ConnFolder, Event, EventWriter, FollowSelector, FollowStats,
    LineError, PacketGroup, PacketSorter, StreamStats,
};

use crate::cli::{PrintArgs, ViewArgs};
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

/// `ct-cli print`: every event kept by the filters and --follow, in the chosen format.
pub fn run(args: &PrintArgs) -> anyhow::Result<ExitCode> {
    let mut out = EventWriter::new(BufWriter::new(io::stdout().lock()), args.input.format);
    let read = read_judged(args, &mut out, |out, event, keep| {
        if keep {
            out.write(&event)?;
        }
        Ok(())
    })?;
    let (name, bad, good, stats) = match read.and_then(|read| out.flush().map(|()| read)) {
        Ok(read) => read,
        Err(e) => return stdout_failed(e),
    };
    report_follow("print", stats, args);
    Ok(bad_lines(&name, bad, good, "printed"))
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

/// Reads the files of a view: each event is judged by the filters and `--follow`, and
/// goes to `each` with its verdict, in input order; bad lines are reported on stderr (after
/// flushing `out`, to keep the two in order on a terminal). Returns the input's name, the
/// counts of bad and good lines and what following did; an error is `each`'s (writing
/// the output).
fn read_judged<W: Flush>(
    args: &ViewArgs,
    out: &mut W,
    mut each: impl FnMut(&mut W, Event, bool) -> io::Result<()>,
) -> anyhow::Result<io::Result<(String, u64, u64, FollowStats)>> {
    let inputs = Inputs::open(&args.input.files)?;
    let name = inputs.name();
    let mut filter = FileFilter::new(&args.input.filters);
    // Without a packet or conntrack filter every event in scope is kept: nothing to
    // follow, nothing to hold.
    let follow = if filter.selects_all() {
        Follow::None
    } else {
        args.input.follow
    };
    let mut selector = FollowSelector::new(follow, args.limits());
    let (mut bad, mut good) = (0u64, 0u64);
    let result = inputs.for_each(|file, item| match item {
        // --drops and --drop-reason say what kind of event, not which packet: judged on
        // every event, as collect judges them on every hit.
        Ok(event) if !filter.in_scope(&event) => {
            good += 1;
            Ok(())
        }
        Ok(event) => {
            good += 1;
            let selected = filter.selects(&event);
            selector.push(event, selected, &mut |e, keep| each(out, e, keep))
        }
        Err(err) => {
            bad += 1;
            out.flush_output()
                .map(|()| eprintln!("ct-cli: {file}: {err}"))
        }
    });
    report_undecided(&filter)?;
    Ok(result
        .and_then(|()| selector.finish(&mut |e, keep| each(out, e, keep)))
        .map(|stats| (name, bad, good, stats)))
}

/// An output that can be flushed: a writer, or an [`EventWriter`] over one.
trait Flush {
    fn flush_output(&mut self) -> io::Result<()>;
}

impl<W: Write> Flush for BufWriter<W> {
    fn flush_output(&mut self) -> io::Result<()> {
        self.flush()
    }
}

impl<W: Write> Flush for EventWriter<W> {
    fn flush_output(&mut self) -> io::Result<()> {
        self.flush()
    }
}

/// Says on stderr what the bounds did to --follow, when they may have changed the output.
fn report_follow(view: &str, stats: FollowStats, args: &ViewArgs) {
    let plural = |n: u64| if n == 1 { "" } else { "s" };
    if stats.decided_early > 0 {
        eprintln!(
            "ct-cli: {view}: --follow: {} event{} left out before --window {:?} had passed, \
             to hold at most {} events (a later match of their packet could not keep them); \
             raise --max-open",
            stats.decided_early,
            plural(stats.decided_early),
            args.window,
            args.limits().max_events,
        );
    }
    let forgotten = stats.packets_forgotten + stats.conns_forgotten;
    if forgotten > 0 {
        eprintln!(
            "ct-cli: {view}: --follow: {} packet{} and {} connection{} followed were \
             forgotten to follow at most --max-open {} of each (their later events were \
             judged on their own); raise --max-open",
            stats.packets_forgotten,
            plural(stats.packets_forgotten),
            stats.conns_forgotten,
            plural(stats.conns_forgotten),
            args.max_open,
        );
    }
    if stats.late > 0 {
        eprintln!(
            "ct-cli: {view}: --follow: {} event{} came more than --window {:?} after newer \
             ones (a match of their packet may not have reached them); raise --window",
            stats.late,
            plural(stats.late),
            args.window,
        );
    }
}

/// Says on stderr what the bounds of a streaming view did, when they may have changed its
/// output.
fn report_bounds(view: &str, stats: StreamStats, args: &ViewArgs) {
    let plural = |n: u64| if n == 1 { "" } else { "s" };
    if stats.forced > 0 {
        let limits = args.limits();
        eprintln!(
            "ct-cli: {view}: {} time{} a packet was taken as complete before --window {:?} had \
             passed, to hold at most --max-open {} packets, {} events in all and {} for one \
             packet (a later event of it would be shown apart); raise --max-open",
            stats.forced,
            plural(stats.forced),
            args.window,
            args.max_open,
            limits.max_events,
            limits.max_packet_events,
        );
    }
    if stats.untimed_early > 0 {
        eprintln!(
            "ct-cli: {view}: {} event{} without a timestamp were written before the end (not \
             joined to their packets) to keep at most {} events in memory; raise --max-open",
            stats.untimed_early,
            plural(stats.untimed_early),
            args.limits().max_events,
        );
    }
    if stats.late > 0 {
        eprintln!(
            "ct-cli: {view}: {} event{} came more than --window {:?} after newer ones and may \
             be out of place; raise --window",
            stats.late,
            plural(stats.late),
            args.window,
        );
    }
}

/// `ct-cli sort`: the files' events grouped by packet, each group written once no more
/// events can join it.
pub fn sort(args: &ViewArgs) -> anyhow::Result<ExitCode> {
    let format = args.input.format;
    let mut sorter = PacketSorter::new(args.limits());
    let mut written = 0u64;
    let mut write = |out: &mut BufWriter<io::StdoutLock<'static>>, group: &PacketGroup<'_>| {
        write_packet_io(out, group, written, format)?;
        written += 1;
        Ok(())
    };
    let mut out = BufWriter::new(io::stdout().lock());
    let read = read_judged(args, &mut out, |out, event, keep| {
        if !keep {
            return Ok(());
        }
        sorter.push(event, &mut |group| write(out, group))
    })?;
    let finished = read.and_then(|counts| {
        let stats = sorter.finish(&mut |group| write(&mut out, group))?;
        out.flush()?;
        Ok((counts, stats))
    });
    let ((name, bad, _, follow), stats) = match finished {
        Ok(done) => done,
        Err(e) => return stdout_failed(e),
    };
    report_follow("sort", follow, args);
    report_bounds("sort", stats, args);
    Ok(bad_lines(&name, bad, follow.kept, "sorted"))
}

/// `ct-cli conns`: one entry per connection of the files, folded as the events are read.
pub fn conns(args: &ViewArgs) -> anyhow::Result<ExitCode> {
    // --follow conn keeps a connection whole: every event of it is folded.
    let mut folder = if args.input.follow == Follow::Conn {
        ConnFolder::whole_connections(args.limits())
    } else {
        ConnFolder::new(args.limits())
    };
    let mut out = BufWriter::new(io::stdout().lock());
    let read = read_judged(args, &mut out, |_, event, keep| {
        folder.push_judged(&event, keep);
        Ok(())
    })?;
    let (name, bad, _, follow) = match read {
        Ok(counts) => counts,
        Err(e) => return stdout_failed(e),
    };
    let (conns, stats) = folder.finish();
    if let Err(e) = ct_core::write_conns_io(out, &conns, args.input.format) {
        return stdout_failed(e);
    }
    report_follow("conns", follow, args);
    report_bounds("conns", stats, args);
    Ok(bad_lines(&name, bad, follow.kept, "read"))
}

/// A reader that stopped reading (`| head`) is not an error; anything else is.
fn stdout_failed(e: io::Error) -> anyhow::Result<ExitCode> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        return Ok(ExitCode::SUCCESS);
    }
    Err(e).context("writing to stdout failed")
}
