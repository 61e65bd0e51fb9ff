//! The static release `ct-cli` (scripts/static-build.sh) runs alone in an empty root: a
//! directory holding nothing but the binary, with proc, sysfs and a bpffs mounted in it.
//! No /etc, /tmp, /lib or loader: `check` must say that collection can run, and `collect`
//! must attach and report conntrack data for traffic in the ct-lab namespaces.
//!
//! The binary comes from `CT_STATIC_BIN` (scripts/test.sh builds it and sets it); nothing
//! is built here, so the test runs anywhere the binary and the lab's tools are. Without
//! `CT_STATIC_BIN`, or without root and the lab's tools, it prints why and skips; with
//! `CT_REQUIRE_KERNEL_TESTS=1` it fails instead.
//!
//! The mounts are made in a private mount namespace of the `chroot` child (in `pre_exec`),
//! so they go away with that process whatever happens to the test, and are never seen by
//! the rest of the machine.

mod support;

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use ct_lab::{Lab, Node, SERVER4};
use support::*;

/// Whether the ELF file at `path` names a program interpreter (a PT_INTERP header): a
/// dynamically linked executable does, a static one does not.
fn has_interpreter(path: &Path) -> bool {
    let elf = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        elf.len() >= 64 && elf.starts_with(b"\x7fELF") && elf[4] == 2 && elf[5] == 1,
        "{} is not a 64-bit little-endian ELF file",
        path.display()
    );
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[32..40].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    (0..phnum).any(|i| {
        let at = phoff + i * phentsize;
        let p_type = u32::from_le_bytes(elf[at..at + 4].try_into().unwrap());
        p_type == 3 // PT_INTERP
    })
}

/// An empty directory with the binary as `/ct-cli` and the mount points `/proc` and `/sys`.
/// Removed on drop.
struct Root(Scratch);

impl Root {
    fn new(bin: &Path) -> Root {
        let scratch = Scratch::new("static-root");
        let dest = scratch.path("ct-cli");
        std::fs::copy(bin, &dest)
            .unwrap_or_else(|e| panic!("copying {} into the root: {e}", bin.display()));
        for dir in ["proc", "sys"] {
            std::fs::create_dir(scratch.path(dir)).unwrap();
        }
        Root(scratch)
    }

    fn dir(&self) -> &Path {
        self.0.dir()
    }

    /// `chroot ROOT /ct-cli ARGS...`, its mounts made in a mount namespace of its own.
    fn command(&self, args: &[&str]) -> Command {
        let cstr = |p: &Path| CString::new(p.as_os_str().as_bytes()).unwrap();
        let proc_dir = cstr(&self.0.path("proc"));
        let sys_dir = cstr(&self.0.path("sys"));
        let bpf_dir = cstr(&self.0.path("sys/fs/bpf"));
        let mut cmd = Command::new("chroot");
        cmd.arg(self.dir()).arg("/ct-cli").args(args);
        // SAFETY: the closure only makes system calls (unshare, mount) on strings
        // allocated before the fork; nothing in it allocates or takes a lock.
        unsafe {
            cmd.pre_exec(move || {
                private_mount_ns()?;
                let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
                mount(c"proc", &proc_dir, c"proc", flags)?;
                mount(c"sysfs", &sys_dir, c"sysfs", flags)?;
                mount(c"bpf", &bpf_dir, c"bpf", flags)
            });
        }
        cmd
    }

    /// Panics if a mount under the root is visible here (it should live and die in the
    /// child's own mount namespace).
    fn assert_no_mounts_here(&self) {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let dir = self.dir().to_string_lossy();
        assert!(
            !mountinfo.lines().any(|l| l.contains(&*dir)),
            "a mount under {dir} leaked into the test's mount namespace:\n{mountinfo}"
        );
    }
}

/// Moves the calling (child) process into a new mount namespace that receives nothing from
/// the parent's and propagates nothing back.
fn private_mount_ns() -> io::Result<()> {
    // SAFETY: plain system calls with valid (or null where allowed) arguments.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(io::Error::last_os_error());
        }
        let rc = libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        );
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn mount(
    source: &std::ffi::CStr,
    target: &std::ffi::CStr,
    fstype: &std::ffi::CStr,
    flags: libc::c_ulong,
) -> io::Result<()> {
    // SAFETY: every pointer is a NUL-terminated string that outlives the call; no data.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[test]
fn static_binary_runs_in_an_empty_root() {
    let Some(bin) = static_bin() else { return };
    assert!(
        !has_interpreter(&bin),
        "{} has a program interpreter: it is not a static executable",
        bin.display()
    );
    let _lock = kernel_lock();
    let root = Root::new(&bin);

    // Nothing but the binary and the two mount points.
    let mut entries: Vec<String> = std::fs::read_dir(root.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(entries, ["ct-cli", "proc", "sys"]);

    let check = root
        .command(&["check"])
        .stdin(Stdio::null())
        .output()
        .expect("chroot starts");
    let stdout = String::from_utf8_lossy(&check.stdout);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert_eq!(
        check.status.code(),
        Some(0),
        "ct-cli check in the empty root:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("collection can run"),
        "ct-cli check in the empty root:\n{stdout}\n{stderr}"
    );
    root.assert_no_mounts_here();

    // Pings from the client to the server through the router, whose NAT ruleset makes
    // conntrack track them; collect what the router sends, written to a file in the root.
    let lab = Lab::new().expect("building the lab");
    lab.router_nft(ROUTER_NAT).expect("loading the ruleset");
    let netns = lab.netns_inode(Node::Router).to_string();
    let mut cmd = root.command(&[
        "collect",
        "-p",
        "tp:net:net_dev_start_xmit",
        "--netns",
        &netns,
        "--ct-only",
        "-n",
        "3",
        "--duration",
        "30s",
        "-o",
        "/events.json",
    ]);
    let mut collect = Collect::spawn(cmd.stdout(Stdio::piped()));
    collect.wait_ready();
    let server = SERVER4.to_string();
    let ping = lab
        .spawn(
            Node::Client,
            &["ping", "-n", "-q", "-c", "100", "-i", "0.1", &server],
        )
        .expect("ping starts");
    let (status, _stdout, stderr) = collect.finish(Duration::from_secs(60));
    drop(ping);
    assert_eq!(
        status.code(),
        Some(0),
        "ct-cli collect in the empty root:\n{}",
        stderr.join("\n")
    );
    assert_eq!(summary(&stderr), (3, 3, 0), "{}", stderr.join("\n"));
    let events = read_file(&root.0.path("events.json"));
    assert_eq!(events.len(), 3);
    assert!(
        events.iter().all(|e| e.ct.is_some()),
        "events without conntrack data: {events:?}"
    );
    root.assert_no_mounts_here();
}
