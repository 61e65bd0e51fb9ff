//! Kernel lab for ct-trace tests: a client - router - server topology in fresh network
//! namespaces, an nftables ruleset on the router, bounded traffic, `conntrack -L` read as
//! the independent witness, and event capture with the ct-bpf collector.
//!
//! ```text
//!  client (c0)            router (rc | rs)             server (s0)
//!  10.0.1.2/24  ------- 10.0.1.1   10.0.2.1 ------- 10.0.2.2/24
//!  fd00:1::2/64 ------- fd00:1::1  fd00:2::1 ------ fd00:2::2/64
//! ```
//!
//! Every lab gets namespaces named `ctlab-<pid>-<n>-{c,r,s}`, so labs run in parallel
//! (tests in one process, several test processes). The addresses above exist only inside
//! those namespaces; no traffic leaves them. Dropping the [`Lab`] kills what runs in its
//! namespaces and deletes them, also while a failing test unwinds; labs of a process that
//! was killed are removed by the next `Lab::new`.
//!
//! Beside the lab: [`run_or_skip`], the one gate every kernel test of the workspace
//! passes (skip with a printed reason, or fail under `CT_REQUIRE_KERNEL_TESTS=1`);
//! [`Scratch`] directories; and [`Collect`], a `ct-cli` process under test with the BPF
//! objects it holds ([`BpfIds`]).
//!
//! Use it from tests only (a dev-dependency):
//!
//! ```no_run
//! use ct_lab::{Lab, Node};
//!
//! if !ct_lab::kernel_available() {
//!     return; // printed "skipping: <reason>" (or panicked under CT_REQUIRE_KERNEL_TESTS=1)
//! }
//! let lab = Lab::new().unwrap();
//! lab.router_nft(
//!     "table inet t {
//!         chain f {
//!             type filter hook forward priority filter;
//!             ct state new counter
//!         }
//!     }",
//! )
//! .unwrap();
//! lab.ping(Node::Client, ct_lab::SERVER4.into(), 2).unwrap();
//! let entries = lab.conntrack_entries(Node::Router).unwrap();
//! assert!(!entries.is_empty());
//! ```

use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

mod capture;
mod conntrack;
mod drops;
mod exec;
mod flood;
mod process;
mod scratch;
mod traffic;

pub use capture::{Capture, Captured, LAB_PROBES};
pub use conntrack::{parse_conntrack, CtEntry, CtEntryTuple};
pub use drops::{ExpectedReason, NFT_DROP_ECHO, NFT_DROP_INVALID};
pub use exec::{scaled, Bg, LabError, Output, TIME_SCALE_ENV};
pub use flood::{
    run_on_flood, spawn_reading_stdin, wait_with_usage, write_flood, ChildUsage, FloodRun,
    FLOOD_EVENT_GAP_NS,
};
pub use process::{processes_holding, BpfIds, Collect};
pub use scratch::Scratch;
pub use traffic::{SctpHandshake, TcpClientResult, UdpClientResult};

/// The client's address on its link to the router.
pub const CLIENT4: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
/// The router's address on the client side.
pub const ROUTER_C4: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
/// The router's address on the server side.
pub const ROUTER_S4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 1);
/// The server's address.
pub const SERVER4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 2);
pub const ROUTER_C6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1);
pub const ROUTER_S6: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 1);
pub const SERVER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 2);

/// Interface names inside the namespaces.
pub const CLIENT_IF: &str = "c0";
/// The router's interface towards the client.
pub const ROUTER_CLIENT_IF: &str = "rc";
/// The router's interface towards the server.
pub const ROUTER_SERVER_IF: &str = "rs";
pub const SERVER_IF: &str = "s0";

/// Link-layer addresses (each link is private to its lab). Neighbour entries are static,
/// so no ARP or neighbour discovery delays or reorders the first packets of a case.
pub const CLIENT_MAC: &str = "02:00:0a:00:01:02";
pub const ROUTER_C_MAC: &str = "02:00:0a:00:01:01";
pub const ROUTER_S_MAC: &str = "02:00:0a:00:02:01";
pub const SERVER_MAC: &str = "02:00:0a:00:02:02";

/// Default time limit for one command in the lab.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Set to `1` (CI does) to turn a skipped kernel test into a failure.
pub const REQUIRE_ENV: &str = "CT_REQUIRE_KERNEL_TESTS";

/// One of the three namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Node {
    Client,
    Router,
    Server,
}

impl Node {
    pub const ALL: [Node; 3] = [Node::Client, Node::Router, Node::Server];

    fn index(self) -> usize {
        match self {
            Node::Client => 0,
            Node::Router => 1,
            Node::Server => 2,
        }
    }

    fn suffix(self) -> char {
        match self {
            Node::Client => 'c',
            Node::Router => 'r',
            Node::Server => 's',
        }
    }
}

/// Why kernel tests cannot run here, or `Ok(())` when they can: root, kernel BTF, and the
/// tools the lab drives (ip, nft, conntrack, ping, python3, unshare).
pub fn require_kernel() -> Result<(), LabError> {
    static ANSWER: OnceLock<Result<(), String>> = OnceLock::new();
    ANSWER.get_or_init(check_kernel).clone().map_err(LabError)
}

fn check_kernel() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root (the lab creates network namespaces and loads BPF)".into());
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err("no kernel BTF (/sys/kernel/btf/vmlinux)".into());
    }
    if !Path::new("/proc/sys/net/netfilter").exists() {
        return Err("no netfilter conntrack in this kernel (/proc/sys/net/netfilter)".into());
    }
    let tools: [(&str, &[&str]); 6] = [
        ("ip", &["-V"]),
        ("nft", &["--version"]),
        ("conntrack", &["--version"]),
        ("ping", &["-V"]),
        ("python3", &["--version"]),
        ("unshare", &["--version"]),
    ];
    for (tool, args) in tools {
        match exec::run(Command::new(tool).args(args), None, Duration::from_secs(5)) {
            Ok(o) if o.success() => {}
            Ok(o) => return Err(format!("`{tool}` does not work: {}", o.stderr.trim())),
            Err(_) => {
                return Err(format!(
                    "no `{tool}` (install nftables, conntrack, iproute2, iputils-ping, python3)"
                ))
            }
        }
    }
    Ok(())
}

/// For the top of every kernel test that uses the lab: `true` when it can run here
/// ([`require_kernel`]); otherwise [`run_or_skip`] decides.
pub fn kernel_available() -> bool {
    run_or_skip(require_kernel())
}

/// For the top of kernel tests that only load BPF programs (and judge `check`, so they
/// cannot ask it): `true` with the privileges to load them and kernel BTF; otherwise
/// [`run_or_skip`] decides.
pub fn bpf_loadable() -> bool {
    run_or_skip(if !ct_bpf::has_bpf_privileges() {
        Err("no privileges to load BPF programs")
    } else if !Path::new(ct_bpf::VMLINUX_BTF).exists() {
        Err("no kernel BTF")
    } else {
        Ok(())
    })
}

/// Whether the kernel tests run in quick mode (`CT_QUICK_KERNEL_TESTS=1`, which
/// scripts/kernels.sh sets in the emulated VMs of the matrix, whose time is CI's): tests
/// then run one case of each kind, and leave to the host what does not vary by kernel.
pub fn quick_kernel_tests() -> bool {
    std::env::var("CT_QUICK_KERNEL_TESTS").is_ok_and(|v| v == "1")
}

/// The one gate of the kernel tests: what a test does when it cannot run here. `ready`
/// is `Ok(())` when it can, or why it cannot (the test's own requirements: the lab's,
/// privileges, a tool, a binary).
///
/// Returns `true` when the test can go on. Otherwise it prints `skipping: <reason>` and
/// returns `false`; but when [`REQUIRE_ENV`] is `1` (CI sets it) it panics with the
/// reason, so that a skipped kernel test is a failure there. Any other value (`0`, empty)
/// or none at all means skip.
pub fn run_or_skip(ready: Result<(), impl std::fmt::Display>) -> bool {
    let required = kernel_tests_required(std::env::var(REQUIRE_ENV).ok().as_deref());
    go_on_or_skip(ready, required)
}

/// Whether [`REQUIRE_ENV`]'s value (`None` when unset) turns a skip into a failure.
fn kernel_tests_required(value: Option<&str>) -> bool {
    value == Some("1")
}

fn go_on_or_skip(ready: Result<(), impl std::fmt::Display>, required: bool) -> bool {
    let Err(reason) = ready else {
        return true;
    };
    if required {
        panic!("kernel test cannot run and {REQUIRE_ENV}=1: {reason}");
    }
    println!("skipping: {reason}");
    false
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

const NETNS_DIR: &str = "/run/netns";
const PREFIX: &str = "ctlab-";

/// The client - router - server topology. See the crate documentation.
#[derive(Debug)]
pub struct Lab {
    names: [String; 3],
    inodes: [u32; 3],
    /// Namespaces created so far (all three once `new` returns); deleted on drop.
    created: Vec<String>,
    tmp: PathBuf,
}

impl Lab {
    /// For the top of a kernel test: the lab, or `None` when it cannot be had here
    /// ([`kernel_available`] decided: skip, or fail under `CT_REQUIRE_KERNEL_TESTS=1`).
    /// Building it where the kernel allows must work: a failure panics.
    pub fn for_test() -> Option<Lab> {
        kernel_available().then(|| Lab::new().expect("building the lab"))
    }

    /// Builds the topology. On error, whatever was created is removed.
    pub fn new() -> Result<Lab, LabError> {
        remove_stale_labs();
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let base = format!("{PREFIX}{pid}-{n}");
        let names = Node::ALL.map(|node| format!("{base}-{}", node.suffix()));
        let tmp = std::env::temp_dir().join(&base);
        let mut lab = Lab {
            names,
            inodes: [0; 3],
            created: Vec::new(),
            tmp,
        };
        lab.build()?;
        Ok(lab)
    }

    fn build(&mut self) -> Result<(), LabError> {
        for i in 0..3 {
            let name = self.names[i].clone();
            ip(&["netns", "add", &name])?;
            self.created.push(name.clone());
            self.inodes[i] = fs::metadata(Path::new(NETNS_DIR).join(&name))
                .map_err(|e| LabError::new(format!("stat {NETNS_DIR}/{name}: {e}")))?
                .ino() as u32;
        }
        let [c, r, s] = self.names.clone();
        // Quiet namespaces: no DAD delay, no router solicitations, no redirects.
        for name in [&c, &r, &s] {
            self.sysctl_in(
                name,
                &[
                    "net.ipv6.conf.all.accept_dad=0",
                    "net.ipv6.conf.default.accept_dad=0",
                    "net.ipv6.conf.default.router_solicitations=0",
                    "net.ipv4.conf.all.send_redirects=0",
                    "net.ipv4.conf.default.send_redirects=0",
                ],
            )?;
        }
        self.sysctl_in(
            &r,
            &["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"],
        )?;
        let batch = |ns: &str, lines: &[String]| -> Result<(), LabError> {
            let script = lines.join("\n") + "\n";
            exec::run(
                Command::new("ip").args(["-n", ns, "-batch", "-"]),
                Some(script.as_bytes()),
                COMMAND_TIMEOUT,
            )?
            .ok()
            .map(drop)
        };
        batch(
            &c,
            &[
                "link set lo up".into(),
                format!("link add {CLIENT_IF} address {CLIENT_MAC} type veth peer name {ROUTER_CLIENT_IF} address {ROUTER_C_MAC} netns {r}"),
                format!("addr add {CLIENT4}/24 dev {CLIENT_IF}"),
                format!("addr add {CLIENT6}/64 dev {CLIENT_IF} nodad"),
                format!("link set {CLIENT_IF} up"),
                format!("route add default via {ROUTER_C4}"),
                format!("route add default via {ROUTER_C6}"),
                format!("neigh add {ROUTER_C4} lladdr {ROUTER_C_MAC} dev {CLIENT_IF} nud permanent"),
                format!("neigh add {ROUTER_C6} lladdr {ROUTER_C_MAC} dev {CLIENT_IF} nud permanent"),
            ],
        )?;
        batch(
            &s,
            &[
                "link set lo up".into(),
                format!("link add {SERVER_IF} address {SERVER_MAC} type veth peer name {ROUTER_SERVER_IF} address {ROUTER_S_MAC} netns {r}"),
                format!("addr add {SERVER4}/24 dev {SERVER_IF}"),
                format!("addr add {SERVER6}/64 dev {SERVER_IF} nodad"),
                format!("link set {SERVER_IF} up"),
                format!("route add default via {ROUTER_S4}"),
                format!("route add default via {ROUTER_S6}"),
                format!("neigh add {ROUTER_S4} lladdr {ROUTER_S_MAC} dev {SERVER_IF} nud permanent"),
                format!("neigh add {ROUTER_S6} lladdr {ROUTER_S_MAC} dev {SERVER_IF} nud permanent"),
            ],
        )?;
        batch(
            &r,
            &[
                "link set lo up".into(),
                format!("addr add {ROUTER_C4}/24 dev {ROUTER_CLIENT_IF}"),
                format!("addr add {ROUTER_C6}/64 dev {ROUTER_CLIENT_IF} nodad"),
                format!("addr add {ROUTER_S4}/24 dev {ROUTER_SERVER_IF}"),
                format!("addr add {ROUTER_S6}/64 dev {ROUTER_SERVER_IF} nodad"),
                format!("link set {ROUTER_CLIENT_IF} up"),
                format!("link set {ROUTER_SERVER_IF} up"),
                format!(
                    "neigh add {CLIENT4} lladdr {CLIENT_MAC} dev {ROUTER_CLIENT_IF} nud permanent"
                ),
                format!(
                    "neigh add {CLIENT6} lladdr {CLIENT_MAC} dev {ROUTER_CLIENT_IF} nud permanent"
                ),
                format!(
                    "neigh add {SERVER4} lladdr {SERVER_MAC} dev {ROUTER_SERVER_IF} nud permanent"
                ),
                format!(
                    "neigh add {SERVER6} lladdr {SERVER_MAC} dev {ROUTER_SERVER_IF} nud permanent"
                ),
            ],
        )?;
        Ok(())
    }

    fn sysctl_in(&self, ns: &str, settings: &[&str]) -> Result<(), LabError> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, "sysctl", "-q", "-w"]);
        cmd.args(settings);
        exec::run(&mut cmd, None, COMMAND_TIMEOUT)?.ok().map(drop)
    }

    /// The namespace's name (for `ip netns exec`).
    pub fn name(&self, node: Node) -> &str {
        &self.names[node.index()]
    }

    /// The namespace's bind mount (`/run/netns/<name>`), as `ct-cli collect --netns`
    /// takes it.
    pub fn netns_path(&self, node: Node) -> PathBuf {
        Path::new(NETNS_DIR).join(self.name(node))
    }

    /// The namespace's inode number, as the collector's netns filter and events use it.
    pub fn netns_inode(&self, node: Node) -> u32 {
        self.inodes[node.index()]
    }

    /// A command that runs `args` inside `node`'s namespace.
    pub fn command(&self, node: Node, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.name(node)]);
        cmd.args(args);
        cmd
    }

    /// Runs `args` in `node` with the default time limit; the exit status is not checked.
    pub fn exec(&self, node: Node, args: &[&str]) -> Result<Output, LabError> {
        self.exec_timeout(node, args, COMMAND_TIMEOUT)
    }

    /// Runs `args` in `node`, killed after `timeout`; the exit status is not checked.
    pub fn exec_timeout(
        &self,
        node: Node,
        args: &[&str],
        timeout: Duration,
    ) -> Result<Output, LabError> {
        exec::run(&mut self.command(node, args), None, timeout)
    }

    /// Runs `args` in `node` with `input` on its standard input.
    pub fn exec_input(&self, node: Node, args: &[&str], input: &str) -> Result<Output, LabError> {
        exec::run(
            &mut self.command(node, args),
            Some(input.as_bytes()),
            COMMAND_TIMEOUT,
        )
    }

    /// Starts `args` in `node` in the background; it is killed when the handle drops.
    pub fn spawn(&self, node: Node, args: &[&str]) -> Result<Bg, LabError> {
        Bg::spawn(&mut self.command(node, args))
    }

    /// Loads an nftables ruleset (`nft -f -`) in the router.
    pub fn router_nft(&self, ruleset: &str) -> Result<(), LabError> {
        self.nft(Node::Router, ruleset)
    }

    /// Loads an nftables ruleset in `node`.
    pub fn nft(&self, node: Node, ruleset: &str) -> Result<(), LabError> {
        self.exec_input(node, &["nft", "-f", "-"], ruleset)?
            .ok()
            .map(drop)
            .map_err(|e| LabError::new(format!("{e}\nruleset:\n{ruleset}")))
    }

    /// Sets sysctls (`key=value`) in `node`.
    /// The names of the `inet` tables in `node` (`nft list tables inet`).
    pub fn inet_tables(&self, node: Node) -> Result<Vec<String>, LabError> {
        let out = self.exec(node, &["nft", "list", "tables", "inet"])?.ok()?;
        Ok(out
            .stdout
            .lines()
            .filter_map(|l| l.trim().strip_prefix("table inet "))
            .map(str::to_owned)
            .collect())
    }

    pub fn sysctl(&self, node: Node, settings: &[&str]) -> Result<(), LabError> {
        self.sysctl_in(self.name(node), settings)
    }

    /// Every conntrack entry of `node` (IPv4 and IPv6), from `conntrack -L -o extended`
    /// with labels (label bits are named `bit0`..`bit127` through a private
    /// connlabel.conf, so any label reads back as its number).
    pub fn conntrack_entries(&self, node: Node) -> Result<Vec<CtEntry>, LabError> {
        let mut all = self.conntrack(node, &["-f", "ipv4"])?;
        all.extend(self.conntrack(node, &["-f", "ipv6"])?);
        Ok(all)
    }

    /// `conntrack -L -o extended,labels <extra>` in `node`, parsed (e.g. extra
    /// `["--src-nat"]` lists only source-NATed entries).
    pub fn conntrack(&self, node: Node, extra: &[&str]) -> Result<Vec<CtEntry>, LabError> {
        let overlay = self.connlabel_overlay()?;
        // conntrack names labels only from /etc/xtables/connlabel.conf: lay a directory
        // holding one over /etc in a private mount namespace (the host's /etc is untouched).
        let script = format!(
            "mount -t overlay ctlab -o lowerdir={}:/etc /etc 2>/dev/null; \
             exec conntrack -L -o extended,labels \"$@\"",
            overlay.display()
        );
        let mut args = vec!["unshare", "-m", "--", "sh", "-c", &script, "sh"];
        args.extend_from_slice(extra);
        let out = self.exec(node, &args)?.ok()?;
        Ok(parse_conntrack(&out.stdout))
    }

    fn connlabel_overlay(&self) -> Result<PathBuf, LabError> {
        let dir = self.tmp.join("etc");
        let file = dir.join("xtables").join("connlabel.conf");
        if !file.exists() {
            let text: String = (0..128).map(|i| format!("{i} bit{i}\n")).collect();
            fs::create_dir_all(file.parent().unwrap_or(&dir))
                .and_then(|()| fs::write(&file, text))
                .map_err(|e| LabError::new(format!("writing {}: {e}", file.display())))?;
        }
        Ok(dir)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for name in self.created.iter().rev() {
            kill_netns_pids(name);
        }
        for name in self.created.iter().rev() {
            let _ = ip(&["netns", "del", name]);
        }
        let _ = fs::remove_dir_all(&self.tmp);
    }
}

fn ip(args: &[&str]) -> Result<Output, LabError> {
    exec::run(Command::new("ip").args(args), None, COMMAND_TIMEOUT)?.ok()
}

fn kill_netns_pids(name: &str) {
    if let Ok(out) = ip(&["netns", "pids", name]) {
        for pid in out.stdout.split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

/// Deletes labs left behind by test processes that no longer exist (killed mid-test).
fn remove_stale_labs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let Ok(dir) = fs::read_dir(NETNS_DIR) else {
            return;
        };
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix(PREFIX)
                .and_then(|rest| rest.split('-').next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                kill_netns_pids(&name);
                let _ = ip(&["netns", "del", &name]);
                let _ = fs::remove_dir_all(
                    std::env::temp_dir().join(
                        name.trim_end_matches(|ch: char| ch != '-')
                            .trim_end_matches('-'),
                    ),
                );
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_1_requires_kernel_tests() {
        assert!(kernel_tests_required(Some("1")));
        for value in [None, Some("0"), Some(""), Some("yes"), Some("true")] {
            assert!(!kernel_tests_required(value), "{value:?}");
        }
    }

    #[test]
    fn a_test_that_can_run_goes_on_and_one_that_cannot_skips() {
        assert!(go_on_or_skip(Ok::<(), &str>(()), false));
        assert!(go_on_or_skip(Ok::<(), &str>(()), true));
        assert!(!go_on_or_skip(Err("no root"), false));
    }

    #[test]
    #[should_panic(expected = "kernel test cannot run and CT_REQUIRE_KERNEL_TESTS=1: no root")]
    fn a_required_test_that_cannot_run_fails() {
        go_on_or_skip(Err("no root"), true);
    }
}
