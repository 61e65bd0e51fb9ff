//! Command-line arguments.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use ct_bpf::{KernelFilters, MetaFilter, ProbeSpec};
use ct_bpf::{PcapError, PcapFilter};
use ct_bpf::{RAW_EVENT_SIZE, RING_EVENT_SIZE, RING_HDR_SIZE};
use ct_core::filter::{CtFilter, DropFilter, EventFilter, Follow, OptionValueError, PacketFilter};
use ct_core::{CtState, CtStatus, Format};
use strum::VariantNames;

use crate::exit;

mod files;
pub use files::{PrintArgs, ViewArgs};

const ABOUT: &str = "Show what netfilter conntrack knows about every packet seen at an eBPF probe";

const LONG_ABOUT: &str = "\
Show what netfilter conntrack knows about every packet seen at an eBPF probe.

`ct-cli collect` attaches BPF programs to probes that see a struct sk_buff and reports, for \
each packet, the packet summary and its conntrack entry (state, tuples, zone, mark, labels, \
parent of a RELATED flow). `ct-cli print` re-renders a saved events file, `ct-cli sort` \
groups its events by packet and `ct-cli conns` lists its connections; `ct-cli pcap` makes a \
pcapng capture of a file collected with --raw-headers (collect -w writes one while \
collecting); `ct-cli check` tells whether this machine can collect.";

const EXAMPLES: &str = "\
Examples:
  ct-cli check
  ct-cli collect -p tp:net:net_dev_start_xmit -o events.json
  ct-cli collect --netns /var/run/netns/router --ct-only --duration 10s
  ct-cli collect -f 'tcp port 443' --ct-state new,established
  ct-cli collect -m 'sk_buff._nfct:0x7 == 0x2'      # ctinfo NEW, read from the skb
  ct-cli print events.json
  ct-cli print --format singleline - < events.json
  ct-cli print events.json -f 'host 10.0.0.1' --ct-nat
  ct-cli sort events.json                           # events grouped by packet
  ct-cli conns events.json                          # one entry per connection
  ct-cli collect -w capture.pcapng                  # for Wireshark: tshark -r capture.pcapng
  ct-cli collect -o events.json --rotate-size 100m --rotate-count 10
  ct-cli sort events.json.2 events.json.1 events.json
  ct-cli collect --cmd 'curl -s http://10.0.0.1/'   # trace one command
  source <(ct-cli completions bash)
  ct-cli man collect | man -l -";

/// Exit codes 2 to 4, which mean the same for every command that uses them (exit.rs).
const USAGE_EXIT: (u8, &str) = (
    exit::USAGE,
    "usage: bad arguments, unknown probe, probe without a struct sk_buff * argument",
);
const PRIVILEGES_EXIT: (u8, &str) = (
    exit::PRIVILEGES,
    "insufficient privileges: run as root or grant CAP_BPF and CAP_PERFMON",
);
const PREREQUISITES_EXIT: (u8, &str) = (
    exit::PREREQUISITES,
    "prerequisites missing: no kernel BTF, no conntrack, no kprobes (see `ct-cli check`)",
);

/// The exit codes, as shown at the end of `--help`.
fn exit_codes_help() -> String {
    exit::help(&[
        (
            exit::SUCCESS,
            "success (collect: also when stopped by Ctrl-C/SIGTERM, -n or --duration)",
        ),
        (
            exit::GENERIC,
            "error (output file not writable, disk full, a malformed line in `print` input, ...)",
        ),
        USAGE_EXIT,
        PRIVILEGES_EXIT,
        PREREQUISITES_EXIT,
    ])
}

#[derive(Debug, Parser)]
#[command(
    name = "ct-cli",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = exit_codes_help(),
    after_long_help = format!("{EXAMPLES}\n\n{}", exit_codes_help()),
    propagate_version = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Attach probes and report packets with their conntrack state until stopped.
    #[command(after_help = exit_codes_help(), after_long_help = collect_long_help())]
    Collect(CollectArgs),
    /// Re-render a JSON Lines events file (or stdin) as text or JSON.
    #[command(after_help = exit_codes_help())]
    Print(PrintArgs),
    /// Group the events of a file by packet (across probes, clones and NAT), in time
    /// order.
    #[command(after_help = exit_codes_help())]
    Sort(ViewArgs),
    /// One entry per connection in a file: tuples, NAT, zone, mark, labels, helper, parent
    /// and the timeline of states the packets saw.
    #[command(after_help = exit_codes_help())]
    Conns(ViewArgs),
    /// Write the packets of events files collected with --raw-headers as pcapng, for
    /// Wireshark and tshark (as `collect -w` does while collecting).
    #[command(after_help = exit_codes_help())]
    Pcap(PcapArgs),
    /// Report whether this machine can collect (BTF, privileges, conntrack, probe types).
    #[command(after_help = exit::help(&[
        (exit::SUCCESS, "collection can run"),
        (exit::PREREQUISITES, "collection cannot run: fix the FAIL lines"),
    ]))]
    Check,
    /// Print a shell completion script: bash, zsh or fish
    /// (bash: `source <(ct-cli completions bash)`).
    Completions {
        #[arg(value_name = "SHELL")]
        shell: CompletionShell,
    },
    /// Print the man page, in roff, of ct-cli or one of its commands (`ct-cli man | man -l -`,
    /// `ct-cli man collect | man -l -`).
    Man {
        /// The command whose page to print; ct-cli's own without.
        #[arg(value_name = "COMMAND", value_parser = command_names())]
        command: Option<String>,
    },
}

const COLLECT_HELP: &str = "\
Default probes (without -p): tp:net:net_dev_start_xmit (packets leaving a device, locally \
generated or forwarded, after NAT), tp:net:netif_receive_skb (packets arriving, before \
conntrack has seen them), tp:skb:kfree_skb (drops) and tp:skb:consume_skb (packets freed \
after use). On kernels with kprobes, kp:ip_forward, kp:ip_local_deliver, kp:ip6_forward and \
kp:ip6_input are added when they exist.

Once every probe is attached, one line on stderr says so (`ct-cli: attached N probes (...); \
collecting`), before any event. On a terminal a status line on stderr keeps the counts \
current. At exit a summary line on stderr, `ct-cli: N events (M with conntrack), L lost`, \
gives the events written, how many carried conntrack data, and how many the kernel lost \
(ring buffer full, or a probe hit skipped because its program was already running on that \
CPU; `, D undecodable` follows when records could not be decoded). It goes on with what \
else the run did: how often -o rotated, the --cmd command's exit status, the packets -w \
wrote (and the events it could not: no IP header), the --nft verdicts. Ctrl-C or SIGTERM \
stops cleanly: every event read is written, the file ends with a complete line (-w: block), \
the probes are detached, a --cmd command is stopped.

Conntrack attaches to packets only in network namespaces where something uses it: an \
nftables/iptables rule matching ct state, NAT, or a helper. Without that, events have no ct \
section.";

/// `collect --help`: COLLECT_HELP and the exit codes.
fn collect_long_help() -> String {
    let codes = exit::help(&[
        (
            exit::SUCCESS,
            "success, also when stopped by Ctrl-C/SIGTERM, -n or --duration",
        ),
        (
            exit::GENERIC,
            "error (output file exists or is not writable, disk full, ring buffer read failed)",
        ),
        USAGE_EXIT,
        PRIVILEGES_EXIT,
        PREREQUISITES_EXIT,
    ]);
    format!("{COLLECT_HELP}\n\n{codes}")
}

/// `--format`: one of the names `Format` derives (multiline, singleline, json).
/// `--ring-size`: the space an event takes comes from the record layout.
fn ring_size_help() -> String {
    format!(
        "Ring buffer size in bytes: a power of two, at least 4096 (k/m/g suffixes: 8m). Raise \
         it when events are lost (each event takes {RING_EVENT_SIZE} bytes: a \
         {RAW_EVENT_SIZE}-byte record and its {RING_HDR_SIZE}-byte header; the kernel maps \
         the ring twice, so it costs twice its size in memory). Default: 2m"
    )
}

fn format_parser() -> impl clap::builder::TypedValueParser<Value = Format> {
    PossibleValuesParser::new(Format::VARIANTS).map(|s| {
        s.parse::<Format>()
            .expect("every possible value is a format name")
    })
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("outputs").args(["out", "pcapng"]).multiple(true)))]
pub struct CollectArgs {
    /// Probe to attach: tp:CATEGORY:NAME (tracepoint), kp:FUNCTION (kprobe) or
    /// kr:FUNCTION (kretprobe returning an skb). Repeat for several. Default: see below.
    #[arg(short = 'p', long = "probe", value_name = "PROBE", value_parser = clap::value_parser!(ProbeSpec))]
    pub probes: Vec<ProbeSpec>,

    /// Write events to FILE as JSON Lines (created with mode 0600; an existing file or a
    /// symbolic link is refused). Text goes to stdout only with --print.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Write the packets to FILE as pcapng for Wireshark and tshark (as tcpdump -w):
    /// the header bytes copied at each probe (raw IP, from the network header), the
    /// event's timestamp, and the event as text in the packet's comment
    /// (tshark -Y 'frame.comment contains "ct_state NEW"'). Alone or with -o; events
    /// without an IP header are counted, not written. Created like -o's file.
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub pcapng: Option<PathBuf>,

    /// Add the header bytes the probe copied (from the network header on, up to 96
    /// bytes) to each JSON event as hex (`packet.headers`), so that `ct-cli pcap` can
    /// make a capture of the file later.
    #[arg(long)]
    pub raw_headers: bool,

    /// With -o: when FILE holds SIZE bytes (k/m/g suffixes: 100m), rename it FILE.1
    /// (FILE.1 becomes FILE.2, ...) and start a new FILE, as tcpdump -C; every file ends
    /// with a complete event. Read them back in order: ct-cli sort FILE.2 FILE.1 FILE.
    #[arg(long, value_name = "SIZE", value_parser = parse_rotate_size, requires_all = ["out", "rotate_count"])]
    pub rotate_size: Option<u64>,

    /// With --rotate-size: keep at most N old files (FILE.1 to FILE.N); the oldest is
    /// replaced. FILE.1 ... FILE.N of an earlier run are refused (removed with --force).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000), requires = "rotate_size")]
    pub rotate_count: Option<u32>,

    /// With -o or -w: overwrite FILE if it exists (still never through a symbolic link).
    #[arg(long, requires = "outputs")]
    pub force: bool,

    /// With -o or -w: also print events on stdout.
    #[arg(long, requires = "outputs")]
    pub print: bool,

    /// Format of events printed on stdout.
    #[arg(long, value_name = "FORMAT", default_value = "multiline", ignore_case = true, value_parser = format_parser())]
    pub format: Format,

    /// Trace one command: run 'COMMAND ARGS' with /bin/sh -c once every probe is
    /// attached, collect while it runs, stop when it exits (Ctrl-C, SIGTERM, -n and
    /// --duration stop it: SIGTERM, SIGKILL 2 s later) and give its exit status in the
    /// summary. It runs in a process group of its own, and stopping reaches every
    /// process in it (a pipeline, a background job), also after the shell has exited.
    /// When events go to stdout, its stdout goes to stderr, so that its output never lands
    /// inside the events; its stdin is /dev/null when ct-cli's is a terminal. It runs as
    /// ct-cli does, in ct-cli's network namespace (--netns and the filters choose the
    /// packets reported, not where it runs: use `ip netns exec NAME COMMAND` for that).
    #[arg(long, value_name = "'COMMAND ARGS'", value_parser = parse_command)]
    pub cmd: Option<String>,

    /// Stop after N events.
    #[arg(short = 'n', long = "count", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Stop after this long: 10s, 500ms, 2m (a bare number is seconds).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    #[arg(long, value_name = "BYTES", value_parser = parse_size, help = ring_size_help())]
    pub ring_size: Option<u64>,

    /// Report only packets of one network namespace: /var/run/netns/NAME, an `ip netns`
    /// name, /proc/PID/ns/net, or the namespace's inode number.
    #[arg(long, value_name = "PATH_OR_INODE", value_parser = parse_netns)]
    pub netns: Option<Netns>,

    /// Report only packets that carry conntrack data (filtered in the kernel).
    #[arg(long)]
    pub ct_only: bool,

    /// What a filter's match selects: `packet` (the default) keeps a packet the filters
    /// (-f, --ct-*, -m) selected at one probe at every later probe until it is freed,
    /// whatever NAT, clones, veth crossings or namespace changes did to its headers;
    /// `conn` also keeps every packet of its conntrack entry, both directions, before and
    /// after NAT (filter on a service address, see the backend's replies); `none` judges
    /// every probe hit on its own. --netns, --ct-only and --drops still judge every hit.
    #[arg(
        long,
        value_name = "WHAT",
        default_value = "packet",
        ignore_case = true
    )]
    pub follow: Follow,

    /// Also report nftables verdicts: for each traced packet, every step nftables
    /// reports (each rule that matched, with its verdict or `continue`, and chain
    /// policies), from nftables' own tracing (no kprobes needed), with the task and
    /// devices of the packet. Only packets carrying the nftrace mark are reported: those
    /// the ruleset marks with `meta nftrace set 1`, or, with --allow-system-changes, those
    /// ct-cli marks itself. Traces the --netns namespace, or else every network namespace
    /// (those of processes and `ip netns` names, found at start and while running); each
    /// step carries its netns.
    #[arg(long)]
    pub nft: bool,

    /// With --nft: install a temporary nftables table (inet ct_trace_PID) that marks the
    /// packets -f selects for tracing, at the first priority of the prerouting and output
    /// hooks: in the --netns namespace, or else in each traced namespace that has an
    /// nftables ruleset (once it has one). They are removed at exit, Ctrl-C and SIGTERM;
    /// one left by a killed run is removed at the next start.
    #[arg(long, requires = "nft")]
    pub allow_system_changes: bool,

    /// Attach tracepoints as raw tracepoints (the skb read through helper calls) instead
    /// of BTF tracepoints (plain loads, cheaper; the default where the kernel has them).
    #[arg(long)]
    pub raw_tracepoints: bool,

    #[command(flatten)]
    pub filters: FilterArgs,

    /// Filter on a kernel field by BTF path (see meta_help).
    #[arg(
        short = 'm',
        long = "meta",
        value_name = "EXPR",
        value_parser = parse_meta,
        help = meta_help()
    )]
    pub meta: Vec<MetaFilter>,
}

/// Filters shared by `collect` (evaluated in the kernel, before an event is reserved) and
/// the commands reading a file (evaluated on each event).
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Packet filter in tcpdump's language ('tcp port 443', 'tcp[tcpflags] & tcp-syn !=
    /// 0', 'ether host 02:00:00:00:00:01', 'greater 1000'). collect compiles it with
    /// libpcap and runs it in the kernel on the packet's first 256 bytes from its MAC
    /// header. print, sort and conns evaluate the part of the language that needs no
    /// packet bytes: ip, ip6, tcp, udp, icmp, icmp6, sctp, proto N, [src|dst] host,
    /// net, port, portrange, and, or, not.
    #[arg(short = 'f', long = "filter", value_name = "EXPR", value_parser = parse_packet_filter)]
    pub filter: Option<FilterExpr>,

    /// Only packets in these conntrack states (comma-separated): new, established,
    /// related, reply, related_reply, untracked.
    #[arg(long, value_name = "STATES", value_parser = parse_states)]
    pub ct_state: Option<States>,

    /// Only connections with this mark: VALUE or VALUE/MASK (decimal or 0x hex).
    #[arg(long, value_name = "VALUE[/MASK]", value_parser = parse_mark)]
    pub ct_mark: Option<Mark>,

    /// Only connections in this zone.
    #[arg(long, value_name = "ZONE")]
    pub ct_zone: Option<u16>,

    /// Only connections with all these status bits (comma-separated names, e.g.
    /// src_nat,assured).
    #[arg(long, value_name = "BITS", value_parser = CtFilter::parse_status)]
    pub ct_status: Option<CtStatus>,

    /// Only NATed connections (source or destination).
    #[arg(long)]
    pub ct_nat: bool,

    /// Only packets dropped (events at skb:kfree_skb, whose reason is not SKB_CONSUMED, and
    /// nftables drop verdicts).
    #[arg(long)]
    pub drops: bool,

    /// Only drops with one of these reasons (comma-separated names of the kernel's enum
    /// skb_drop_reason without SKB_DROP_REASON_, any case: netfilter_drop,no_socket);
    /// nftables verdicts carry none and never match. collect checks them against the running kernel (Linux 5.17+).
    #[arg(long, value_name = "NAMES", value_parser = parse_drop_reasons)]
    pub drop_reason: Option<DropReasonNames>,
}

/// The names of ct-cli's commands, for `ct-cli man COMMAND`. Named here rather than read
/// from `Cli::command()`, which would build this very parser; the test
/// `man_pages_exist_for_every_command` holds the two lists equal.
pub const COMMAND_NAMES: &[&str] = &[
    "collect",
    "print",
    "sort",
    "conns",
    "pcap",
    "check",
    "completions",
    "man",
];

fn command_names() -> PossibleValuesParser {
    PossibleValuesParser::new(COMMAND_NAMES)
}

/// The shells `ct-cli completions` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// `--drop-reason` values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropReasonNames(pub Vec<String>);

fn parse_drop_reasons(s: &str) -> Result<DropReasonNames, OptionValueError> {
    DropFilter::parse_reasons(s).map(DropReasonNames)
}

/// `--ct-state` values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct States(pub Vec<CtState>);

/// `--ct-mark` value and mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark(pub u32, pub u32);

/// `-f`: the expression, compiled by libpcap for the kernel, and as events files can be
/// filtered where it is in the language they can be filtered with.
#[derive(Debug, Clone)]
pub struct FilterExpr {
    pub text: String,
    /// libpcap's programs.
    pub pcap: Result<PcapFilter, PcapError>,
    /// The expression for events (no packet bytes): why not, with column and caret.
    pub events: Result<PacketFilter, String>,
}

fn parse_packet_filter(s: &str) -> Result<FilterExpr, String> {
    let events = s.parse::<PacketFilter>().map_err(|e| format!("\n{e}"));
    let pcap = PcapFilter::compile(s, ct_bpf::PCAP_COPY_LEN);
    match (&pcap, &events) {
        // Both refuse it: libpcap's word on the language, and the column where ours
        // stopped (the error spans lines: it starts on its own line).
        (Err(pcap), Err(events)) => Err(format!("\n{pcap}{events}")),
        _ => Ok(FilterExpr {
            text: s.to_owned(),
            pcap,
            events,
        }),
    }
}

/// `-m`'s help, with the kernel program's limit.
fn meta_help() -> String {
    format!(
        "Filter on a kernel field by BTF path: 'sk_buff.FIELD[.FIELD...][:MASK] OP VALUE' \
         with OP one of == != < <= > >=, VALUE a number or a quoted string for char arrays, \
         e.g. 'sk_buff._nfct:0x7 == 0x2' or \"sk_buff.dev.name == 'eth0'\". Pointers are \
         followed. Repeat to require several (at most {}).",
        ct_bpf::MAX_META
    )
}

fn parse_meta(s: &str) -> Result<MetaFilter, String> {
    s.parse().map_err(|e| format!("\n{e}"))
}

fn parse_states(s: &str) -> Result<States, OptionValueError> {
    CtFilter::parse_states(s).map(States)
}

fn parse_mark(s: &str) -> Result<Mark, OptionValueError> {
    CtFilter::parse_mark(s).map(|(v, m)| Mark(v, m))
}

impl FilterArgs {
    pub fn ct(&self) -> CtFilter {
        CtFilter {
            states: self.ct_state.as_ref().map(|s| s.0.clone()),
            mark: self.ct_mark.map(|m| (m.0, m.1)),
            zone: self.ct_zone,
            status: self.ct_status,
            nat: self.ct_nat,
        }
    }

    pub fn drop(&self) -> DropFilter {
        DropFilter {
            only_drops: self.drops,
            reasons: self.drop_reason.as_ref().map(|r| r.0.clone()),
        }
    }

    /// The filter on an events file's fields: `-f` where it is in the address/port
    /// language (a tcpdump expression beyond it is run on header bytes: see
    /// `crate::filter::FileFilter`).
    pub fn event_filter(&self) -> EventFilter {
        EventFilter {
            packet: self.filter.as_ref().and_then(|f| f.events.clone().ok()),
            ct: self.ct(),
            drop: self.drop(),
        }
    }
}

impl CollectArgs {
    /// The tcpdump filter for the kernel, when libpcap compiled `-f`.
    pub fn pcap_filter(&self) -> Option<PcapFilter> {
        self.filters
            .filter
            .as_ref()
            .and_then(|f| f.pcap.clone().ok())
    }

    /// For the kernel.
    pub fn kernel_filters(&self) -> KernelFilters {
        KernelFilters {
            // The kernel runs libpcap's program where libpcap takes the expression.
            packet: self
                .filters
                .filter
                .as_ref()
                .filter(|f| f.pcap.is_err())
                .and_then(|f| f.events.clone().ok()),
            ct: self.filters.ct(),
            meta: self.meta.clone(),
            drop: self.filters.drop(),
        }
    }
}

/// Arguments of `ct-cli pcap`.
#[derive(Debug, Args)]
pub struct PcapArgs {
    /// JSON Lines events files with header bytes (`collect --raw-headers`), read as one
    /// stream in the order given; - for stdin.
    #[arg(value_name = "FILE|-", required = true)]
    pub files: Vec<PathBuf>,

    /// The pcapng file to write (created with mode 0600; an existing file or a symbolic
    /// link is refused), or - for stdout (not a terminal).
    #[arg(short = 'o', long = "out", value_name = "FILE.pcapng")]
    pub out: PathBuf,

    /// Overwrite the output file if it exists (still never through a symbolic link).
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub filters: FilterArgs,
}

/// A network namespace named on the command line.
#[derive(Debug, Clone)]
pub struct Netns {
    /// As the user gave it.
    pub spec: String,
    pub inode: u32,
    /// The namespace file, opened once when parsing (by path or `ip netns` name; `None`
    /// for an inode number): entering the namespace later uses this descriptor, never
    /// the path again.
    pub file: Option<Arc<ct_bpf::NetnsFile>>,
}

impl PartialEq for Netns {
    fn eq(&self, other: &Self) -> bool {
        (&self.spec, self.inode) == (&other.spec, other.inode)
    }
}

impl Eq for Netns {}

fn parse_netns(s: &str) -> Result<Netns, ct_bpf::NetnsError> {
    let named = ct_bpf::resolve_netns(s)?;
    Ok(Netns {
        spec: s.to_owned(),
        inode: named.inode,
        file: named.file.map(Arc::new),
    })
}

/// `10s`, `500ms`, `2m`, `1.5s`, `1h`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration: use e.g. 10s, 500ms or 2m");
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(bad()),
    };
    if !seconds.is_finite() || seconds <= 0.0 || seconds > 1e9 {
        return Err(format!("{s:?}: the duration must be more than 0"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Bytes with an optional binary suffix: `4096`, `64k`, `8m`, `1g` (case-insensitive,
/// `KiB`-style spellings accepted).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a size in bytes: use e.g. 4194304, 512k or 8m");
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: u64 = number.parse().map_err(|_| bad())?;
    let shift = match unit.trim() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(bad()),
    };
    value
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

fn parse_command(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err(
            "the command is empty: give one to run, e.g. --cmd 'curl -s http://10.0.0.1/'"
                .to_owned(),
        );
    }
    Ok(s.to_owned())
}

fn parse_rotate_size(s: &str) -> Result<u64, String> {
    match parse_size(s)? {
        0 => Err("the rotation size must be at least 1 byte".to_owned()),
        size => Ok(size),
    }
}

impl CollectArgs {
    /// Whether events go to stdout.
    pub fn prints(&self) -> bool {
        (self.out.is_none() && self.pcapng.is_none()) || self.print
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn man_pages_exist_for_every_command() {
        let names: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_owned())
            .collect();
        assert_eq!(names, COMMAND_NAMES);
    }

    #[test]
    fn every_format_name_parses() {
        for &name in Format::VARIANTS {
            assert_eq!(name.parse::<Format>().unwrap().to_string(), name);
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        for bad in ["", "s", "10x", "-1s", "0s", "1e400", "ms10"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("64k").unwrap(), 65536);
        assert_eq!(parse_size("8M").unwrap(), 8 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        for bad in ["", "k", "4x", "-4", "99999999999999999999g"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
