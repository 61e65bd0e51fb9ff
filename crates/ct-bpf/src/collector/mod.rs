//! The collector: probes in, decoded events out.
//!
//! One copy of the BPF object is loaded per probe (each with its probe id and skb
//! argument frozen in `.rodata`); the first copy creates the ring buffer, the lost counter
//! and the scratch map, the others reuse them. Dropping the collector detaches every
//! probe: links go first, then the programs and maps.

mod build;
mod object;
mod ring;
mod stats;

use std::cell::RefCell;
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;
use std::time::Duration;

use ct_core::{Event, ProbeInfo};
use libbpf_rs::{Link, Object, RingBuffer};

pub use build::{CollectorBuilder, LoadedProbe, DEFAULT_RING_SIZE};
pub use object::Program;
pub use ring::RingRecord;
pub use stats::{Lost, ProgramStats};

use crate::decode::{DecodeError, Decoder};
use crate::kernel::DropReasons;
use crate::ring_queue::RecordQueue;
use crate::Error;
use object::SharedMaps;
use ring::{read_in_batches, READ_BATCH};

/// Attached probes and the ring buffer they write to.
///
/// Not `Send`: poll it from the thread that built it. Dropping it detaches everything.
pub struct Collector {
    // Field order is drop order: detach before closing the maps (the programs went with
    // their objects at build; the links hold them).
    links: Vec<Link>,
    ring: RingBuffer<'static>,
    /// Most records the ring buffer holds at once (full-size events; the bound of
    /// [`stop_and_drain`](Self::stop_and_drain)).
    ring_capacity: usize,
    queue: Rc<RefCell<RecordQueue>>,
    shared: SharedMaps,
    decoder: Decoder,
    probes: Vec<ProbeInfo>,
    /// Every program attached, with its kernel id, for run-time statistics.
    programs: Vec<Attached>,
}

/// What an attached program is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Reports events for a probe the user asked for.
    Probe,
    /// The empty program measuring a probe's floor cost.
    Floor,
}

#[derive(Debug)]
struct Attached {
    label: String,
    role: Role,
    program: Program,
    id: Option<u32>,
    /// A descriptor of the loaded program, kept after its object is closed: the link
    /// alone would keep it in the kernel, but whoever looks at the process (bpftool,
    /// the tests' leak checks) finds the program it holds.
    _fd: Option<OwnedFd>,
}

impl Attached {
    fn new(label: &str, role: Role, object: &Object, program: Program) -> Self {
        let fd = object
            .progs()
            .find(|p| p.name() == program.name())
            .and_then(|p| p.as_fd().try_clone_to_owned().ok());
        Attached {
            label: label.to_owned(),
            role,
            program,
            id: fd
                .as_ref()
                .and_then(|fd| libbpf_rs::Program::id_from_fd(fd.as_fd()).ok()),
            _fd: fd,
        }
    }
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("probes", &self.probes)
            .field("links", &self.links.len())
            .finish_non_exhaustive()
    }
}

impl Collector {
    /// The attached probes, in probe-id order.
    pub fn probes(&self) -> &[ProbeInfo] {
        &self.probes
    }

    /// The running kernel's drop reasons, which events' `drop.reason` are named from;
    /// `None` on kernels without them (before Linux 5.17).
    pub fn drop_reasons(&self) -> Option<&DropReasons> {
        self.decoder.drop_reasons()
    }

    /// Waits up to `timeout` for events and hands each to `on_event`, decoded. Returns how
    /// many were handed over (at most [`MAX_PER_READ`](Self::MAX_PER_READ): call again
    /// to go on). A signal interrupting the wait is not an error (0 events).
    pub fn poll(
        &mut self,
        timeout: Duration,
        on_event: impl FnMut(Result<Event, DecodeError>),
    ) -> Result<usize, Error> {
        self.wait(timeout)?;
        self.decode_batches(Self::MAX_PER_READ, on_event)
    }

    /// Ends the collection: detaches every probe ([`detach`](Self::detach)), then hands
    /// over, without waiting, the events the ring buffer holds, the last the kernel
    /// wrote. Call it after the last poll so that nothing written by the kernel before
    /// the stop is left behind. With the probes detached nothing refills the ring, so
    /// this ends however fast events were coming and however slowly `on_event` takes
    /// them: it hands over at most what the ring can hold.
    pub fn stop_and_drain(
        &mut self,
        on_event: impl FnMut(Result<Event, DecodeError>),
    ) -> Result<usize, Error> {
        self.detach();
        self.decode_batches(self.ring_capacity, on_event)
    }

    /// Detaches every probe: from here on the kernel writes no event to the ring (a
    /// program already running on another CPU finishes the one it reserved). The ring
    /// buffer, the counters and the statistics stay readable; later polls hand over
    /// what is left, then nothing.
    pub fn detach(&mut self) {
        self.links.clear();
    }

    fn decode_batches(
        &mut self,
        limit: usize,
        mut on_event: impl FnMut(Result<Event, DecodeError>),
    ) -> Result<usize, Error> {
        let decoder = &self.decoder;
        read_in_batches(&self.ring, &self.queue, limit, |bytes| {
            on_event(decoder.decode(bytes))
        })
    }

    /// Like [`poll`](Self::poll), but hands over each record as the kernel wrote it, for
    /// tools that keep raw bytes (test fixtures). Decode with a [`Decoder`] built from
    /// [`probes`](Self::probes) ([`RingRecord::decode`]).
    #[doc(hidden)]
    pub fn poll_raw(
        &mut self,
        timeout: Duration,
        mut on_record: impl FnMut(&RingRecord),
    ) -> Result<usize, Error> {
        self.wait(timeout)?;
        read_in_batches(&self.ring, &self.queue, Self::MAX_PER_READ, |bytes| {
            on_record(&RingRecord::from_bytes(bytes))
        })
    }

    /// Most events one [`poll`](Self::poll) hands over, so that a caller's own checks (a
    /// signal, a count reached) run between reads however fast the kernel writes.
    pub const MAX_PER_READ: usize = 64 * READ_BATCH;

    /// Waits for a wakeup (or `timeout`). The program wakes the reader only as the ring
    /// fills (see `ct.bpf.c`), so a quiet trickle of records arrives without one: the
    /// callers read after every wait, woken or not.
    fn wait(&mut self, timeout: Duration) -> Result<(), Error> {
        crate::sys::wait_ready(self.ring.epoll_fd(), timeout)
            .map_err(|e| Error::Ring(libbpf_rs::Error::from(e)))
    }

    /// Descriptor to wait on (epoll) for readiness, for callers with their own loop.
    pub fn ring_fd(&self) -> i32 {
        self.ring.epoll_fd()
    }
}
