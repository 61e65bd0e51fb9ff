//! Prerequisite checks: can collection work on this machine, and what will it show?
//!
//! What the report says of the kernel comes from [`crate::kernel`]; what it says of
//! collection comes from loading the real program (and unloading it) for each kind of
//! probe, through [`CollectorBuilder::verify`].

use std::fmt;

use crate::collector::CollectorBuilder;
use crate::kernel::{
    self, has_bpf_privileges, kprobes_supported, Conntrack, KernelBtf, KernelConfig, KernelVersion,
    ModuleBtf, DROP_REASONS_SINCE, DROP_REASON_ENUM, MODULE_BTF_SINCE, NF_CONNTRACK_BTF,
    VMLINUX_BTF,
};
use crate::probe::{ProbeSpec, DEFAULT_TRACEPOINTS, DROP_TRACEPOINT};
use crate::Error;

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display)]
#[strum(serialize_all = "lowercase")]
pub enum Verdict {
    /// Present and working.
    Ok,
    /// Missing, but collection still works with less (the field will be null).
    Degraded,
    /// Missing, and collection cannot work without it.
    Fail,
    /// Not tried, because something it needs failed above (privileges, BTF).
    Skipped,
}

/// One line of the report: one prerequisite, what was found and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckItem {
    /// What was checked (`kernel`, `btf`, `tp_btf`, `drop reasons`, ...).
    pub name: &'static str,
    /// Whether it holds.
    pub verdict: Verdict,
    /// What was found.
    pub detail: String,
    /// What to do about it, for anything but `Ok`.
    pub remedy: Option<String>,
}

/// The answers to "will collection work here?" in the order a user would fix them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// Every line, in the order they are printed.
    pub items: Vec<CheckItem>,
}

impl Report {
    /// True when nothing failed: collection can run. The load lines are part of it, so a
    /// report that says so has loaded the program for the default tracepoints.
    pub fn ready(&self) -> bool {
        self.items.iter().all(|i| i.verdict != Verdict::Fail)
    }

    /// The first failure as an error, for callers that want to stop early.
    pub fn first_error(&self) -> Option<Error> {
        let failed = self.items.iter().find(|i| i.verdict == Verdict::Fail)?;
        Some(match failed.name {
            "btf" => Error::NoBtf,
            "privileges" => Error::Privileges,
            "conntrack" | "skb._nfct" => Error::NoConntrack,
            name => Error::NotReady {
                check: name,
                detail: failed.detail.clone(),
            },
        })
    }

    /// The line named `name`, if the report has one.
    pub fn get(&self, name: &str) -> Option<&CheckItem> {
        self.items.iter().find(|i| i.name == name)
    }

    fn push(&mut self, name: &'static str, verdict: Verdict, detail: String, remedy: Option<&str>) {
        self.items.push(CheckItem {
            name,
            verdict,
            detail,
            remedy: remedy.map(str::to_owned),
        });
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for item in &self.items {
            let mark = match item.verdict {
                Verdict::Ok => "ok",
                Verdict::Degraded => "degraded",
                Verdict::Fail => "FAIL",
                Verdict::Skipped => "skipped",
            };
            writeln!(f, "{:<10} {:<14} {}", mark, item.name, item.detail)?;
            if let Some(remedy) = &item.remedy {
                writeln!(f, "{:<10} {:<14} -> {}", "", "", remedy)?;
            }
        }
        if self.ready() {
            write!(f, "collection can run")
        } else {
            write!(f, "collection cannot run: fix the FAIL lines above")
        }
    }
}

/// Names of the load lines, one per kind of probe.
pub const LOAD_CHECKS: [&str; 4] = ["tp_btf", "raw_tp", "kprobe", "kretprobe"];
/// The probe the kprobe line loads: a packet's arrival at IPv4, in every kernel.
pub const KPROBE_CHECK: &str = "kp:ip_rcv";
/// The probe the kretprobe line loads: `skb_clone` returns a `struct sk_buff *` in every
/// kernel.
pub const KRETPROBE_CHECK: &str = "kr:skb_clone";

const MODPROBE: &str = "modprobe nf_conntrack (to load it at boot: echo nf_conntrack >> \
                        /etc/modules-load.d/conntrack.conf)";

/// Runs every check. Never fails itself: what it cannot find is reported as missing.
pub fn check() -> Report {
    let mut report = Report::default();

    let release = kernel::kernel_release();
    let version = release.as_deref().and_then(KernelVersion::parse);
    match (&release, version) {
        (Some(release), Some(v)) => report.push(
            "kernel",
            Verdict::Ok,
            format!("Linux {v} ({release})"),
            None,
        ),
        (Some(release), None) => report.push(
            "kernel",
            Verdict::Degraded,
            format!("release {release:?} does not parse as a version"),
            Some("version-dependent advice below is general"),
        ),
        (None, _) => report.push(
            "kernel",
            Verdict::Degraded,
            "release unknown: /proc/sys/kernel/osrelease is not readable".into(),
            Some("mount /proc"),
        ),
    }

    let btf = match KernelBtf::load() {
        Ok(btf) => {
            let detail = match btf.module() {
                ModuleBtf::Loaded => format!("{VMLINUX_BTF} and {NF_CONNTRACK_BTF}"),
                ModuleBtf::Absent => format!("{VMLINUX_BTF} (no module BTF for nf_conntrack)"),
                ModuleBtf::Unreadable(e) => {
                    format!("{VMLINUX_BTF} ({NF_CONNTRACK_BTF} is not readable: {e})")
                }
            };
            report.push("btf", Verdict::Ok, detail, None);
            Some(btf)
        }
        Err(e) => {
            let detail = match e {
                Error::NoBtf => format!("{VMLINUX_BTF} is missing"),
                e => e.to_string(),
            };
            report.push(
                "btf",
                Verdict::Fail,
                detail,
                Some("use a kernel built with CONFIG_DEBUG_INFO_BTF=y"),
            );
            None
        }
    };

    let privileged = has_bpf_privileges();
    report.push(
        "privileges",
        if privileged {
            Verdict::Ok
        } else {
            Verdict::Fail
        },
        if privileged {
            "CAP_BPF+CAP_PERFMON (or CAP_SYS_ADMIN), as root has".into()
        } else {
            "neither CAP_BPF+CAP_PERFMON nor CAP_SYS_ADMIN (root with its capabilities \
             dropped lacks them too)"
                .into()
        },
        (!privileged).then_some("run as root, or grant cap_bpf,cap_perfmon to the binary"),
    );

    let config = KernelConfig::read();
    let ctx = Context {
        version,
        conntrack: Conntrack::detect(),
        module_btf: btf
            .as_ref()
            .map_or(ModuleBtf::Absent, |b| b.module().clone()),
        config_conntrack: config
            .as_ref()
            .map(|c| c.get("CONFIG_NF_CONNTRACK").map(str::to_owned)),
    };
    let conntrack = conntrack_item(&ctx, btf.as_ref().and_then(|b| b.origin("nf_conn")));
    report.items.push(conntrack);

    let nfct = btf
        .as_ref()
        .is_some_and(|b| b.has_member("sk_buff", "_nfct"));
    if let Some(btf) = &btf {
        report.push(
            "skb._nfct",
            if nfct { Verdict::Ok } else { Verdict::Fail },
            if nfct {
                "sk_buff carries conntrack".into()
            } else {
                "sk_buff has no _nfct field".into()
            },
            (!nfct).then_some("use a kernel with CONFIG_NF_CONNTRACK"),
        );
        for feature in FEATURES {
            let lookup = BtfLookup(btf);
            report.items.push(feature.assess(&lookup, &ctx));
        }
        let kfree_skb = DROP_TRACEPOINT
            .parse::<ProbeSpec>()
            .ok()
            .and_then(|spec| btf.resolve(&spec).ok());
        report.items.push(drop_reasons_item(
            btf.drop_reasons().map(|r| r.names().count()),
            kfree_skb.map(|p| p.reason_arg.is_some()),
            &ctx,
        ));
    }

    let hz = config.as_ref().and_then(|c| c.get("CONFIG_HZ"));
    report.push(
        "timeouts",
        if hz.is_some() {
            Verdict::Ok
        } else {
            Verdict::Degraded
        },
        match hz {
            Some(hz) => format!("CONFIG_HZ={hz}"),
            None => "kernel config not readable: CONFIG_HZ unknown".into(),
        },
        hz.is_none().then_some(
            "timeouts are left out (null); they need /proc/config.gz (CONFIG_IKCONFIG_PROC) \
             or /boot/config-$(uname -r)",
        ),
    );

    let skip = if btf.is_none() {
        Some("not tried: needs kernel BTF (see btf)")
    } else if !privileged {
        Some("not tried: needs the privileges to load BPF programs (see privileges)")
    } else if !nfct {
        Some("not tried: the kernel has no conntrack in sk_buff (see skb._nfct)")
    } else {
        None
    };
    match skip {
        Some(reason) => {
            for name in LOAD_CHECKS {
                report.push(name, Verdict::Skipped, reason.into(), None);
            }
        }
        None => verify_loads(&mut report),
    }
    report
}

/// Loads (and unloads) the program for each kind of probe and reports each as a line.
fn verify_loads(report: &mut Report) {
    let tracepoints = || {
        DEFAULT_TRACEPOINTS.map(|s| {
            s.parse::<ProbeSpec>()
                .expect("built-in probe specs are valid")
        })
    };
    let builder = || CollectorBuilder::new().ring_size(4096);
    let listed = DEFAULT_TRACEPOINTS.join(", ");

    match builder().probes(tracepoints()).verify() {
        Ok(loaded) => {
            let fallen: Vec<_> = loaded.iter().filter(|l| l.fallback.is_some()).collect();
            match fallen.first() {
                None => report.push(
                    "tp_btf",
                    Verdict::Ok,
                    format!("BTF tracepoints load: {listed}"),
                    None,
                ),
                Some(first) => report.push(
                    "tp_btf",
                    Verdict::Degraded,
                    format!(
                        "{} of {} default tracepoints load only as raw tracepoints; {}: {}",
                        fallen.len(),
                        loaded.len(),
                        first.spec,
                        one_line(first.fallback.as_ref().map(|e| e.to_string())),
                    ),
                    Some("collection falls back to raw tracepoints (BTF tracepoints need Linux 5.5+)"),
                ),
            }
        }
        Err(e) => report.push(
            "tp_btf",
            Verdict::Fail,
            one_line(Some(e.to_string())),
            Some("neither BTF nor raw tracepoints load for the default probes"),
        ),
    }

    match builder()
        .probes(tracepoints())
        .raw_tracepoints(true)
        .verify()
    {
        Ok(_) => report.push(
            "raw_tp",
            Verdict::Ok,
            format!("raw tracepoints load: {listed}"),
            None,
        ),
        Err(e) => report.push(
            "raw_tp",
            Verdict::Fail,
            one_line(Some(e.to_string())),
            Some("raw tracepoints are the fallback where BTF tracepoints do not load"),
        ),
    }

    if !kprobes_supported() {
        let none = "not available: this kernel has no kprobes \
                    (no /sys/bus/event_source/devices/kprobe; CONFIG_KPROBES is not set)";
        let instead = "use tracepoints (tp:CATEGORY:NAME) for probes";
        report.push("kprobe", Verdict::Degraded, none.into(), Some(instead));
        report.push("kretprobe", Verdict::Degraded, none.into(), Some(instead));
        return;
    }
    for (name, spec, missing) in [
        // Default collection adds kprobes where the kernel has them: one that cannot load
        // stops it.
        ("kprobe", KPROBE_CHECK, Verdict::Fail),
        ("kretprobe", KRETPROBE_CHECK, Verdict::Degraded),
    ] {
        let probe = spec.parse::<ProbeSpec>().expect("built-in probe spec");
        match builder().probe(probe).verify() {
            Ok(_) => report.push(name, Verdict::Ok, format!("{spec} loads"), None),
            Err(e) => report.push(
                name,
                missing,
                one_line(Some(e.to_string())),
                Some(if name == "kprobe" {
                    "kp: probes (and the default ones on ip_forward, ip_local_deliver, \
                     ip6_forward, ip6_input) cannot be used"
                } else {
                    "kr: probes cannot be used"
                }),
            ),
        }
    }
}

/// An error on one line: libbpf's messages may hold the verifier's, line by line.
fn one_line(message: Option<String>) -> String {
    let message = message.unwrap_or_default();
    let mut out: String = message.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.len() > 400 {
        let mut cut = 400;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str(" ...");
    }
    out
}

/// What the kernel is, for the checks that depend on more than BTF.
#[derive(Debug, Clone)]
struct Context {
    version: Option<KernelVersion>,
    conntrack: Conntrack,
    module_btf: ModuleBtf,
    /// `None`: the configuration is not readable; `Some(None)`: it is, without the key.
    config_conntrack: Option<Option<String>>,
}

fn conntrack_item(ctx: &Context, nf_conn: Option<kernel::BtfOrigin>) -> CheckItem {
    let item = |verdict, detail: String, remedy: Option<&str>| CheckItem {
        name: "conntrack",
        verdict,
        detail,
        remedy: remedy.map(str::to_owned),
    };
    let setting = match &ctx.config_conntrack {
        Some(Some(v)) => format!("CONFIG_NF_CONNTRACK={v}"),
        Some(None) => "CONFIG_NF_CONNTRACK is not set".into(),
        None => "kernel config not readable".into(),
    };
    if ctx.config_conntrack == Some(None) {
        return item(
            Verdict::Fail,
            format!("this kernel is built without conntrack ({setting})"),
            Some("use a kernel built with CONFIG_NF_CONNTRACK=y or =m"),
        );
    }
    if !ctx.conntrack.is_loaded() {
        return item(
            Verdict::Fail,
            format!("nf_conntrack is not loaded ({setting}; not in /proc/modules)"),
            Some(MODPROBE),
        );
    }
    let how = match ctx.conntrack {
        Conntrack::Module => "nf_conntrack module loaded",
        _ => "built in",
    };
    match nf_conn {
        Some(origin) => item(
            Verdict::Ok,
            format!("{how} ({setting}), struct nf_conn in {origin}"),
            None,
        ),
        None => item(
            Verdict::Fail,
            format!("{how} ({setting}), but struct nf_conn is in neither vmlinux nor module BTF"),
            Some(
                "use a kernel built with CONFIG_DEBUG_INFO_BTF_MODULES=y (Linux 5.11+) or with \
                 CONFIG_NF_CONNTRACK=y",
            ),
        ),
    }
}

/// One thing the program reads only where the kernel's BTF has it.
#[derive(Debug, Clone, Copy)]
enum Need {
    /// `bpf_core_field_exists(struct .0, .1)`.
    Member(&'static str, &'static str),
    /// `bpf_core_enum_value_exists(enum .0, .1)`.
    Enumerator(&'static str, &'static str),
}

/// An optional part of the events, and exactly what `ct_fill.h` tests before reading it.
#[derive(Debug, Clone, Copy)]
struct Feature {
    name: &'static str,
    needs: &'static [Need],
    /// What the events lack without it.
    lost: &'static str,
    /// Which kernels have it.
    has_it: &'static str,
}

/// The optional features, with the guards `src/bpf/ct_fill.h` puts around each.
const FEATURES: &[Feature] = &[
    Feature {
        name: "zones",
        needs: &[Need::Member("nf_conn", "zone")],
        lost: "zone_id/zone_dir will be 0/none",
        has_it: "a kernel built with CONFIG_NF_CONNTRACK_ZONES=y",
    },
    Feature {
        name: "mark",
        needs: &[Need::Member("nf_conn", "mark")],
        lost: "mark will be null",
        has_it: "a kernel built with CONFIG_NF_CONNTRACK_MARK=y",
    },
    Feature {
        name: "labels",
        needs: &[Need::Enumerator("nf_ct_ext_id", "NF_CT_EXT_LABELS")],
        lost: "labels will be null",
        has_it: "a kernel built with CONFIG_NF_CONNTRACK_LABELS=y",
    },
    Feature {
        name: "helper",
        needs: &[
            Need::Enumerator("nf_ct_ext_id", "NF_CT_EXT_HELPER"),
            Need::Member("nf_conn_help", "helper"),
            Need::Member("nf_conntrack_helper", "name"),
        ],
        lost: "helper names will be null",
        has_it: "Linux 5.11+ with CONFIG_DEBUG_INFO_BTF_MODULES=y, or nf_conntrack built in",
    },
    Feature {
        name: "sctp",
        needs: &[Need::Member("nf_conn", "proto.sctp")],
        lost: "SCTP state will be null",
        has_it: "a kernel built with CONFIG_NF_CT_PROTO_SCTP=y",
    },
];

/// Types living in the nf_conntrack module: without its BTF they are unknown.
const MODULE_TYPES: [&str; 2] = ["nf_conn_help", "nf_conntrack_helper"];

/// BTF lookups a feature needs (a trait so that tests can stand in for a kernel).
trait Lookup {
    fn has_struct(&self, name: &str) -> bool;
    fn has(&self, need: Need) -> bool;
}

struct BtfLookup<'a>(&'a KernelBtf);

impl Lookup for BtfLookup<'_> {
    fn has_struct(&self, name: &str) -> bool {
        self.0.has_struct(name)
    }

    fn has(&self, need: Need) -> bool {
        match need {
            Need::Member(s, m) => self.0.has_member(s, m),
            Need::Enumerator(e, v) => self.0.has_enumerator(e, v),
        }
    }
}

impl Feature {
    fn assess(&self, btf: &dyn Lookup, ctx: &Context) -> CheckItem {
        let missing = self.needs.iter().copied().find(|n| !btf.has(*n));
        let Some(missing) = missing else {
            return CheckItem {
                name: self.name,
                verdict: Verdict::Ok,
                detail: "reported".into(),
                remedy: None,
            };
        };
        let (detail, remedy) = match missing {
            Need::Member(s, _) if MODULE_TYPES.contains(&s) && !btf.has_struct(s) => {
                module_btf_reason(s, ctx)
            }
            Need::Member(s, m) if !btf.has_struct(s) => (
                format!("struct {s} is not in this kernel's BTF (needed for {s}.{m})"),
                format!("needs {}", self.has_it),
            ),
            Need::Member(s, m) => (
                format!("struct {s} has no member {m} in this kernel"),
                format!("needs {}", self.has_it),
            ),
            Need::Enumerator(e, v) => (
                format!("enum {e} has no {v} in this kernel"),
                format!("needs {}", self.has_it),
            ),
        };
        CheckItem {
            name: self.name,
            verdict: Verdict::Degraded,
            detail: format!("{}: {detail}", self.lost),
            remedy: Some(remedy),
        }
    }
}

/// The `drop reasons` line. `enum_reasons`: how many reasons `enum skb_drop_reason` names,
/// `None` without the enum; `tp_has_reason`: whether `skb:kfree_skb` has a reason argument,
/// `None` when the tracepoint is not in BTF.
fn drop_reasons_item(
    enum_reasons: Option<usize>,
    tp_has_reason: Option<bool>,
    ctx: &Context,
) -> CheckItem {
    let since = format!(
        "needs Linux {}.{}+ (skb:kfree_skb with a reason argument)",
        DROP_REASONS_SINCE.major, DROP_REASONS_SINCE.minor
    );
    let running = ctx
        .version
        .map_or_else(|| "this kernel".to_owned(), |v| format!("Linux {v}"));
    let (verdict, detail, remedy) = match (enum_reasons, tp_has_reason) {
        (Some(n), Some(true)) => (
            Verdict::Ok,
            format!("skb:kfree_skb gives the reason ({n} in enum {DROP_REASON_ENUM})"),
            None,
        ),
        (_, None) => (
            Verdict::Degraded,
            "skb:kfree_skb is not in this kernel's BTF: drops are not reported".to_owned(),
            Some(since),
        ),
        (None, Some(_)) => (
            Verdict::Degraded,
            format!(
                "drops are reported without a reason: {running} has no enum                  {DROP_REASON_ENUM}; --drop-reason is not available"
            ),
            Some(since),
        ),
        (Some(_), Some(false)) => (
            Verdict::Degraded,
            format!(
                "drops are reported without a reason: {running}'s skb:kfree_skb has no                  reason argument; --drop-reason is not available"
            ),
            Some(since),
        ),
    };
    CheckItem {
        name: "drop reasons",
        verdict,
        detail,
        remedy,
    }
}

/// Why a type of the nf_conntrack module is not in BTF, and what has it.
fn module_btf_reason(ty: &str, ctx: &Context) -> (String, String) {
    let needs = format!(
        "needs module BTF for nf_conntrack (Linux {}.{}+, CONFIG_DEBUG_INFO_BTF_MODULES)",
        MODULE_BTF_SINCE.major, MODULE_BTF_SINCE.minor
    );
    let running = ctx
        .version
        .map_or_else(|| "this kernel".to_owned(), |v| format!("Linux {v}"));
    let detail = match &ctx.module_btf {
        ModuleBtf::Unreadable(e) => {
            format!("struct {ty}: {NF_CONNTRACK_BTF} is not readable ({e})")
        }
        ModuleBtf::Loaded => format!("struct {ty} is not in nf_conntrack's module BTF"),
        ModuleBtf::Absent if !ctx.conntrack.is_loaded() => {
            return (
                format!(
                    "struct {ty} is in nf_conntrack's module BTF, and nf_conntrack is not loaded"
                ),
                MODPROBE.into(),
            )
        }
        ModuleBtf::Absent if ctx.version.is_some_and(|v| v < MODULE_BTF_SINCE) => {
            format!("struct {ty} is not in vmlinux BTF, and {running} has no module BTF")
        }
        ModuleBtf::Absent => {
            format!("struct {ty} is not in vmlinux BTF, and {running} has no {NF_CONNTRACK_BTF}")
        }
    };
    (detail, needs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kernel as its BTF answers: the structs it has, and the needs it meets.
    struct Fake {
        structs: &'static [&'static str],
        lacks: &'static [&'static str],
    }

    impl Lookup for Fake {
        fn has_struct(&self, name: &str) -> bool {
            self.structs.contains(&name)
        }

        fn has(&self, need: Need) -> bool {
            match need {
                Need::Member(s, m) => {
                    self.has_struct(s) && !self.lacks.contains(&format!("{s}.{m}").as_str())
                }
                Need::Enumerator(_, v) => !self.lacks.contains(&v),
            }
        }
    }

    fn ctx(version: (u32, u32), module_btf: ModuleBtf, conntrack: Conntrack) -> Context {
        Context {
            version: Some(KernelVersion::new(version.0, version.1, 0)),
            conntrack,
            module_btf,
            config_conntrack: Some(Some("m".into())),
        }
    }

    fn feature(name: &str) -> &'static Feature {
        FEATURES.iter().find(|f| f.name == name).unwrap()
    }

    /// A kernel with every struct and member the checks ask for.
    const ALL: Fake = Fake {
        structs: &["nf_conn", "nf_conn_help", "nf_conntrack_helper"],
        lacks: &[],
    };
    /// Debian 5.10: nf_conn and enum nf_ct_ext_id in vmlinux, no module BTF.
    const VMLINUX_ONLY: Fake = Fake {
        structs: &["nf_conn"],
        lacks: &[],
    };

    #[test]
    fn everything_present_is_reported() {
        let btf = ALL;
        let c = ctx((6, 1), ModuleBtf::Loaded, Conntrack::Module);
        for f in FEATURES {
            let item = f.assess(&btf, &c);
            assert_eq!(item.verdict, Verdict::Ok, "{item:?}");
            assert_eq!(item.remedy, None);
        }
    }

    #[test]
    fn drop_reasons_need_the_enum_and_the_argument() {
        let c = ctx((6, 1), ModuleBtf::Loaded, Conntrack::Module);
        let ok = drop_reasons_item(Some(77), Some(true), &c);
        assert_eq!(ok.verdict, Verdict::Ok);
        assert_eq!(ok.name, "drop reasons");
        assert!(ok.detail.contains("77"), "{ok:?}");
        let old = ctx((5, 10), ModuleBtf::Absent, Conntrack::Module);
        let item = drop_reasons_item(None, Some(false), &old);
        assert_eq!(item.verdict, Verdict::Degraded);
        assert!(item.detail.contains("Linux 5.10.0"), "{item:?}");
        assert!(
            item.remedy.as_deref().unwrap().contains("5.17+"),
            "{item:?}"
        );
        for (n, tp) in [(Some(3), Some(false)), (Some(3), None), (None, None)] {
            let item = drop_reasons_item(n, tp, &c);
            assert_eq!(item.verdict, Verdict::Degraded, "{item:?}");
            assert!(item.remedy.is_some());
        }
    }

    #[test]
    fn helper_names_need_module_btf_on_5_10() {
        let btf = VMLINUX_ONLY;
        let c = ctx((5, 10), ModuleBtf::Absent, Conntrack::Module);
        let item = feature("helper").assess(&btf, &c);
        assert_eq!(item.verdict, Verdict::Degraded);
        assert!(
            item.detail.starts_with("helper names will be null"),
            "{item:?}"
        );
        assert!(
            item.detail.contains("Linux 5.10.0 has no module BTF"),
            "{item:?}"
        );
        assert_eq!(
            item.remedy.as_deref(),
            Some("needs module BTF for nf_conntrack (Linux 5.11+, CONFIG_DEBUG_INFO_BTF_MODULES)")
        );
        // The rest is in vmlinux there.
        for name in ["zones", "mark", "labels", "sctp"] {
            assert_eq!(
                feature(name).assess(&btf, &c).verdict,
                Verdict::Ok,
                "{name}"
            );
        }
    }

    #[test]
    fn helper_guard_is_every_field_the_program_tests() {
        // Each of the three guards alone turns helper names off, as in ct_fill.h.
        for lacks in [
            &["NF_CT_EXT_HELPER"][..],
            &["nf_conn_help.helper"],
            &["nf_conntrack_helper.name"],
        ] {
            let btf = Fake { lacks, ..ALL };
            let item =
                feature("helper").assess(&btf, &ctx((6, 12), ModuleBtf::Loaded, Conntrack::Module));
            assert_eq!(item.verdict, Verdict::Degraded, "{lacks:?}");
            assert!(item.remedy.is_some());
        }
    }

    #[test]
    fn module_btf_reasons_follow_the_kernel() {
        let btf = VMLINUX_ONLY;
        let item =
            feature("helper").assess(&btf, &ctx((6, 1), ModuleBtf::Absent, Conntrack::NotLoaded));
        assert!(item.remedy.unwrap().starts_with("modprobe nf_conntrack"));
        let item =
            feature("helper").assess(&btf, &ctx((6, 1), ModuleBtf::Absent, Conntrack::Module));
        assert!(
            item.detail
                .contains("Linux 6.1.0 has no /sys/kernel/btf/nf_conntrack"),
            "{item:?}"
        );
        let unreadable = ModuleBtf::Unreadable("bad magic".into());
        let item = feature("helper").assess(&btf, &ctx((6, 1), unreadable, Conntrack::Module));
        assert!(item.detail.contains("bad magic"), "{item:?}");
    }

    #[test]
    fn config_dependent_features_name_their_option() {
        let btf = Fake {
            lacks: &[
                "nf_conn.mark",
                "nf_conn.zone",
                "NF_CT_EXT_LABELS",
                "nf_conn.proto.sctp",
            ],
            ..ALL
        };
        let c = ctx((6, 12), ModuleBtf::Loaded, Conntrack::Module);
        for (name, option) in [
            ("zones", "CONFIG_NF_CONNTRACK_ZONES"),
            ("mark", "CONFIG_NF_CONNTRACK_MARK"),
            ("labels", "CONFIG_NF_CONNTRACK_LABELS"),
            ("sctp", "CONFIG_NF_CT_PROTO_SCTP"),
        ] {
            let item = feature(name).assess(&btf, &c);
            assert_eq!(item.verdict, Verdict::Degraded, "{name}");
            assert!(item.remedy.as_deref().unwrap().contains(option), "{item:?}");
        }
    }

    #[test]
    fn conntrack_not_loaded_says_modprobe() {
        let c = ctx((6, 1), ModuleBtf::Absent, Conntrack::NotLoaded);
        // nf_conn is in vmlinux BTF even while the module is not loaded.
        let item = conntrack_item(&c, Some(kernel::BtfOrigin::Vmlinux));
        assert_eq!(item.verdict, Verdict::Fail);
        assert!(item.detail.contains("CONFIG_NF_CONNTRACK=m"), "{item:?}");
        assert!(item.remedy.unwrap().starts_with("modprobe nf_conntrack"));

        let c = ctx((6, 1), ModuleBtf::Loaded, Conntrack::Module);
        let item = conntrack_item(&c, Some(kernel::BtfOrigin::Module));
        assert_eq!(item.verdict, Verdict::Ok);
        assert!(item.detail.contains("nf_conntrack module BTF"), "{item:?}");
        assert_eq!(conntrack_item(&c, None).verdict, Verdict::Fail);

        let mut without = ctx((6, 1), ModuleBtf::Absent, Conntrack::NotLoaded);
        without.config_conntrack = Some(None);
        let item = conntrack_item(&without, None);
        assert_eq!(item.verdict, Verdict::Fail);
        assert!(item.detail.contains("without conntrack"));
    }

    #[test]
    fn report_readiness_follows_failures() {
        let mut r = Report::default();
        r.push("mark", Verdict::Degraded, "x".into(), Some("y"));
        r.push("kprobe", Verdict::Skipped, "not tried".into(), None);
        assert!(r.ready());
        assert!(r.to_string().ends_with("collection can run"));
        r.push("privileges", Verdict::Fail, "x".into(), Some("y"));
        assert!(!r.ready());
        assert!(matches!(r.first_error(), Some(Error::Privileges)));
        let shown = r.to_string();
        assert!(shown.contains("FAIL"));
        assert!(
            shown.contains("skipped    kprobe         not tried"),
            "{shown}"
        );
        assert!(shown.ends_with("collection cannot run: fix the FAIL lines above"));

        let mut r = Report::default();
        r.push("tp_btf", Verdict::Fail, "loading failed".into(), None);
        let e = r.first_error().unwrap();
        assert_eq!(e.to_string(), "tp_btf: loading failed");
        assert_eq!(e.category(), crate::ErrorCategory::Prerequisite);
    }

    #[test]
    fn one_line_flattens_and_bounds() {
        assert_eq!(one_line(Some("a\n  b\tc\n".into())), "a b c");
        assert!(one_line(Some("é".repeat(500))).len() <= 404);
        assert_eq!(one_line(None), "");
    }
}
