//! The one unsafe module: a netfilter netlink socket subscribed to nftables' trace group,
//! entering a network namespace, and tying a child process's life to the thread that
//! starts it.

use std::fs::File;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

/// `NFNLGRP_NFTRACE` from `<linux/netfilter/nfnetlink.h>`: the multicast group nftables
/// sends `NFT_MSG_TRACE` messages to.
pub const NFNLGRP_NFTRACE: u32 = 9;
/// `NFNLGRP_NFTABLES`: the group nftables announces ruleset changes to (what `nft monitor`
/// prints); the reader of a namespace without a ruleset watches it to learn when one
/// comes.
pub const NFNLGRP_NFTABLES: u32 = 7;

/// Receive buffer asked for: trace messages come in bursts of one per rule per packet.
const RECEIVE_BUFFER_BYTES: libc::c_int = 8 << 20;

/// A `NETLINK_NETFILTER` socket in the calling thread's network namespace, member of one
/// multicast group ([`NFNLGRP_NFTRACE`] unless opened with [`open_group`](Self::open_group)).
#[derive(Debug)]
pub struct TraceSocket {
    fd: OwnedFd,
}

impl TraceSocket {
    /// Opens the socket; `timeout` bounds each [`recv`](Self::recv) so that the reader can
    /// look at its stop flag.
    pub fn open(timeout: Duration) -> io::Result<Self> {
        Self::open_group(NFNLGRP_NFTRACE, timeout)
    }

    /// Opens a socket that is a member of `group`.
    pub fn open_group(group: u32, timeout: Duration) -> io::Result<Self> {
        // SAFETY: plain system call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor we own from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `addr` is a valid sockaddr_nl of the length given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let socket = TraceSocket { fd };
        socket.set(libc::SOL_NETLINK, libc::NETLINK_ADD_MEMBERSHIP, group)?;
        // Root may exceed net.core.rmem_max; anyone else gets what the limit allows.
        if socket
            .set(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RECEIVE_BUFFER_BYTES)
            .is_err()
        {
            socket.set(libc::SOL_SOCKET, libc::SO_RCVBUF, RECEIVE_BUFFER_BYTES)?;
        }
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: timeout.subsec_micros() as libc::suseconds_t,
        };
        socket.set(libc::SOL_SOCKET, libc::SO_RCVTIMEO, tv)?;
        Ok(socket)
    }

    fn set<T>(&self, level: libc::c_int, name: libc::c_int, value: T) -> io::Result<()> {
        // SAFETY: `value` lives for the call and its size is passed with it.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (&value as *const T).cast(),
                mem::size_of::<T>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads one datagram (one or more netlink messages) into `buf`; `Ok(None)` when the
    /// timeout passed first. `ENOBUFS` (the kernel dropped messages because the receive
    /// buffer was full) is returned as an error for the caller to count.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        self.recv_flags(buf, 0)
    }

    /// [`recv`](Self::recv) without waiting: `Ok(None)` when nothing is queued.
    pub fn recv_queued(&self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        self.recv_flags(buf, libc::MSG_DONTWAIT)
    }

    fn recv_flags(&self, buf: &mut [u8], flags: libc::c_int) -> io::Result<Option<Received>> {
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
        let mut from: libc::sockaddr_nl = unsafe { mem::zeroed() };
        let mut from_len = mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: `buf` is valid for writes of its length, and `from` for writes of
        // `from_len` bytes, for the call.
        let n = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                flags,
                (&mut from as *mut libc::sockaddr_nl).cast(),
                &mut from_len,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::EAGAIN | libc::EINTR) => Ok(None),
                _ => Err(err),
            };
        }
        Ok(Some(Received::from_sender(n as usize, &from, from_len)))
    }
}

/// One datagram read from a [`TraceSocket`], judged by its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// This many bytes, sent by the kernel (port id 0): trace messages to read.
    Kernel(usize),
    /// Sent by another socket (its port id, `None` when the kernel gave no address): any
    /// process with `CAP_NET_ADMIN` in the
    /// namespace, e.g. a container's root, may multicast to the trace group, so its
    /// datagrams are not read.
    NotFromKernel(Option<u32>),
}

impl Received {
    fn from_sender(len: usize, from: &libc::sockaddr_nl, from_len: libc::socklen_t) -> Self {
        let complete = from_len as usize >= mem::size_of::<libc::sockaddr_nl>()
            && libc::c_int::from(from.nl_family) == libc::AF_NETLINK;
        match (complete, from.nl_pid) {
            (true, 0) => Received::Kernel(len),
            (true, pid) => Received::NotFromKernel(Some(pid)),
            // An address the kernel did not fill in names no sender: not trusted either.
            (false, _) => Received::NotFromKernel(None),
        }
    }
}

/// Moves the calling thread into the network namespace `ns` (an open `/proc/PID/ns/net` or
/// `/var/run/netns/NAME`). Only this thread moves; processes it spawns start there.
pub fn enter_netns(ns: &File) -> io::Result<()> {
    // SAFETY: plain system call on a descriptor that stays open for the call.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the process `command` starts get SIGKILL when the thread that starts it ends
/// (`PR_SET_PDEATHSIG` follows the creating thread, not the process): however that thread
/// or this process ends (a panic, SIGKILL), the child goes with it. The child refuses to
/// start when this process is already gone by the time it runs.
pub fn kill_with_calling_thread(command: &mut Command) -> &mut Command {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe system calls (prctl, getppid); it allocates nothing (errors from
    // raw codes carry no allocation).
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then no signal would come.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        })
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of the BPF events' timestamps
/// (`bpf_ktime_get_ns`), so that trace steps sort among them.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
