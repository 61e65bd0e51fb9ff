//! The collector: probes in, decoded events out.
//!
//! One copy of the BPF object is loaded per probe (each with its probe id and skb
//! argument frozen in `.rodata`); the first copy creates the ring buffer, the lost counter
//! and the scratch map, the others reuse them. Dropping the collector detaches every
//! probe: links go first, then the programs and maps.

use std::cell::RefCell;
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;
use std::time::Duration;

use ct_core::filter::Follow;
use ct_core::{Event, ProbeInfo};
use ct_pcap::PcapFilter;
use libbpf_rs::{Link, MapCore, MapFlags, MapHandle, Object, ObjectBuilder, RingBuffer};

use crate::decode::{DecodeError, Decoder};
use crate::filter::{CompiledFilters, KernelFilters};
use crate::kernel::{has_bpf_privileges, kernel_hz, kprobes_supported, DropReasons, KernelBtf};
use crate::probe::{ProbeSpec, ResolvedProbe, DROP_TRACEPOINT};
use crate::raw::{write_rodata, ProbeConfig, RawCtEvent, SCRATCH_CONN_LEN, SCRATCH_SKB_LEN};
use crate::ring_queue::RecordQueue;
use crate::Error;

static BPF_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ct.bpf.o"));

/// The programs in the BPF object, one per kind of attachment. Their names in the object
/// are written once, in [`Program::name`]; a unit test holds the object to that table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Program {
    /// A BTF tracepoint (`tp_btf`), reading the skb with plain loads.
    TpBtf,
    /// A raw tracepoint, reading the skb through helper calls.
    RawTp,
    /// A kprobe.
    Kprobe,
    /// A kretprobe.
    Kretprobe,
    /// The empty program measured beside a tracepoint probe
    /// ([`CollectorBuilder::measure_floor`]).
    Floor,
}

impl Program {
    /// Every program in the object.
    pub const ALL: [Program; 5] = [
        Program::TpBtf,
        Program::RawTp,
        Program::Kprobe,
        Program::Kretprobe,
        Program::Floor,
    ];

    /// The program's name in the BPF object (and in `bpftool prog show`).
    pub const fn name(self) -> &'static str {
        match self {
            Program::TpBtf => "ct_tp_btf",
            Program::RawTp => "ct_raw_tp",
            Program::Kprobe => "ct_kprobe",
            Program::Kretprobe => "ct_kretprobe",
            Program::Floor => "ct_floor",
        }
    }
}

impl std::fmt::Display for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The maps every probe's object shares: the first object loaded creates them, the others
/// reuse its descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SharedMap {
    Events,
    Lost,
    Scratch,
    Track,
    FollowPackets,
    FollowConns,
    FollowTuples,
    FollowState,
    FollowScratch,
}

impl SharedMap {
    const ALL: [SharedMap; 9] = [
        SharedMap::Events,
        SharedMap::Lost,
        SharedMap::Scratch,
        SharedMap::Track,
        SharedMap::FollowPackets,
        SharedMap::FollowConns,
        SharedMap::FollowTuples,
        SharedMap::FollowState,
        SharedMap::FollowScratch,
    ];

    /// The map's name in the BPF object.
    const fn name(self) -> &'static str {
        match self {
            SharedMap::Events => "ct_events",
            SharedMap::Lost => "ct_lost",
            SharedMap::Scratch => "ct_scratch_map",
            SharedMap::Track => "ct_track",
            SharedMap::FollowPackets => "ct_follow_pkt",
            SharedMap::FollowConns => "ct_follow_conn",
            SharedMap::FollowTuples => "ct_follow_tuple",
            SharedMap::FollowState => "ct_follow_state_map",
            SharedMap::FollowScratch => "ct_follow_scratch_map",
        }
    }

    fn from_name(name: &str) -> Option<SharedMap> {
        SharedMap::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// One record read from the ring buffer, as [`Collector::poll_raw`] hands it over.
#[derive(Debug, Clone)]
// Every record is one of these: a box for the complete ones would allocate per event to
// spare the rare short one some bytes.
#[allow(clippy::large_enum_variant)]
#[non_exhaustive]
pub enum RingRecord {
    /// A record of the full [`RawCtEvent`] size.
    Complete(RawCtEvent),
    /// A record shorter than a [`RawCtEvent`]: the BPF object and this library disagree
    /// on the layout. Decoding it is [`DecodeError::Short`].
    Short {
        /// The record's length in bytes.
        len: usize,
    },
}

impl RingRecord {
    fn from_bytes(bytes: &[u8]) -> RingRecord {
        match RawCtEvent::read(bytes) {
            Some(raw) => RingRecord::Complete(raw),
            None => RingRecord::Short { len: bytes.len() },
        }
    }

    /// Decodes the record with `decoder`.
    pub fn decode(&self, decoder: &Decoder) -> Result<Event, DecodeError> {
        match self {
            RingRecord::Complete(raw) => decoder.decode_raw(raw),
            RingRecord::Short { len } => Err(DecodeError::Short { got: *len }),
        }
    }
}

/// Default ring buffer size: 2 MiB holds about 4,200 events between two reads, several
/// times what a `ping -f` burst leaves unread between two wakeups. The kernel maps a ring
/// buffer's pages twice, so each MiB here costs two of resident memory.
pub const DEFAULT_RING_SIZE: u64 = 2 << 20;

/// Configures and starts a [`Collector`].
#[derive(Debug, Clone)]
pub struct CollectorBuilder {
    probes: Vec<ProbeSpec>,
    ring_size: u64,
    netns: Option<u32>,
    only_tracked: bool,
    track: bool,
    floor: bool,
    raw_tracepoints: bool,
    filters: KernelFilters,
    headers: bool,
    pcap: Option<PcapFilter>,
    follow: Follow,
    omit: u32,
}

impl Default for CollectorBuilder {
    fn default() -> Self {
        CollectorBuilder {
            probes: Vec::new(),
            ring_size: DEFAULT_RING_SIZE,
            netns: None,
            only_tracked: false,
            track: true,
            floor: false,
            raw_tracepoints: false,
            filters: KernelFilters::default(),
            headers: false,
            pcap: None,
            follow: Follow::default(),
            omit: 0,
        }
    }
}

impl CollectorBuilder {
    /// No probes yet, a [`DEFAULT_RING_SIZE`] ring, packet tracking on, no filters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a probe; events record which one they came from.
    pub fn probe(mut self, spec: ProbeSpec) -> Self {
        self.probes.push(spec);
        self
    }

    /// Adds probes, in order ([`probe`](Self::probe) for each).
    pub fn probes(mut self, specs: impl IntoIterator<Item = ProbeSpec>) -> Self {
        self.probes.extend(specs);
        self
    }

    /// Ring buffer size in bytes: a power of two, at least 4096.
    pub fn ring_size(mut self, bytes: u64) -> Self {
        self.ring_size = bytes;
        self
    }

    /// Reports only packets whose device (or socket) is in this network namespace, given
    /// by inode number (`stat -L -c %i /proc/PID/ns/net`). Filtered in the kernel.
    pub fn netns(mut self, inode: u32) -> Self {
        self.netns = Some(inode);
        self
    }

    /// Reports only packets that carry conntrack data. Filtered in the kernel.
    pub fn only_tracked(mut self, yes: bool) -> Self {
        self.only_tracked = yes;
        self
    }

    /// Packet tracking ids (on by default): each packet gets its first-seen time, kept in
    /// a kernel map under a fingerprint of its NAT-invariant header fields, so its events
    /// can be grouped across probes, clones, copies and NAT. Off, the id is the packet's
    /// data buffer, which a later packet may reuse and which NAT on a clone changes.
    pub fn track_packets(mut self, yes: bool) -> Self {
        self.track = yes;
        self
    }

    /// Attaches tracepoints as raw tracepoints, reading the skb through helper calls, even
    /// where the kernel offers BTF tracepoints (whose typed arguments let the program
    /// read the skb with plain loads, the default). Raw tracepoints are also the automatic
    /// fallback when a BTF tracepoint does not load.
    pub fn raw_tracepoints(mut self, yes: bool) -> Self {
        self.raw_tracepoints = yes;
        self
    }

    /// Also attaches an empty program beside each tracepoint probe, whose run time
    /// ([`Collector::program_stats`], with `kernel.bpf_stats_enabled=1`) is the floor that
    /// probe's cost compares with.
    pub fn measure_floor(mut self, yes: bool) -> Self {
        self.floor = yes;
        self
    }

    /// Leaves `step` out of every probe's program, for the kernel cost bench: the events
    /// it writes are incomplete, so this is never for collecting.
    #[doc(hidden)]
    pub fn omit_step(mut self, step: crate::OmitStep) -> Self {
        self.omit |= step.bit();
        self
    }

    /// Keeps the header bytes the program copied (from the network header on, at most
    /// [`PKT_HDR_LEN`](crate::raw::PKT_HDR_LEN)) in each event's `packet.headers`.
    pub fn headers(mut self, yes: bool) -> Self {
        self.headers = yes;
        self
    }

    /// Filters evaluated in the kernel before an event is reserved: packets they reject
    /// cost one skb read and never reach the ring buffer.
    pub fn filters(mut self, filters: KernelFilters) -> Self {
        self.filters = filters;
        self
    }

    /// How far a filter's choice reaches (none by default: every hit judged on its own).
    /// With [`Follow::Packet`], a packet the filters (packet, tcpdump, conntrack and meta
    /// filters; not the namespace, `only_tracked` or drop filters, which judge each hit)
    /// selected at one hit is reported at every later hit until it is freed, whatever NAT
    /// did to its headers; with [`Follow::Conn`], so is every packet of its conntrack
    /// entry. Done in the kernel, in LRU maps of bounded size. Without a filter that
    /// selects packets there is nothing to follow and this changes nothing.
    pub fn follow(mut self, follow: Follow) -> Self {
        self.follow = follow;
        self
    }

    /// A tcpdump filter, run in the kernel on the first [`PCAP_COPY_LEN`](crate::PCAP_COPY_LEN)
    /// bytes of each packet from its MAC header (or its network header where it has no
    /// MAC header), before an event is reserved. A load past those bytes does not match.
    pub fn pcap_filter(mut self, filter: PcapFilter) -> Self {
        self.pcap = Some(filter);
        self
    }

    /// Checks the prerequisites, resolves every probe against kernel BTF, loads and
    /// attaches. On error nothing stays attached.
    pub fn build(self) -> Result<Collector, Error> {
        let (resolved, filters, reasons) = self.prepare()?;
        // Each object is closed once its program is attached: the link keeps the program
        // in the kernel, the shared maps are held by their own descriptors, and libbpf's
        // copy of an object (every program's instructions, its BTF) is about 1.4 MB of
        // heap a probe that collecting never reads.
        let mut links = Vec::with_capacity(resolved.len());
        let mut shared: Option<SharedMaps> = None;
        let mut programs: Vec<Attached> = Vec::new();
        for (id, probe) in resolved.iter().enumerate() {
            let label = probe.spec.to_string();
            let (object, program, _) =
                self.load_probe(id, probe, &filters, reasons.as_ref(), &mut shared)?;
            links.push(attach(&object, program, &probe.spec)?);
            programs.push(Attached::new(&label, Role::Probe, &object, program));
            drop(object);
            if self.floor && matches!(probe.spec, ProbeSpec::Tracepoint { .. }) {
                let label = format!("{label} (floor)");
                let floor = load_object(
                    Program::Floor,
                    &probe.spec,
                    &label,
                    Setup {
                        cfg: &ProbeConfig::default(),
                        filters: &CompiledFilters::default(),
                        pcap: None,
                    },
                    shared.as_ref(),
                    self.ring_size,
                )?;
                links.push(attach(&floor, Program::Floor, &probe.spec)?);
                programs.push(Attached::new(&label, Role::Floor, &floor, Program::Floor));
            }
        }
        let shared = shared.ok_or(Error::NoProbes)?;

        let queue: Rc<RefCell<RecordQueue>> = Rc::default();
        let sink = Rc::clone(&queue);
        let mut ring = libbpf_rs::RingBufferBuilder::new();
        ring.add(shared.handle(SharedMap::Events), move |bytes: &[u8]| {
            sink.borrow_mut().push(bytes);
            0
        })
        .map_err(Error::Ring)?;
        let ring = ring.build().map_err(Error::Ring)?;
        // Every program is loaded: the embedded object (1.4 MB) is not read again, so its
        // pages need not stay resident for the whole collection.
        crate::sys::page_out(BPF_OBJECT);

        let infos: Vec<ProbeInfo> = resolved.iter().map(|p| p.spec.info()).collect();
        Ok(Collector {
            links,
            ring,
            queue,
            shared,
            decoder: Decoder::new(infos.clone())
                .with_drop_reasons(reasons)
                .with_headers(self.headers),
            probes: infos,
            programs,
        })
    }
}

impl CollectorBuilder {
    /// Loads each probe's program as [`build`](Self::build) would (same checks, same
    /// resolution, same settings and filters, same fallback from BTF to raw tracepoints)
    /// and unloads it again, attaching nothing: whether collection with these probes
    /// would load, without tracing a packet. Attaching itself is not tried.
    pub fn verify(self) -> Result<Vec<LoadedProbe>, Error> {
        let (resolved, filters, reasons) = self.prepare()?;
        let mut shared: Option<SharedMaps> = None;
        let mut loaded = Vec::with_capacity(resolved.len());
        let mut objects = Vec::with_capacity(resolved.len());
        for (id, probe) in resolved.iter().enumerate() {
            let (object, program, fallback) =
                self.load_probe(id, probe, &filters, reasons.as_ref(), &mut shared)?;
            objects.push(object);
            loaded.push(LoadedProbe {
                spec: probe.spec.clone(),
                program,
                fallback,
            });
        }
        // Programs and maps go with their objects, here.
        drop(shared);
        drop(objects);
        Ok(loaded)
    }

    /// Everything before loading: the builder's own settings, kernel BTF, conntrack in
    /// `sk_buff`, each probe resolved, the filters compiled, the kernel's drop reasons,
    /// privileges.
    #[allow(clippy::type_complexity)]
    /// Whether a filter chooses packets (what following keeps).
    fn selects_packets(&self) -> bool {
        let f = &self.filters;
        f.packet.is_some() || !f.ct.is_empty() || !f.meta.is_empty() || self.pcap.is_some()
    }

    fn prepare(&self) -> Result<(Vec<ResolvedProbe>, CompiledFilters, Option<DropReasons>), Error> {
        if self.probes.is_empty() {
            return Err(Error::NoProbes);
        }
        if !self.ring_size.is_power_of_two() || self.ring_size < 4096 || self.ring_size > 1 << 30 {
            return Err(Error::RingSize(self.ring_size));
        }
        for (i, p) in self.probes.iter().enumerate() {
            if self.probes[..i].contains(p) {
                return Err(Error::DuplicateProbe {
                    spec: p.to_string(),
                });
            }
        }
        let btf = KernelBtf::load()?;
        if !btf.has_member("sk_buff", "_nfct") {
            return Err(Error::NoConntrack);
        }
        check_scratch_room(|name| btf.struct_size(name))?;
        let resolved = self
            .probes
            .iter()
            .map(|spec| {
                if !matches!(spec, ProbeSpec::Tracepoint { .. }) && !kprobes_supported() {
                    return Err(Error::KprobesUnsupported {
                        spec: spec.to_string(),
                    });
                }
                btf.resolve(spec)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let filters = self.filters.compile(&btf)?;
        if !self.filters.drop.is_empty() && !resolved.iter().any(ResolvedProbe::is_drop_probe) {
            return Err(Error::Filter {
                filter: "--drops".into(),
                reason: format!(
                    "only {DROP_TRACEPOINT} sees drops, and it is not among the probes: \
                     add -p {DROP_TRACEPOINT}"
                ),
            });
        }
        let reasons = btf.drop_reasons();
        drop(btf);
        if !has_bpf_privileges() {
            return Err(Error::Privileges);
        }
        Ok((resolved, filters, reasons))
    }

    /// Loads the program for probe `id`, falling back from a BTF tracepoint to a raw one
    /// (returning why the BTF tracepoint did not load). The first object loaded creates
    /// the maps every other one shares.
    fn load_probe(
        &self,
        id: usize,
        probe: &ResolvedProbe,
        filters: &CompiledFilters,
        reasons: Option<&DropReasons>,
        shared: &mut Option<SharedMaps>,
    ) -> Result<(Object, Program, Option<Error>), Error> {
        let cfg = ProbeConfig {
            probe_id: id as u32,
            skb_arg: probe.skb_arg,
            netns: self.netns,
            require_ct: self.only_tracked,
            track: self.track,
            frees_skb: matches!(&probe.spec, ProbeSpec::Tracepoint { category, name }
                if category == "skb" && (name == "kfree_skb" || name == "consume_skb")),
            hz: kernel_hz().unwrap_or(0),
            drop_probe: probe.is_drop_probe(),
            // A reason is only named with the kernel's enum at hand.
            reason_arg: probe.reason_arg.filter(|_| reasons.is_some()),
            consumed: reasons.and_then(DropReasons::consumed),
            pcap: self.pcap.is_some(),
            follow: if self.selects_packets() {
                self.follow
            } else {
                Follow::None
            },
            omit: self.omit,
        };
        let label = probe.spec.to_string();
        let load = |program| {
            load_object(
                program,
                &probe.spec,
                &label,
                Setup {
                    cfg: &cfg,
                    filters,
                    pcap: self.pcap.as_ref(),
                },
                shared.as_ref(),
                self.ring_size,
            )
        };
        let program = program_for(&probe.spec, self.raw_tracepoints);
        let (object, program, fallback) = match load(program) {
            // Kernels without BTF tracepoints for this one (or at all) still have raw
            // tracepoints: the same program reading the skb through helper calls.
            Err(e) if program == Program::TpBtf && !e.is_permission() => {
                match load(Program::RawTp) {
                    Ok(object) => (object, Program::RawTp, Some(e)),
                    Err(_) => return Err(e),
                }
            }
            other => (other?, program, None),
        };
        if shared.is_none() {
            *shared = Some(SharedMaps::from_object(&object)?);
        }
        Ok((object, program, fallback))
    }
}

/// Whether the kernel's `struct sk_buff` and `struct nf_conn` (sizes from `struct_size`,
/// BTF's) fit the program's scratch copies of them. One that does not is refused here
/// rather than copied in part.
fn check_scratch_room(struct_size: impl Fn(&str) -> Option<usize>) -> Result<(), Error> {
    for (name, room) in [("sk_buff", SCRATCH_SKB_LEN), ("nf_conn", SCRATCH_CONN_LEN)] {
        // A struct BTF does not have is left to the checks that need it (nf_conn lives in
        // the nf_conntrack module, whose BTF some kernels lack).
        if let Some(size) = struct_size(name).filter(|&size| size > room) {
            return Err(Error::ScratchTooSmall { name, size, room });
        }
    }
    Ok(())
}

/// One probe's program as [`CollectorBuilder::verify`] loaded it.
#[derive(Debug)]
pub struct LoadedProbe {
    /// The probe.
    pub spec: ProbeSpec,
    /// The BPF program that loaded for it.
    pub program: Program,
    /// Why the BTF tracepoint program did not load, where a tracepoint fell back to the
    /// raw tracepoint program.
    pub fallback: Option<Error>,
}

/// The shared maps' descriptors, in [`SharedMap::ALL`]'s order.
struct SharedMaps {
    handles: Vec<MapHandle>,
}

impl SharedMaps {
    fn from_object(object: &Object) -> Result<Self, Error> {
        let find = |map: SharedMap| {
            object
                .maps()
                .find(|m| m.name() == map.name())
                .ok_or(Error::ObjectLayout(map.name()))
                .and_then(|m| MapHandle::try_from(&m).map_err(Error::Ring))
        };
        Ok(SharedMaps {
            handles: SharedMap::ALL
                .into_iter()
                .map(find)
                .collect::<Result<_, _>>()?,
        })
    }

    fn handle(&self, map: SharedMap) -> &MapHandle {
        &self.handles[map as usize]
    }
}

/// What a probe's program is loaded with: its `.rodata` and its tcpdump filter.
#[derive(Clone, Copy)]
struct Setup<'a> {
    cfg: &'a ProbeConfig,
    filters: &'a CompiledFilters,
    pcap: Option<&'a PcapFilter>,
}

fn load_object(
    program: Program,
    spec: &ProbeSpec,
    label: &str,
    setup: Setup<'_>,
    shared: Option<&SharedMaps>,
    ring_size: u64,
) -> Result<Object, Error> {
    let Setup { cfg, filters, pcap } = setup;
    let load_err = |source| Error::Load {
        probe: label.to_owned(),
        source,
    };
    let mut open = ObjectBuilder::default()
        .open_memory(BPF_OBJECT)
        .map_err(load_err)?;
    let mut rodata_written = false;
    for mut map in open.maps_mut() {
        let name = map.name().to_string_lossy().into_owned();
        if name.ends_with(".rodata") {
            let image = map
                .initial_value_mut()
                .ok_or(Error::ObjectLayout(".rodata image"))?;
            write_rodata(image, cfg, filters).map_err(|_| Error::ObjectLayout(".rodata size"))?;
            rodata_written = true;
            continue;
        }
        let kind = SharedMap::from_name(&name);
        if let (Some(kind), Some(shared)) = (kind, shared) {
            map.reuse_fd(shared.handle(kind).as_fd())
                .map_err(load_err)?;
        } else if kind == Some(SharedMap::Events) {
            map.set_max_entries(ring_size as u32).map_err(load_err)?;
        }
    }
    if !rodata_written {
        return Err(Error::ObjectLayout(".rodata map"));
    }
    for mut prog in open.progs_mut() {
        let keep = prog.name() == program.name();
        prog.set_autoload(keep);
        if let (true, Some(pcap)) = (keep, pcap) {
            crate::pcap::fill_regions(&mut prog, pcap)?;
        }
        if keep && program == Program::TpBtf {
            if let ProbeSpec::Tracepoint { name, .. } = spec {
                prog.set_attach_target(0, Some(name.clone()))
                    .map_err(load_err)?;
            }
        }
    }
    open.load().map_err(load_err)
}

fn program_for(spec: &ProbeSpec, raw_tracepoints: bool) -> Program {
    match spec {
        ProbeSpec::Tracepoint { .. } if raw_tracepoints => Program::RawTp,
        ProbeSpec::Tracepoint { .. } => Program::TpBtf,
        ProbeSpec::Kprobe { .. } => Program::Kprobe,
        ProbeSpec::Kretprobe { .. } => Program::Kretprobe,
    }
}

fn attach(object: &Object, program: Program, spec: &ProbeSpec) -> Result<Link, Error> {
    let prog = object
        .progs_mut()
        .find(|p| p.name() == program.name())
        .ok_or(Error::ObjectLayout("probe program"))?;
    let result = match spec {
        // BTF tracepoints know their target from load time.
        ProbeSpec::Tracepoint { .. } if program == Program::TpBtf => prog.attach(),
        ProbeSpec::Tracepoint { name, .. } => prog.attach_raw_tracepoint(name),
        ProbeSpec::Kprobe { function } => prog.attach_kprobe(false, function),
        ProbeSpec::Kretprobe { function } => prog.attach_kprobe(true, function),
    };
    result.map_err(|source| Error::Attach {
        probe: spec.to_string(),
        source,
    })
}

/// Attached probes and the ring buffer they write to.
///
/// Not `Send`: poll it from the thread that built it. Dropping it detaches everything.
pub struct Collector {
    // Field order is drop order: detach before closing the maps (the programs went with
    // their objects at build; the links hold them).
    links: Vec<Link>,
    ring: RingBuffer<'static>,
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

/// Events that never reached user space.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lost {
    /// The ring buffer was full when the probe fired (see `ring_size`).
    pub ring_full: u64,
    /// The probe fired while its program was already running on that CPU (an interrupt
    /// hitting the same tracepoint), so the kernel skipped it.
    pub recursion: u64,
}

/// Kernel run-time statistics of one attached program (counted only while
/// `kernel.bpf_stats_enabled` is 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramStats {
    /// The probe, or `<probe> (floor)` for the empty program measured beside it.
    pub label: String,
    /// The BPF program.
    pub program: Program,
    /// Nanoseconds the program ran, summed over its runs.
    pub run_time_ns: u64,
    /// How many times it ran.
    pub run_cnt: u64,
}

impl ProgramStats {
    /// Mean nanoseconds per hit, when there were hits.
    pub fn ns_per_hit(&self) -> Option<f64> {
        (self.run_cnt > 0).then(|| self.run_time_ns as f64 / self.run_cnt as f64)
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

    /// Hands over every event already in the ring buffer without waiting (use it once
    /// more after the last poll so that nothing read by the kernel is left behind).
    pub fn drain(
        &mut self,
        on_event: impl FnMut(Result<Event, DecodeError>),
    ) -> Result<usize, Error> {
        self.decode_batches(usize::MAX, on_event)
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

    /// Events the kernel could not put in the ring buffer (it was full), since start.
    pub fn lost(&self) -> Result<u64, Error> {
        let lost = self.lost_detail()?;
        Ok(lost.ring_full + lost.recursion)
    }

    /// Events lost, by cause, since start.
    pub fn lost_detail(&self) -> Result<Lost, Error> {
        let values = self
            .shared
            .handle(SharedMap::Lost)
            .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
            .map_err(Error::LostCounter)?
            .unwrap_or_default();
        let ring_full = values
            .iter()
            .filter_map(|v| v.get(..8).and_then(|b| b.try_into().ok()))
            .map(u64::from_ne_bytes)
            .sum();
        // The kernel skips a tracing program that is already running on the CPU (a
        // softirq interrupting it hits the same tracepoint) and only counts the miss.
        let probe_ids: Vec<u32> = self
            .programs
            .iter()
            .filter(|p| p.role == Role::Probe)
            .filter_map(|p| p.id)
            .collect();
        let recursion = libbpf_rs::query::ProgInfoIter::default()
            .filter(|info| probe_ids.contains(&info.id))
            .map(|info| info.recursion_misses)
            .sum();
        Ok(Lost {
            ring_full,
            recursion,
        })
    }

    /// Run time and hit count of every attached program, from the kernel (zero unless
    /// `kernel.bpf_stats_enabled` is 1).
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        let all: Vec<_> = libbpf_rs::query::ProgInfoIter::default()
            .map(|info| (info.id, info.run_time_ns, info.run_cnt))
            .collect();
        self.programs
            .iter()
            .map(|attached| {
                let (run_time_ns, run_cnt) = attached
                    .id
                    .and_then(|id| all.iter().find(|p| p.0 == id))
                    .map_or((0, 0), |p| (p.1, p.2));
                ProgramStats {
                    label: attached.label.clone(),
                    program: attached.program,
                    run_time_ns,
                    run_cnt,
                }
            })
            .collect()
    }

    /// Descriptor to wait on (epoll) for readiness, for callers with their own loop.
    pub fn ring_fd(&self) -> i32 {
        self.ring.epoll_fd()
    }
}

/// Records taken off the ring per batch: copied out (which frees their room in the ring at
/// once), then handed over while still in the cache, and the queue never holds more
/// than a batch (about 40 KB of records, where reading the whole ring at once held up to
/// its size on the heap).
const READ_BATCH: usize = 64;

/// Reads the ring a batch at a time and hands each record to `each`, until the ring is
/// empty or at least `limit` records were handed over. Returns how many.
fn read_in_batches(
    ring: &RingBuffer<'static>,
    queue: &RefCell<RecordQueue>,
    limit: usize,
    mut each: impl FnMut(&[u8]),
) -> Result<usize, Error> {
    let mut total = 0;
    while total < limit {
        let rc = ring.consume_raw_n(READ_BATCH);
        if rc < 0 && rc != -libc::EINTR {
            return Err(Error::Ring(libbpf_rs::Error::from_raw_os_error(-rc)));
        }
        let handed = queue.borrow_mut().drain(&mut each);
        total += handed;
        if handed < READ_BATCH {
            break;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The name tables are the object's: every program and every map it defines (but the
    /// `.rodata` image, written before load) is in them, and nothing else is.
    #[test]
    fn name_tables_match_the_object() {
        let open = ObjectBuilder::default()
            .open_memory(BPF_OBJECT)
            .expect("the embedded object opens");
        let mut programs: Vec<String> = open
            .progs()
            .map(|p| p.name().to_string_lossy().into_owned())
            .collect();
        programs.sort();
        let mut named: Vec<&str> = Program::ALL.iter().map(|p| p.name()).collect();
        named.sort();
        assert_eq!(programs, named);

        let mut maps: Vec<String> = open
            .maps()
            .map(|m| m.name().to_string_lossy().into_owned())
            .filter(|name| !name.ends_with(".rodata"))
            .collect();
        maps.sort();
        let mut named: Vec<&str> = SharedMap::ALL.iter().map(|m| m.name()).collect();
        named.sort();
        assert_eq!(maps, named);
        for map in SharedMap::ALL {
            assert_eq!(SharedMap::from_name(map.name()), Some(map));
        }
    }

    #[test]
    fn a_kernel_struct_larger_than_its_scratch_copy_is_refused() {
        assert_eq!((SCRATCH_SKB_LEN, SCRATCH_CONN_LEN), (512, 512));
        assert!(check_scratch_room(|_| Some(512)).is_ok());
        assert!(check_scratch_room(|_| None).is_ok());
        let err =
            check_scratch_room(|name| Some(if name == "nf_conn" { 520 } else { 232 })).unwrap_err();
        assert!(
            matches!(
                err,
                Error::ScratchTooSmall {
                    name: "nf_conn",
                    size: 520,
                    room: 512
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("CT_SCRATCH_LEN"), "{err}");
        // This kernel's, where it has BTF: the program loads here, so both fit.
        if let Ok(btf) = KernelBtf::load() {
            let size = |name: &str| btf.struct_size(name);
            assert!(size("sk_buff").is_some_and(|s| s > 100));
            check_scratch_room(size).expect("this kernel's structs fit");
        }
    }

    #[test]
    fn a_short_record_decodes_to_its_length() {
        let decoder = Decoder::new(Vec::new());
        let record = RingRecord::from_bytes(&[0; 12]);
        assert!(matches!(record, RingRecord::Short { len: 12 }));
        assert_eq!(record.decode(&decoder), Err(DecodeError::Short { got: 12 }));
        let full = RingRecord::from_bytes(RawCtEvent::default().as_bytes());
        assert!(matches!(full, RingRecord::Complete(_)));
    }
}
