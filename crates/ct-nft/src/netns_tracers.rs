//! Tracing every network namespace: one reader per namespace (a netlink socket stays
//! bound to the namespace it was opened in, and the trace group reports only that
//! namespace's nftables), their steps merged into one queue, each carrying its
//! namespace. A watcher thread looks for namespaces every [`RESCAN_EVERY`]: it starts a
//! reader for each new one and ends the reader of each one gone.

use std::collections::{BTreeMap, HashSet};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use ct_bpf::NetnsFile;

use crate::counts::TracerCounters;
use crate::netns::scan_netns;
use crate::tracer::{recv_report, ReaderThread, Shared};
use crate::{Marking, NetnsChange, NftError, Started, TracerEvent, QUEUE_STEPS};

/// Most network namespaces traced at once: each costs a thread, a socket and (with a
/// trace table) an `nft` process. Namespaces found beyond are not traced
/// ([`TracerEvent::TooManyNetns`]) until others are gone.
pub const MAX_TRACED_NETNS: usize = 128;
/// How often the namespaces are looked for: a new one is traced within this time (plus
/// the time its reader takes to start), and each look stats every process's namespace.
pub const RESCAN_EVERY: Duration = Duration::from_millis(300);

/// Reads nftables traces in every network namespace, those found at start and those
/// that appear later; see the module documentation.
#[derive(Debug)]
pub struct NetnsTracers {
    events: Receiver<TracerEvent>,
    shared: Shared,
    /// Dropped (or sent to) to stop the watcher.
    stop: Option<Sender<()>>,
    watcher: Option<JoinHandle<Result<(), NftError>>>,
    started: Vec<(u32, Started)>,
}

impl NetnsTracers {
    /// Starts a reader in every network namespace there is (the caller's first), marking
    /// packets as `marking` says in each, and the watcher that follows namespaces coming
    /// and going. Returns once every reader listens (a namespace that could not be traced
    /// is reported as [`NetnsChange::Failed`] in the queue); fails only when the caller's
    /// own namespace cannot be traced.
    pub fn start(marking: Marking) -> Result<NetnsTracers, NftError> {
        Self::start_with(marking, QUEUE_STEPS, MAX_TRACED_NETNS, RESCAN_EVERY)
    }

    /// [`start`](Self::start) with room for `queue_steps` reports, at most `max_netns`
    /// namespaces, looking for namespaces every `rescan`.
    pub fn start_with(
        marking: Marking,
        queue_steps: usize,
        max_netns: usize,
        rescan: Duration,
    ) -> Result<NetnsTracers, NftError> {
        let (queue, events) = mpsc::sync_channel(queue_steps.max(1));
        let shared = Shared::new(queue);
        let mut watcher = Watcher {
            readers: BTreeMap::new(),
            refused: HashSet::new(),
            marking,
            shared: shared.clone(),
            max_netns: max_netns.max(1),
            told_too_many: false,
        };
        let own = std::fs::metadata("/proc/thread-self/ns/net")
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .map_err(|source| NftError::Netns {
                path: "/proc/thread-self/ns/net".into(),
                source,
            })?;
        let mut found = scan_netns(&HashSet::new()).new;
        // The caller's own namespace first: it is always traced, and first to fail.
        found.sort_by_key(|ns| (u64::from(ns.inode()) != own, ns.inode()));
        let mut started = Vec::new();
        for (netns, result) in watcher.trace(found) {
            match result {
                Ok(s) => started.push((netns, s)),
                Err(err) if u64::from(netns) == own => {
                    // The error that stopped the start says more than one of ending.
                    let _ = watcher.end_all();
                    return Err(err);
                }
                Err(err) => watcher.tell(netns, NetnsChange::Failed(err)),
            }
        }
        let (stop, stop_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("ct-nft-netns".into())
            .spawn(move || watcher.run(&stop_rx, rescan))
            .map_err(|_| NftError::ThreadGone)?;
        Ok(NetnsTracers {
            events,
            shared,
            stop: Some(stop),
            watcher: Some(thread),
            started,
        })
    }

    /// The namespaces traced from the start (their inodes), and what starting did in
    /// each.
    pub fn started(&self) -> &[(u32, Started)] {
        &self.started
    }

    /// What the readers refused or skipped, all namespaces together; valid after
    /// [`stop`](Self::stop) too.
    pub fn counters(&self) -> Arc<TracerCounters> {
        Arc::clone(&self.shared.counters)
    }

    /// The next report, waiting at most `timeout`; `Ok(None)` when none came.
    pub fn recv(&self, timeout: Duration) -> Result<Option<TracerEvent>, NftError> {
        recv_report(&self.events, timeout)
    }

    /// Every report queued now.
    pub fn try_iter(&self) -> impl Iterator<Item = TracerEvent> + '_ {
        self.events.try_iter()
    }

    /// Stops every reader (each removes its table) and the watcher; the reports still
    /// queued are returned, as with [`NftTracer::stop`](crate::NftTracer::stop). The
    /// error is the first a reader ended with (e.g. a table it could not remove).
    pub fn stop(mut self) -> Result<Vec<TracerEvent>, NftError> {
        let mut rest = Vec::new();
        let result = self.end(|event| rest.push(event));
        rest.extend(self.shared.undelivered_as_lost());
        result.map(|()| rest)
    }

    fn end(&mut self, mut keep: impl FnMut(TracerEvent)) -> Result<(), NftError> {
        drop(self.stop.take());
        let Some(thread) = self.watcher.take() else {
            return Ok(());
        };
        while !thread.is_finished() {
            if let Ok(event) = self.events.recv_timeout(Duration::from_millis(10)) {
                keep(event);
            }
        }
        let result = thread.join().map_err(|_| NftError::ThreadGone);
        self.events.try_iter().for_each(keep);
        result?
    }
}

impl Drop for NetnsTracers {
    fn drop(&mut self) {
        let _ = self.end(drop);
    }
}

/// The watcher thread's state.
struct Watcher {
    /// The reader of each traced namespace, by inode.
    readers: BTreeMap<u32, ReaderThread>,
    /// Namespaces that could not be traced, not tried again while they exist.
    refused: HashSet<u32>,
    marking: Marking,
    shared: Shared,
    max_netns: usize,
    told_too_many: bool,
}

impl Watcher {
    /// Starts a reader in each of `found` (as many as the bound allows), all at once,
    /// and waits until each listens or failed.
    fn trace(&mut self, found: Vec<NetnsFile>) -> Vec<(u32, Result<Started, NftError>)> {
        let room = self.max_netns.saturating_sub(self.readers.len());
        if found.len() > room && !self.told_too_many {
            self.told_too_many = true;
            self.send(TracerEvent::TooManyNetns(self.max_netns));
        }
        let mut starting = Vec::new();
        let mut results = Vec::new();
        for ns in found.into_iter().take(room) {
            let netns = ns.inode();
            match ReaderThread::spawn(Some(ns), self.marking.clone(), &self.shared) {
                Ok((reader, ready)) => starting.push((reader, ready)),
                Err(err) => results.push((netns, Err(err))),
            }
        }
        for (mut reader, ready) in starting {
            let netns = reader.netns;
            let result = ready.recv().unwrap_or(Err(NftError::ThreadGone));
            match result {
                Ok(started) => {
                    self.readers.insert(netns, reader);
                    results.push((netns, Ok(started)));
                }
                Err(err) => {
                    // The thread ended after saying why.
                    let _ = reader.join(|| std::thread::sleep(Duration::from_millis(1)));
                    self.refused.insert(netns);
                    results.push((netns, Err(err)));
                }
            }
        }
        results
    }

    /// Looks for namespaces every `rescan` until told to stop, then ends every reader.
    fn run(mut self, stop: &Receiver<()>, rescan: Duration) -> Result<(), NftError> {
        while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(rescan) {
            self.rescan();
        }
        self.end_all()
    }

    fn rescan(&mut self) {
        let known: HashSet<u32> = self.readers.keys().chain(&self.refused).copied().collect();
        let scan = scan_netns(&known);
        self.refused.retain(|netns| scan.present.contains(netns));
        let gone: Vec<u32> = self
            .readers
            .keys()
            .filter(|netns| !scan.present.contains(netns))
            .copied()
            .collect();
        let mut ending: Vec<ReaderThread> = gone
            .iter()
            .filter_map(|netns| self.readers.remove(netns))
            .collect();
        ending.iter().for_each(ReaderThread::ask_stop);
        for reader in &mut ending {
            let result = reader.join(|| std::thread::sleep(Duration::from_millis(5)));
            self.tell(reader.netns, NetnsChange::Ended(result.err()));
        }
        for (netns, result) in self.trace(scan.new) {
            let change = match result {
                Ok(started) => NetnsChange::Traced(started),
                Err(err) => NetnsChange::Failed(err),
            };
            self.tell(netns, change);
        }
    }

    /// Ends every reader (all asked at once, so that their tables go together); the
    /// first error any ended with.
    fn end_all(&mut self) -> Result<(), NftError> {
        let mut readers = std::mem::take(&mut self.readers);
        readers.values().for_each(ReaderThread::ask_stop);
        let mut first_error = None;
        for reader in readers.values_mut() {
            if let Err(err) = reader.join(|| std::thread::sleep(Duration::from_millis(5))) {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn tell(&self, netns: u32, change: NetnsChange) {
        self.send(TracerEvent::Netns { netns, change });
    }

    /// Queues a report; waits while the queue is full (the caller empties it, also while
    /// stopping), and drops it when the caller is gone.
    fn send(&self, event: TracerEvent) {
        let _ = self.shared.queue.send(event);
    }
}
