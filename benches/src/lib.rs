//! Benchmarks live in `benches/` (user space), `benches/kernel.sh` (kernel, end to end)
//! and `src/bin/` (the programs kernel.sh runs); this library holds what those share.

mod floor;
mod lab;

pub use floor::{thread_cpu_ns, write_floor, FLOOR_WRITE};
pub use lab::{pings, rounds, sh, vm_hwm_kb, vm_rss_kb, Netns, PINGS};
