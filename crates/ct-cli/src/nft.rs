//! `collect --nft`: starting the nftables trace reader and feeding its steps, joined to
//! the BPF events, into the event stream.

use std::time::Instant;

use anyhow::Context;
use ct_core::filter::PacketFilter;
use ct_core::Event;
use std::sync::Arc;

use ct_nft::{
    mark_rules, Joiner, Marking, NetnsChange, NetnsTracers, NftTracer, Started, TracerCounters,
    TracerCounts, TracerEvent,
};

use crate::cli::CollectArgs;

/// The trace readers: of the --netns namespace, or of every namespace.
enum Tracers {
    One(NftTracer),
    Every(NetnsTracers),
}

impl Tracers {
    fn try_collect(&self) -> Vec<TracerEvent> {
        match self {
            Tracers::One(t) => t.try_iter().collect(),
            Tracers::Every(t) => t.try_iter().collect(),
        }
    }

    fn stop(self) -> Result<Vec<TracerEvent>, ct_nft::NftError> {
        match self {
            Tracers::One(t) => t.stop(),
            Tracers::Every(t) => t.stop(),
        }
    }
}

/// The trace reader and what it has reported.
pub struct NftSide {
    /// `None` once stopped.
    tracer: Option<Tracers>,
    joiner: Joiner,
    /// `-f`, applied to the steps' packets (the trace table marks a superset, or the
    /// user's ruleset whatever it marks).
    filter: Option<PacketFilter>,
    /// Which packets the trace tables mark, in words.
    marked: String,
    pub stats: NftStats,
    /// What the reader refused or skipped; readable after it stopped.
    counters: Arc<TracerCounters>,
}

/// Says on stderr what starting the reader of `place` did.
fn tell_started(started: &Started, place: &str, what: &str) {
    for table in &started.removed_stale {
        eprintln!(
            "ct-cli: removed trace table inet {table} left by a run that was killed, in {place}"
        );
    }
    if let Some(table) = &started.table {
        eprintln!(
            "ct-cli: installed nftables table inet {table} in {place} to mark {what} for \
             tracing; it is removed when ct-cli stops"
        );
    }
}

/// Says on stderr what happened to the tracing of a namespace while collecting.
fn tell_change(netns: u32, change: NetnsChange, what: &str) {
    let place = format!("network namespace {netns}");
    match change {
        NetnsChange::Traced(started) => {
            eprintln!("ct-cli: tracing nftables in {place} (new)");
            tell_started(&started, &place, what);
        }
        NetnsChange::TableInstalled(started) => {
            tell_started(&started, &place, what);
        }
        NetnsChange::Failed(err) => {
            eprintln!("ct-cli: cannot trace nftables in {place}: {err}");
        }
        NetnsChange::Ended(None) => {}
        NetnsChange::Ended(Some(err)) => {
            eprintln!("ct-cli: {place} is gone; ending its nftables trace reader: {err}");
        }
    }
}

/// Counts for the summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct NftStats {
    /// Steps the reader handed over (each is written, or counted in `filtered`).
    pub steps: u64,
    /// Steps left out by `-f`: neither their own packet matched nor were they joined to
    /// the events of a packet that did.
    pub filtered: u64,
    /// Times the kernel dropped trace messages (the socket's buffer was full).
    pub lost: u64,
    pub malformed: u64,
}

impl NftSide {
    /// Starts reading traces when `--nft` was given; says on stderr what is traced and
    /// what was changed.
    pub fn start(args: &CollectArgs) -> anyhow::Result<Option<NftSide>> {
        if !args.nft {
            return Ok(None);
        }
        // The namespace opened when the arguments were read; one given by inode is
        // searched for now, and held open from the search on.
        let found;
        let netns = match &args.netns {
            Some(ns) => match &ns.file {
                Some(file) => Some(&**file),
                None => {
                    found = ct_nft::find_netns(ns.inode)?;
                    Some(&found)
                }
            },
            None => None,
        };
        // The marking rules and the steps' own filter follow the address/port part of -f;
        // an expression beyond it marks and keeps every step.
        let filter = args
            .filters
            .filter
            .as_ref()
            .and_then(|f| f.events.clone().ok());
        let rules = if args.allow_system_changes {
            Some(match &filter {
                Some(f) => {
                    let rules = mark_rules(&f.expr);
                    if rules.is_none() {
                        eprintln!(
                            "ct-cli: the filter '{f}' takes more than {} nftables rules: the \
                             trace table marks every packet and the filter applies to the \
                             reports",
                            ct_nft::MAX_MARK_RULES
                        );
                    }
                    rules
                }
                None => None,
            })
        } else {
            None
        };
        let what = filter.as_ref().map_or("every packet".to_owned(), |f| {
            format!("packets matching '{f}'")
        });
        let tracers = match &args.netns {
            Some(ns) => {
                let marking = rules.map_or(Marking::UserRuleset, Marking::Table);
                let tracer = NftTracer::start(netns, marking)
                    .context("cannot trace nftables verdicts (--nft)")?;
                let place = format!("network namespace {}", ns.spec);
                tell_started(tracer.started(), &place, &what);
                Tracers::One(tracer)
            }
            None => {
                let marking = rules.map_or(Marking::UserRuleset, Marking::TableWithRuleset);
                let tracers = NetnsTracers::start(marking)
                    .context("cannot trace nftables verdicts (--nft)")?;
                let started = tracers.started();
                for (netns, s) in started {
                    tell_started(s, &format!("network namespace {netns}"), &what);
                }
                let with_table = started.iter().filter(|(_, s)| s.table.is_some()).count();
                eprintln!(
                    "ct-cli: tracing nftables in every network namespace: {} now ({} with \
                     a trace table), and those that appear while collecting (give --netns \
                     for one)",
                    started.len(),
                    with_table
                );
                Tracers::Every(tracers)
            }
        };
        if !args.allow_system_changes {
            eprintln!(
                "ct-cli: --nft without --allow-system-changes: verdicts are reported only for \
                 packets the ruleset marks with `meta nftrace set 1`; give \
                 --allow-system-changes to let ct-cli mark them with a temporary table"
            );
        }
        let counters = match &tracers {
            Tracers::One(t) => t.counters(),
            Tracers::Every(t) => t.counters(),
        };
        Ok(Some(NftSide {
            counters,
            tracer: Some(tracers),
            joiner: Joiner::new(),
            filter,
            marked: what,
            stats: NftStats::default(),
        }))
    }

    /// Files a BPF event for joining.
    pub fn observe(&mut self, event: &Event) {
        self.joiner.observe(event, Instant::now());
    }

    /// The steps ready to write now.
    pub fn take(&mut self) -> Vec<Event> {
        let now = Instant::now();
        let mut out = Vec::new();
        let reports: Vec<TracerEvent> = self
            .tracer
            .as_ref()
            .map(Tracers::try_collect)
            .unwrap_or_default();
        for report in reports {
            out.extend(self.report(report, now));
        }
        out.extend(self.joiner.ready(now));
        self.keep(out)
    }

    /// Stops the reader (removing the trace table) and returns every step left.
    pub fn finish(&mut self) -> anyhow::Result<Vec<Event>> {
        let now = Instant::now();
        let Some(tracer) = self.tracer.take() else {
            return Ok(Vec::new());
        };
        let rest = tracer
            .stop()
            .context("stopping the nftables trace reader")?;
        let mut out = Vec::new();
        for report in rest {
            out.extend(self.report(report, now));
        }
        out.extend(self.joiner.finish());
        Ok(self.keep(out))
    }

    fn report(&mut self, report: TracerEvent, now: Instant) -> Vec<Event> {
        match report {
            TracerEvent::Step(step) => {
                self.stats.steps += 1;
                self.joiner.push(*step, now)
            }
            TracerEvent::Lost => {
                self.stats.lost += 1;
                Vec::new()
            }
            TracerEvent::Malformed(err) => {
                self.stats.malformed += 1;
                eprintln!("ct-cli: unreadable nftables trace message skipped: {err}");
                Vec::new()
            }
            TracerEvent::Netns { netns, change } => {
                tell_change(netns, change, &self.marked);
                Vec::new()
            }
            TracerEvent::TooManyNetns(limit) => {
                eprintln!(
                    "ct-cli: more than {limit} network namespaces: the nftables of those \
                     beyond are not traced (until others are gone); give --netns to trace \
                     one"
                );
                Vec::new()
            }
        }
    }

    /// The steps `-f` keeps: those whose packet matches, and those joined to a packet's
    /// events (which the kernel filter selected, whatever the step's own headers show);
    /// the others are counted.
    fn keep(&mut self, mut events: Vec<Event>) -> Vec<Event> {
        let Some(filter) = &self.filter else {
            return events;
        };
        let before = events.len();
        events.retain(|e| e.tracking.is_some() || filter.matches(e.packet.as_ref()));
        self.stats.filtered += (before - events.len()) as u64;
        events
    }

    /// What the reader refused or skipped so far.
    pub fn counts(&self) -> TracerCounts {
        self.counters.snapshot()
    }

    /// Steps written before their wait was over (too many waiting), and packets
    /// forgotten early (too many remembered): the joiner's bounds under a flood.
    pub fn join_overflows(&self) -> (u64, u64) {
        (self.joiner.overflowed(), self.joiner.forgotten_early())
    }

    /// How many steps could not be joined to a packet's BPF events.
    pub fn unjoined(&self) -> u64 {
        self.joiner.unjoined()
    }
}
