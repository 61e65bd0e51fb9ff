//! The kernel verifier accepts the program under every filter configuration, including
//! the largest ones (a full packet program, four meta filters through pointers, every
//! conntrack filter). Needs root; elsewhere it prints why it skips (ct-lab's gate).

use ct_bpf::{CollectorBuilder, KernelFilters, OmitStep, ProbeSpec, Program};
use ct_bpf::{MetaFilter, MAX_INSNS};
use ct_core::filter::{CtFilter, DropFilter, PacketFilter};

/// Whether collection can run here (`check` says so); otherwise ct-lab's gate decides.
fn kernel_ready() -> bool {
    ct_lab::run_or_skip(ct_bpf::check().first_error().map_or(Ok(()), Err))
}

fn probes() -> Vec<ProbeSpec> {
    [
        "tp:net:net_dev_start_xmit",
        "tp:skb:kfree_skb",
        "tp:skb:consume_skb",
    ]
    .iter()
    .map(|p| p.parse().unwrap())
    .collect()
}

#[test]
fn largest_filter_configuration_loads() {
    if !kernel_ready() {
        return;
    }
    // Near MAX_INSNS tests: the most the kernel program walks.
    let packet: PacketFilter = "(tcp or udp or sctp) and (src net 10.0.0.0/8 or src net fd00::/8) \
         and not (dst host 10.0.0.1 or dst host fd00::1) and (port 53 or portrange 1000-2000 \
         or port 443 or port 80 or dst port 8080 or src port 22) and not icmp and not icmp6 \
         and (ip or ip6) and not proto 47 and not proto 50 and not proto 51 and not proto 33 and not proto 132 and not proto 136 and not proto 4 and not proto 41 and not proto 0"
        .parse()
        .unwrap();
    let n = packet.compile().insns.len();
    assert!(
        (MAX_INSNS - 2..=MAX_INSNS).contains(&n),
        "the test should exercise a near-full program, got {n} insns"
    );
    let filters = KernelFilters {
        packet: Some(packet),
        ct: CtFilter {
            states: Some(CtFilter::parse_states("new,established,reply").unwrap()),
            mark: Some((0x2a, 0xff)),
            zone: Some(7),
            status: Some(CtFilter::parse_status("confirmed").unwrap()),
            nat: true,
        },
        meta: [
            "sk_buff._nfct:0x7 == 0x2",
            "sk_buff.dev.name == 'eth0'",
            "sk_buff.dev.nd_net.net.ns.inum > 0",
            "sk_buff.len >= 20",
        ]
        .iter()
        .map(|m| m.parse::<MetaFilter>().unwrap())
        .collect(),
        drop: every_drop_filter(),
    };
    let collector = CollectorBuilder::new()
        .probes(probes())
        .filters(filters)
        .only_tracked(true)
        .netns(1)
        .build();
    if let Err(e) = &collector {
        panic!("the verifier refused the full filter configuration: {e}");
    }
}

/// Drops, with reasons where the kernel has them (5.17+): the kernel's first reasons and
/// the largest it has, so the reason bitmap is read at both ends.
fn every_drop_filter() -> DropFilter {
    let reasons = ct_bpf::KernelBtf::load()
        .ok()
        .and_then(|b| b.drop_reasons());
    DropFilter {
        only_drops: true,
        reasons: reasons.map(|r| {
            let names: Vec<String> = r.names().map(str::to_owned).collect();
            let mut pick: Vec<String> = names.iter().take(4).cloned().collect();
            pick.extend(names.iter().rev().take(1).cloned());
            pick
        }),
    }
}

#[test]
fn each_filter_kind_loads_alone() {
    if !kernel_ready() {
        return;
    }
    let cases = [
        KernelFilters {
            packet: Some("icmp".parse().unwrap()),
            ..Default::default()
        },
        KernelFilters {
            ct: CtFilter {
                states: Some(vec![ct_core::CtState::Untracked]),
                ..Default::default()
            },
            ..Default::default()
        },
        KernelFilters {
            meta: vec!["sk_buff.mark != 0".parse().unwrap()],
            ..Default::default()
        },
        KernelFilters {
            drop: DropFilter {
                only_drops: true,
                reasons: None,
            },
            ..Default::default()
        },
        KernelFilters {
            drop: every_drop_filter(),
            ..Default::default()
        },
    ];
    for filters in cases {
        let text = format!("{filters:?}");
        if let Err(e) = CollectorBuilder::new()
            .probe("tp:net:net_dev_start_xmit".parse().unwrap())
            .probe("tp:skb:kfree_skb".parse().unwrap())
            .filters(filters)
            .build()
        {
            panic!("{text}: {e}");
        }
    }
}

/// Tracepoints load as BTF tracepoints by default on this kernel (plain loads of skb
/// fields), and as raw tracepoints when asked; the fallback must not hide a BTF
/// tracepoint that stopped loading.
#[test]
fn tracepoints_use_btf_unless_raw_is_asked_for() {
    if !kernel_ready() {
        return;
    }
    let programs = |raw: bool| -> Vec<Program> {
        CollectorBuilder::new()
            .probes(probes())
            .raw_tracepoints(raw)
            .build()
            .unwrap_or_else(|e| panic!("raw={raw}: {e}"))
            .program_stats()
            .iter()
            .map(|s| s.program)
            .collect()
    };
    assert_eq!(programs(false), [Program::TpBtf; 3]);
    assert_eq!(programs(true), [Program::RawTp; 3]);
}

fn item<'r>(report: &'r ct_bpf::Report, name: &str) -> &'r ct_bpf::CheckItem {
    report
        .get(name)
        .unwrap_or_else(|| panic!("no {name} line in\n{report}"))
}

/// `check` on the running kernel: each load line says what loading the program really
/// does, the kprobe lines follow the kprobe PMU, conntrack and helper names follow the
/// kernel's modules and BTF, and `collection can run` follows them.
#[test]
fn check_verifies_by_loading_on_this_kernel() {
    use ct_bpf::Verdict;
    use std::path::Path;

    if !ct_lab::bpf_loadable() {
        return;
    }
    let report = ct_bpf::check();
    eprintln!("{report}");

    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let kernel = item(&report, "kernel");
    assert_eq!(kernel.verdict, Verdict::Ok, "{report}");
    assert!(kernel.detail.contains(release.trim()), "{report}");

    // Every kernel this supports (5.5+) has BTF tracepoints and raw ones for the defaults.
    for name in ["tp_btf", "raw_tp"] {
        assert_eq!(item(&report, name).verdict, Verdict::Ok, "{report}");
    }
    // And the collector agrees with the check: a real build of the first default probe
    // attaches the BTF tracepoint program.
    let collector = CollectorBuilder::new()
        .probe("tp:net:net_dev_start_xmit".parse().unwrap())
        .ring_size(4096)
        .build()
        .expect("the default tracepoint attaches where check says it loads");
    assert_eq!(collector.program_stats()[0].program, Program::TpBtf);
    drop(collector);

    // Drop reasons follow BTF, and tracefs where it is mounted says the same: the
    // tracepoint's format has a reason field on exactly the kernels that pass one.
    let reasons = item(&report, "drop reasons");
    let btf = ct_bpf::KernelBtf::load().unwrap();
    let has_reasons = btf.drop_reasons().is_some()
        && btf
            .resolve(&"tp:skb:kfree_skb".parse().unwrap())
            .unwrap()
            .reason_arg
            .is_some();
    assert_eq!(reasons.verdict == Verdict::Ok, has_reasons, "{report}");
    for tracefs in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        let path = Path::new(tracefs).join("events/skb/kfree_skb/format");
        if let Ok(format) = std::fs::read_to_string(&path) {
            let field = format.contains("enum skb_drop_reason reason;");
            assert_eq!(
                field,
                has_reasons,
                "{}:\n{format}\n{report}",
                path.display()
            );
            break;
        }
    }

    let kprobes = Path::new("/sys/bus/event_source/devices/kprobe").exists();
    for name in ["kprobe", "kretprobe"] {
        let line = item(&report, name);
        if kprobes {
            assert_eq!(line.verdict, Verdict::Ok, "{report}");
        } else {
            assert_eq!(line.verdict, Verdict::Degraded, "{report}");
            assert!(line.detail.starts_with("not available"), "{report}");
        }
    }

    let modules = std::fs::read_to_string("/proc/modules").unwrap_or_default();
    let loaded = modules.lines().any(|l| l.starts_with("nf_conntrack "))
        || Path::new("/sys/module/nf_conntrack").exists();
    let conntrack = item(&report, "conntrack");
    if loaded {
        assert_eq!(conntrack.verdict, Verdict::Ok, "{report}");
    } else {
        assert_eq!(conntrack.verdict, Verdict::Fail, "{report}");
        assert!(
            conntrack
                .remedy
                .as_deref()
                .is_some_and(|r| r.contains("modprobe nf_conntrack")),
            "{report}"
        );
    }

    // Helper names need struct nf_conn_help with its helper member, in vmlinux BTF or in
    // nf_conntrack's module BTF (nothing else on Debian's kernels would have them).
    let vmlinux = libbpf_rs::btf::Btf::from_path(ct_bpf::VMLINUX_BTF).unwrap();
    let in_vmlinux = vmlinux
        .type_by_name::<libbpf_rs::btf::types::Composite<'_>>("nf_conn_help")
        .is_some();
    let module_btf = Path::new(ct_bpf::NF_CONNTRACK_BTF).exists();
    let helper = item(&report, "helper");
    if in_vmlinux || module_btf {
        assert_eq!(helper.verdict, Verdict::Ok, "{report}");
    } else {
        assert_eq!(helper.verdict, Verdict::Degraded, "{report}");
        let remedy = helper.remedy.as_deref().unwrap_or_default();
        assert!(
            remedy.contains("needs module BTF for nf_conntrack") || !loaded,
            "{report}"
        );
    }

    assert_eq!(report.ready(), loaded, "{report}");
    assert_eq!(
        report.to_string().ends_with("\ncollection can run"),
        loaded,
        "{report}"
    );
}

/// `verify` loads without attaching, and refuses what `build` refuses.
#[test]
fn verify_loads_what_build_would() {
    if !ct_lab::bpf_loadable() {
        return;
    }
    let loaded = CollectorBuilder::new()
        .probes(probes())
        .raw_tracepoints(true)
        .verify()
        .expect("raw tracepoints load");
    assert_eq!(loaded.len(), probes().len());
    assert!(loaded
        .iter()
        .all(|l| l.program == Program::RawTp && l.fallback.is_none()));
    let unknown = CollectorBuilder::new()
        .probe("tp:net:no_such_tracepoint".parse().unwrap())
        .verify();
    assert!(
        matches!(unknown, Err(ct_bpf::Error::UnknownProbe { .. })),
        "{unknown:?}"
    );
}

/// The skb is found in whichever argument slot BTF puts it, and that slot's read passes
/// the verifier for every program type: `tcp_retransmit_skb(sk, skb)` has it second,
/// `ip_output(net, sk, skb)` third. (A switch over the slot once compiled to a context
/// load through a computed offset, which verifiers refuse.)
#[test]
fn skb_in_a_later_argument_slot_loads() {
    if !ct_lab::bpf_loadable() {
        return;
    }
    let mut cases = vec![("tp:tcp:tcp_retransmit_skb", false, 1)];
    cases.push(("tp:tcp:tcp_retransmit_skb", true, 1));
    if ct_bpf::kprobes_supported() {
        cases.push(("kp:ip_output", false, 2));
    }
    for (spec, raw, slot) in cases {
        let spec: ProbeSpec = spec.parse().unwrap();
        let resolved = ct_bpf::KernelBtf::load()
            .expect("kernel BTF")
            .resolve(&spec)
            .expect("resolves");
        assert_eq!(resolved.skb_arg, slot, "{spec}");
        let loaded = CollectorBuilder::new()
            .probe(spec.clone())
            .raw_tracepoints(raw)
            .verify()
            .unwrap_or_else(|e| panic!("{spec} (raw {raw}): {e}"));
        assert_eq!(loaded.len(), 1);
        assert!(
            loaded[0].fallback.is_none(),
            "{spec}: {:?}",
            loaded[0].fallback
        );
    }
}

/// Every program the kernel cost bench times (one step left out at a time, and every
/// fill step at once) loads, as a BTF and as a raw tracepoint: a step's test must not
/// leave the verifier a path it refuses. Bench programs only: run on the host, not on
/// each kernel of the VM matrix (`CT_QUICK_KERNEL_TESTS=1`), whose time is CI's.
#[test]
fn programs_with_a_step_left_out_load() {
    if !ct_lab::bpf_loadable() {
        return;
    }
    if ct_lab::quick_kernel_tests() {
        eprintln!("skipped: bench programs are checked on the host only (CT_QUICK_KERNEL_TESTS=1)");
        return;
    }
    let mut variants: Vec<Vec<OmitStep>> = OmitStep::ALL.iter().map(|&s| vec![s]).collect();
    variants.push(OmitStep::ALL.to_vec());
    for raw in [false, true] {
        for steps in &variants {
            let builder = steps.iter().fold(
                CollectorBuilder::new()
                    .probe("tp:net:net_dev_start_xmit".parse().unwrap())
                    .raw_tracepoints(raw),
                |b, &s| b.omit_step(s),
            );
            let loaded = builder
                .verify()
                .unwrap_or_else(|e| panic!("raw={raw}, without {steps:?}: {e}"));
            assert!(
                loaded.iter().all(|l| l.fallback.is_none()),
                "raw={raw}, without {steps:?}: {loaded:?}"
            );
        }
    }
}
