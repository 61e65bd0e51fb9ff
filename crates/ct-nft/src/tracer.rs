//! The trace reader: a thread in the traced network namespace that owns the netlink
//! socket and the trace table, and hands trace steps to the caller.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use ct_bpf::NetnsFile;
use ct_core::{NftTraceKind, NftVerdict};

use crate::counts::TracerCounters;
use crate::mark::Conjunction;
use crate::message::{parse_datagram, MessageError};
use crate::rules::RuleTexts;
use crate::socket::{enter_netns, monotonic_ns, Received, TraceSocket};
use crate::step::TraceStep;
use crate::table::{remove_stale_tables, TraceTable};
use crate::NftError;

/// How long one read of the socket waits before the thread looks at its stop flag.
const READ_TIMEOUT: Duration = Duration::from_millis(100);
/// Largest datagram: the kernel sends one trace message per datagram, well under a page.
const DATAGRAM_BYTES: usize = 64 << 10;
/// Steps queued between the thread and the caller.
const QUEUE_STEPS: usize = 65536;

/// Which packets carry the `nftrace` mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marking {
    /// Only those the user's ruleset marks (`meta nftrace set 1`): nothing is changed.
    UserRuleset,
    /// A temporary trace table marks the packets matching any of the rules (every packet
    /// with `None`).
    Table(Option<Vec<Conjunction>>),
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
}

/// What starting did, for the caller to tell the user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Started {
    /// The trace table installed, if any.
    pub table: Option<String>,
    /// Trace tables of killed runs that were removed.
    pub removed_stale: Vec<String>,
}

/// Reads nftables traces in one network namespace; see the crate documentation.
#[derive(Debug)]
pub struct NftTracer {
    events: Receiver<TracerEvent>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), NftError>>>,
    started: Started,
    counters: Arc<TracerCounters>,
}

impl NftTracer {
    /// Starts reading traces in the open network namespace `netns` (the caller's when
    /// `None`), marking packets as `marking` says. Returns once the socket listens and
    /// the table (if any) is in place, so that no traced packet is missed after that.
    pub fn start(netns: Option<&NetnsFile>, marking: Marking) -> Result<NftTracer, NftError> {
        let ns = netns
            .map(|ns| {
                ns.try_clone().map_err(|source| NftError::Netns {
                    path: ns.path().to_owned(),
                    source,
                })
            })
            .transpose()?;
        let counters = Arc::new(TracerCounters::default());
        let thread_counters = Arc::clone(&counters);
        let (ready_tx, ready_rx) = mpsc::channel();
        let (events_tx, events) = mpsc::sync_channel(QUEUE_STEPS);
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("ct-nft".into())
            .spawn(move || {
                let reader = match Reader::start(ns, marking, thread_counters) {
                    Ok((reader, started)) => {
                        let _ = ready_tx.send(Ok(started));
                        reader
                    }
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                        return Ok(());
                    }
                };
                reader.run(&thread_stop, &events_tx)
            })
            .map_err(|_| NftError::ThreadGone)?;
        let started = ready_rx.recv().map_err(|_| NftError::ThreadGone)??;
        Ok(NftTracer {
            events,
            stop,
            thread: Some(thread),
            started,
            counters,
        })
    }

    /// What the reader refused or skipped (messages not from the kernel, rule texts not
    /// looked up); valid after [`stop`](Self::stop) too.
    pub fn counters(&self) -> Arc<TracerCounters> {
        Arc::clone(&self.counters)
    }

    /// What starting did.
    pub fn started(&self) -> &Started {
        &self.started
    }

    /// The next report, waiting at most `timeout`; `Ok(None)` when none came.
    pub fn recv(&self, timeout: Duration) -> Result<Option<TracerEvent>, NftError> {
        match self.events.recv_timeout(timeout) {
            Ok(event) => Ok(Some(event)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(NftError::ThreadGone),
        }
    }

    /// Every report queued now.
    pub fn try_iter(&self) -> impl Iterator<Item = TracerEvent> + '_ {
        self.events.try_iter()
    }

    /// Stops reading and removes the trace table; the reports still queued are returned.
    pub fn stop(mut self) -> Result<Vec<TracerEvent>, NftError> {
        self.stop.store(true, Ordering::Relaxed);
        let rest: Vec<TracerEvent> = match self.thread.take() {
            Some(thread) => {
                let result = thread.join().map_err(|_| NftError::ThreadGone)?;
                let rest = self.events.try_iter().collect();
                result?;
                rest
            }
            None => Vec::new(),
        };
        Ok(rest)
    }
}

impl Drop for NftTracer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The thread's state, in the traced namespace.
struct Reader {
    socket: TraceSocket,
    table: Option<TraceTable>,
    /// The trace table's name, kept after it is removed to recognise its last steps.
    own_table: Option<String>,
    rules: RuleTexts,
    counters: Arc<TracerCounters>,
}

impl Reader {
    fn start(
        ns: Option<NetnsFile>,
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
        let table = match marking {
            Marking::UserRuleset => None,
            Marking::Table(rules) => {
                started.removed_stale = remove_stale_tables()?;
                let table = TraceTable::install(rules.as_deref())?;
                started.table = Some(table.name().to_owned());
                Some(table)
            }
        };
        Ok((
            Reader {
                socket,
                own_table: table.as_ref().map(|t| t.name().to_owned()),
                table,
                rules: RuleTexts::default(),
                counters,
            },
            started,
        ))
    }

    fn run(mut self, stop: &AtomicBool, out: &SyncSender<TracerEvent>) -> Result<(), NftError> {
        let mut buf = vec![0u8; DATAGRAM_BYTES];
        let mut result = Ok(());
        while !stop.load(Ordering::Relaxed) {
            match self.socket.recv(&mut buf) {
                Ok(Some(received)) => self.receive(received, &buf, out, stop),
                Ok(None) => {}
                Err(err) if err.raw_os_error() == Some(libc::ENOBUFS) => {
                    let _ = out.send(TracerEvent::Lost);
                }
                Err(err) => {
                    result = Err(NftError::Receive(err));
                    break;
                }
            }
        }
        // No more packets marked from here; what the kernel already sent is still read,
        // so that stopping loses nothing.
        let removed = self.table.take().map_or(Ok(()), TraceTable::remove);
        loop {
            match self.socket.recv_queued(&mut buf) {
                Ok(Some(received)) => self.receive(received, &buf, out, stop),
                Err(err) if err.raw_os_error() == Some(libc::ENOBUFS) => {
                    let _ = out.send(TracerEvent::Lost);
                }
                Ok(None) | Err(_) => break,
            }
        }
        removed.and(result)
    }

    /// Reads a datagram the kernel sent; counts and drops any other.
    fn receive(
        &mut self,
        received: Received,
        buf: &[u8],
        out: &SyncSender<TracerEvent>,
        stop: &AtomicBool,
    ) {
        match received {
            Received::Kernel(n) => self.deliver(&buf[..n.min(buf.len())], out, stop),
            Received::NotFromKernel(_) => self.counters.count_not_from_kernel(),
        }
    }

    /// Hands the trace messages of one datagram to the caller.
    fn deliver(&mut self, datagram: &[u8], out: &SyncSender<TracerEvent>, stop: &AtomicBool) {
        let received_ns = monotonic_ns();
        for message in parse_datagram(datagram) {
            let event = match message {
                Ok(message) => {
                    if !self.reports(&message.table, message.kind, message.verdict) {
                        continue;
                    }
                    let rule = message.handle.and_then(|handle| {
                        self.rules
                            .get(message.family, &message.table, &message.chain, handle)
                    });
                    let (refused, limited) = self.rules.skipped();
                    self.counters.set_lookups(refused, limited);
                    TracerEvent::Step(Box::new(TraceStep::new(message, rule, received_ns)))
                }
                Err(err) => TracerEvent::Malformed(err),
            };
            if out.send(event).is_err() {
                stop.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Whether a step is worth reporting: not one of the trace table's own (marking is
    /// not a decision), and not a rule that only matched and went on (`continue`: a
    /// counter, a log statement).
    fn reports(&self, table: &str, kind: NftTraceKind, verdict: NftVerdict) -> bool {
        let own = self.own_table.as_deref() == Some(table);
        let went_on = kind == NftTraceKind::Rule && verdict == NftVerdict::Continue;
        !own && !went_on
    }
}
