//! The embedded BPF object: its programs and shared maps by name, loading one copy of it
//! for a probe and attaching its program.

use std::os::fd::AsFd;

use ct_pcap::PcapFilter;
use libbpf_rs::{Link, MapCore, MapHandle, Object, ObjectBuilder};

use crate::filter::CompiledFilters;
use crate::probe::ProbeSpec;
use crate::raw::{write_rodata, ProbeConfig};
use crate::Error;

pub(super) static BPF_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ct.bpf.o"));

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
    /// ([`CollectorBuilder::measure_floor`](super::CollectorBuilder::measure_floor)).
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
pub(super) enum SharedMap {
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
    pub(super) const ALL: [SharedMap; 9] = [
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
    pub(super) const fn name(self) -> &'static str {
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

    pub(super) fn from_name(name: &str) -> Option<SharedMap> {
        SharedMap::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// The shared maps' descriptors, in [`SharedMap::ALL`]'s order.
pub(super) struct SharedMaps {
    handles: Vec<MapHandle>,
}

impl SharedMaps {
    pub(super) fn from_object(object: &Object) -> Result<Self, Error> {
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

    pub(super) fn handle(&self, map: SharedMap) -> &MapHandle {
        &self.handles[map as usize]
    }
}

/// What a probe's program is loaded with: its `.rodata` and its tcpdump filter.
#[derive(Clone, Copy)]
pub(super) struct Setup<'a> {
    pub(super) cfg: &'a ProbeConfig,
    pub(super) filters: &'a CompiledFilters,
    pub(super) pcap: Option<&'a PcapFilter>,
}

pub(super) fn load_object(
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

pub(super) fn program_for(spec: &ProbeSpec, raw_tracepoints: bool) -> Program {
    match spec {
        ProbeSpec::Tracepoint { .. } if raw_tracepoints => Program::RawTp,
        ProbeSpec::Tracepoint { .. } => Program::TpBtf,
        ProbeSpec::Kprobe { .. } => Program::Kprobe,
        ProbeSpec::Kretprobe { .. } => Program::Kretprobe,
    }
}

pub(super) fn attach(object: &Object, program: Program, spec: &ProbeSpec) -> Result<Link, Error> {
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
}
