// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A drop monitor written outside ct-trace that embeds its conntrack extraction: its own
 * probe (the BTF tracepoint skb:kfree_skb, which every kernel from 5.5 has with the
 * sk_buff as its first argument), its own event struct, its own ring buffer, and
 * ct-trace's record inside the event, filled by ct_fill_skb() from ct_fill.h.
 *
 * The headers come from the ct-bpf crate this program's Rust side links: its build
 * script exports their directory (`links = "ct_bpf"`, `cargo:include=...`), which our
 * build.rs reads as DEP_CT_BPF_INCLUDE and passes to clang as -I. So the record layout
 * compiled here is the one the linked ct_bpf::decode_ct reads.
 */
#include "ct_vmlinux.h" /* or a vmlinux.h of your own */
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "ct_event.h"
#include "ct_fill.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Our own event: a few fields of ours, then ct-trace's record. */
struct own_event {
	__u64 ts;
	__u32 netns;
	__u32 ifindex;
	__u32 len;
	__u32 _pad;
	struct ct_raw_event ct;
};

/* Never read: puts struct own_event into the object's BTF, so that the generated
 * skeleton carries its layout and the Rust side finds `ct` at the compiler's offset. */
const volatile struct own_event own_event_layout = {};

/* Set by user space before load: the network namespace to watch (0: all), and the
 * kernel's CONFIG_HZ, which the decoder needs to turn timeouts into seconds (0: none). */
const volatile __u32 own_netns = 0;
const volatile __u32 own_hz = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 18);
} own_events SEC(".maps");

SEC("tp_btf/kfree_skb")
int BPF_PROG(own_kfree_skb, struct sk_buff *skb)
{
	struct ct_scratch *scratch;
	struct own_event *ev;
	struct net_device *dev;
	__u32 netns = 0;

	dev = BPF_CORE_READ(skb, dev);
	if (dev)
		netns = BPF_CORE_READ(dev, nd_net.net, ns.inum);
	if (own_netns && netns != own_netns)
		return 0;
	/* Packets conntrack never saw are of no interest to this monitor. */
	if (!BPF_CORE_READ(skb, _nfct))
		return 0;
	scratch = ct_scratch_get();
	if (!scratch)
		return 0;

	ev = bpf_ringbuf_reserve(&own_events, sizeof(*ev), 0);
	if (!ev)
		return 0;
	/* ct_fill() only sets what it finds: the rest of the record must be zero. */
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->ts = bpf_ktime_get_ns();
	ev->netns = netns;
	ev->ifindex = dev ? BPF_CORE_READ(dev, ifindex) : 0;
	ev->len = BPF_CORE_READ(skb, len);
	ev->ct.hz = own_hz;
	ct_fill_skb(&ev->ct, skb, scratch);
	bpf_ringbuf_submit(ev, 0);
	return 0;
}
