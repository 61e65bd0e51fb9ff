/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Following: once a filter selects a packet, its later hits are reported whatever NAT,
 * clones, veth crossings or namespace changes did to its headers (CT_CFG_FOLLOW_PACKET);
 * and, with CT_CFG_FOLLOW_CONN, every packet of a selected packet's conntrack entry, in
 * both directions, before and after NAT.
 *
 * A followed packet is known by the key that tracks it (ct_track.h: the fingerprint of
 * its NAT-invariant header fields, or its data buffer where it is not IP), with the same
 * life: refreshed by each hit, over once unseen for CT_TRACK_WINDOW_NS or once a probe
 * sees its last reference freed. A followed connection is known two ways: a packet that
 * carries it by its struct nf_conn (with a digest of its original tuple, so that a new
 * connection reusing the memory of a followed one is not taken for it), which holds
 * between NAT's two rewrites too; and a packet that does not carry it yet (a reply
 * before conntrack saw it, on the backend's side of a DNAT) by its addresses, protocol
 * and ports, equal to the original or the reply tuple or either reversed (ICMP by
 * addresses alone). The
 * maps are LRU hashes: under a flood of selected packets the oldest entries go first,
 * and nothing grows without bound. A connection's entries last until pushed out (no
 * probe sees connections destroyed).
 *
 * What an unfollowed hit costs: until a packet or connection is followed, one array
 * lookup; while no packet was followed for CT_TRACK_WINDOW_NS and no connection ever
 * was, also a clock read; otherwise also the header copy and fingerprint (which a
 * reported hit needs anyway) and one or two hash lookups.
 */
#ifndef __CT_FOLLOW_H__
#define __CT_FOLLOW_H__

#include "ct_track.h"
#include "ct_filter.h" /* struct ct_pkt_view, ct_parse_view */

/* Address families (<linux/socket.h>). */
enum {
	CT_AF_INET = 2,
	CT_AF_INET6 = 10,
};

/* Entries of the two follow maps: enough for every packet in flight on a busy host
 * within one tracking window, and for the connections of a filtered capture. */
enum ct_follow_limit {
	CT_FOLLOW_PACKETS = 16384,
	CT_FOLLOW_CONNS = 16384,
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CT_FOLLOW_PACKETS);
	__type(key, __u64);   /* the tracking key */
	__type(value, __u64); /* last hit, bpf_ktime_get_ns */
} ct_follow_pkt SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CT_FOLLOW_CONNS);
	__type(key, __u64);   /* the struct nf_conn's address */
	__type(value, __u64); /* digest of its original tuple */
} ct_follow_conn SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4 * CT_FOLLOW_CONNS);
	__type(key, __u64);   /* ct_flow_key of a followed connection's tuple (or reversed) */
	__type(value, __u8);
} ct_follow_tuple SEC(".maps");

/* Per-CPU room for a parsed packet view: the flows followed connections are compared
 * and filed by, and the packet filter's view (ct.bpf.c) -- the program's 512-byte stack
 * has no room left for one. */
struct ct_follow_scratch {
	struct ct_pkt_view flow;
	__u64 word;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ct_follow_scratch);
} ct_follow_scratch_map SEC(".maps");

/* Whether anything is followed at all: the hits of a filtered capture mostly find
 * nothing to follow, and this spares them the lookups. */
struct ct_follow_state {
	__u64 pkt_last_ts; /* last time a followed packet was selected or seen */
	__u64 conns;       /* connections ever followed (never decremented) */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ct_follow_state);
} ct_follow_state_map SEC(".maps");

static __always_inline struct ct_follow_state *ct_follow_state(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&ct_follow_state_map, &zero);
}

/* Whether a packet may be followed now: one was selected or seen within the window. */
static __always_inline bool ct_follow_pkt_live(const struct ct_follow_state *st, __u64 now)
{
	return st && st->pkt_last_ts && ct_within_window(now, st->pkt_last_ts);
}

/* Whether the packet tracked by `key` is followed; refreshes it if so. */
static __always_inline bool ct_follow_pkt_hit(struct ct_follow_state *st, __u64 key, __u64 now)
{
	__u64 *last = bpf_map_lookup_elem(&ct_follow_pkt, &key);

	if (!last)
		return false;
	if (!ct_within_window(now, *last)) {
		/* Unseen for a whole window: that packet is gone, this is another. */
		bpf_map_delete_elem(&ct_follow_pkt, &key);
		return false;
	}
	*last = now;
	if (st)
		st->pkt_last_ts = now;
	return true;
}

/* Follows the packet tracked by `key` from now on. */
static __always_inline void ct_follow_pkt_add(struct ct_follow_state *st, __u64 key, __u64 now)
{
	bpf_map_update_elem(&ct_follow_pkt, &key, &now, BPF_ANY);
	if (st)
		st->pkt_last_ts = now;
}

/* The packet tracked by `key` is gone. */
static __always_inline void ct_follow_pkt_end(__u64 key)
{
	bpf_map_delete_elem(&ct_follow_pkt, &key);
}

/* A digest of the connection's original tuple (addresses, ports, protocol: 40 bytes,
 * read a word at a time to keep the program's stack small); 0 when it cannot be read. */
static __always_inline __u64 ct_conn_digest(const struct nf_conn *ct)
{
	const __u8 *tuple = (const void *)&ct->tuplehash[0].tuple;
	__u64 word, h = 0;

#pragma unroll
	for (int i = 0; i < 5; i++) {
		if (bpf_probe_read_kernel(&word, sizeof(word), tuple + i * sizeof(word)))
			return 0;
		h = ct_mix(h, word);
	}
	return h ? h : 1;
}

/* A flow's key: version, protocol, addresses and (TCP, UDP, UDP-Lite, SCTP) ports. */
static __always_inline __u64 ct_flow_key(const struct ct_pkt_view *f)
{
	__u64 h = ct_mix(f->version, (__u64)f->proto << 32 | (__u32)f->sport << 16 | f->dport);
	const __u64 *src = (const void *)f->src, *dst = (const void *)f->dst;

	h = ct_mix(h, src[0]);
	h = ct_mix(h, src[1]);
	h = ct_mix(h, dst[0]);
	return ct_mix(h, dst[1]);
}

static __always_inline struct ct_pkt_view *ct_follow_flow(void)
{
	__u32 zero = 0;
	struct ct_follow_scratch *fs = bpf_map_lookup_elem(&ct_follow_scratch_map, &zero);

	return fs ? &fs->flow : NULL;
}

/*
 * A kernel address as a number, for a key. The verifier keeps a typed pointer (a BTF
 * program's skb->head) a pointer through any arithmetic; stored in a map value and read
 * back it is a plain number (what storing it in the ring buffer record does too).
 */
static __always_inline __u64 ct_address_value(const void *p)
{
	__u32 zero = 0;
	struct ct_follow_scratch *fs = bpf_map_lookup_elem(&ct_follow_scratch_map, &zero);

	if (!fs)
		return 0;
	*(volatile __u64 *)&fs->word = (__u64)p;
	return *(volatile __u64 *)&fs->word;
}

/* Whether a packet not carrying a followed connection belongs to one by its headers. */
static __always_inline bool ct_follow_flow_hit(const struct ct_follow_state *st,
					       const __u8 *hdr, __u32 len, __be16 protocol,
					       __u32 skb_len)
{
	struct ct_pkt_view *flow;
	__u64 key;

	if (!st || !st->conns)
		return false;
	flow = ct_follow_flow();
	if (!flow)
		return false;
	__builtin_memset(flow, 0, sizeof(*flow));
	ct_parse_view(flow, hdr, len, protocol, skb_len);
	if (!flow->version)
		return false;
	key = ct_flow_key(flow);
	return bpf_map_lookup_elem(&ct_follow_tuple, &key) != NULL;
}

/*
 * Files one tuple of a followed connection (as ct_fill() copied it) as a flow, as it is
 * and reversed. A connection's packets look like one of four flows on the wire: the
 * original tuple (requests before NAT), the reply tuple (replies before un-NAT), and
 * the two reversed (requests after NAT: the reply tuple's reverse; replies after
 * un-NAT: the original's).
 */
static __always_inline void ct_follow_tuple_add(const struct ct_raw_tuple *t)
{
	struct ct_pkt_view *flow = ct_follow_flow();
	__u8 one = 1;
	__u64 key, word, *src, *dst;
	__u16 port;

	if (!flow)
		return;
	__builtin_memset(flow, 0, sizeof(*flow));
	flow->proto = t->protonum;
	if (t->l3num == CT_AF_INET) {
		flow->version = 4;
		__builtin_memcpy(flow->src, t->src, 4);
		__builtin_memcpy(flow->dst, t->dst, 4);
	} else if (t->l3num == CT_AF_INET6) {
		flow->version = 6;
		__builtin_memcpy(flow->src, t->src, 16);
		__builtin_memcpy(flow->dst, t->dst, 16);
	} else {
		return;
	}
	if (flow->proto == IPPROTO_TCP || flow->proto == IPPROTO_UDP ||
	    flow->proto == IPPROTO_SCTP || flow->proto == IPPROTO_UDPLITE) {
		flow->sport = bpf_ntohs(t->src_u);
		flow->dport = bpf_ntohs(t->dst_u);
		flow->has_ports = 1;
	}
	key = ct_flow_key(flow);
	bpf_map_update_elem(&ct_follow_tuple, &key, &one, BPF_ANY);

	/* Reversed in place, a word at a time (ct_flow_key reads them so too): the stack
	 * has no room for a copy. */
	src = (void *)flow->src;
	dst = (void *)flow->dst;
	word = src[0];
	src[0] = dst[0];
	dst[0] = word;
	word = src[1];
	src[1] = dst[1];
	dst[1] = word;
	port = flow->sport;
	flow->sport = flow->dport;
	flow->dport = port;
	key = ct_flow_key(flow);
	bpf_map_update_elem(&ct_follow_tuple, &key, &one, BPF_ANY);
}

/* Whether the connection at `ct` is followed. */
static __always_inline bool ct_follow_conn_hit(const struct ct_follow_state *st,
					       const struct nf_conn *ct)
{
	__u64 addr = (__u64)ct;
	__u64 *digest;

	if (!st || !st->conns || !ct)
		return false;
	digest = bpf_map_lookup_elem(&ct_follow_conn, &addr);
	return digest && *digest == ct_conn_digest(ct);
}

/* Follows the connection at `ct` from now on (a no-op when it already is); `conn` is
 * what ct_fill() copied of it. */
static __always_inline void ct_follow_conn_add(struct ct_follow_state *st,
					       const struct nf_conn *ct,
					       const struct ct_raw_conn *conn)
{
	__u64 addr = (__u64)ct;
	__u64 digest, *known;

	if (!st || !ct)
		return;
	digest = ct_conn_digest(ct);
	if (!digest)
		return;
	known = bpf_map_lookup_elem(&ct_follow_conn, &addr);
	if (known && *known == digest)
		return;
	bpf_map_update_elem(&ct_follow_conn, &addr, &digest, BPF_ANY);
	ct_follow_tuple_add(&conn->orig);
	ct_follow_tuple_add(&conn->reply);
	__sync_fetch_and_add(&st->conns, 1);
}

#endif /* __CT_FOLLOW_H__ */
