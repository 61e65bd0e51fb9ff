//! What the crate knows about the running kernel, in one place: its release, its build
//! configuration, its BTF (vmlinux's, and the nf_conntrack module's when that is loaded),
//! whether it has kprobes, whether conntrack is loaded, and whether this process may load
//! BPF programs. [`mod@crate::check`] reports on these; [`crate::probe`] and
//! [`crate::collector`] act on them.

use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use libbpf_rs::btf::types::{Composite, Enum, Enum64};
use libbpf_rs::btf::{Btf, BtfType, HasSize, TypeId};

use crate::Error;

/// Kernel BTF of the core kernel.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";
/// Module BTF of nf_conntrack (Linux 5.11+ with `CONFIG_DEBUG_INFO_BTF_MODULES`, while the
/// module is loaded). It is split BTF: its type ids and strings continue vmlinux's.
pub const NF_CONNTRACK_BTF: &str = "/sys/kernel/btf/nf_conntrack";
const KPROBE_PMU: &str = "/sys/bus/event_source/devices/kprobe";
const OSRELEASE: &str = "/proc/sys/kernel/osrelease";

/// First kernel with module BTF (`/sys/kernel/btf/<module>`).
pub const MODULE_BTF_SINCE: KernelVersion = KernelVersion::new(5, 11, 0);

// ---------------------------------------------------------------------------------------
// Release

/// A kernel version, comparable: `5.10.0-33-amd64` is 5.10.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KernelVersion {
    /// `5` of 5.10.0.
    pub major: u32,
    /// `10` of 5.10.0.
    pub minor: u32,
    /// `0` of 5.10.0.
    pub patch: u32,
}

impl KernelVersion {
    /// The version `major.minor.patch`.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        KernelVersion {
            major,
            minor,
            patch,
        }
    }

    /// Parses a release as `uname -r` prints it (`6.1.0-28-amd64`, `6.18.0-rc3+`, `5.10`):
    /// the leading digits of the first three dot-separated parts, the third optional.
    pub fn parse(release: &str) -> Option<Self> {
        fn number(part: &str) -> Option<u32> {
            let end = part
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(part.len());
            part[..end].parse().ok()
        }
        let mut parts = release.trim().splitn(3, '.');
        let major = parts.next().and_then(number)?;
        let minor_part = parts.next()?;
        let minor = number(minor_part)?;
        // "5.10-rc1": the patch level is only read when the minor part was all digits.
        let patch = if minor_part.bytes().all(|b| b.is_ascii_digit()) {
            parts.next().and_then(number).unwrap_or(0)
        } else {
            0
        };
        Some(KernelVersion::new(major, minor, patch))
    }
}

impl KernelVersion {
    /// The running kernel's version, when its release parses.
    pub fn running() -> Option<KernelVersion> {
        kernel_release().as_deref().and_then(KernelVersion::parse)
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The running kernel's release string (`uname -r`), from /proc.
pub fn kernel_release() -> Option<String> {
    std::fs::read_to_string(OSRELEASE)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

// ---------------------------------------------------------------------------------------
// Configuration, kprobes, privileges, conntrack

/// `CONFIG_*` settings from /proc/config.gz or /boot/config-$(uname -r), the two places
/// libbpf reads `__kconfig` values from.
#[derive(Debug, Clone, Default)]
pub struct KernelConfig {
    text: String,
}

impl KernelConfig {
    /// The running kernel's configuration; `None` when neither place has it.
    pub fn read() -> Option<Self> {
        if let Ok(f) = File::open("/proc/config.gz") {
            let mut text = String::new();
            if flate2::read::GzDecoder::new(f)
                .read_to_string(&mut text)
                .is_ok()
            {
                return Some(KernelConfig { text });
            }
        }
        let text = std::fs::read_to_string(format!("/boot/config-{}", kernel_release()?)).ok()?;
        Some(KernelConfig { text })
    }

    /// A configuration from its text (the `.config` format).
    pub fn from_text(text: impl Into<String>) -> Self {
        KernelConfig { text: text.into() }
    }

    /// The value of `key` (`y`, `m`, a number, a quoted string), `None` when not set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.text.lines().find_map(|l| {
            l.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix('='))
                .map(str::trim)
        })
    }
}

/// The kernel's `CONFIG_HZ` (jiffies per second), read once from its config; `None` when
/// the config cannot be read (no /proc/config.gz nor /boot/config-$(uname -r)).
pub fn kernel_hz() -> Option<u32> {
    static HZ: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        KernelConfig::read()
            .and_then(|c| c.get("CONFIG_HZ").and_then(|v| v.parse().ok()))
            .filter(|&hz| hz > 0)
    })
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
    match std::fs::read_to_string("/proc/self/status") {
        Ok(status) => caps_allow_bpf(&status),
        // No /proc/self/status: going by the owner of the process (its effective user) is
        // all that is left.
        Err(_) => {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
        }
    }
}

/// [`has_bpf_privileges`] for the text of a `/proc/<pid>/status`.
fn caps_allow_bpf(status: &str) -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let Some(eff) = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    else {
        return false;
    };
    let has = |cap: u32| eff & (1u64 << cap) != 0;
    has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))
}

/// Whether nf_conntrack is running in this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conntrack {
    /// Built into the kernel (`CONFIG_NF_CONNTRACK=y`).
    BuiltIn,
    /// The nf_conntrack module is loaded.
    Module,
    /// Neither: the module is not loaded (or the kernel has no conntrack at all).
    NotLoaded,
}

impl Conntrack {
    /// Reads /proc/modules, /sys/module/nf_conntrack and the conntrack sysctls.
    pub fn detect() -> Self {
        Conntrack::from_sources(
            std::fs::read_to_string("/proc/modules").ok().as_deref(),
            Path::new("/sys/module/nf_conntrack").exists()
                || Path::new("/proc/sys/net/netfilter/nf_conntrack_max").exists(),
        )
    }

    /// `modules`: the text of /proc/modules; `present`: whether the kernel shows
    /// nf_conntrack anywhere else (its sysfs directory, its sysctls).
    fn from_sources(modules: Option<&str>, present: bool) -> Self {
        let as_module = modules.is_some_and(|m| {
            m.lines()
                .any(|l| l.split_whitespace().next() == Some("nf_conntrack"))
        });
        match (as_module, present) {
            (true, _) => Conntrack::Module,
            (false, true) => Conntrack::BuiltIn,
            (false, false) => Conntrack::NotLoaded,
        }
    }

    /// Whether conntrack is in the running kernel (built in, or its module loaded).
    pub fn is_loaded(self) -> bool {
        self != Conntrack::NotLoaded
    }
}

// ---------------------------------------------------------------------------------------
// BTF

/// Where a BTF type was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display)]
pub enum BtfOrigin {
    /// The kernel image's BTF.
    #[strum(serialize = "vmlinux BTF")]
    Vmlinux,
    /// The nf_conntrack module's BTF.
    #[strum(serialize = "nf_conntrack module BTF")]
    Module,
}

/// Whether the nf_conntrack module's BTF was read along with vmlinux's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleBtf {
    /// Read: lookups see its types after vmlinux's.
    Loaded,
    /// There is none: the module is not loaded, conntrack is built in, or the kernel has
    /// no module BTF (before 5.11, or without `CONFIG_DEBUG_INFO_BTF_MODULES`).
    Absent,
    /// There is one, but it could not be read; lookups see vmlinux only.
    Unreadable(String),
}

/// Kernel BTF, loaded once: vmlinux, followed by nf_conntrack's module BTF when there is
/// one, so that types living in the module (`struct nf_conn_help`,
/// `struct nf_conntrack_helper`, and `struct nf_conn` itself on some kernels) are found the
/// way libbpf finds them when it relocates the program: in vmlinux first, then in modules.
pub struct KernelBtf {
    btf: Btf<'static>,
    /// Ids below this are vmlinux's.
    vmlinux_types: u32,
    module: ModuleBtf,
}

impl fmt::Debug for KernelBtf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelBtf")
            .field("vmlinux_types", &self.vmlinux_types)
            .field("module", &self.module)
            .finish_non_exhaustive()
    }
}

impl KernelBtf {
    /// Loads `/sys/kernel/btf/vmlinux`, and `/sys/kernel/btf/nf_conntrack` where it
    /// exists. Only a missing or unreadable vmlinux BTF is an error; a module BTF that
    /// cannot be read is noted in [`module`](Self::module).
    pub fn load() -> Result<Self, Error> {
        if !Path::new(VMLINUX_BTF).exists() {
            return Err(Error::NoBtf);
        }
        let vmlinux =
            std::fs::read(VMLINUX_BTF).map_err(|e| Error::BtfUnreadable(e.to_string()))?;
        let module = match std::fs::read(NF_CONNTRACK_BTF) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        };
        Self::from_raw(&vmlinux, module)
    }

    /// `vmlinux`: the bytes of [`VMLINUX_BTF`]; `module`: those of BTF split from it
    /// (nf_conntrack's), none, or why it could not be read.
    fn from_raw(vmlinux: &[u8], module: Result<Option<Vec<u8>>, String>) -> Result<Self, Error> {
        let unreadable = |e: RawBtfError| Error::BtfUnreadable(e.to_string());
        let base = RawBtf::parse(vmlinux).map_err(unreadable)?;
        let vmlinux_types = base.count_types().map_err(unreadable)?;
        let module = match module {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Self::vmlinux_only(vmlinux_types, ModuleBtf::Absent),
            Err(e) => return Self::vmlinux_only(vmlinux_types, ModuleBtf::Unreadable(e)),
        };
        let merged = RawBtf::parse(&module)
            .map(|split| base.merge(&split))
            .map_err(|e| e.to_string());
        match merged.and_then(|bytes| parse_raw_btf(&bytes).map_err(|e| e.to_string())) {
            Ok(btf) => Ok(KernelBtf {
                btf,
                vmlinux_types,
                module: ModuleBtf::Loaded,
            }),
            Err(e) => Self::vmlinux_only(vmlinux_types, ModuleBtf::Unreadable(e)),
        }
    }

    fn vmlinux_only(vmlinux_types: u32, module: ModuleBtf) -> Result<Self, Error> {
        let btf = Btf::from_path(VMLINUX_BTF).map_err(|e| Error::BtfUnreadable(e.to_string()))?;
        Ok(KernelBtf {
            btf,
            vmlinux_types,
            module,
        })
    }

    /// Every type: vmlinux's, then the module's (ids continue).
    pub fn btf(&self) -> &Btf<'static> {
        &self.btf
    }

    /// Whether nf_conntrack's module BTF is part of the lookups.
    pub fn module(&self) -> &ModuleBtf {
        &self.module
    }

    /// `struct name` or `union name`: the first one with a body, vmlinux's before the
    /// module's (a declaration without a body, `struct x;`, does not count, as in CO-RE).
    pub fn composite(&self, name: &str) -> Option<Composite<'_>> {
        self.btf.type_by_name::<Composite<'_>>(name).or_else(|| {
            // The first type of that name is something else (a forward declaration):
            // look further.
            self.btf
                .type_by_kind::<Composite<'_>>()
                .find(|c| c.name().and_then(|n| n.to_str()) == Some(name))
        })
    }

    /// Where `struct name` is defined, if anywhere.
    pub fn origin(&self, name: &str) -> Option<BtfOrigin> {
        let id: u32 = self.composite(name)?.type_id().into();
        Some(if id < self.vmlinux_types {
            BtfOrigin::Vmlinux
        } else {
            BtfOrigin::Module
        })
    }

    /// The size in bytes of `struct name` (the one [`composite`](Self::composite) finds).
    pub fn struct_size(&self, name: &str) -> Option<usize> {
        self.composite(name).map(|c| c.size())
    }

    /// Whether `struct name` (or `union name`) is defined.
    pub fn has_struct(&self, name: &str) -> bool {
        self.composite(name).is_some()
    }

    /// Whether `struct name` has the member `path` (`zone`, or `proto.sctp` through
    /// nested structs and unions), looking inside anonymous members as CO-RE's
    /// `bpf_core_field_exists` does.
    pub fn has_member(&self, name: &str, path: &str) -> bool {
        let Some(mut current) = self.composite(name) else {
            return false;
        };
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            let Some(ty) = member_type(&self.btf, &current, part, 0) else {
                return false;
            };
            if parts.peek().is_none() {
                return true;
            }
            let next = self
                .btf
                .type_by_id::<BtfType<'_>>(ty)
                .map(|t| t.skip_mods_and_typedefs())
                .and_then(|t| Composite::try_from(t).ok());
            match next {
                Some(c) => current = c,
                None => return false,
            }
        }
        false
    }

    /// Whether `enum name` has the value `value`, as `bpf_core_enum_value_exists` asks:
    /// of the first enum so named (vmlinux's before the module's).
    pub fn has_enumerator(&self, name: &str, value: &str) -> bool {
        let is = |n: Option<&std::ffi::OsStr>| n.and_then(|n| n.to_str()) == Some(value);
        let values = |t: BtfType<'_>| {
            if let Ok(e) = Enum::try_from(t) {
                Some(e.iter().any(|v| is(v.name)))
            } else if let Ok(e) = Enum64::try_from(t) {
                Some(e.iter().any(|v| is(v.name)))
            } else {
                None
            }
        };
        if let Some(found) = self.btf.type_by_name::<BtfType<'_>>(name).and_then(values) {
            return found;
        }
        self.btf
            .type_by_kind::<BtfType<'_>>()
            .filter(|t| t.name().and_then(|n| n.to_str()) == Some(name))
            .find_map(values)
            .unwrap_or(false)
    }
}

/// The type of member `member` of `c`, looking inside anonymous structs and unions.
fn member_type(btf: &Btf<'_>, c: &Composite<'_>, member: &str, depth: u32) -> Option<TypeId> {
    if depth > 8 {
        return None;
    }
    c.iter()
        .find_map(|m| match m.name.and_then(|n| n.to_str()) {
            Some(n) if !n.is_empty() => (n == member).then_some(m.ty),
            _ => btf
                .type_by_id::<BtfType<'_>>(m.ty)
                .map(|t| t.skip_mods_and_typedefs())
                .and_then(|t| Composite::try_from(t).ok())
                .and_then(|inner| member_type(btf, &inner, member, depth + 1)),
        })
}

// ---------------------------------------------------------------------------------------
// Drop reasons

/// First kernel whose `skb:kfree_skb` tracepoint passes a drop reason (some stable
/// kernels before it have the reasons backported: BTF decides, not this number).
pub const DROP_REASONS_SINCE: KernelVersion = KernelVersion::new(5, 17, 0);

/// The kernel's enum of drop reasons.
pub const DROP_REASON_ENUM: &str = "skb_drop_reason";

/// The running kernel's drop reasons, `enum skb_drop_reason` read from its BTF: the
/// numbers differ between kernels, so they are named from the kernel that gave them.
/// Names lose the enum's `SKB_DROP_REASON_` prefix (or `SKB_` for `SKB_CONSUMED` and
/// `SKB_NOT_DROPPED_YET`), as the kernel's own trace output prints them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropReasons {
    /// (value, name), sorted by value, the first name of each value.
    names: Vec<(u32, std::sync::Arc<str>)>,
}

impl DropReasons {
    /// From the enum's `(NAME, value)` pairs as BTF lists them. Enumerators that are not
    /// reasons (`SKB_DROP_REASON_MAX`, `SKB_DROP_REASON_SUBSYS_MASK`) are left out.
    pub fn from_enumerators<'a>(values: impl IntoIterator<Item = (&'a str, u64)>) -> Self {
        let mut names: Vec<(u32, std::sync::Arc<str>)> = Vec::new();
        for (name, value) in values {
            let short = name
                .strip_prefix(ct_core::filter::DROP_REASON_PREFIX)
                .or_else(|| name.strip_prefix("SKB_"))
                .unwrap_or(name);
            let Ok(value) = u32::try_from(value) else {
                continue;
            };
            if short.is_empty() || short == "MAX" || short == "SUBSYS_MASK" {
                continue;
            }
            if !names.iter().any(|(v, _)| *v == value) {
                names.push((value, short.into()));
            }
        }
        names.sort_by_key(|(v, _)| *v);
        DropReasons { names }
    }

    /// The name of reason `value`, if the kernel's enum has one.
    pub fn name(&self, value: u32) -> Option<&std::sync::Arc<str>> {
        self.names
            .binary_search_by_key(&value, |(v, _)| *v)
            .ok()
            .map(|i| &self.names[i].1)
    }

    /// The value of the reason called `name` (without the prefix).
    pub fn value(&self, name: &str) -> Option<u32> {
        self.names
            .iter()
            .find(|(_, n)| &**n == name)
            .map(|(v, _)| *v)
    }

    /// Every reason name, in value order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|(_, n)| &**n)
    }

    /// Whether the kernel's enum names no reason at all.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// `SKB_CONSUMED` (Linux 6.0+): a packet freed after use, not dropped.
    pub fn consumed(&self) -> Option<u32> {
        self.value("CONSUMED")
    }
}

impl KernelBtf {
    /// `enum skb_drop_reason`, when this kernel has one.
    pub fn drop_reasons(&self) -> Option<DropReasons> {
        let pairs: Vec<(String, u64)> = self
            .btf
            .type_by_kind::<BtfType<'_>>()
            .filter(|t| t.name().and_then(|n| n.to_str()) == Some(DROP_REASON_ENUM))
            .find_map(|t| {
                if let Ok(e) = Enum::try_from(t) {
                    Some(
                        e.iter()
                            .filter_map(|v| {
                                let name = v.name.and_then(|n| n.to_str())?.to_owned();
                                Some((name, v.value as u32 as u64))
                            })
                            .collect(),
                    )
                } else if let Ok(e) = Enum64::try_from(t) {
                    Some(
                        e.iter()
                            .filter_map(|v| {
                                let name = v.name.and_then(|n| n.to_str())?.to_owned();
                                Some((name, v.value as u64))
                            })
                            .collect(),
                    )
                } else {
                    None
                }
            })?;
        let reasons = DropReasons::from_enumerators(pairs.iter().map(|(n, v)| (n.as_str(), *v)));
        (!reasons.is_empty()).then_some(reasons)
    }
}

/// The sections of one raw BTF blob (as /sys/kernel/btf/* holds them).
#[derive(Debug, Clone, Copy)]
struct RawBtf<'a> {
    types: &'a [u8],
    strings: &'a [u8],
}

/// Why bytes are not raw BTF this library can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum RawBtfError {
    #[error("not raw BTF of this machine's byte order")]
    Magic,
    #[error("BTF header cut short")]
    HeaderCutShort,
    #[error("BTF sections out of bounds")]
    SectionsOutOfBounds,
    #[error("BTF type cut short")]
    TypeCutShort,
    #[error("unknown BTF kind {0}")]
    UnknownKind(u32),
}

const BTF_MAGIC: u16 = 0xeb9f;
const BTF_HEADER_LEN: usize = 24;

impl<'a> RawBtf<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, RawBtfError> {
        let u32_at = |off: usize| {
            bytes
                .get(off..off + 4)
                .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize)
        };
        let magic = bytes.get(..2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
        if magic != Some(BTF_MAGIC) {
            return Err(RawBtfError::Magic);
        }
        let (Some(hdr_len), Some(type_off), Some(type_len), Some(str_off), Some(str_len)) =
            (u32_at(4), u32_at(8), u32_at(12), u32_at(16), u32_at(20))
        else {
            return Err(RawBtfError::HeaderCutShort);
        };
        let section = |off: usize, len: usize| {
            let start = hdr_len.checked_add(off)?;
            bytes.get(start..start.checked_add(len)?)
        };
        match (section(type_off, type_len), section(str_off, str_len)) {
            (Some(types), Some(strings)) if hdr_len >= BTF_HEADER_LEN => {
                Ok(RawBtf { types, strings })
            }
            _ => Err(RawBtfError::SectionsOutOfBounds),
        }
    }

    /// The number of type ids this blob uses, counting id 0 (void): the first id of BTF
    /// split from it.
    fn count_types(&self) -> Result<u32, RawBtfError> {
        let mut off = 0;
        let mut count = 1u32;
        while off < self.types.len() {
            let word = |at: usize| {
                self.types
                    .get(at..at + 4)
                    .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            };
            let info = word(off + 4).ok_or(RawBtfError::TypeCutShort)?;
            let vlen = (info & 0xffff) as usize;
            let extra = match (info >> 24) & 0x1f {
                // int, var, decl_tag: one word
                1 | 14 | 17 => 4,
                // ptr, fwd, typedef, volatile, const, restrict, func, float, type_tag
                2 | 7 | 8 | 9 | 10 | 11 | 12 | 16 | 18 => 0,
                // array
                3 => 12,
                // struct, union (members), datasec (vars), enum64 (values)
                4 | 5 | 15 | 19 => 12 * vlen,
                // enum, func_proto (params)
                6 | 13 => 8 * vlen,
                kind => return Err(RawBtfError::UnknownKind(kind)),
            };
            off += 12 + extra;
            count += 1;
        }
        Ok(count)
    }

    /// One self-contained BTF blob of `self` followed by `split`, BTF split from it: a
    /// split blob's type ids and string offsets already continue its base's, so its
    /// sections follow the base's unchanged.
    fn merge(&self, split: &RawBtf<'_>) -> Vec<u8> {
        let types = self.types.len() + split.types.len();
        let strings = self.strings.len() + split.strings.len();
        let mut out = Vec::with_capacity(BTF_HEADER_LEN + types + strings);
        out.extend_from_slice(&BTF_MAGIC.to_ne_bytes());
        out.push(1); // version
        out.push(0); // flags
        for word in [BTF_HEADER_LEN, 0, types, types, strings] {
            out.extend_from_slice(&(word as u32).to_ne_bytes());
        }
        out.extend_from_slice(self.types);
        out.extend_from_slice(split.types);
        out.extend_from_slice(self.strings);
        out.extend_from_slice(split.strings);
        out
    }
}

/// Parses raw BTF bytes with libbpf, which reads BTF from files only: through an unnamed
/// temporary file (`O_TMPFILE`), or a named one removed right after where the file system
/// has no unnamed ones.
fn parse_raw_btf(bytes: &[u8]) -> Result<Btf<'static>, std::io::Error> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;

    let dir = std::env::temp_dir();
    let unnamed = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(&dir);
    if let Ok(mut file) = unnamed {
        file.write_all(bytes)?;
        let path = format!("/proc/self/fd/{}", file.as_raw_fd());
        return Btf::from_path(path).map_err(std::io::Error::other);
    }
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("ct-trace-btf-{}-{n}", std::process::id()));
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| Btf::from_path(&path).map_err(std::io::Error::other));
    let _ = std::fs::remove_file(&path);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_compare() {
        let v = |s| KernelVersion::parse(s).unwrap();
        assert_eq!(v("5.10.0-33-amd64"), KernelVersion::new(5, 10, 0));
        assert_eq!(v("6.1.129-1"), KernelVersion::new(6, 1, 129));
        assert_eq!(v("6.12.12+bpo-cloud-amd64"), KernelVersion::new(6, 12, 12));
        assert_eq!(v("6.18.0-rc3+"), KernelVersion::new(6, 18, 0));
        assert_eq!(v("6.18"), KernelVersion::new(6, 18, 0));
        assert_eq!(v("5.10-rc1.x"), KernelVersion::new(5, 10, 0));
        assert_eq!(v(" 6.1.0\n"), KernelVersion::new(6, 1, 0));
        for bad in ["", "6", "linux", "x.1", "6.x"] {
            assert_eq!(KernelVersion::parse(bad), None, "{bad:?}");
        }
        assert!(v("5.10.0-33-amd64") < MODULE_BTF_SINCE);
        assert!(v("5.11") >= MODULE_BTF_SINCE);
        assert!(v("6.1.0") > v("5.19.17"));
        assert!(v("6.12.0") > v("6.2.0"));
        assert_eq!(v("6.1.0-28-amd64").to_string(), "6.1.0");
    }

    #[test]
    fn running_release_parses() {
        if let Some(release) = kernel_release() {
            assert!(KernelVersion::parse(&release).is_some(), "{release}");
        }
    }

    #[test]
    fn config_lookup_is_exact() {
        let c = KernelConfig::from_text(
            "CONFIG_NF_CONNTRACK=y\nCONFIG_NF_CONNTRACK_MARK=y\nCONFIG_HZ=250\n\
             # CONFIG_NF_CONNTRACK_ZONES is not set\n",
        );
        assert_eq!(c.get("CONFIG_NF_CONNTRACK"), Some("y"));
        assert_eq!(c.get("CONFIG_HZ"), Some("250"));
        assert_eq!(c.get("CONFIG_NF_CONNTRACK_ZONES"), None);
    }

    #[test]
    fn capabilities_from_status() {
        let status = |eff: &str| format!("Name:\tx\nCapEff:\t{eff}\n");
        assert!(caps_allow_bpf(&status("000001ffffffffff")));
        assert!(caps_allow_bpf(&status("0000000000200000"))); // CAP_SYS_ADMIN
        assert!(caps_allow_bpf(&status("000000c000000000"))); // CAP_BPF + CAP_PERFMON
        assert!(!caps_allow_bpf(&status("0000008000000000"))); // CAP_BPF alone
        assert!(!caps_allow_bpf(&status("0000000000000000")));
        assert!(!caps_allow_bpf("Name:\tx\n"));
    }

    #[test]
    fn conntrack_state_from_proc() {
        let modules = "nf_nat 61440 1 - Live 0x0\nnf_conntrack 184320 2 nf_nat, Live 0x0\n";
        assert_eq!(
            Conntrack::from_sources(Some(modules), true),
            Conntrack::Module
        );
        let without = "nf_conntrack_netlink 1 0 - Live 0x0\nnf_nat 61440 1 - Live 0x0\n";
        assert_eq!(
            Conntrack::from_sources(Some(without), false),
            Conntrack::NotLoaded
        );
        assert_eq!(Conntrack::from_sources(Some(""), true), Conntrack::BuiltIn);
        assert_eq!(Conntrack::from_sources(None, false), Conntrack::NotLoaded);
        assert!(!Conntrack::NotLoaded.is_loaded());
    }

    #[test]
    fn drop_reason_names_lose_their_prefix() {
        let r = DropReasons::from_enumerators([
            ("SKB_NOT_DROPPED_YET", 0),
            ("SKB_CONSUMED", 1),
            ("SKB_DROP_REASON_NOT_SPECIFIED", 2),
            ("SKB_DROP_REASON_NO_SOCKET", 3),
            ("SKB_DROP_REASON_NETFILTER_DROP", 12),
            ("SKB_DROP_REASON_MAX", 128),
            ("SKB_DROP_REASON_SUBSYS_MASK", 0xffff_0000),
        ]);
        assert_eq!(r.name(3).map(|n| &**n), Some("NO_SOCKET"));
        assert_eq!(r.name(1).map(|n| &**n), Some("CONSUMED"));
        assert_eq!(r.value("NETFILTER_DROP"), Some(12));
        assert_eq!(r.consumed(), Some(1));
        assert_eq!(r.name(128), None, "MAX is not a reason");
        assert_eq!(r.value("SUBSYS_MASK"), None);
        assert_eq!(r.names().count(), 5);
        // 5.17: no SKB_CONSUMED, NOT_SPECIFIED first.
        let old = DropReasons::from_enumerators([("SKB_DROP_REASON_NOT_SPECIFIED", 0)]);
        assert_eq!(old.consumed(), None);
        assert_eq!(old.name(0).map(|n| &**n), Some("NOT_SPECIFIED"));
    }

    /// On the running kernel: where BTF has the enum, the reasons every kernel since 5.17
    /// has are there, and the table agrees with the tracepoint having the argument.
    #[test]
    fn kernel_drop_reasons_from_btf() {
        let Ok(btf) = KernelBtf::load() else {
            eprintln!("no kernel BTF here");
            return;
        };
        let Some(reasons) = btf.drop_reasons() else {
            eprintln!("this kernel has no enum skb_drop_reason");
            return;
        };
        for name in ["NOT_SPECIFIED", "NO_SOCKET", "NETFILTER_DROP"] {
            assert!(reasons.value(name).is_some(), "{name}: {reasons:?}");
        }
    }

    /// A raw BTF blob: `types` as (kind, vlen, extra bytes) entries.
    fn blob(types: &[(u32, u32, usize)], strings: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        for &(kind, vlen, extra) in types {
            t.extend_from_slice(&0u32.to_ne_bytes());
            t.extend_from_slice(&((kind << 24) | vlen).to_ne_bytes());
            t.extend_from_slice(&0u32.to_ne_bytes());
            t.extend(std::iter::repeat_n(0u8, extra));
        }
        RawBtf { types: &t, strings }.merge(&RawBtf {
            types: &[],
            strings: &[],
        })
    }

    #[test]
    fn raw_btf_counts_and_merges() {
        // int, struct with 2 members, enum with 3 values, func_proto with 1 param.
        let base = blob(&[(1, 0, 4), (4, 2, 24), (6, 3, 24), (13, 1, 8)], b"\0a\0");
        let raw = RawBtf::parse(&base).unwrap();
        assert_eq!(raw.count_types().unwrap(), 5);
        let split = blob(&[(2, 0, 0)], b"b\0");
        let split = RawBtf::parse(&split).unwrap();
        let merged = raw.merge(&split);
        let merged = RawBtf::parse(&merged).unwrap();
        assert_eq!(merged.count_types().unwrap(), 6);
        assert_eq!(merged.strings, b"\0a\0b\0");
        assert_eq!(
            RawBtf::parse(&base[..30]).unwrap_err(),
            RawBtfError::SectionsOutOfBounds
        );
        assert_eq!(
            RawBtf::parse(b"\x9f\xeb").unwrap_err(),
            RawBtfError::HeaderCutShort
        );
        assert_eq!(RawBtf::parse(b"\xeb\x9f").unwrap_err(), RawBtfError::Magic);
        let unknown = blob(&[(31, 0, 0)], b"\0");
        assert_eq!(
            RawBtf::parse(&unknown).unwrap().count_types(),
            Err(RawBtfError::UnknownKind(31))
        );
    }

    /// Split BTF made here the way the kernel lays out a module's: a struct whose name
    /// and member name continue vmlinux's strings and whose member points at vmlinux's
    /// `struct sk_buff`. Merged with the real vmlinux BTF, libbpf accepts it and every
    /// lookup sees both.
    #[test]
    fn split_btf_merges_with_vmlinux() {
        let Ok(vmlinux) = std::fs::read(VMLINUX_BTF) else {
            eprintln!("no kernel BTF here");
            return;
        };
        let base = RawBtf::parse(&vmlinux).unwrap();
        let first_id = base.count_types().unwrap();
        let plain = Btf::from_path(VMLINUX_BTF).unwrap();
        assert_eq!(plain.len() as u32, first_id, "type count walked by hand");
        let sk_buff: u32 = plain
            .type_by_name::<Composite<'_>>("sk_buff")
            .unwrap()
            .type_id()
            .into();
        let str_base = base.strings.len() as u32;
        let strings = b"ct_split_test\0skb\0";
        let mut types = Vec::new();
        let mut word = |w: u32| types.extend_from_slice(&w.to_ne_bytes());
        // [first_id] PTR -> struct sk_buff
        word(0);
        word(2 << 24);
        word(sk_buff);
        // [first_id + 1] STRUCT ct_split_test { struct sk_buff *skb; }, 8 bytes
        word(str_base);
        word((4 << 24) | 1);
        word(8);
        word(str_base + 14); // "skb"
        word(first_id);
        word(0);
        let mut split = Vec::new();
        split.extend_from_slice(&BTF_MAGIC.to_ne_bytes());
        split.extend_from_slice(&[1, 0]);
        for w in [
            24,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            split.extend_from_slice(&w.to_ne_bytes());
        }
        split.extend_from_slice(&types);
        split.extend_from_slice(strings);

        let btf = KernelBtf::from_raw(&vmlinux, Ok(Some(split))).unwrap();
        assert_eq!(btf.module(), &ModuleBtf::Loaded);
        assert!(btf.has_member("ct_split_test", "skb"));
        assert!(!btf.has_member("ct_split_test", "len"));
        assert_eq!(btf.origin("ct_split_test"), Some(BtfOrigin::Module));
        assert_eq!(btf.origin("sk_buff"), Some(BtfOrigin::Vmlinux));
        let alone = KernelBtf::from_raw(&vmlinux, Ok(None)).unwrap();
        assert_eq!(alone.module(), &ModuleBtf::Absent);
        assert_eq!(
            btf.has_member("sk_buff", "_nfct"),
            alone.has_member("sk_buff", "_nfct")
        );

        // A module blob that is not BTF leaves vmlinux's lookups working.
        let btf = KernelBtf::from_raw(&vmlinux, Ok(Some(b"junk".to_vec()))).unwrap();
        assert!(matches!(btf.module(), ModuleBtf::Unreadable(_)));
        assert!(btf.has_struct("sk_buff"));
        assert!(!btf.has_struct("ct_split_test"));
    }

    /// On the running kernel: vmlinux BTF loads, and where nf_conntrack has module BTF,
    /// its types are found and attributed to it.
    #[test]
    fn kernel_btf_reads_module_types() {
        let Ok(btf) = KernelBtf::load() else {
            eprintln!("no kernel BTF here");
            return;
        };
        assert!(btf.has_struct("sk_buff"));
        assert!(btf.has_member("sk_buff", "len"));
        assert_eq!(btf.origin("sk_buff"), Some(BtfOrigin::Vmlinux));
        assert!(!btf.has_member("sk_buff", "no_such_member"));
        assert!(!btf.has_member("sk_buff", "len.x"));
        if Path::new(NF_CONNTRACK_BTF).exists() {
            assert_eq!(btf.module(), &ModuleBtf::Loaded);
            // The module's own structures are found, in the module's BTF.
            assert!(btf.has_member("nf_conn_help", "helper"), "{btf:?}");
            assert!(btf.origin("nf_conntrack_helper").is_some());
        } else {
            assert_eq!(btf.module(), &ModuleBtf::Absent);
        }
    }
}
