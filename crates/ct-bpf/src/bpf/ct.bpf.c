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
#include "ct_pcap.h"
#include "ct_fill.h"
#include "ct_filter.h"
#include "ct_track.h"
#include "ct_follow.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile struct ct_probe_cfg ct_cfg = {};

/* Never read: they put struct ct_raw_event and the flag enums into the object's BTF, so
 * the generated skeleton carries the C layout and values; raw.rs asserts its mirror
 * against the layout and takes the values from there. */
const volatile struct ct_raw_event ct_event_layout = {};

/*
 * Steps of a reported hit left out, for benches/ to measure what each costs (a program
 * with one step removed, timed beside the full one and the empty one). Always 0 when
 * collecting: the verifier then prunes every test of it, so it costs nothing.
 */
enum ct_omit_step {
	CT_OMIT_REPORT = 1 << 0, /* everything after the filters: no record at all */
	CT_OMIT_ZERO = 1 << 1,   /* zeroing the reserved record */
	CT_OMIT_TIME = 1 << 2,   /* bpf_ktime_get_ns */
	CT_OMIT_TASK = 1 << 3,   /* pid, tgid, comm */
	CT_OMIT_DEV = 1 << 4,    /* netns, ifindex, ifname */
	CT_OMIT_HDR = 1 << 5,    /* the packet header copy */
	CT_OMIT_CT = 1 << 6,     /* the whole conntrack extraction */
	CT_OMIT_CT_FIELDS = 1 << 7, /* conntrack: the nf_conn copy only, no fields picked */
	CT_OMIT_TRACK = 1 << 8,  /* fingerprint and first-seen table */
	CT_OMIT_WAKEUP = 1 << 9, /* the two ring queries deciding the wakeup (flags 0) */
};
const volatile __u32 ct_omit = 0;

struct ct_abi {
	enum ct_record record;
	enum ct_conn_present conn_present;
	enum ct_ev_flag ev_flag;
	enum ct_pkt_flag pkt_flag;
	enum ct_cfg_flag cfg_flag;
	enum ct_flt_field flt_field;
	enum ct_flt_target flt_target;
	enum ct_cmp_op cmp_op;
	enum ct_meta_kind meta_kind;
	enum ct_limit limit;
	enum ct_pcap_layout pcap_layout;
	enum ct_omit_step omit_step;
	enum ct_follow_limit follow_limit;
};
const volatile struct ct_abi ct_abi_witness = {};

/*
 * CONFIG_HZ, set by user space from the kernel config; 0 when that cannot be read, and
 * timeouts are then left out. Not a __kconfig extern: libbpf refuses to load an object
 * with one when neither /proc/config.gz nor /boot/config-$(uname -r) exists (many hosts,
 * containers, chroots), even a weak one.
 */
const volatile __u32 ct_hz = 0;

/* The kernel's header in front of each ring buffer record (BPF_RINGBUF_HDR_SZ). */
#define CT_RINGBUF_HDR_LEN 8

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

/*
 * The sk_buff fields the program uses, read once per hit: through one bulk copy where
 * the skb is an untyped pointer (raw tracepoints, kprobes), or field by field with plain
 * loads where the verifier knows its type (BTF tracepoints), which costs a few
 * nanoseconds instead of a helper call.
 */
struct ct_skb_view {
	unsigned long nfct;
	const struct net_device *dev;
	const struct sock *sk;
	const unsigned char *head;
	const unsigned char *data;
	__u32 len;
	__u32 tail;
	__u32 end;
	__u16 network_header;
	__u16 mac_header;
	__be16 protocol;
};

static __always_inline void ct_view_rest_from_copy(struct ct_skb_view *v, const __u8 *buf)
{
	v->dev = CT_GET(buf, struct sk_buff, dev, struct net_device *);
	v->sk = CT_GET(buf, struct sk_buff, sk, struct sock *);
	v->head = CT_GET(buf, struct sk_buff, head, unsigned char *);
	v->data = CT_GET(buf, struct sk_buff, data, unsigned char *);
	v->len = CT_GET(buf, struct sk_buff, len, __u32);
	v->tail = CT_GET(buf, struct sk_buff, tail, __u32);
	v->end = CT_GET(buf, struct sk_buff, end, __u32);
	v->network_header = CT_GET(buf, struct sk_buff, network_header, __u16);
	v->mac_header = CT_GET(buf, struct sk_buff, mac_header, __u16);
	v->protocol = CT_GET(buf, struct sk_buff, protocol, __be16);
}

static __always_inline void ct_view_rest_direct(struct ct_skb_view *v, const struct sk_buff *skb)
{
	v->dev = skb->dev;
	v->sk = skb->sk;
	v->head = skb->head;
	v->data = skb->data;
	v->len = skb->len;
	v->tail = skb->tail;
	v->end = skb->end;
	v->network_header = skb->network_header;
	v->mac_header = skb->mac_header;
	v->protocol = skb->protocol;
}

/* Whether freeing this skb releases its data (no clone still holds it). */
static __always_inline bool ct_frees_data(const struct ct_skb_view *v)
{
	const struct skb_shared_info *shinfo = (const void *)(v->head + v->end);
	int dataref = 0;

	if (!v->head ||
	    bpf_probe_read_kernel(&dataref, sizeof(dataref), &shinfo->dataref.counter))
		return false;
	/* The low 16 bits count references to the whole buffer (SKB_DATAREF_MASK). */
	return (dataref & 0xffff) <= 1;
}

/*
 * Waking the reader costs more than the whole extraction (an irq_work raised by a
 * self-IPI, which traps to the hypervisor in a VM), so records are submitted silently
 * and the reader is woken once each time the unread part of the ring grows past a
 * multiple of 1/16 of its size: the record whose end crosses the mark wakes it. Waking
 * on every record above the mark instead, while the reader is still on its way, took
 * 59 % of the program's time in a profile of `collect -o` under `ping -f` (see
 * benches/README.md). The test spans two records, so that a record reserved by another
 * CPU between this one's reserve and its query does not hide the crossing; should one
 * still be missed, the next mark wakes the reader, every record does once the ring is
 * half full (the old rule, where it is cheap next to losing records), and the reader's
 * poll timeout bounds the delay of a quiet trickle.
 */
static __always_inline __u64 ct_wakeup_flags(void)
{
	__u64 avail = bpf_ringbuf_query(&ct_events, BPF_RB_AVAIL_DATA);
	__u64 size = bpf_ringbuf_query(&ct_events, BPF_RB_RING_SIZE);
	__u64 step = size / 16;
	__u64 span = 2 * (sizeof(struct ct_raw_event) + CT_RINGBUF_HDR_LEN);
	__u64 before = avail > span ? avail - span : 0;

	if (!step || avail < step)
		return BPF_RB_NO_WAKEUP;
	if (avail >= size / 2)
		return BPF_RB_FORCE_WAKEUP; /* half full: no missed wakeup may cost records */
	return avail / step != before / step ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

static __always_inline void ct_count_lost(void)
{
	__u32 zero = 0;
	__u64 *lost = bpf_map_lookup_elem(&ct_lost, &zero);

	if (lost)
		*lost += 1;
}

static __always_inline __u32 ct_netns_of(const struct net_device *dev, const struct sock *sk,
				       const bool direct)
{
	struct net *net = NULL;

	if (direct) {
		if (dev)
			net = dev->nd_net.net;
		else if (sk)
			net = sk->__sk_common.skc_net.net;
		return net ? net->ns.inum : 0;
	}
	if (dev)
		net = BPF_CORE_READ(dev, nd_net.net);
	else if (sk)
		net = BPF_CORE_READ(sk, __sk_common.skc_net.net);
	return net ? BPF_CORE_READ(net, ns.inum) : 0;
}

/*
 * Copies the packet's network header onwards (linear part only) into `dst`; returns the
 * number of bytes copied. The L3 offset is skb->network_header when it has been set past
 * the MAC header; before that (early on receive) the data pointer already points at L3.
 */
static __always_inline __u32 ct_read_header(__u8 *dst, const struct ct_skb_view *v)
{
	const unsigned char *head = v->head;
	const unsigned char *data = v->data;
	__u16 nh = v->network_header;
	__u16 mh = v->mac_header;
	__u64 tail = v->tail;
	__u64 l3, avail; /* 64-bit: a 32-bit bound would be lost in zero-extension */

	if (!head)
		return 0;
	l3 = nh;
	if (mh != 0xffff && nh <= mh)
		l3 = data - head;
	if (tail <= l3)
		return 0;
	avail = tail - l3;
	if (avail > CT_PKT_HDR_LEN)
		avail = CT_PKT_HDR_LEN;
	/* Make the compiler re-test the clamped register: the verifier needs the bound on
	 * the very register passed as the size. */
	barrier_var(avail);
	if (avail > CT_PKT_HDR_LEN)
		return 0;
	if (bpf_probe_read_kernel(dst, avail, head + l3))
		return 0;
	return avail;
}

/*
 * The task the packet was seen in. BTF programs on kernels that have
 * bpf_get_current_task_btf (5.11+) read it with plain loads: two helper calls fewer, and
 * bpf_get_current_comm's string copy was the costliest helper of a hit (8-14 % of the
 * program's samples in a profile under `ping -f`). The others, and older kernels, where
 * the test below is false at load time and the branch is removed, use the helpers. The
 * kernel keeps comm NUL-terminated; user space stops at the NUL.
 */
static __always_inline void ct_fill_task(struct ct_raw_event *ev, const bool direct)
{
	__u64 pid_tgid;

	if (direct && bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf)) {
		struct task_struct *task = bpf_get_current_task_btf();

		ev->pid = task->pid;
		ev->tgid = task->tgid;
		__builtin_memcpy(ev->comm, task->comm, sizeof(ev->comm));
		return;
	}
	pid_tgid = bpf_get_current_pid_tgid();
	ev->pid = (__u32)pid_tgid;
	ev->tgid = pid_tgid >> 32;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
}

/* Conntrack filters on the connection itself (mark, zone, status), copied into `buf`. */
static __always_inline bool ct_conn_filters(unsigned long nfct, __u8 *buf)
{
	const struct nf_conn *ct = (const void *)(nfct & ~CT_CTINFO_MASK);
	unsigned long status;

	if (!ct || ct_read_conn(buf, ct))
		return false;
	if (ct_cfg.flags & CT_CFG_CT_MARK) {
		if (!bpf_core_field_exists(struct nf_conn, mark))
			return false;
		if ((CT_GET(buf, struct nf_conn, mark, __u32) & ct_cfg.ct_mark_mask) != ct_cfg.ct_mark)
			return false;
	}
	if (ct_cfg.flags & CT_CFG_CT_ZONE) {
		__u16 zone = 0;

		if (bpf_core_field_exists(struct nf_conn, zone))
			zone = CT_GET(buf, struct nf_conn, zone.id, __u16);
		if (zone != ct_cfg.ct_zone)
			return false;
	}
	status = CT_GET(buf, struct nf_conn, status, unsigned long);
	if ((ct_cfg.flags & CT_CFG_CT_STATUS) &&
	    (status & ct_cfg.ct_status_all) != ct_cfg.ct_status_all)
		return false;
	if ((ct_cfg.flags & CT_CFG_CT_STATUS_ANY) && !(status & ct_cfg.ct_status_any))
		return false;
	return true;
}

/*
 * The filters that select packets (--ct-state and the other conntrack filters, the
 * tcpdump filter, -f, -m), cheapest first; each one not configured is pruned at load
 * time. The header copy one of them makes is kept in `scratch->hdr` (`*hdr_ready`), the
 * connection copy in `scratch->conn` (`*conn_ready`), for the record.
 */
static __always_inline bool ct_selected(const struct ct_skb_view *v, struct sk_buff *skb,
					struct ct_scratch *scratch, const bool direct,
					__u32 *hdr_len, bool *hdr_ready, bool *conn_ready)
{
	__u32 size = bpf_core_type_size(struct sk_buff);

	if ((ct_cfg.flags & CT_CFG_CT_STATE) &&
	    (!v->nfct || !(ct_cfg.ct_states & (1U << (v->nfct & CT_CTINFO_MASK)))))
		return false;

	if (ct_cfg.flags & CT_CFG_CT_CONN_FILTERS) {
		if (!ct_conn_filters(v->nfct, scratch->conn))
			return false;
		*conn_ready = true;
	}

	if (ct_cfg.flags & CT_CFG_PCAP_FILTER) {
		struct ct_pcap_skb where = {
			.head = v->head,
			.data = v->data,
			.len = v->len,
			.tail = v->tail,
			.network_header = v->network_header,
			.mac_header = v->mac_header,
		};

		if (!ct_pcap_match(&where, scratch->frame, scratch->pcap_mem))
			return false;
	}

	if (ct_cfg.flags & CT_CFG_PKT_FILTER) {
		struct ct_pkt_view *view = ct_follow_flow();

		if (!view)
			return false;
		if (!*hdr_ready) {
			*hdr_len = ct_read_header(scratch->hdr, v);
			*hdr_ready = true;
		}
		__builtin_memset(view, 0, sizeof(*view));
		ct_parse_view(view, scratch->hdr, *hdr_len, v->protocol, v->len);
		if (!ct_pkt_filter(&ct_cfg, view))
			return false;
	}

#pragma unroll
	for (int i = 0; i < CT_META_MAX; i++) {
		if (i >= ct_cfg.n_meta)
			break;
		if (!ct_meta_match(&ct_cfg.meta[i], skb, direct ? NULL : scratch->skb, size))
			return false;
	}
	return true;
}

/*
 * One probe hit: decide whether to report the packet (cheapest tests first; every
 * filter not configured is pruned at load time) and, if so, reserve a record, fill it in
 * place and submit it. `direct`: the skb pointer is typed (BTF tracepoint), so its fields
 * are read with plain loads.
 */
static __always_inline int ct_handle(struct sk_buff *skb, const bool direct, __u32 reason)
{
	struct ct_skb_view v = {};
	struct ct_scratch *scratch;
	struct ct_raw_event *ev;
	__u32 size = bpf_core_type_size(struct sk_buff);
	__u32 netns = 0, hdr_len = 0;
	bool conn_ready = false, hdr_ready = false, followed = false;
	bool is_drop = ct_cfg.flags & CT_CFG_DROP_PROBE;
	const bool follow = ct_cfg.flags & (CT_CFG_FOLLOW_PACKET | CT_CFG_FOLLOW_CONN);
	struct ct_follow_state *follow_st = NULL;
	__u64 now = 0, track_key = 0;

	/* Freed after use rather than dropped: not a drop (kernels with SKB_CONSUMED route
	 * these to consume_skb; this keeps the rule where one does not). */
	if ((ct_cfg.flags & CT_CFG_DROP_REASON) && (ct_cfg.flags & CT_CFG_CONSUMED) &&
	    reason == ct_cfg.consumed)
		is_drop = false;
	if (!ct_drop_filter(&ct_cfg, is_drop, reason))
		return 0;
	if (!skb)
		return 0;
	scratch = ct_scratch_get();
	if (!scratch)
		return 0;
	if (size > CT_SCRATCH_LEN)
		return 0; /* a partial copy would leave fields unread: see CT_SCRATCH_LEN */

	if (direct) {
		if (bpf_core_field_exists(struct sk_buff, _nfct))
			v.nfct = skb->_nfct;
	} else {
		if (bpf_probe_read_kernel(scratch->skb, size, skb))
			return 0;
		if (bpf_core_field_exists(struct sk_buff, _nfct))
			v.nfct = CT_GET(scratch->skb, struct sk_buff, _nfct, unsigned long);
	}
	if ((ct_cfg.flags & CT_CFG_REQUIRE_CT) && !v.nfct)
		return 0;

	if (direct)
		ct_view_rest_direct(&v, skb);
	else
		ct_view_rest_from_copy(&v, scratch->skb);

	/* Where the hit is and what kind it is (--netns, --ct-only, --drops) are judged on
	 * every hit; which packet it is (the filters below) is judged once when following. */
	if (ct_cfg.flags & CT_CFG_NETNS) {
		netns = ct_netns_of(v.dev, v.sk, direct);
		if (netns != ct_cfg.netns)
			return 0;
	}

	if (follow) {
		follow_st = ct_follow_state();
		if ((ct_cfg.flags & CT_CFG_FOLLOW_CONN) &&
		    ct_follow_conn_hit(follow_st, (const void *)(v.nfct & ~CT_CTINFO_MASK)))
			followed = true;
		/* The clock only once some packet was followed: until then a hit the filters
		 * reject costs what it costs without following. */
		if (!followed && follow_st && follow_st->pkt_last_ts)
			now = bpf_ktime_get_ns();
		if (!followed && now && ct_follow_pkt_live(follow_st, now)) {
			hdr_len = ct_read_header(scratch->hdr, &v);
			hdr_ready = true;
			track_key = ct_track_key(scratch->hdr, hdr_len, ct_address_value(v.head));
			followed = ct_follow_pkt_hit(follow_st, track_key, now);
		}
		if (!followed && (ct_cfg.flags & CT_CFG_FOLLOW_CONN) &&
		    !(v.nfct & ~CT_CTINFO_MASK) && follow_st && follow_st->conns) {
			if (!hdr_ready) {
				hdr_len = ct_read_header(scratch->hdr, &v);
				hdr_ready = true;
			}
			followed = ct_follow_flow_hit(follow_st, scratch->hdr, hdr_len,
						      v.protocol, v.len);
		}
	}

	if (!followed && !ct_selected(&v, skb, scratch, direct, &hdr_len, &hdr_ready, &conn_ready))
		return 0;
	if (follow && !followed) {
		/* Selected here: follow the packet from this hit on. */
		if (!hdr_ready) {
			hdr_len = ct_read_header(scratch->hdr, &v);
			hdr_ready = true;
		}
		track_key = ct_track_key(scratch->hdr, hdr_len, ct_address_value(v.head));
		if (!now)
			now = bpf_ktime_get_ns();
		ct_follow_pkt_add(follow_st, track_key, now);
	}
	/* From here on the packet is reported. */
	if (ct_omit & CT_OMIT_REPORT)
		return 0;
	ev = bpf_ringbuf_reserve(&ct_events, sizeof(*ev), 0);
	if (!ev) {
		ct_count_lost();
		return 0;
	}
	if (!(ct_omit & CT_OMIT_ZERO))
		__builtin_memset(ev, 0, sizeof(*ev));

	/* A followed hit has read the clock already. */
	if (!(ct_omit & CT_OMIT_TIME))
		ev->ts = now ? now : bpf_ktime_get_ns();
	ev->skb_key = (__u64)v.head;
	if (!(ct_omit & CT_OMIT_TASK))
		ct_fill_task(ev, direct);
	ev->probe_id = ct_cfg.probe_id;
	ev->hz = ct_hz;
	ev->skb_len = v.len;
	ev->l3_proto = v.protocol;
	if (!(ct_cfg.flags & CT_CFG_NETNS) && !(ct_omit & CT_OMIT_DEV))
		netns = ct_netns_of(v.dev, v.sk, direct);
	ev->netns = netns;
	if (netns)
		ev->pkt_flags |= CT_PKT_HAS_NETNS;
	if (is_drop) {
		ev->pkt_flags |= CT_PKT_DROP;
		if (ct_cfg.flags & CT_CFG_DROP_REASON) {
			ev->pkt_flags |= CT_PKT_DROP_REASON;
			ev->drop_reason = (__u16)reason;
			ev->drop_subsys = (__u16)(reason >> 16);
		}
	}
	if (v.dev && !(ct_omit & CT_OMIT_DEV)) {
		const struct net_device *dev = v.dev;

		if (direct) {
			ev->ifindex = dev->ifindex;
			/* Two plain loads; user space stops at the NUL. */
			__builtin_memcpy(ev->ifname, dev->name, sizeof(ev->ifname));
		} else {
			ev->ifindex = BPF_CORE_READ(dev, ifindex);
			bpf_probe_read_kernel_str(ev->ifname, sizeof(ev->ifname), dev->name);
		}
		ev->pkt_flags |= CT_PKT_HAS_DEV;
	}
	if (hdr_ready) {
		__builtin_memcpy(ev->hdr, scratch->hdr, CT_PKT_HDR_LEN);
		ev->hdr_len = hdr_len;
	} else if (!(ct_omit & CT_OMIT_HDR)) {
		ev->hdr_len = ct_read_header(ev->hdr, &v);
	}
	if (ct_omit & CT_OMIT_CT_FIELDS) {
		if (v.nfct & ~CT_CTINFO_MASK)
			ct_read_conn(scratch->conn, (const void *)(v.nfct & ~CT_CTINFO_MASK));
	} else if (!(ct_omit & CT_OMIT_CT)) {
		/* A packet selected or followed takes its connection along (it may have had
		 * none when it was selected, before conntrack saw it). */
		if (!ct_fill(ev, v.nfct, scratch, conn_ready) &&
		    (ct_cfg.flags & CT_CFG_FOLLOW_CONN) && (v.nfct & ~CT_CTINFO_MASK))
			ct_follow_conn_add(follow_st, (const void *)(v.nfct & ~CT_CTINFO_MASK),
					   &ev->base);
	}
	if (((ct_cfg.flags & CT_CFG_TRACK) && !(ct_omit & CT_OMIT_TRACK)) || follow) {
		__u64 key = ct_track_key(ev->hdr, ev->hdr_len, ev->skb_key);
		bool freed = (ct_cfg.flags & CT_CFG_FREES_SKB) && ct_frees_data(&v);

		if ((ct_cfg.flags & CT_CFG_TRACK) && !(ct_omit & CT_OMIT_TRACK)) {
			ev->skb_first_ts = ct_track_first_seen(key, ev->ts);
			if (freed)
				ct_track_end(key);
		}
		if (follow && freed)
			ct_follow_pkt_end(key);
	}

	bpf_ringbuf_submit(ev, (ct_omit & CT_OMIT_WAKEUP) ? 0 : ct_wakeup_flags());
	return 0;
}

/*
 * Argument `i` of a tracepoint context (tp_btf and raw_tp alike: an array of u64 slots),
 * loaded by one instruction at a constant offset from the context register. Plain C loads
 * in a switch get merged by the compiler into one load through a computed pointer, which
 * the verifier refuses ("dereference of modified ctx ptr").
 */
#define CT_CTX_ARG(ctx, i)                                                                 \
	({                                                                                 \
		__u64 __v;                                                                 \
		asm volatile("%[v] = *(u64 *)(%[c] + %[off])"                              \
			     : [v] "=r"(__v)                                               \
			     : [c] "r"(ctx), [off] "i"((i) * 8));                          \
		__v;                                                                       \
	})

/* Slot `slot` of a tracepoint context. ct_cfg is frozen before load, so `slot` is a
 * constant: only the taken case is verified, and the program never touches a slot the
 * tracepoint does not have (the verifier refuses one past its arguments). */
static __always_inline __u64 ct_ctx_slot(const void *ctx, __u32 slot)
{
	switch (slot) {
	case 0: return CT_CTX_ARG(ctx, 0);
	case 1: return CT_CTX_ARG(ctx, 1);
	case 2: return CT_CTX_ARG(ctx, 2);
	case 3: return CT_CTX_ARG(ctx, 3);
	case 4: return CT_CTX_ARG(ctx, 4);
	case 5: return CT_CTX_ARG(ctx, 5);
	}
	return 0;
}

/* Both tracepoint flavours: the skb, and the drop reason (skb:kfree_skb, 5.17+) only
 * where user space found that argument in BTF (never slot 0, the skb's). */
static __always_inline int ct_handle_tracepoint(const void *ctx, const bool direct)
{
	__u32 reason = 0;

	if ((ct_cfg.flags & CT_CFG_DROP_REASON) && ct_cfg.reason_arg > 0)
		reason = ct_ctx_slot(ctx, ct_cfg.reason_arg);
	return ct_handle((struct sk_buff *)ct_ctx_slot(ctx, ct_cfg.skb_arg), direct, reason);
}

/* A tracepoint with BTF: the skb argument is a typed pointer. The attach target (the
 * tracepoint's name) is set by user space before load. */
SEC("tp_btf")
int ct_tp_btf(__u64 *ctx)
{
	return ct_handle_tracepoint(ctx, true);
}

SEC("raw_tp")
int ct_raw_tp(struct bpf_raw_tracepoint_args *ctx)
{
	return ct_handle_tracepoint(ctx, false);
}

/* Does nothing: attached beside a probe, its run time is the floor that probe's cost is
 * measured against (CollectorBuilder::measure_floor). */
SEC("raw_tp")
int ct_floor(struct bpf_raw_tracepoint_args *ctx)
{
	return 0;
}

SEC("kprobe")
int ct_kprobe(struct pt_regs *ctx)
{
	/*
	 * Every argument register is loaded at its own constant offset, then one is picked.
	 * A switch over PT_REGS_PARMn compiles to one load through an offset computed into
	 * ctx, which the verifier refuses ("dereference of modified ctx ptr"); the barriers
	 * keep the compiler from folding the loads back into that form.
	 */
	unsigned long arg0 = PT_REGS_PARM1(ctx), arg1 = PT_REGS_PARM2(ctx);
	unsigned long arg2 = PT_REGS_PARM3(ctx), arg3 = PT_REGS_PARM4(ctx);
	unsigned long arg4 = PT_REGS_PARM5(ctx), skb = 0;

	barrier_var(arg0);
	barrier_var(arg1);
	barrier_var(arg2);
	barrier_var(arg3);
	barrier_var(arg4);
	switch (ct_cfg.skb_arg) {
	case 0: skb = arg0; break;
	case 1: skb = arg1; break;
	case 2: skb = arg2; break;
	case 3: skb = arg3; break;
	case 4: skb = arg4; break;
	}
	return ct_handle((struct sk_buff *)skb, false, 0);
}

SEC("kretprobe")
int ct_kretprobe(struct pt_regs *ctx)
{
	return ct_handle((struct sk_buff *)PT_REGS_RC(ctx), false, 0);
}
