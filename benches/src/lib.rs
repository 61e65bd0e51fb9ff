//! Benchmarks live in `benches/` (user space) and `benches/kernel.sh` (kernel).
