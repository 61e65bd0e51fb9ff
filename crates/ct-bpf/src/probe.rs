//! Probe specs (`tp:net:net_dev_start_xmit`, `kp:ip_rcv`, `kr:skb_clone`) and their
//! resolution against kernel BTF to the argument slot that holds the `struct sk_buff *`.

use std::fmt;
use std::str::FromStr;

use ct_core::{ProbeInfo, ProbeKind};
use libbpf_rs::btf::types::{Func, FuncProto, Typedef};
use libbpf_rs::btf::{Btf, BtfKind, BtfType, ReferencesType};

use crate::kernel::{kprobes_supported, KernelBtf};
use crate::Error;

/// Where to attach: a tracepoint, or a kernel function entry or return.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProbeSpec {
    /// `tp:<category>:<name>`, attached as a BTF tracepoint (or a raw one).
    Tracepoint {
        /// The tracepoint's category (`net`, `skb`).
        category: String,
        /// Its name within the category (`net_dev_start_xmit`).
        name: String,
    },
    /// `kp:<function>`.
    Kprobe {
        /// The kernel function.
        function: String,
    },
    /// `kr:<function>`: the function must return a `struct sk_buff *`.
    Kretprobe {
        /// The kernel function.
        function: String,
    },
}

/// Why a probe spec does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeSpecError {
    /// Not of the form `type:name`.
    #[error("probe {0:?}: expected tp:<category>:<name>, kp:<function> or kr:<function>")]
    Shape(String),
    /// A probe type other than `tp`, `kp` and `kr`.
    #[error("probe {spec:?}: unknown probe type {kind:?}; use tp (tracepoint), kp (kprobe) or kr (kretprobe)")]
    Kind {
        /// The probe as given.
        spec: String,
        /// Its type.
        kind: String,
    },
    /// A name with characters no kernel symbol has.
    #[error(
        "probe {0:?}: names may hold only letters, digits and '_' (and '.' in function names)"
    )]
    Name(String),
}

fn valid_ident(s: &str, allow_dot: bool) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || (allow_dot && b == b'.'))
}

impl FromStr for ProbeSpec {
    type Err = ProbeSpecError;

    fn from_str(spec: &str) -> Result<Self, ProbeSpecError> {
        let spec = spec.trim();
        let (kind, rest) = spec
            .split_once(':')
            .ok_or_else(|| ProbeSpecError::Shape(spec.to_owned()))?;
        let bad_name = || ProbeSpecError::Name(spec.to_owned());
        match kind {
            "tp" => {
                let (category, name) = rest
                    .split_once(':')
                    .ok_or_else(|| ProbeSpecError::Shape(spec.to_owned()))?;
                if !valid_ident(category, false) || !valid_ident(name, false) {
                    return Err(bad_name());
                }
                Ok(ProbeSpec::Tracepoint {
                    category: category.to_owned(),
                    name: name.to_owned(),
                })
            }
            "kp" | "kr" => {
                if !valid_ident(rest, true) {
                    return Err(bad_name());
                }
                let function = rest.to_owned();
                Ok(if kind == "kp" {
                    ProbeSpec::Kprobe { function }
                } else {
                    ProbeSpec::Kretprobe { function }
                })
            }
            other => Err(ProbeSpecError::Kind {
                spec: spec.to_owned(),
                kind: other.to_owned(),
            }),
        }
    }
}

impl fmt::Display for ProbeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeSpec::Tracepoint { category, name } => write!(f, "tp:{category}:{name}"),
            ProbeSpec::Kprobe { function } => write!(f, "kp:{function}"),
            ProbeSpec::Kretprobe { function } => write!(f, "kr:{function}"),
        }
    }
}

impl ProbeSpec {
    /// The kind events name it by.
    pub fn kind(&self) -> ProbeKind {
        match self {
            ProbeSpec::Tracepoint { .. } => ProbeKind::Tp,
            ProbeSpec::Kprobe { .. } => ProbeKind::Kp,
            ProbeSpec::Kretprobe { .. } => ProbeKind::Kr,
        }
    }

    /// The name events carry: `category:name` or the function.
    pub fn event_name(&self) -> String {
        match self {
            ProbeSpec::Tracepoint { category, name } => format!("{category}:{name}"),
            ProbeSpec::Kprobe { function } | ProbeSpec::Kretprobe { function } => function.clone(),
        }
    }

    /// What events from this probe carry about it.
    pub fn info(&self) -> ProbeInfo {
        ProbeInfo {
            kind: self.kind(),
            name: self.event_name().into(),
        }
    }
}

/// Tracepoints [`default_probes`] always includes: packets leaving a device (locally
/// generated and forwarded, after NAT), packets arriving at a device, packets dropped and
/// packets freed after use. Every kernel with BTF has them; no kprobes needed.
pub const DEFAULT_TRACEPOINTS: [&str; 4] = [
    "tp:net:net_dev_start_xmit",
    "tp:net:netif_receive_skb",
    "tp:skb:kfree_skb",
    "tp:skb:consume_skb",
];

/// Kernel functions [`default_probes`] adds where kprobes work and the function is in BTF:
/// IPv4/IPv6 forwarding and local delivery, where incoming packets already carry the
/// conntrack entry that PREROUTING attached (`netif_receive_skb` fires before that).
pub const DEFAULT_KPROBES: [&str; 4] = [
    "kp:ip_forward",
    "kp:ip_local_deliver",
    "kp:ip6_forward",
    "kp:ip6_input",
];

/// The default probe set: [`DEFAULT_TRACEPOINTS`], plus each of [`DEFAULT_KPROBES`] that
/// resolves when this kernel supports kprobes (none otherwise).
pub fn default_probes() -> Vec<ProbeSpec> {
    let parse = |s: &&str| {
        s.parse::<ProbeSpec>()
            .expect("built-in probe specs are valid")
    };
    let mut specs: Vec<ProbeSpec> = DEFAULT_TRACEPOINTS.iter().map(parse).collect();
    if kprobes_supported() {
        if let Ok(btf) = KernelBtf::load() {
            specs.extend(
                DEFAULT_KPROBES
                    .iter()
                    .map(parse)
                    .filter(|spec| btf.resolve(spec).is_ok()),
            );
        }
    }
    specs
}

/// Where the `struct sk_buff *` is for one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedProbe {
    /// The probe.
    pub spec: ProbeSpec,
    /// Argument index (0-based, not counting a tracepoint's hidden `void *` context);
    /// for a kretprobe, 0 and unused: the skb is the return value.
    pub skb_arg: u32,
    /// Argument index of the `enum skb_drop_reason` (`skb:kfree_skb` on Linux 5.17+).
    pub reason_arg: Option<u32>,
}

impl ResolvedProbe {
    /// Whether the probe sees packets dropped: `skb:kfree_skb`.
    pub fn is_drop_probe(&self) -> bool {
        is_drop_probe(&self.spec)
    }
}

/// The tracepoint whose events are drops.
pub const DROP_TRACEPOINT: &str = "tp:skb:kfree_skb";

/// Whether `spec` is the drop tracepoint, `skb:kfree_skb`.
pub fn is_drop_probe(spec: &ProbeSpec) -> bool {
    matches!(spec, ProbeSpec::Tracepoint { category, name } if category == "skb" && name == "kfree_skb")
}

/// How BTF spells the drop reason argument's type.
const DROP_REASON_TYPE: &str = "enum skb_drop_reason";

/// Most arguments a probe program can read the skb from (raw_tp: 6; kprobe registers: 5).
const MAX_ARGS: usize = 6;
const MAX_KPROBE_ARGS: usize = 5;

/// Probe resolution: what kernel BTF says about a probe's arguments.
impl KernelBtf {
    /// Finds the skb argument of `spec`, or says why there is none.
    pub fn resolve(&self, spec: &ProbeSpec) -> Result<ResolvedProbe, Error> {
        match spec {
            ProbeSpec::Tracepoint { name, .. } => {
                let typedef = format!("btf_trace_{name}");
                let proto = self
                    .btf()
                    .type_by_name::<Typedef>(&typedef)
                    .and_then(|t| t.next_type())
                    .and_then(|t| t.next_type()) // through the pointer
                    .and_then(|t| FuncProto::try_from(t).ok())
                    .ok_or_else(|| Error::UnknownProbe {
                        spec: spec.to_string(),
                        what: "tracepoint",
                        suggestions: self.suggest_tracepoints(name),
                    })?;
                // Raw tracepoint args skip the first parameter (the hidden `void *__data`).
                let params: Vec<String> = proto
                    .iter()
                    .skip(1)
                    .map(|p| type_name(self.btf(), p.ty))
                    .collect();
                let mut resolved = self.pick_skb(spec, &params, MAX_ARGS)?;
                resolved.reason_arg = params
                    .iter()
                    .position(|p| p == DROP_REASON_TYPE)
                    .filter(|&i| i < MAX_ARGS)
                    .map(|i| i as u32);
                Ok(resolved)
            }
            ProbeSpec::Kprobe { function } => {
                let proto = self.func_proto(spec, function)?;
                let params: Vec<String> =
                    proto.iter().map(|p| type_name(self.btf(), p.ty)).collect();
                self.pick_skb(spec, &params, MAX_KPROBE_ARGS)
            }
            ProbeSpec::Kretprobe { function } => {
                let proto = self.func_proto(spec, function)?;
                let ret = type_name(self.btf(), proto.referenced_type_id());
                if is_skb_ptr(&ret) {
                    Ok(ResolvedProbe {
                        spec: spec.clone(),
                        skb_arg: 0,
                        reason_arg: None,
                    })
                } else {
                    Err(Error::NoSkbArgument {
                        spec: spec.to_string(),
                        args: vec![format!("returns {ret}")],
                    })
                }
            }
        }
    }

    fn func_proto(&self, spec: &ProbeSpec, function: &str) -> Result<FuncProto<'_>, Error> {
        self.btf()
            .type_by_name::<Func>(function)
            .and_then(|f| f.next_type())
            .and_then(|t| FuncProto::try_from(t).ok())
            .ok_or_else(|| Error::UnknownProbe {
                spec: spec.to_string(),
                what: "kernel function",
                suggestions: self.suggest_functions(function),
            })
    }

    fn pick_skb(
        &self,
        spec: &ProbeSpec,
        params: &[String],
        max: usize,
    ) -> Result<ResolvedProbe, Error> {
        match params.iter().position(|p| is_skb_ptr(p)) {
            Some(i) if i < max => Ok(ResolvedProbe {
                spec: spec.clone(),
                skb_arg: i as u32,
                reason_arg: None,
            }),
            Some(i) => Err(Error::SkbArgumentOutOfReach {
                spec: spec.to_string(),
                index: i,
                max,
            }),
            None => Err(Error::NoSkbArgument {
                spec: spec.to_string(),
                args: params.to_vec(),
            }),
        }
    }

    /// Every tracepoint name in the kernel (from `btf_trace_*` typedefs).
    pub fn tracepoints(&self) -> impl Iterator<Item = String> + '_ {
        self.btf().type_by_kind::<Typedef>().filter_map(|t| {
            t.name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("btf_trace_"))
                .map(str::to_owned)
        })
    }

    fn suggest_tracepoints(&self, name: &str) -> Vec<String> {
        closest(name, self.tracepoints())
    }

    fn suggest_functions(&self, name: &str) -> Vec<String> {
        closest(
            name,
            self.btf()
                .type_by_kind::<Func>()
                .filter_map(|f| f.name().and_then(|n| n.to_str()).map(str::to_owned)),
        )
    }
}

fn is_skb_ptr(type_name: &str) -> bool {
    let t = type_name.trim_start_matches("const ").trim();
    t == "struct sk_buff *"
}

/// C-like spelling of a BTF type, enough to show a user a probe's argument types.
fn type_name(btf: &Btf<'_>, id: libbpf_rs::btf::TypeId) -> String {
    let Some(ty) = btf.type_by_id::<BtfType<'_>>(id) else {
        return "void".into();
    };
    let mut out = String::new();
    let mut ty = ty;
    let mut stars = 0;
    let mut quals = String::new();
    // Bounded: BTF chains are short, but never trust input to terminate.
    for _ in 0..32 {
        match ty.kind() {
            BtfKind::Ptr => stars += 1,
            BtfKind::Const if stars == 0 => quals.push_str("const "),
            BtfKind::Const | BtfKind::Volatile | BtfKind::Restrict | BtfKind::TypeTag => {}
            _ => break,
        }
        match ty.next_type() {
            Some(next) => ty = next,
            None => {
                out.push_str(&quals);
                out.push_str("void");
                push_stars(&mut out, stars);
                return out;
            }
        }
    }
    let name = ty.name().and_then(|n| n.to_str()).unwrap_or("");
    let base = match ty.kind() {
        BtfKind::Struct => format!("struct {name}"),
        BtfKind::Union => format!("union {name}"),
        BtfKind::Enum | BtfKind::Enum64 => format!("enum {name}"),
        BtfKind::FuncProto => "fn".into(),
        BtfKind::Void => "void".into(),
        _ if name.is_empty() => format!("{:?}", ty.kind()).to_lowercase(),
        _ => name.to_owned(),
    };
    out.push_str(&quals);
    out.push_str(&base);
    push_stars(&mut out, stars);
    out
}

fn push_stars(out: &mut String, stars: usize) {
    if stars > 0 {
        out.push(' ');
        out.extend(std::iter::repeat_n('*', stars));
    }
}

/// Up to five names closest to `wanted`: containing it first, then by edit distance.
pub(crate) fn closest(wanted: &str, names: impl Iterator<Item = String>) -> Vec<String> {
    let mut scored: Vec<(usize, String)> = names
        .filter_map(|n| {
            let d = if n.contains(wanted) || wanted.contains(n.as_str()) {
                n.len().abs_diff(wanted.len()) / 4
            } else {
                levenshtein(wanted, &n)
            };
            (d <= wanted.len() / 3 + 1).then_some((d, n))
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(5).map(|(_, n)| n).collect()
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_three_kinds() {
        assert_eq!(
            "tp:net:net_dev_start_xmit".parse::<ProbeSpec>().unwrap(),
            ProbeSpec::Tracepoint {
                category: "net".into(),
                name: "net_dev_start_xmit".into()
            }
        );
        assert_eq!(
            "kp:ip_rcv".parse::<ProbeSpec>().unwrap(),
            ProbeSpec::Kprobe {
                function: "ip_rcv".into()
            }
        );
        assert_eq!(
            "kr:skb_clone".parse::<ProbeSpec>().unwrap().to_string(),
            "kr:skb_clone"
        );
        assert_eq!(
            "kp:tcp_v4_rcv.cold"
                .parse::<ProbeSpec>()
                .unwrap()
                .event_name(),
            "tcp_v4_rcv.cold"
        );
    }

    #[test]
    fn refuses_malformed_specs() {
        let error = |spec: &str| spec.parse::<ProbeSpec>().unwrap_err();
        assert!(matches!(
            error("net_dev_start_xmit"),
            ProbeSpecError::Shape(_)
        ));
        assert!(matches!(
            error("tp:net_dev_start_xmit"),
            ProbeSpecError::Shape(_)
        ));
        assert!(matches!(
            error("fentry:ip_rcv"),
            ProbeSpecError::Kind { .. }
        ));
        assert!(matches!(error("tp:net:a b"), ProbeSpecError::Name(_)));
        assert!(matches!(error("kp:"), ProbeSpecError::Name(_)));
    }

    #[test]
    fn closest_prefers_substrings() {
        let names = [
            "net_dev_start_xmit",
            "net_dev_xmit",
            "kfree_skb",
            "consume_skb",
        ]
        .map(String::from);
        let got = closest("net_dev_start", names.into_iter());
        assert_eq!(got.first().map(String::as_str), Some("net_dev_start_xmit"));
        assert_eq!(levenshtein("kfree_skb", "kfre_skb"), 1);
    }

    #[test]
    fn default_probes_start_with_the_tracepoints() {
        let specs = default_probes();
        let names: Vec<String> = specs.iter().map(ToString::to_string).collect();
        assert_eq!(names[..DEFAULT_TRACEPOINTS.len()], DEFAULT_TRACEPOINTS);
        if !kprobes_supported() {
            assert_eq!(specs.len(), DEFAULT_TRACEPOINTS.len());
        }
    }

    /// On the running kernel: skb:kfree_skb has its reason after the skb and the caller's
    /// address where the kernel has drop reasons, and no other default tracepoint has one.
    #[test]
    fn kfree_skb_reason_argument_from_btf() {
        let Ok(btf) = KernelBtf::load() else {
            eprintln!("no kernel BTF here");
            return;
        };
        for spec in DEFAULT_TRACEPOINTS {
            let spec: ProbeSpec = spec.parse().unwrap();
            let resolved = btf.resolve(&spec).unwrap();
            assert_eq!(
                resolved.is_drop_probe(),
                spec.to_string() == DROP_TRACEPOINT
            );
            if !resolved.is_drop_probe() {
                assert_eq!(resolved.reason_arg, None, "{spec}");
            } else if btf.drop_reasons().is_some() {
                assert_eq!(resolved.skb_arg, 0);
                assert_eq!(resolved.reason_arg, Some(2), "{spec}");
            }
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_round_trips(s in "\\PC{0,40}") {
            if let Ok(spec) = s.parse::<ProbeSpec>() {
                prop_assert_eq!(spec.to_string().parse::<ProbeSpec>().unwrap(), spec);
            }
        }
    }
}
