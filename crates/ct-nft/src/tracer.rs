//! The trace reader: a thread in the traced network namespace that owns the netlink
//! socket and the trace table, and hands trace steps to the caller ([`NftTracer`] for one
//! namespace; [`NetnsTracers`](crate::NetnsTracers) runs one per namespace).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ct_bpf::NetnsFile;
use ct_core::NftTraceKind;

use crate::counts::TracerCounters;
use crate::devices::DeviceNames;
use crate::hook_packet::HookPackets;
use crate::mark::Conjunction;
use crate::message::{parse_datagram, MessageError, TraceMessage};
use crate::nft_program::NftProgram;
use crate::rules::RuleTexts;
use crate::socket::{enter_netns, monotonic_ns, Received, TraceSocket, NFNLGRP_NFTABLES};
use crate::step::TraceStep;
use crate::table::{has_ruleset, remove_stale_tables, TraceTable};
use crate::NftError;

/// How long one read of the socket waits before the thread looks at its stop flag.
const READ_TIMEOUT: Duration = Duration::from_millis(100);
/// Largest datagram: the kernel sends one trace message per datagram, well under a page.
const DATAGRAM_BYTES: usize = 64 << 10;
/// Steps queued between the thread and the caller.
pub const QUEUE_STEPS: usize = 65536;
/// Once stopping, how long the thread still tries to hand over steps (those the kernel had
/// sent before the table went) to a caller whose queue is full: past that, it counts them
/// and ends, so that stopping always returns.
const HAND_OVER_AFTER_STOP: Duration = Duration::from_secs(2);
/// How long the thread naps when the queue is full.
const FULL_QUEUE_NAP: Duration = Duration::from_millis(1);
/// How often a namespace awaiting its ruleset looks at the ruleset changes announced.
const RULESET_LOOK_EVERY: Duration = Duration::from_millis(50);
/// Most ruleset-change datagrams read in one look (a large ruleset loads in many).
const MAX_CHANGES_READ: usize = 256;

/// Which packets carry the `nftrace` mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marking {
    /// Only those the user's ruleset marks (`meta nftrace set 1`): nothing is changed.
    UserRuleset,
    /// A temporary trace table marks the packets matching any of the rules (every packet
    /// with `None`).
    Table(Option<Vec<Conjunction>>),
    /// The same table, only in a namespace that has an nftables ruleset (a table other
    /// than a trace table): installed at start when it has one, else as soon as one
    /// appears (the reader watches the namespace's ruleset changes). Without a ruleset
    /// nftables decides nothing there, and the namespace is left as it is.
    TableWithRuleset(Option<Vec<Conjunction>>),
}

/// What the reader reports.
#[derive(Debug)]
pub enum TracerEvent {
    /// A step of a traced packet.
    Step(Box<TraceStep>),
    /// A message that could not be read.
    Malformed(MessageError),
    /// The kernel dropped messages: the socket's receive buffer was full.
    Lost,
    /// Something happened to the tracing of one network namespace (its inode).
    Netns { netns: u32, change: NetnsChange },
    /// More network namespaces exist than [`NetnsTracers`](crate::NetnsTracers) traces
    /// (this many); those found beyond are not traced. Reported once.
    TooManyNetns(usize),
}

/// What happened to the tracing of a network namespace.
#[derive(Debug)]
pub enum NetnsChange {
    /// A namespace found while running is traced from now on.
    Traced(Started),
    /// Its ruleset appeared ([`Marking::TableWithRuleset`]) and the trace table was
    /// installed (`table`, `table_owned`).
    TableInstalled(Started),
    /// It could not be traced (or its table could not be installed).
    Failed(NftError),
    /// It is gone (no process or name holds it any more): its reader ended, with the
    /// error of removing its table if that failed.
    Ended(Option<NftError>),
}

/// What starting did, for the caller to tell the user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Started {
    /// The trace table installed, if any.
    pub table: Option<String>,
    /// Whether the table is an owner table: gone with this process however it ends
    /// (Linux 5.12+); otherwise a run killed before it could remove the table leaves it to
    /// the next run.
    pub table_owned: bool,
    /// Trace tables of killed runs that were removed.
    pub removed_stale: Vec<String>,
}

/// Reads nftables traces in one network namespace; see the crate documentation.
#[derive(Debug)]
pub struct NftTracer {
    events: Receiver<TracerEvent>,
    reader: ReaderThread,
    started: Started,
    shared: Shared,
}

impl NftTracer {
    /// Starts reading traces in the open network namespace `netns` (the caller's when
    /// `None`), marking packets as `marking` says. Returns once the socket listens and
    /// the table (if any) is in place, so that no traced packet is missed after that.
    pub fn start(netns: Option<&NetnsFile>, marking: Marking) -> Result<NftTracer, NftError> {
        Self::start_with_queue(netns, marking, QUEUE_STEPS)
    }

    /// [`start`](Self::start) with room for `queue_steps` reports between the thread and
    /// the caller ([`QUEUE_STEPS`] there).
    pub fn start_with_queue(
        netns: Option<&NetnsFile>,
        marking: Marking,
        queue_steps: usize,
    ) -> Result<NftTracer, NftError> {
        let ns = netns.map(clone_netns).transpose()?;
        let (queue, events) = mpsc::sync_channel(queue_steps.max(1));
        let shared = Shared::new(queue);
        let (reader, ready) = ReaderThread::spawn(ns, marking, &shared)?;
        let started = ready.recv().map_err(|_| NftError::ThreadGone)??;
        Ok(NftTracer {
            events,
            reader,
            started,
            shared,
        })
    }

    /// What the reader refused or skipped (messages not from the kernel, rule texts not
    /// looked up); valid after [`stop`](Self::stop) too.
    pub fn counters(&self) -> Arc<TracerCounters> {
        Arc::clone(&self.shared.counters)
    }

    /// What starting did.
    pub fn started(&self) -> &Started {
        &self.started
    }

    /// The inode of the traced network namespace.
    pub fn netns(&self) -> u32 {
        self.reader.netns
    }

    /// The next report, waiting at most `timeout`; `Ok(None)` when none came.
    pub fn recv(&self, timeout: Duration) -> Result<Option<TracerEvent>, NftError> {
        recv_report(&self.events, timeout)
    }

    /// Every report queued now.
    pub fn try_iter(&self) -> impl Iterator<Item = TracerEvent> + '_ {
        self.events.try_iter()
    }

    /// Stops reading and removes the trace table; the reports still queued are returned,
    /// and one [`TracerEvent::Lost`] for each step the thread could not hand over in time
    /// while stopping. Returns even when nobody read the queue: it is emptied while the
    /// thread ends.
    pub fn stop(mut self) -> Result<Vec<TracerEvent>, NftError> {
        let mut rest = Vec::new();
        let result = self.end_thread(|event| rest.push(event));
        rest.extend(self.shared.undelivered_as_lost());
        result.map(|()| rest)
    }

    /// Asks the thread to stop (it removes the table first) and waits for it, emptying the
    /// queue meanwhile so that the thread never waits on a full one.
    fn end_thread(&mut self, mut keep: impl FnMut(TracerEvent)) -> Result<(), NftError> {
        self.reader.ask_stop();
        let events = &self.events;
        let result = self.reader.join(|| {
            if let Ok(event) = events.recv_timeout(Duration::from_millis(10)) {
                keep(event);
            }
        });
        self.events.try_iter().for_each(keep);
        result
    }
}

impl Drop for NftTracer {
    fn drop(&mut self) {
        let _ = self.end_thread(drop);
    }
}

/// What the readers of one tracer share: their queue to the caller and their counts.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub(crate) queue: SyncSender<TracerEvent>,
    pub(crate) counters: Arc<TracerCounters>,
    /// Steps the threads could not hand over once stopping (the queue stayed full).
    pub(crate) undelivered: Arc<AtomicU64>,
}

impl Shared {
    pub(crate) fn new(queue: SyncSender<TracerEvent>) -> Self {
        Shared {
            queue,
            counters: Arc::new(TracerCounters::default()),
            undelivered: Arc::new(AtomicU64::new(0)),
        }
    }

    /// One [`TracerEvent::Lost`] per step not handed over.
    pub(crate) fn undelivered_as_lost(&self) -> impl Iterator<Item = TracerEvent> {
        (0..self.undelivered.load(Ordering::Relaxed)).map(|_| TracerEvent::Lost)
    }
}

/// A second descriptor of `ns`, for the reader thread to keep.
pub(crate) fn clone_netns(ns: &NetnsFile) -> Result<NetnsFile, NftError> {
    ns.try_clone().map_err(|source| NftError::Netns {
        path: ns.path().to_owned(),
        source,
    })
}

/// The thread of one namespace's reader.
#[derive(Debug)]
pub(crate) struct ReaderThread {
    /// The inode of its namespace.
    pub(crate) netns: u32,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), NftError>>>,
}

impl ReaderThread {
    /// Starts the thread in `ns` (the caller's namespace when `None`); the receiver says
    /// when it listens and its table (if any) is in place, or why it could not start.
    pub(crate) fn spawn(
        ns: Option<NetnsFile>,
        marking: Marking,
        shared: &Shared,
    ) -> Result<(ReaderThread, Receiver<Result<Started, NftError>>), NftError> {
        let netns = match &ns {
            Some(ns) => ns.inode(),
            None => own_netns_inode()?,
        };
        let counters = Arc::clone(&shared.counters);
        let (ready_tx, ready_rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let out = Outbox {
            queue: shared.queue.clone(),
            stop: Arc::clone(&stop),
            stopping_since: None,
            undelivered: Arc::clone(&shared.undelivered),
        };
        let thread = std::thread::Builder::new()
            .name("ct-nft".into())
            .spawn(move || {
                let reader = match Reader::start(ns, netns, marking, counters) {
                    Ok((reader, started)) => {
                        let _ = ready_tx.send(Ok(started));
                        reader
                    }
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                        return Ok(());
                    }
                };
                reader.run(out)
            })
            .map_err(|_| NftError::ThreadGone)?;
        Ok((
            ReaderThread {
                netns,
                stop,
                thread: Some(thread),
            },
            ready_rx,
        ))
    }

    /// Asks the thread to stop: it removes its table, hands over what the kernel had
    /// sent, and ends.
    pub(crate) fn ask_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Waits for the thread to end (asked to stop first), calling `wait` meanwhile (which
    /// should wait a little, e.g. while emptying the queue).
    pub(crate) fn join(&mut self, mut wait: impl FnMut()) -> Result<(), NftError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        while !thread.is_finished() {
            wait();
        }
        thread.join().map_err(|_| NftError::ThreadGone)?
    }
}

/// The inode of the calling thread's network namespace.
fn own_netns_inode() -> Result<u32, NftError> {
    let path = std::path::Path::new("/proc/thread-self/ns/net");
    NetnsFile::open(path)
        .map(|ns| ns.inode())
        .map_err(|err| NftError::Netns {
            path: path.to_owned(),
            source: std::io::Error::other(err.to_string()),
        })
}

/// The thread's end of the queue.
struct Outbox {
    queue: SyncSender<TracerEvent>,
    stop: Arc<AtomicBool>,
    /// When the thread saw the stop flag.
    stopping_since: Option<Instant>,
    undelivered: Arc<AtomicU64>,
}

impl Outbox {
    fn stopping(&mut self) -> bool {
        if self.stopping_since.is_none() && self.stop.load(Ordering::Relaxed) {
            self.stopping_since = Some(Instant::now());
        }
        self.stopping_since.is_some()
    }

    /// Hands `event` over; while the queue is full, waits for the caller, but once
    /// stopping only for [`HAND_OVER_AFTER_STOP`] (then counts it as undelivered).
    fn send(&mut self, mut event: TracerEvent) {
        loop {
            match self.queue.try_send(event) {
                Ok(()) => return,
                Err(TrySendError::Full(back)) => event = back,
                // The caller is gone: nobody wants more.
                Err(TrySendError::Disconnected(_)) => {
                    self.stop.store(true, Ordering::Relaxed);
                    return;
                }
            }
            if self.stopping()
                && self
                    .stopping_since
                    .is_some_and(|since| since.elapsed() >= HAND_OVER_AFTER_STOP)
            {
                self.undelivered.fetch_add(1, Ordering::Relaxed);
                return;
            }
            std::thread::sleep(FULL_QUEUE_NAP);
        }
    }
}

/// The thread's state, in the traced namespace.
struct Reader {
    socket: TraceSocket,
    /// The namespace's inode, which its steps carry.
    netns: u32,
    table: Option<TraceTable>,
    /// The trace table's name, kept after it is removed to recognise its last steps.
    own_table: Option<String>,
    /// The table to install once the namespace has a ruleset.
    awaited: Option<AwaitedRuleset>,
    rules: RuleTexts,
    counters: Arc<TracerCounters>,
    /// The rule-text look-up counts already added to `counters`.
    published: (u64, u64),
    /// The packet of each hook evaluation, for its steps sent without it.
    hooks: HookPackets,
    /// Device names in this namespace.
    devices: DeviceNames,
}

/// A namespace without a ruleset, watched for one ([`Marking::TableWithRuleset`]).
struct AwaitedRuleset {
    /// Member of the ruleset-change group: any message means the ruleset changed.
    changes: TraceSocket,
    rules: Option<Vec<Conjunction>>,
    /// When the changes were last looked at.
    looked: Instant,
}

impl Reader {
    fn start(
        ns: Option<NetnsFile>,
        netns: u32,
        marking: Marking,
        counters: Arc<TracerCounters>,
    ) -> Result<(Reader, Started), NftError> {
        if let Some(ns) = &ns {
            enter_netns(ns.file()).map_err(|source| NftError::Netns {
                path: ns.path().to_owned(),
                source,
            })?;
        }
        let socket = TraceSocket::open(READ_TIMEOUT).map_err(NftError::Listen)?;
        let mut started = Started::default();
        let mut awaited = None;
        let table = match marking {
            Marking::UserRuleset => None,
            Marking::Table(rules) => {
                started.removed_stale = remove_stale_tables()?;
                Some(TraceTable::install(rules.as_deref())?)
            }
            Marking::TableWithRuleset(rules) => {
                started.removed_stale = remove_stale_tables()?;
                // Watching before looking: a ruleset loaded in between is not missed.
                let changes = TraceSocket::open_group(NFNLGRP_NFTABLES, Duration::ZERO)
                    .map_err(NftError::Listen)?;
                if has_ruleset(&system_nft()?)? {
                    Some(TraceTable::install(rules.as_deref())?)
                } else {
                    awaited = Some(AwaitedRuleset {
                        changes,
                        rules,
                        looked: Instant::now(),
                    });
                    None
                }
            }
        };
        if let Some(table) = &table {
            started.table = Some(table.name().to_owned());
            started.table_owned = table.is_owned();
        }
        Ok((
            Reader {
                socket,
                netns,
                own_table: table.as_ref().map(|t| t.name().to_owned()),
                table,
                awaited,
                rules: RuleTexts::default(),
                counters,
                published: (0, 0),
                hooks: HookPackets::default(),
                devices: DeviceNames::default(),
            },
            started,
        ))
    }

    fn run(mut self, mut out: Outbox) -> Result<(), NftError> {
        let mut buf = vec![0u8; DATAGRAM_BYTES];
        let mut result = Ok(());
        while !out.stopping() {
            match self.socket.recv(&mut buf) {
                Ok(Some(received)) => self.receive(received, &buf, &mut out),
                Ok(None) => {}
                Err(err) if err.raw_os_error() == Some(libc::ENOBUFS) => {
                    out.send(TracerEvent::Lost);
                }
                Err(err) => {
                    result = Err(NftError::Receive(err));
                    break;
                }
            }
            self.install_if_ruleset_came(&mut buf, &mut out);
        }
        // First of all, no more packets marked from here; what the kernel already sent is
        // still read, so that stopping loses nothing, for a bounded time (the user's own
        // ruleset may go on marking).
        let removed = self.table.take().map_or(Ok(()), TraceTable::remove);
        let until = Instant::now() + HAND_OVER_AFTER_STOP;
        while Instant::now() < until {
            match self.socket.recv_queued(&mut buf) {
                Ok(Some(received)) => self.receive(received, &buf, &mut out),
                Err(err) if err.raw_os_error() == Some(libc::ENOBUFS) => {
                    out.send(TracerEvent::Lost);
                }
                Ok(None) | Err(_) => break,
            }
        }
        removed.and(result)
    }

    /// In a namespace awaiting its ruleset: when the ruleset changed (looked at every
    /// [`RULESET_LOOK_EVERY`]), installs the table if there is a ruleset now.
    fn install_if_ruleset_came(&mut self, buf: &mut [u8], out: &mut Outbox) {
        let Some(awaited) = &mut self.awaited else {
            return;
        };
        if awaited.looked.elapsed() < RULESET_LOOK_EVERY {
            return;
        }
        awaited.looked = Instant::now();
        let mut changed = false;
        for _ in 0..MAX_CHANGES_READ {
            match awaited.changes.recv_queued(buf) {
                Ok(Some(Received::Kernel(_))) => changed = true,
                Ok(Some(Received::NotFromKernel(_))) => {}
                // Changes were lost: the ruleset may have changed.
                Err(err) if err.raw_os_error() == Some(libc::ENOBUFS) => changed = true,
                Ok(None) | Err(_) => break,
            }
        }
        if !changed {
            return;
        }
        let installed = system_nft()
            .and_then(|nft| has_ruleset(&nft))
            .and_then(|has| {
                has.then(|| TraceTable::install(awaited.rules.as_deref()))
                    .transpose()
            });
        let change = match installed {
            Ok(None) => return,
            Ok(Some(table)) => {
                let started = Started {
                    table: Some(table.name().to_owned()),
                    table_owned: table.is_owned(),
                    removed_stale: Vec::new(),
                };
                self.own_table = started.table.clone();
                self.table = Some(table);
                NetnsChange::TableInstalled(started)
            }
            Err(err) => NetnsChange::Failed(err),
        };
        // Installed, or failing (then not tried again and again): no more watching.
        self.awaited = None;
        out.send(TracerEvent::Netns {
            netns: self.netns,
            change,
        });
    }

    /// Reads a datagram the kernel sent; counts and drops any other.
    fn receive(&mut self, received: Received, buf: &[u8], out: &mut Outbox) {
        match received {
            Received::Kernel(n) => self.deliver(&buf[..n.min(buf.len())], out),
            Received::NotFromKernel(_) => self.counters.count_not_from_kernel(),
        }
    }

    /// Hands the trace messages of one datagram to the caller.
    fn deliver(&mut self, datagram: &[u8], out: &mut Outbox) {
        let received_ns = monotonic_ns();
        for message in parse_datagram(datagram) {
            let event = match message {
                Ok(mut message) => {
                    // Before the trace table's own steps are left out: its step is often
                    // the one that carries the evaluation's packet.
                    self.hooks.fill(&mut message);
                    if !self.reports(&message) {
                        continue;
                    }
                    let rule = message.handle.and_then(|handle| {
                        self.rules
                            .get(message.family, &message.table, &message.chain, handle)
                    });
                    self.publish_lookups();
                    let mut step = TraceStep::new(message, rule, received_ns).in_netns(self.netns);
                    step.name_devices(&mut self.devices, Instant::now());
                    TracerEvent::Step(Box::new(step))
                }
                Err(err) => TracerEvent::Malformed(err),
            };
            out.send(event);
        }
    }

    /// Adds the rule-text look-ups skipped since last time to the shared counters.
    fn publish_lookups(&mut self) {
        let (refused, limited) = self.rules.skipped();
        let (was_refused, was_limited) = self.published;
        self.counters
            .add_lookups(refused - was_refused, limited - was_limited);
        self.published = (refused, limited);
    }

    /// Whether a step is reported: every step of the traced rulesets (a rule that matched
    /// and went on, `continue`, too, as `nft monitor trace` shows it), but not the trace
    /// table's own (marking is ct-cli's doing, not the ruleset's), nor a chain's end
    /// (a rule step without a rule: counted, see [`TracerCounts::chain_ends`]).
    ///
    /// [`TracerCounts::chain_ends`]: crate::TracerCounts::chain_ends
    fn reports(&self, m: &TraceMessage) -> bool {
        if self.own_table.as_deref() == Some(&*m.table) {
            return false;
        }
        if m.kind == NftTraceKind::Rule && m.handle.is_none() {
            self.counters.count_chain_end();
            return false;
        }
        true
    }
}

/// The system's `nft`, for the checks the reader makes itself.
fn system_nft() -> Result<NftProgram, NftError> {
    NftProgram::system().map_err(|err| NftError::List(err.to_string()))
}

/// The next report on `events`, waiting at most `timeout`; `Ok(None)` when none came.
pub(crate) fn recv_report(
    events: &Receiver<TracerEvent>,
    timeout: Duration,
) -> Result<Option<TracerEvent>, NftError> {
    match events.recv_timeout(timeout) {
        Ok(event) => Ok(Some(event)),
        Err(RecvTimeoutError::Timeout) => Ok(None),
        Err(RecvTimeoutError::Disconnected) => Err(NftError::ThreadGone),
    }
}
