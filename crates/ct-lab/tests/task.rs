//! The task an event names is the one the probe fired in, whichever way the program reads
//! it: plain loads from `bpf_get_current_task_btf()` in BTF tracepoints (kernels that have
//! it), the pid and comm helpers in raw tracepoints. A ping sends its echo requests in its
//! own context, so the client's `net_dev_start_xmit` events of those requests name it.

use std::time::Duration;

use ct_lab::{Capture, Lab, Node, ROUTER_C4};

#[test]
fn events_name_the_sending_process_with_btf_and_raw_tracepoints() {
    let Some(lab) = Lab::for_test() else {
        return;
    };
    let client = lab.netns_inode(Node::Client);
    for raw in [false, true] {
        let capture = Capture::start_probes(client, &["tp:net:net_dev_start_xmit"], |b| {
            b.raw_tracepoints(raw)
        })
        .expect("attaching the probe");
        // `ip netns exec` execs ping: the child's pid is ping's.
        let target = ROUTER_C4.to_string();
        let mut ping = lab
            .command(Node::Client, &["ping", "-c", "3", "-i", "0.2", &target])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("starting ping");
        let pid = ping.id();
        assert!(
            ping.wait().expect("waiting for ping").success(),
            "ping failed"
        );
        let events = capture.finish(Duration::from_millis(300));
        let mine: Vec<_> = events
            .iter()
            .filter_map(|c| c.event.task.as_ref())
            .filter(|t| t.tgid == pid)
            .collect();
        assert!(
            mine.len() >= 3,
            "raw={raw}: {} events of ping (pid {pid}) among {}: {:?}",
            mine.len(),
            events.len(),
            events.iter().map(|c| &c.event.task).collect::<Vec<_>>()
        );
        for task in mine {
            assert_eq!(task.pid, pid, "raw={raw}: ping has one thread");
            assert_eq!(task.comm.as_str(), "ping", "raw={raw}");
        }
    }
}
