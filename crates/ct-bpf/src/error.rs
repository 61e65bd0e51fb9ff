//! The crate's one error type. Each message says what went wrong and what to do about it.

use crate::probe::ProbeSpecError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "kernel BTF is missing (/sys/kernel/btf/vmlinux): use a kernel built with \
         CONFIG_DEBUG_INFO_BTF=y"
    )]
    NoBtf,
    #[error("kernel BTF could not be read: {0}")]
    BtfUnreadable(String),
    #[error(
        "insufficient privileges to load BPF programs: run as root, or grant CAP_BPF and \
         CAP_PERFMON (e.g. sudo setcap cap_bpf,cap_perfmon+ep $(which ct-cli))"
    )]
    Privileges,
    #[error(
        "connection tracking is not available in this kernel: it needs CONFIG_NF_CONNTRACK=y, \
         or =m with the module loaded (modprobe nf_conntrack; to load it at boot: \
         echo nf_conntrack >> /etc/modules-load.d/conntrack.conf)"
    )]
    NoConntrack,
    /// A prerequisite [`check`](crate::check()) found missing, named by its report line.
    #[error("{check}: {detail}")]
    NotReady { check: &'static str, detail: String },
    #[error(transparent)]
    ProbeSpec(#[from] ProbeSpecError),
    #[error("probe {spec}: no such {what} in this kernel{}", suggest(.suggestions))]
    UnknownProbe {
        spec: String,
        what: &'static str,
        suggestions: Vec<String>,
    },
    #[error(
        "probe {spec}: none of its arguments is a struct sk_buff * (arguments: {}); pick a \
         probe that handles packets",
        list(.args)
    )]
    NoSkbArgument { spec: String, args: Vec<String> },
    #[error(
        "probe {spec}: the struct sk_buff * is argument {index}, past the {max} arguments a \
         probe can read; pick another probe"
    )]
    SkbArgumentOutOfReach {
        spec: String,
        index: usize,
        max: usize,
    },
    #[error(
        "probe {spec}: kprobes are not available in this kernel (CONFIG_KPROBES is not set); \
         use tracepoints instead, e.g. tp:net:net_dev_start_xmit, tp:net:netif_receive_skb, \
         tp:skb:kfree_skb"
    )]
    KprobesUnsupported { spec: String },
    #[error("no probe given: name at least one (e.g. tp:net:net_dev_start_xmit)")]
    NoProbes,
    #[error("probe {spec} is given twice")]
    DuplicateProbe { spec: String },
    #[error(
        "ring buffer size {0} is not valid: it must be a power of two of at least 4096 bytes \
         (e.g. 4194304)"
    )]
    RingSize(u64),
    #[error("filter {filter:?}: {reason}")]
    Filter { filter: String, reason: String },
    #[error("loading the BPF program for {probe} failed: {source}")]
    Load {
        probe: String,
        #[source]
        source: libbpf_rs::Error,
    },
    #[error("attaching to {probe} failed: {source}")]
    Attach {
        probe: String,
        #[source]
        source: libbpf_rs::Error,
    },
    #[error(
        "this kernel's struct {name} is {size} bytes, more than the {room} bytes the BPF \
         program copies it into: this build of ct-trace does not support the kernel (raise \
         CT_SCRATCH_LEN in crates/ct-bpf/src/bpf/ct_fill.h and rebuild)"
    )]
    ScratchTooSmall {
        name: &'static str,
        size: usize,
        room: usize,
    },
    #[error("the BPF object does not have the expected {0}: library and program are out of sync")]
    ObjectLayout(&'static str),
    #[error("tcpdump filter {filter:?}: {source}")]
    PcapTranslate {
        filter: String,
        #[source]
        source: ct_pcap::TranslateError,
    },
    #[error("reading the ring buffer failed: {0}")]
    Ring(#[source] libbpf_rs::Error),
    #[error("reading the lost-events counter failed: {0}")]
    LostCounter(#[source] libbpf_rs::Error),
}

fn suggest(s: &[String]) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!(" (did you mean {}?)", s.join(", "))
    }
}

fn list(args: &[String]) -> String {
    if args.is_empty() {
        "none".into()
    } else {
        args.join(", ")
    }
}

/// What kind of problem an [`Error`] is, so that a program can pick an exit code or a
/// reaction without matching every variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCategory {
    /// The request itself is wrong: a probe that does not exist or has no skb, a duplicate,
    /// a bad ring size. Fixing the arguments fixes it.
    Usage,
    /// Not allowed to load or attach BPF programs: run as root or grant capabilities.
    Privileges,
    /// The kernel lacks something collection needs (BTF, conntrack, kprobes).
    Prerequisite,
    /// Anything else, found while loading, attaching or reading.
    Runtime,
}

impl Error {
    /// The kind of problem this is; see [`ErrorCategory`].
    pub fn category(&self) -> ErrorCategory {
        if self.is_permission() {
            return ErrorCategory::Privileges;
        }
        match self {
            Error::NoBtf | Error::BtfUnreadable(_) | Error::NoConntrack => {
                ErrorCategory::Prerequisite
            }
            Error::KprobesUnsupported { .. }
            | Error::NotReady { .. }
            | Error::ScratchTooSmall { .. } => ErrorCategory::Prerequisite,
            Error::ProbeSpec(_)
            | Error::UnknownProbe { .. }
            | Error::NoSkbArgument { .. }
            | Error::SkbArgumentOutOfReach { .. }
            | Error::NoProbes
            | Error::DuplicateProbe { .. }
            | Error::RingSize(_)
            | Error::Filter { .. }
            | Error::PcapTranslate { .. } => ErrorCategory::Usage,
            Error::Privileges => ErrorCategory::Privileges,
            Error::Load { .. }
            | Error::Attach { .. }
            | Error::ObjectLayout(_)
            | Error::Ring(_)
            | Error::LostCounter(_) => ErrorCategory::Runtime,
        }
    }

    /// True when the failure is a missing privilege, so callers can tell the user to rerun
    /// with more rights rather than to change their probes.
    pub fn is_permission(&self) -> bool {
        match self {
            Error::Privileges => true,
            Error::Load { source, .. } | Error::Attach { source, .. } => {
                source.kind() == libbpf_rs::ErrorKind::PermissionDenied
            }
            _ => false,
        }
    }
}
