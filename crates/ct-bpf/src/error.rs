//! The crate's one error type. Each message says what went wrong and what to do about it.

use crate::probe::ProbeSpecError;

/// Why collection could not start or go on. [`Error::category`] sorts the variants into
/// what the caller can do about them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The kernel has no BTF (`/sys/kernel/btf/vmlinux`).
    #[error(
        "kernel BTF is missing (/sys/kernel/btf/vmlinux): use a kernel built with \
         CONFIG_DEBUG_INFO_BTF=y"
    )]
    NoBtf,
    /// The kernel's BTF exists but could not be read or parsed; why.
    #[error("kernel BTF could not be read: {0}")]
    BtfUnreadable(String),
    /// Not allowed to load BPF programs.
    #[error(
        "insufficient privileges to load BPF programs: run as root, or grant CAP_BPF and \
         CAP_PERFMON (e.g. sudo setcap cap_bpf,cap_perfmon+ep $(which ct-cli))"
    )]
    Privileges,
    /// The kernel has no conntrack (`sk_buff` has no `_nfct`), or its module is not loaded.
    #[error(
        "connection tracking is not available in this kernel: it needs CONFIG_NF_CONNTRACK=y, \
         or =m with the module loaded (modprobe nf_conntrack; to load it at boot: \
         echo nf_conntrack >> /etc/modules-load.d/conntrack.conf)"
    )]
    NoConntrack,
    /// A prerequisite [`check`](crate::check()) found missing, named by its report line.
    #[error("{check}: {detail}")]
    NotReady {
        /// The report line's name.
        check: &'static str,
        /// What it found.
        detail: String,
    },
    /// A probe spec that does not parse.
    #[error(transparent)]
    ProbeSpec(#[from] ProbeSpecError),
    /// The kernel has no such tracepoint or function.
    #[error("probe {spec}: no such {what} in this kernel{}", suggest(.suggestions))]
    UnknownProbe {
        /// The probe.
        spec: String,
        /// `tracepoint` or `function`.
        what: &'static str,
        /// Close names the kernel has.
        suggestions: Vec<String>,
    },
    /// The probe has no `struct sk_buff *` argument.
    #[error(
        "probe {spec}: none of its arguments is a struct sk_buff * (arguments: {}); pick a \
         probe that handles packets",
        list(.args)
    )]
    NoSkbArgument {
        /// The probe.
        spec: String,
        /// Its argument types, from BTF.
        args: Vec<String>,
    },
    /// The skb argument is past those the program reads.
    #[error(
        "probe {spec}: the struct sk_buff * is argument {index}, past the {max} arguments a \
         probe can read; pick another probe"
    )]
    SkbArgumentOutOfReach {
        /// The probe.
        spec: String,
        /// The skb's argument index.
        index: usize,
        /// How many arguments the program can read.
        max: usize,
    },
    /// A `kp:` or `kr:` probe on a kernel without kprobes.
    #[error(
        "probe {spec}: kprobes are not available in this kernel (CONFIG_KPROBES is not set); \
         use tracepoints instead, e.g. tp:net:net_dev_start_xmit, tp:net:netif_receive_skb, \
         tp:skb:kfree_skb"
    )]
    KprobesUnsupported {
        /// The probe.
        spec: String,
    },
    /// The builder was given no probe.
    #[error("no probe given: name at least one (e.g. tp:net:net_dev_start_xmit)")]
    NoProbes,
    /// The same probe twice.
    #[error("probe {spec} is given twice")]
    DuplicateProbe {
        /// The probe.
        spec: String,
    },
    /// A ring buffer size the kernel does not take.
    #[error(
        "ring buffer size {0} is not valid: it must be a power of two of at least 4096 bytes \
         (e.g. 4194304)"
    )]
    RingSize(u64),
    /// A filter the kernel program cannot hold or this kernel cannot evaluate.
    #[error("filter {filter:?}: {reason}")]
    Filter {
        /// The filter as given.
        filter: String,
        /// Why.
        reason: String,
    },
    /// libbpf or the verifier refused the program.
    #[error("loading the BPF program for {probe} failed: {source}")]
    Load {
        /// The probe the program was loaded for.
        probe: String,
        /// libbpf's error.
        #[source]
        source: libbpf_rs::Error,
    },
    /// The kernel refused to attach the loaded program.
    #[error("attaching to {probe} failed: {source}")]
    Attach {
        /// The probe.
        probe: String,
        /// libbpf's error.
        #[source]
        source: libbpf_rs::Error,
    },
    /// A kernel struct larger than the program's copy of it.
    #[error(
        "this kernel's struct {name} is {size} bytes, more than the {room} bytes the BPF \
         program copies it into: this build of ct-trace does not support the kernel (raise \
         CT_SCRATCH_LEN in crates/ct-bpf/src/bpf/ct_fill.h and rebuild)"
    )]
    ScratchTooSmall {
        /// The struct (`sk_buff`, `nf_conn`).
        name: &'static str,
        /// Its size in this kernel, from BTF.
        size: usize,
        /// The room the program has for it.
        room: usize,
    },
    /// The embedded BPF object lacks a map, program or section this library expects.
    #[error("the BPF object does not have the expected {0}: library and program are out of sync")]
    ObjectLayout(&'static str),
    /// The tcpdump filter's translation does not fit the program.
    #[error("tcpdump filter {filter:?}: {source}")]
    PcapTranslate {
        /// The expression.
        filter: String,
        /// Why it does not fit.
        #[source]
        source: ct_pcap::TranslateError,
    },
    /// Setting up or reading the ring buffer failed.
    #[error("reading the ring buffer failed: {0}")]
    Ring(#[source] libbpf_rs::Error),
    /// Reading the lost-events counter failed.
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
