//! Configuring a [`Collector`]: checks, resolution against kernel BTF, loading and
//! attaching every probe's program.

use std::cell::RefCell;
use std::rc::Rc;

use ct_core::filter::Follow;
use ct_core::ProbeInfo;
use ct_pcap::PcapFilter;
use libbpf_rs::Object;

use super::object::{
    attach, load_object, program_for, Program, Setup, SharedMap, SharedMaps, BPF_OBJECT,
};
use super::{Attached, Collector, Role};
use crate::decode::Decoder;
use crate::filter::{CompiledFilters, KernelFilters};
use crate::kernel::{has_bpf_privileges, kernel_hz, kprobes_supported, DropReasons, KernelBtf};
use crate::probe::{ProbeSpec, ResolvedProbe, DROP_TRACEPOINT};
use crate::raw::{ProbeConfig, SCRATCH_CONN_LEN, SCRATCH_SKB_LEN};
use crate::ring_queue::RecordQueue;
use crate::Error;

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

    /// How far a filter's choice reaches ([`Follow::None`] by default: every hit judged on
    /// its own). With [`Follow::Packet`], a packet the filters (packet, tcpdump,
    /// conntrack and meta filters; not the namespace, `only_tracked` or drop filters,
    /// which judge each hit) selected at one hit is reported at every later hit until it
    /// is freed, whatever NAT did to its headers; with [`Follow::Conn`], so is every
    /// packet of its conntrack entry. Done in the kernel, in LRU maps of bounded size.
    /// Without a filter that selects packets there is nothing to follow and this changes
    /// nothing.
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
            ring_capacity: usize::try_from(self.ring_size).unwrap_or(usize::MAX)
                / crate::raw::RING_EVENT_SIZE
                + 1,
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
