//! The user-space floor every end-to-end figure is a ratio to: writing the same bytes.

use std::io::Write as _;
use std::path::Path;

/// How the floor writes: one `write` per this many bytes.
pub const FLOOR_WRITE: usize = 64 << 10;

/// CPU time of the calling thread, in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    // SAFETY: clock_gettime writes into a timespec we own.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU per event of writing `data` (`events` events) to a new file beside `like` in
/// [`FLOOR_WRITE`] writes: create, write, close, as collect does. The best of three.
pub fn write_floor(data: &[u8], events: u64, like: &Path) -> Result<f64, String> {
    let path = like.with_extension("floor");
    let mut best = f64::MAX;
    for _ in 0..3 {
        let _ = std::fs::remove_file(&path);
        let start = thread_cpu_ns();
        let mut file = std::fs::File::create(&path).map_err(|e| e.to_string())?;
        for chunk in data.chunks(FLOOR_WRITE) {
            file.write_all(chunk).map_err(|e| e.to_string())?;
        }
        drop(file);
        let ns = (thread_cpu_ns() - start) as f64 / events.max(1) as f64;
        best = best.min(ns);
    }
    let _ = std::fs::remove_file(&path);
    Ok(best)
}
