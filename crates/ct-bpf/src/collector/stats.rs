//! What the kernel says about a collection: events lost, and each program's run time.

use libbpf_rs::{MapCore, MapFlags};

use super::object::{Program, SharedMap};
use super::{Collector, Role};
use crate::Error;

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

impl Collector {
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
}
