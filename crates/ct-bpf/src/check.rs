//! Prerequisite checks: can collection work on this machine, and what will it show?

use std::fmt;
use std::io::Read;
use std::path::Path;

use libbpf_rs::btf::types::{Composite, Enum};
use libbpf_rs::btf::{Btf, BtfType};

use crate::probe::KernelBtf;
use crate::Error;

pub(crate) const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";
const KPROBE_PMU: &str = "/sys/bus/event_source/devices/kprobe";

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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckItem {
    pub name: &'static str,
    pub verdict: Verdict,
    /// What was found.
    pub detail: String,
    /// What to do about it, for anything but `Ok`.
    pub remedy: Option<String>,
}

/// The answers to "will collection work here?" in the order a user would fix them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    pub items: Vec<CheckItem>,
}

impl Report {
    /// True when nothing failed: collection can run.
    pub fn ready(&self) -> bool {
        self.items.iter().all(|i| i.verdict != Verdict::Fail)
    }

    /// The first failure as an error, for callers that want to stop early.
    pub fn first_error(&self) -> Option<Error> {
        let failed = self.items.iter().find(|i| i.verdict == Verdict::Fail)?;
        Some(match failed.name {
            "btf" => Error::NoBtf,
            "privileges" => Error::Privileges,
            _ => Error::NoConntrack,
        })
    }

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

/// Runs every check. Never fails itself: what it cannot find is reported as missing.
pub fn check() -> Report {
    let mut report = Report::default();

    let btf = if Path::new(VMLINUX_BTF).exists() {
        match KernelBtf::load() {
            Ok(btf) => {
                report.push("btf", Verdict::Ok, VMLINUX_BTF.into(), None);
                Some(btf)
            }
            Err(e) => {
                report.push(
                    "btf",
                    Verdict::Fail,
                    e.to_string(),
                    Some("use a kernel built with CONFIG_DEBUG_INFO_BTF=y"),
                );
                None
            }
        }
    } else {
        report.push(
            "btf",
            Verdict::Fail,
            format!("{VMLINUX_BTF} is missing"),
            Some("use a kernel built with CONFIG_DEBUG_INFO_BTF=y"),
        );
        None
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
    let conntrack_btf = btf
        .as_ref()
        .map(|b| has_struct(b.btf(), "nf_conn"))
        .unwrap_or(false)
        || Path::new("/sys/kernel/btf/nf_conntrack").exists();
    let setting = config.as_ref().and_then(|c| c.get("CONFIG_NF_CONNTRACK"));
    let detail = match (conntrack_btf, setting) {
        (true, Some(v)) => format!("CONFIG_NF_CONNTRACK={v}, nf_conn in BTF"),
        (true, None) => "nf_conn in BTF".into(),
        (false, Some("m")) => "CONFIG_NF_CONNTRACK=m but nf_conntrack is not loaded \
                               (lsmod | grep nf_conntrack shows nothing)"
            .into(),
        (false, Some(v)) => format!("CONFIG_NF_CONNTRACK={v} and no nf_conn in BTF"),
        (false, None) => "no nf_conn in kernel BTF".into(),
    };
    report.push(
        "conntrack",
        if conntrack_btf {
            Verdict::Ok
        } else {
            Verdict::Fail
        },
        detail,
        (!conntrack_btf).then_some(
            "modprobe nf_conntrack (at boot: echo nf_conntrack >> \
             /etc/modules-load.d/conntrack.conf); a kernel without it needs \
             CONFIG_NF_CONNTRACK=y or m",
        ),
    );

    if let Some(btf) = &btf {
        let b = btf.btf();
        let nfct = has_member(b, "sk_buff", "_nfct");
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
        for (name, present, remedy) in [
            (
                "zones",
                has_member(b, "nf_conn", "zone"),
                "zone_id/zone_dir will be 0/none: CONFIG_NF_CONNTRACK_ZONES is not set",
            ),
            (
                "mark",
                has_member(b, "nf_conn", "mark"),
                "mark will be null: CONFIG_NF_CONNTRACK_MARK is not set",
            ),
            (
                "labels",
                has_enumerator(b, "nf_ct_ext_id", "NF_CT_EXT_LABELS"),
                "labels will be null: CONFIG_NF_CONNTRACK_LABELS is not set",
            ),
            (
                "helper",
                has_enumerator(b, "nf_ct_ext_id", "NF_CT_EXT_HELPER"),
                "helper names will be missing",
            ),
        ] {
            report.push(
                name,
                if present {
                    Verdict::Ok
                } else {
                    Verdict::Degraded
                },
                if present {
                    "reported".into()
                } else {
                    "not in this kernel".into()
                },
                (!present).then_some(remedy),
            );
        }
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
            "timeouts are left out; they need /proc/config.gz or /boot/config-$(uname -r)",
        ),
    );

    report.push(
        "tracepoints",
        if btf.is_some() {
            Verdict::Ok
        } else {
            Verdict::Fail
        },
        "raw tracepoints (tp:CATEGORY:NAME)".into(),
        None,
    );
    let kprobes = kprobes_supported();
    report.push(
        "kprobes",
        if kprobes {
            Verdict::Ok
        } else {
            Verdict::Degraded
        },
        if kprobes {
            "kprobes and kretprobes (kp:FUNC, kr:FUNC)".into()
        } else {
            "not available (CONFIG_KPROBES is not set)".into()
        },
        (!kprobes).then_some("use tracepoints (tp:...) for probes"),
    );
    report
}

/// Whether the kernel can attach kprobes (it exposes the kprobe PMU).
pub fn kprobes_supported() -> bool {
    Path::new(KPROBE_PMU).exists()
}

/// CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN) in the effective set, which root normally
/// has. Root is not enough by itself: root with its capabilities dropped (a container, a
/// service with `CapabilityBoundingSet=`, `setpriv --bounding-set=-all`) cannot load BPF,
/// and would otherwise get libbpf's messages and a failed load instead of one sentence.
pub fn has_bpf_privileges() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let eff = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        });
    let Some(eff) = eff else {
        // No /proc/self/status: going by the owner of the process (its effective user) is
        // all that is left.
        use std::os::unix::fs::MetadataExt;
        return std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    };
    let has = |cap: u32| eff & (1u64 << cap) != 0;
    has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))
}

/// `CONFIG_*` settings from /proc/config.gz or /boot/config-$(uname -r).
#[derive(Debug, Clone, Default)]
pub struct KernelConfig {
    text: String,
}

impl KernelConfig {
    pub fn read() -> Option<Self> {
        if let Ok(f) = std::fs::File::open("/proc/config.gz") {
            let mut text = String::new();
            if flate2::read::GzDecoder::new(f)
                .read_to_string(&mut text)
                .is_ok()
            {
                return Some(KernelConfig { text });
            }
        }
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
        let text = std::fs::read_to_string(format!("/boot/config-{}", release.trim())).ok()?;
        Some(KernelConfig { text })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.text.lines().find_map(|l| {
            l.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix('='))
                .map(str::trim)
        })
    }
}

fn has_struct(btf: &Btf<'_>, name: &str) -> bool {
    btf.type_by_name::<Composite<'_>>(name).is_some()
}

/// Whether `struct name` has `member`, looking inside anonymous structs and unions as
/// CO-RE does.
pub fn has_member(btf: &Btf<'_>, name: &str, member: &str) -> bool {
    btf.type_by_name::<Composite<'_>>(name)
        .is_some_and(|c| composite_has(btf, &c, member, 0))
}

fn composite_has(btf: &Btf<'_>, c: &Composite<'_>, member: &str, depth: u32) -> bool {
    if depth > 8 {
        return false;
    }
    c.iter().any(|m| match m.name.and_then(|n| n.to_str()) {
        Some(n) if !n.is_empty() => n == member,
        _ => btf
            .type_by_id::<BtfType<'_>>(m.ty)
            .map(|t| t.skip_mods_and_typedefs())
            .and_then(|t| Composite::try_from(t).ok())
            .is_some_and(|inner| composite_has(btf, &inner, member, depth + 1)),
    })
}

fn has_enumerator(btf: &Btf<'_>, name: &str, value: &str) -> bool {
    btf.type_by_name::<Enum<'_>>(name).is_some_and(|e| {
        e.iter()
            .any(|v| v.name.and_then(|n| n.to_str()) == Some(value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lookup_is_exact() {
        let c = KernelConfig {
            text: "CONFIG_NF_CONNTRACK=y\nCONFIG_NF_CONNTRACK_MARK=y\nCONFIG_HZ=250\n".into(),
        };
        assert_eq!(c.get("CONFIG_NF_CONNTRACK"), Some("y"));
        assert_eq!(c.get("CONFIG_HZ"), Some("250"));
        assert_eq!(c.get("CONFIG_NF_CONNTRACK_ZONES"), None);
    }

    #[test]
    fn report_readiness_follows_failures() {
        let mut r = Report::default();
        r.push("mark", Verdict::Degraded, "x".into(), Some("y"));
        assert!(r.ready());
        r.push("privileges", Verdict::Fail, "x".into(), Some("y"));
        assert!(!r.ready());
        assert!(matches!(r.first_error(), Some(Error::Privileges)));
        assert!(r.to_string().contains("FAIL"));
    }
}
