// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The ready-made probe programs: find the sk_buff argument, decide whether to report,
 * reserve a ring buffer record, fill it (task, device, packet header, conntrack), submit.
 *
 * One copy of this object is loaded per probe, each with its own read-only config
 * (probe id, which argument holds the skb), so the verifier sees those as constants and
 * prunes every branch that does not apply. The maps below are created by the first copy
 * and shared by the others.
 */
#include "ct_vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "ct_event.h"
#include "ct_fill.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Must match `ProbeConfig` in raw.rs. */
struct ct_probe_cfg {
	__u32 probe_id;
	__u32 skb_arg;    /* index of the sk_buff * in the probe's arguments */
	__u32 netns;      /* report only this netns inode; 0 = all */
	__u32 flags;      /* CT_CFG_* */
};

#define CT_CFG_REQUIRE_CT (1 << 0) /* report only packets carrying conntrack data */

const volatile struct ct_probe_cfg ct_cfg = {};

/* Never read: it puts struct ct_raw_event into the object's BTF, so the generated
 * skeleton carries the C layout and raw.rs can assert its own mirror against it. */
const volatile struct ct_raw_event ct_event_layout = {};

extern int CONFIG_HZ __kconfig __weak;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} ct_events SEC(".maps");

/* Records that could not be reserved, per CPU; user space sums and reports them. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} ct_lost SEC(".maps");

static __always_inline void ct_count_lost(void)
{
	__u32 zero = 0;
	__u64 *lost = bpf_map_lookup_elem(&ct_lost, &zero);

	if (lost)
		*lost += 1;
}

static __always_inline __u32 ct_netns_of(const struct net_device *dev, const struct sock *sk)
{
	struct net *net = NULL;

	if (dev)
		net = BPF_CORE_READ(dev, nd_net.net);
	else if (sk)
		net = BPF_CORE_READ(sk, __sk_common.skc_net.net);
	return net ? BPF_CORE_READ(net, ns.inum) : 0;
}

/*
 * Copies the packet's network header onwards (linear part only). The L3 offset is
 * skb->network_header when it has been set past the MAC header; before that (early on
 * receive) the data pointer already points at L3.
 */
static __always_inline void ct_fill_header(struct ct_raw_event *ev, const __u8 *skbbuf)
{
	const unsigned char *head = CT_GET(skbbuf, struct sk_buff, head, unsigned char *);
	const unsigned char *data = CT_GET(skbbuf, struct sk_buff, data, unsigned char *);
	__u16 nh = CT_GET(skbbuf, struct sk_buff, network_header, __u16);
	__u16 mh = CT_GET(skbbuf, struct sk_buff, mac_header, __u16);
	__u64 tail = CT_GET(skbbuf, struct sk_buff, tail, __u32);
	__u64 l3, avail; /* 64-bit: a 32-bit bound would be lost in zero-extension */

	if (!head)
		return;
	l3 = nh;
	if (mh != 0xffff && nh <= mh)
		l3 = data - head;
	if (tail <= l3)
		return;
	avail = tail - l3;
	if (avail > CT_PKT_HDR_LEN)
		avail = CT_PKT_HDR_LEN;
	/* Make the compiler re-test the clamped register: the verifier needs the bound on
	 * the very register passed as the size. */
	barrier_var(avail);
	if (avail > CT_PKT_HDR_LEN)
		return;
	if (!bpf_probe_read_kernel(ev->hdr, avail, head + l3))
		ev->hdr_len = avail;
}

static __always_inline int ct_handle(struct sk_buff *skb)
{
	struct ct_scratch *scratch;
	struct ct_raw_event *ev;
	const struct net_device *dev;
	const struct sock *sk;
	unsigned long nfct = 0;
	__u32 size, netns = 0;
	__u64 pid_tgid;

	if (!skb)
		return 0;
	scratch = ct_scratch_get();
	if (!scratch)
		return 0;

	size = bpf_core_type_size(struct sk_buff);
	if (size > CT_SCRATCH_LEN)
		size = CT_SCRATCH_LEN;
	if (bpf_probe_read_kernel(scratch->skb, size, skb))
		return 0;

	if (bpf_core_field_exists(struct sk_buff, _nfct))
		nfct = CT_GET(scratch->skb, struct sk_buff, _nfct, unsigned long);
	if ((ct_cfg.flags & CT_CFG_REQUIRE_CT) && !nfct)
		return 0;

	dev = CT_GET(scratch->skb, struct sk_buff, dev, struct net_device *);
	sk = CT_GET(scratch->skb, struct sk_buff, sk, struct sock *);
	netns = ct_netns_of(dev, sk);
	if (ct_cfg.netns && netns != ct_cfg.netns)
		return 0;

	/* From here on the packet is reported: reserve, fill in place, submit. */
	ev = bpf_ringbuf_reserve(&ct_events, sizeof(*ev), 0);
	if (!ev) {
		ct_count_lost();
		return 0;
	}
	__builtin_memset(ev, 0, sizeof(*ev));

	ev->ts = bpf_ktime_get_ns();
	ev->skb_key = (__u64)CT_GET(scratch->skb, struct sk_buff, head, void *);
	pid_tgid = bpf_get_current_pid_tgid();
	ev->pid = (__u32)pid_tgid;
	ev->tgid = pid_tgid >> 32;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	ev->probe_id = ct_cfg.probe_id;
	ev->hz = CONFIG_HZ;
	ev->skb_len = CT_GET(scratch->skb, struct sk_buff, len, __u32);
	ev->l3_proto = CT_GET(scratch->skb, struct sk_buff, protocol, __be16);
	ev->netns = netns;
	if (netns)
		ev->pkt_flags |= CT_PKT_HAS_NETNS;
	if (dev) {
		ev->ifindex = BPF_CORE_READ(dev, ifindex);
		bpf_probe_read_kernel_str(ev->ifname, sizeof(ev->ifname), dev->name);
		ev->pkt_flags |= CT_PKT_HAS_DEV;
	}
	ct_fill_header(ev, scratch->skb);
	ct_fill(ev, nfct, scratch);

	bpf_ringbuf_submit(ev, 0);
	return 0;
}

SEC("raw_tp")
int ct_raw_tp(struct bpf_raw_tracepoint_args *ctx)
{
	struct sk_buff *skb = NULL;

	/* ct_cfg is frozen before load: only the taken case is verified, so the program
	 * never touches an argument slot the tracepoint does not have. */
	switch (ct_cfg.skb_arg) {
	case 0: skb = (void *)ctx->args[0]; break;
	case 1: skb = (void *)ctx->args[1]; break;
	case 2: skb = (void *)ctx->args[2]; break;
	case 3: skb = (void *)ctx->args[3]; break;
	case 4: skb = (void *)ctx->args[4]; break;
	case 5: skb = (void *)ctx->args[5]; break;
	}
	return ct_handle(skb);
}

SEC("kprobe")
int ct_kprobe(struct pt_regs *ctx)
{
	struct sk_buff *skb = NULL;

	switch (ct_cfg.skb_arg) {
	case 0: skb = (void *)PT_REGS_PARM1(ctx); break;
	case 1: skb = (void *)PT_REGS_PARM2(ctx); break;
	case 2: skb = (void *)PT_REGS_PARM3(ctx); break;
	case 3: skb = (void *)PT_REGS_PARM4(ctx); break;
	case 4: skb = (void *)PT_REGS_PARM5(ctx); break;
	}
	return ct_handle(skb);
}

SEC("kretprobe")
int ct_kretprobe(struct pt_regs *ctx)
{
	return ct_handle((struct sk_buff *)PT_REGS_RC(ctx));
}
