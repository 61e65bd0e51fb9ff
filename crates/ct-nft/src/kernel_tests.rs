//! Kernel tests of the trace table's life, in the lab's router namespace: stopping with a
//! full queue, `create table` against an existing name, stale clean-up across PID
//! namespaces, and the owner table going with the thread that installed it.
//!
//! Not root / no tools: each test prints `skipping: <reason>`; with
//! `CT_REQUIRE_KERNEL_TESTS=1` (CI) it fails instead.

use std::fs::File;
use std::time::{Duration, Instant};

use ct_lab::{Lab, Node, SERVER4};

use crate::fake_nft::FakeNft;
use crate::nft_program::NftProgram;
use crate::socket::enter_netns;
use crate::table::TraceTable;
use crate::table_name::{own_pid_namespace, TABLE_PREFIX};
use crate::tracer::{Marking, NftTracer, TracerEvent};

/// Runs `f` on a thread of its own in `node`'s network namespace.
fn in_netns<T: Send>(lab: &Lab, node: Node, f: impl FnOnce() -> T + Send) -> T {
    let path = lab.netns_path(node);
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let ns = File::open(&path).unwrap();
                enter_netns(&ns).unwrap();
                f()
            })
            .join()
            .unwrap()
    })
}

fn trace_tables(lab: &Lab, node: Node) -> Vec<String> {
    lab.inet_tables(node)
        .unwrap()
        .into_iter()
        .filter(|t| t.starts_with(TABLE_PREFIX))
        .collect()
}

/// Whether the running kernel has owner tables (5.12+), asked of it with the system's
/// `nft` directly: such a table is created, and goes when that `nft` exits.
fn kernel_has_owner_tables(lab: &Lab) -> bool {
    lab.nft(Node::Router, "table inet ct_owner_probe { flags owner; }")
        .is_ok()
}

/// Waits up to `limit` for `done`.
fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

/// A PID of this PID namespace whose process is gone.
fn gone_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn stop_with_a_full_queue_returns_and_removes_the_table() {
    let Some(lab) = Lab::for_test() else {
        return;
    };
    // Base chains of the user's with accepting policies: a step each per packet.
    lab.router_nft(
        "table inet user {\n\
           chain user_pre { type filter hook prerouting priority 0; policy accept; }\n\
           chain user_forward { type filter hook forward priority 0; policy accept; }\n\
           chain user_post { type filter hook postrouting priority 0; policy accept; }\n\
         }\n",
    )
    .unwrap();
    const QUEUE: usize = 8;
    let path = lab.netns_path(Node::Router);
    let tracer = NftTracer::start_with_queue(
        Some(&ct_bpf::NetnsFile::open(&path).unwrap()),
        Marking::Table(None),
        QUEUE,
    )
    .unwrap();
    let table = tracer.started().table.clone().unwrap();
    assert_eq!(
        trace_tables(&lab, Node::Router),
        std::slice::from_ref(&table)
    );
    // 20 echoes and replies through the router: 120 steps, far more than the queue holds;
    // nobody reads them until stop.
    lab.ping(Node::Client, SERVER4.into(), 20).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let started = Instant::now();
    let (done, stopped) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(tracer.stop().map(|rest| rest.len())));
    let rest = stopped
        .recv_timeout(Duration::from_secs(10))
        .expect("stop with a full queue returns")
        .unwrap();
    let took = started.elapsed();
    println!("stopped in {took:?} with {rest} reports handed over");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(
        rest > QUEUE,
        "the steps queued and those still coming: {rest}"
    );
    assert!(
        trace_tables(&lab, Node::Router).is_empty(),
        "{table} left behind"
    );
}

#[test]
fn an_existing_table_of_the_name_is_not_added_to() {
    let Some(lab) = Lab::for_test() else {
        return;
    };
    let name = format!(
        "{TABLE_PREFIX}{}_{}_0123456789abcdef",
        own_pid_namespace().unwrap(),
        std::process::id()
    );
    let theirs = format!(
        "table inet {name} {{\n  chain mine {{ type filter hook input priority 0; policy accept; }}\n}}\n"
    );
    lab.router_nft(&theirs).unwrap();
    let listing = || {
        lab.exec(Node::Router, &["nft", "list", "table", "inet", &name])
            .unwrap()
            .ok()
            .unwrap()
            .stdout
    };
    let before = listing();
    let program = NftProgram::system().unwrap();
    let installed = in_netns(&lab, Node::Router, || {
        TraceTable::install_named(&program, name.clone(), None).map(|t| t.is_owned())
    });
    let err = installed.expect_err("create table must fail on an existing name");
    assert!(err.to_string().contains("File exists"), "{err}");
    assert_eq!(listing(), before, "their table was changed");
}

#[test]
fn stale_clean_up_leaves_other_pid_namespaces_alone() {
    let Some(lab) = Lab::for_test() else {
        return;
    };
    let ours = own_pid_namespace().unwrap();
    let gone = gone_pid();
    let chains = "chain prerouting { type filter hook prerouting priority -2147483648; policy accept; meta nftrace set 1; }\n\
                  chain output { type filter hook output priority -2147483648; policy accept; meta nftrace set 1; }";
    let same_ns = format!("{TABLE_PREFIX}{ours}_{gone}_00000000000000aa");
    let other_ns = format!("{TABLE_PREFIX}{}_{gone}_00000000000000bb", ours + 1);
    let old = format!("{TABLE_PREFIX}{gone}");
    let old_not_ours = format!("{TABLE_PREFIX}{}", gone_pid());
    let alive_here = format!("{TABLE_PREFIX}{ours}_1_00000000000000cc");
    let mut ruleset = String::new();
    for name in [&same_ns, &other_ns, &old, &alive_here] {
        ruleset.push_str(&format!("table inet {name} {{\n{chains}\n}}\n"));
    }
    ruleset.push_str(&format!(
        "table inet {old_not_ours} {{\n  chain input {{ type filter hook input priority 0; policy drop; }}\n}}\n"
    ));
    lab.router_nft(&ruleset).unwrap();

    let path = lab.netns_path(Node::Router);
    let tracer = NftTracer::start(
        Some(&ct_bpf::NetnsFile::open(&path).unwrap()),
        Marking::Table(None),
    )
    .unwrap();
    let mut removed = tracer.started().removed_stale.clone();
    removed.sort();
    let mut expected = vec![same_ns.clone(), old.clone()];
    expected.sort();
    assert_eq!(removed, expected);
    tracer.stop().unwrap();
    let mut left = trace_tables(&lab, Node::Router);
    left.sort();
    let mut expected = vec![other_ns, old_not_ours, alive_here];
    expected.sort();
    assert_eq!(left, expected);
}

#[test]
fn the_table_goes_with_the_thread_that_installed_it() {
    let Some(lab) = Lab::for_test() else {
        return;
    };
    let owner_tables = kernel_has_owner_tables(&lab);
    let program = NftProgram::system().unwrap();
    // The thread ends without removing the table (as a panic past every clean-up would):
    // only the owner `nft -i` dying with it can remove it.
    let (name, owned) = in_netns(&lab, Node::Router, || {
        let table = TraceTable::install_with(&program, None).unwrap();
        let seen = (table.name().to_owned(), table.is_owned());
        std::mem::forget(table);
        seen
    });
    assert_eq!(owned, owner_tables, "owner table where the kernel has them");
    let gone = eventually(Duration::from_secs(3), || {
        !trace_tables(&lab, Node::Router).contains(&name)
    });
    if owner_tables {
        assert!(gone, "{name} outlived its thread");
    } else {
        assert!(!gone, "a plain table stays until removed");
        let removed = in_netns(&lab, Node::Router, || {
            crate::table::remove_stale_tables_with(&program)
        });
        // Ours (this process is alive) is not stale: removed by name here.
        assert!(removed.unwrap().is_empty());
        lab.exec(Node::Router, &["nft", "delete", "table", "inet", &name])
            .unwrap()
            .ok()
            .unwrap();
    }
}

#[test]
fn the_tracers_table_is_an_owner_table_where_the_kernel_has_them() {
    let Some(lab) = Lab::for_test() else {
        return;
    };
    let owner_tables = kernel_has_owner_tables(&lab);
    let path = lab.netns_path(Node::Router);
    let tracer = NftTracer::start(
        Some(&ct_bpf::NetnsFile::open(&path).unwrap()),
        Marking::Table(None),
    )
    .unwrap();
    assert_eq!(tracer.started().table_owned, owner_tables);
    let table = tracer.started().table.clone().unwrap();
    let listing = lab
        .exec(Node::Router, &["nft", "list", "table", "inet", &table])
        .unwrap()
        .ok()
        .unwrap()
        .stdout;
    assert_eq!(listing.contains("flags owner"), owner_tables, "{listing}");
    let rest = tracer.stop().unwrap();
    assert!(rest.iter().all(|r| !matches!(r, TracerEvent::Malformed(_))));
    assert!(trace_tables(&lab, Node::Router).is_empty());
}

/// A stand-in `nft` that answers `-i` as the real one does on a kernel without owner
/// tables (before 5.12: `flags owner` refused), and runs the real one for the rest.
fn no_owner_tables_nft(fake: &FakeNft, real: &NftProgram) -> NftProgram {
    fake.program(&format!(
        "if [ \"$1\" = -i ]; then\n\
           while read -r line; do\n\
             case \"$line\" in\n\
               *'flags owner'*) echo 'Error: Could not process rule: Operation not supported' >&2 ;;\n\
               describe*) echo 'meta expression, datatype integer (integer), 1 bits' ;;\n\
               *) echo 'Error: not expected here' >&2 ;;\n\
             esac\n\
           done\n\
           exit 0\n\
         fi\n\
         exec {} \"$@\"",
        real.path().display()
    ))
}

#[test]
fn without_owner_tables_a_plain_table_is_installed_and_removed() {
    let Some(lab) = Lab::for_test() else {
        return;
    };
    let fake = FakeNft::new();
    let program = no_owner_tables_nft(&fake, &NftProgram::system().unwrap());
    let (name, owned, listing, removed) = in_netns(&lab, Node::Router, || {
        let table = TraceTable::install_with(&program, None).unwrap();
        let name = table.name().to_owned();
        let listing = program
            .run(&["list", "table", "inet", &name], None)
            .unwrap();
        let owned = table.is_owned();
        (name, owned, listing, table.remove())
    });
    assert!(!owned);
    assert!(listing.contains("meta nftrace set 1"), "{listing}");
    assert!(!listing.contains("flags owner"), "{listing}");
    removed.unwrap();
    assert!(!trace_tables(&lab, Node::Router).contains(&name));
}
