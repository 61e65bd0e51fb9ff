//! The one unsafe module: compiling an expression with libpcap (`pcap_open_dead`,
//! `pcap_compile`), for a link type, into classic BPF.

use std::ffi::{c_char, c_int, c_uint, CStr, CString};
use std::sync::Mutex;

use crate::cbpf::Insn;
use crate::{LinkType, PcapError};

#[repr(C)]
struct PcapT {
    _private: [u8; 0],
}

/// `struct bpf_program`.
#[repr(C)]
struct BpfProgram {
    bf_len: c_uint,
    bf_insns: *mut Insn,
}

/// `PCAP_NETMASK_UNKNOWN`: broadcast tests refuse to compile instead of guessing.
const PCAP_NETMASK_UNKNOWN: u32 = 0xffff_ffff;

extern "C" {
    fn pcap_open_dead(linktype: c_int, snaplen: c_int) -> *mut PcapT;
    fn pcap_compile(
        p: *mut PcapT,
        fp: *mut BpfProgram,
        expr: *const c_char,
        optimize: c_int,
        netmask: u32,
    ) -> c_int;
    fn pcap_geterr(p: *mut PcapT) -> *mut c_char;
    fn pcap_freecode(fp: *mut BpfProgram);
    fn pcap_close(p: *mut PcapT);
}

// The layout libpcap writes: 8 bytes per instruction, `k` at offset 4.
const _: () = assert!(std::mem::size_of::<Insn>() == 8);
const _: () = assert!(std::mem::offset_of!(Insn, k) == 4);

/// libpcap's compiler keeps state in globals in older releases: one compile at a time.
static COMPILER: Mutex<()> = Mutex::new(());

/// Compiles `expr` for `link` with libpcap's optimizer, for packets of at most `snaplen`
/// bytes.
pub fn compile(expr: &str, link: LinkType, snaplen: u32) -> Result<Vec<Insn>, PcapError> {
    let c_expr = CString::new(expr).map_err(|_| PcapError::Nul)?;
    let _guard = COMPILER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let snaplen = c_int::try_from(snaplen).unwrap_or(c_int::MAX);
    // SAFETY: plain call; a null result is checked.
    let handle = unsafe { pcap_open_dead(link.dlt(), snaplen) };
    if handle.is_null() {
        return Err(PcapError::Open(link));
    }
    let mut program = BpfProgram {
        bf_len: 0,
        bf_insns: std::ptr::null_mut(),
    };
    // SAFETY: `handle` is a live pcap_t, `program` a valid out-parameter, `c_expr` a
    // NUL-terminated string that outlives the call.
    let rc = unsafe {
        pcap_compile(
            handle,
            &mut program,
            c_expr.as_ptr(),
            1,
            PCAP_NETMASK_UNKNOWN,
        )
    };
    let result = if rc != 0 {
        // SAFETY: pcap_geterr returns a NUL-terminated buffer owned by `handle`, copied
        // before the handle is closed.
        let message = unsafe { CStr::from_ptr(pcap_geterr(handle)) };
        Err(PcapError::Compile {
            link,
            message: message.to_string_lossy().into_owned(),
        })
    } else {
        // SAFETY: on success libpcap filled `bf_len` instructions at `bf_insns`, which
        // stay valid until pcap_freecode.
        let insns = unsafe {
            if program.bf_insns.is_null() {
                Vec::new()
            } else {
                std::slice::from_raw_parts(program.bf_insns, program.bf_len as usize).to_vec()
            }
        };
        // SAFETY: the program came from pcap_compile and is freed once.
        unsafe { pcap_freecode(&mut program) };
        Ok(insns)
    };
    // SAFETY: the handle came from pcap_open_dead and is closed once.
    unsafe { pcap_close(handle) };
    result
}

/// libdbus's archive (linked in only by the fully static build, with libpcap's) refers to
/// systemd's socket-activation checks from code a bus daemon runs; Debian ships no
/// libsystemd archive, and nothing here opens libpcap's D-Bus capture source, the only
/// way into that code. These answer "no socket activation", which is true of this process.
#[cfg(feature = "static")]
mod systemd_for_static_libdbus {
    use std::ffi::c_int;

    #[no_mangle]
    extern "C" fn sd_is_socket(
        _fd: c_int,
        _family: c_int,
        _kind: c_int,
        _listening: c_int,
    ) -> c_int {
        0
    }

    #[no_mangle]
    extern "C" fn sd_listen_fds(_unset_environment: c_int) -> c_int {
        0
    }
}
