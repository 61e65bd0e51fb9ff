//! The two system calls the collector makes that neither std nor libbpf-rs wraps. With
//! the record layout in [`raw`](crate::raw) and the namespace type query in
//! [`netns`](crate::netns), the crate's only unsafe code.

use std::io;
use std::time::Duration;

/// Waits up to `timeout` for the epoll descriptor `epoll_fd` to report a ready
/// descriptor (the ring buffer's, for the collector), without taking the event off it
/// (its descriptors are level-triggered). A signal ends the wait early, without error.
pub(crate) fn wait_ready(epoll_fd: i32, timeout: Duration) -> io::Result<()> {
    let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let mut event = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: `event` is one writable epoll_event and maxevents is 1; the kernel checks
    // the descriptor.
    let rc = unsafe { libc::epoll_wait(epoll_fd, &mut event, 1, millis) };
    if rc >= 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.kind() == io::ErrorKind::Interrupted {
        Ok(())
    } else {
        Err(err)
    }
}

/// Asks the kernel to drop from this process's resident memory the whole pages inside
/// `bytes`, a part of the executable's read-only data that will not be read again (the
/// BPF object, once loaded). `MADV_PAGEOUT` keeps the contents whatever the mapping:
/// were a page read again, it would come back from the file. Best effort (kernels
/// before 5.4 do not know the advice), so nothing is reported.
pub(crate) fn page_out(bytes: &'static [u8]) {
    // SAFETY: sysconf has no memory effects.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let start = (bytes.as_ptr() as usize).next_multiple_of(page);
    let end = (bytes.as_ptr() as usize + bytes.len()) / page * page;
    if end <= start {
        return;
    }
    // SAFETY: the range is whole pages inside a static byte string, mapped for the whole
    // run; MADV_PAGEOUT never changes what the pages hold, only where they are kept.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_PAGEOUT);
    }
}
