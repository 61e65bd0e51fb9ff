/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * In-kernel filters, evaluated before a ring buffer record is reserved.
 *
 * The filter configuration lives in each probe object's .rodata, frozen before load, so
 * the verifier sees every value as a constant: code for filters that are not in use is
 * pruned (no cost at all), and the packet filter's test program is followed test by test
 * rather than interpreted generically.
 *
 * The layouts here are mirrored by the skeleton-generated types that raw.rs writes.
 */
#ifndef __CT_FILTER_H__
#define __CT_FILTER_H__

#include <bpf/bpf_endian.h>

/*
 * The sizes of the filter arrays below, and so what the kernel side can hold. An enum
 * rather than #defines so that they reach the object's BTF (through struct ct_abi in
 * ct.bpf.c) and the generated skeleton types: user space checks filters against these
 * values, never against a copy of them.
 */
enum ct_limit {
	CT_FILTER_MAX_INSNS = 32,  /* tests of the packet filter's program */
	CT_META_MAX = 4,           /* meta filters, ANDed */
	CT_META_MAX_HOPS = 4,      /* pointers one meta filter follows */
	CT_DROP_REASON_BITS = 256, /* reasons below this can be filtered on */
};

/* Packet filter test fields. */
enum ct_flt_field {
	CT_FLT_L3 = 1,    /* IP version == family */
	CT_FLT_PROTO = 2, /* transport protocol == lo */
	CT_FLT_SADDR = 3, /* (src & mask) == addr, same family */
	CT_FLT_DADDR = 4,
	CT_FLT_SPORT = 5, /* lo <= sport <= hi (TCP/UDP/SCTP only) */
	CT_FLT_DPORT = 6,
};

/* Jump targets besides insn indexes. */
enum ct_flt_target {
	CT_FLT_ACCEPT = 254,
	CT_FLT_REJECT = 255,
};

/* Insn indexes and the targets above share a byte. */
_Static_assert(CT_FILTER_MAX_INSNS <= CT_FLT_ACCEPT, "insn indexes reach the jump targets");

struct ct_filter_insn {
	__u8 field;
	__u8 jt;
	__u8 jf;
	__u8 family; /* 4 or 6 */
	__u16 lo;
	__u16 hi;
	__u8 addr[16];
	__u8 mask[16];
};

/* Meta filter comparison and value kinds. */
enum ct_cmp_op {
	CT_CMP_EQ = 0,
	CT_CMP_NE = 1,
	CT_CMP_LT = 2,
	CT_CMP_LE = 3,
	CT_CMP_GT = 4,
	CT_CMP_GE = 5,
};

enum ct_meta_kind {
	CT_META_UNSIGNED = 0,
	CT_META_SIGNED = 1,
	CT_META_STRING = 2,
};

struct ct_meta_filter {
	__u8 nhops; /* pointers followed before the field */
	__u8 size;  /* bytes compared: 1, 2, 4, 8, or up to 16 for strings */
	__u8 op;    /* CT_CMP_* */
	__u8 kind;  /* CT_META_* */
	__u16 off[CT_META_MAX_HOPS + 1]; /* hop offsets, then the field's */
	__u16 _pad;
	__u64 mask;
	__u64 value;
	char str[16];
};

/* ct_probe_cfg.flags */
enum ct_cfg_flag {
	CT_CFG_REQUIRE_CT = 1 << 0,    /* report only packets carrying conntrack data */
	CT_CFG_CT_STATE = 1 << 1,      /* ctinfo must be in ct_states */
	CT_CFG_CT_MARK = 1 << 2,       /* (mark & ct_mark_mask) == ct_mark */
	CT_CFG_CT_ZONE = 1 << 3,       /* zone id == ct_zone */
	CT_CFG_CT_STATUS = 1 << 4,     /* all ct_status_all bits set */
	CT_CFG_CT_STATUS_ANY = 1 << 5, /* at least one ct_status_any bit set */
	CT_CFG_PKT_FILTER = 1 << 6,    /* run insns[0..n_insns] */
	CT_CFG_NETNS = 1 << 7,         /* device/socket netns inode == netns */
	CT_CFG_TRACK = 1 << 8,         /* give packets a first-seen time (tracking ids) */
	CT_CFG_FREES_SKB = 1 << 9,     /* this probe sees buffers being freed */
	CT_CFG_DROP_PROBE = 1 << 10,   /* this probe sees packets dropped (skb:kfree_skb) */
	CT_CFG_DROP_REASON = 1 << 11,  /* argument reason_arg is the enum skb_drop_reason */
	CT_CFG_ONLY_DROPS = 1 << 12,   /* report drops only */
	CT_CFG_DROP_REASONS = 1 << 13, /* report only drops whose reason is in drop_reasons */
	CT_CFG_CONSUMED = 1 << 14,     /* reason `consumed` (SKB_CONSUMED) is not a drop */
	CT_CFG_PCAP_FILTER = 1 << 15,  /* run the tcpdump filter written into ct_pcap.h's regions */
	CT_CFG_FOLLOW_PACKET = 1 << 16, /* a selected packet's later hits skip the filters */
	CT_CFG_FOLLOW_CONN = 1 << 17,  /* so do the packets of its conntrack entry */
};

#define CT_CFG_CT_CONN_FILTERS \
	(CT_CFG_CT_MARK | CT_CFG_CT_ZONE | CT_CFG_CT_STATUS | CT_CFG_CT_STATUS_ANY)
#define CT_CFG_CT_FILTERS (CT_CFG_CT_STATE | CT_CFG_CT_CONN_FILTERS)

/* Per-probe configuration, written into .rodata by user space before load. */
struct ct_probe_cfg {
	__u32 probe_id;
	__u32 skb_arg; /* index of the sk_buff * in the probe's arguments */
	__u32 netns;
	__u32 flags;   /* CT_CFG_* */
	__u32 ct_states; /* bit n set: ctinfo n accepted */
	__u32 ct_mark;
	__u32 ct_mark_mask;
	__u32 ct_status_all;
	__u32 ct_status_any;
	__u16 ct_zone;
	__u8 n_insns;
	__u8 n_meta;
	__u32 reason_arg; /* index of the enum skb_drop_reason argument (CT_CFG_DROP_REASON) */
	__u32 consumed;   /* the kernel's SKB_CONSUMED (CT_CFG_CONSUMED) */
	__u32 drop_reasons[CT_DROP_REASON_BITS / 32]; /* bit n: reason n accepted */
	struct ct_meta_filter meta[CT_META_MAX];
	struct ct_filter_insn insns[CT_FILTER_MAX_INSNS];
};

/* What the packet filter looks at, parsed from the copied headers. */
struct ct_pkt_view {
	__u8 version;   /* 4, 6, or 0 when not IP */
	__u8 proto;
	__u8 has_ports;
	__u8 _pad;
	__u16 sport;    /* host order */
	__u16 dport;
	__u8 src[16];
	__u8 dst[16];
};

/*
 * Byte `at` of a header copy. The index goes through a compiler barrier before it is
 * masked: otherwise the compiler drops a mask it can prove redundant from an earlier
 * bounds test, and verifiers before 6.x lose that test's bounds when the index is
 * spilled to the stack ("invalid access to map value" on 6.1).
 */
static __always_inline __u8 ct_hdr_at(const __u8 *hdr, __u32 at)
{
	barrier_var(at);
	return hdr[at & CT_HDR_INDEX_MASK];
}

/*
 * Whether the bytes at the network header of a buffer whose skb->protocol is unset are an
 * IP header (the rule of plausible_unlabelled in packet.rs, which user space applies to
 * what it prints): IPv4 needs ihl >= 5, the whole header copied, a valid checksum and a
 * total length from the header's to skb->len; IPv6 its fixed header and a payload that
 * fits in skb->len.
 */
static __always_inline bool ct_plausible_unlabelled(const __u8 *hdr, __u32 len, __u32 skb_len)
{
	__u32 ihl, total, sum = 0;

	if ((hdr[0] >> 4) == 6)
		return len >= 40 && ((__u32)hdr[4] << 8 | hdr[5]) + 40 <= skb_len;
	ihl = (hdr[0] & 0x0f) * 4;
	total = (__u32)hdr[2] << 8 | hdr[3];
	if (ihl < 20 || ihl > len || total < ihl || total > skb_len)
		return false;
	/* Every word a header can have, those past this one's masked out (the copy is
	 * CT_PKT_HDR_LEN bytes, so all 60 are readable): a loop without an exit. */
#pragma unroll
	for (int i = 0; i < 30; i++)
		sum += (2 * i < ihl) ? ((__u32)hdr[2 * i] << 8 | hdr[2 * i + 1]) : 0;
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum == 0xffff;
}

/*
 * Parses an IPv4/IPv6 header and the ports after it from `hdr` (len valid bytes).
 * `protocol` is skb->protocol: another protocol than IP is not parsed, and with none
 * set, only a header that is one (ct_plausible_unlabelled).
 */
static __always_inline void ct_parse_view(struct ct_pkt_view *v, const __u8 *hdr, __u32 len,
					  __be16 protocol, __u32 skb_len)
{
	__u32 l4 = 0;
	__u8 next;

	if (len < 20)
		return;
	if (protocol == bpf_htons(ETH_P_IP)) {
		if ((hdr[0] >> 4) != 4)
			return;
	} else if (protocol == bpf_htons(ETH_P_IPV6)) {
		if ((hdr[0] >> 4) != 6)
			return;
	} else if (protocol != 0 || !ct_plausible_unlabelled(hdr, len, skb_len)) {
		return;
	}
	if ((hdr[0] >> 4) == 4) {
		v->version = 4;
		v->proto = hdr[9];
		__builtin_memcpy(v->src, hdr + 12, 4);
		__builtin_memcpy(v->dst, hdr + 16, 4);
		/* Only the first fragment carries ports. */
		if ((hdr[6] & 0x1f) || hdr[7])
			return;
		l4 = (hdr[0] & 0x0f) * 4;
	} else if ((hdr[0] >> 4) == 6) {
		if (len < 40)
			return;
		v->version = 6;
		__builtin_memcpy(v->src, hdr + 8, 16);
		__builtin_memcpy(v->dst, hdr + 24, 16);
		next = hdr[6];
		l4 = 40;
		/* Up to two extension headers (hop-by-hop, routing, destination, fragment). */
#pragma unroll
		for (int i = 0; i < 2; i++) {
			if (next != IPPROTO_HOPOPTS && next != IPPROTO_ROUTING &&
			    next != IPPROTO_DSTOPTS && next != IPPROTO_FRAGMENT)
				break;
			if (l4 + 8 > len || l4 > CT_PKT_HDR_LEN - 8)
				return;
			if (next == IPPROTO_FRAGMENT) {
				/* A non-first fragment: no transport header here. */
				if ((ct_hdr_at(hdr, l4 + 2) << 8 | ct_hdr_at(hdr, l4 + 3)) & 0xfff8) {
					v->proto = ct_hdr_at(hdr, l4);
					return;
				}
				next = ct_hdr_at(hdr, l4);
				l4 += 8;
			} else {
				__u32 ext = (ct_hdr_at(hdr, l4 + 1) + 1) * 8;

				next = ct_hdr_at(hdr, l4);
				l4 += ext;
			}
		}
		v->proto = next;
	} else {
		return;
	}
	if (v->proto != IPPROTO_TCP && v->proto != IPPROTO_UDP && v->proto != IPPROTO_SCTP &&
	    v->proto != IPPROTO_UDPLITE)
		return;
	if (l4 > CT_PKT_HDR_LEN - 4 || l4 + 4 > len)
		return;
	v->sport = (__u16)ct_hdr_at(hdr, l4) << 8 | ct_hdr_at(hdr, l4 + 1);
	v->dport = (__u16)ct_hdr_at(hdr, l4 + 2) << 8 | ct_hdr_at(hdr, l4 + 3);
	v->has_ports = 1;
}

static __always_inline bool ct_addr_match(const volatile struct ct_filter_insn *in,
					  const __u8 *addr, __u8 version)
{
	if (version != in->family)
		return false;
	if (version == 4) {
#pragma unroll
		for (int i = 0; i < 4; i++)
			if ((addr[i] & in->mask[i]) != in->addr[i])
				return false;
		return true;
	}
#pragma unroll
	for (int i = 0; i < 16; i++)
		if ((addr[i] & in->mask[i]) != in->addr[i])
			return false;
	return true;
}

static __always_inline bool ct_insn_match(const volatile struct ct_filter_insn *in,
					  const struct ct_pkt_view *v)
{
	if (!v->version)
		return false;
	switch (in->field) {
	case CT_FLT_L3:
		return v->version == in->family;
	case CT_FLT_PROTO:
		return v->proto == in->lo;
	case CT_FLT_SADDR:
		return ct_addr_match(in, v->src, v->version);
	case CT_FLT_DADDR:
		return ct_addr_match(in, v->dst, v->version);
	case CT_FLT_SPORT:
		return v->has_ports && v->sport >= in->lo && v->sport <= in->hi;
	case CT_FLT_DPORT:
		return v->has_ports && v->dport >= in->lo && v->dport <= in->hi;
	default:
		return false;
	}
}

/* Runs the compiled packet filter: forward jumps only, so at most n_insns steps. */
static __always_inline bool ct_pkt_filter(const volatile struct ct_probe_cfg *cfg,
					  const struct ct_pkt_view *v)
{
	__u32 pc = 0;

#pragma unroll
	for (int step = 0; step < CT_FILTER_MAX_INSNS; step++) {
		__u8 next;

		if (pc >= cfg->n_insns || pc >= CT_FILTER_MAX_INSNS)
			return false;
		next = ct_insn_match(&cfg->insns[pc], v) ? cfg->insns[pc].jt : cfg->insns[pc].jf;
		if (next == CT_FLT_ACCEPT)
			return true;
		if (next == CT_FLT_REJECT || next <= pc)
			return false;
		pc = next;
	}
	return false;
}

static __always_inline bool ct_cmp(__u8 op, bool is_signed, __u64 a, __u64 b)
{
	if (is_signed) {
		__s64 x = a, y = b;

		switch (op) {
		case CT_CMP_LT: return x < y;
		case CT_CMP_LE: return x <= y;
		case CT_CMP_GT: return x > y;
		case CT_CMP_GE: return x >= y;
		}
	}
	switch (op) {
	case CT_CMP_EQ: return a == b;
	case CT_CMP_NE: return a != b;
	case CT_CMP_LT: return a < b;
	case CT_CMP_LE: return a <= b;
	case CT_CMP_GT: return a > b;
	case CT_CMP_GE: return a >= b;
	}
	return false;
}

/*
 * One meta filter on the skb. A field of the skb itself is taken from the copy already
 * in `skbbuf` when there is one (no extra read); a path through pointers costs one read
 * per hop.
 */
static __always_inline bool ct_meta_match(const volatile struct ct_meta_filter *m,
					  const void *skb, const __u8 *skbbuf, __u32 skb_size)
{
	__u8 buf[16] = {};
	const void *base = skb;
	__u64 val = 0;
	__u32 size = m->size;
	__u16 off;

	if (size > 16)
		return false;
#pragma unroll
	for (int i = 0; i < CT_META_MAX_HOPS; i++) {
		if (i >= m->nhops)
			break;
		if (bpf_probe_read_kernel(&base, sizeof(base), base + m->off[i]) || !base)
			return false;
	}
	if (m->nhops > CT_META_MAX_HOPS)
		return false;
	off = m->off[m->nhops];
	if (skbbuf && m->nhops == 0 && off + size <= skb_size && off + 16 <= CT_SCRATCH_LEN) {
		__builtin_memcpy(buf, skbbuf + (off & (CT_SCRATCH_LEN - 1)), 16);
	} else if (bpf_probe_read_kernel(buf, size & 31, base + off)) {
		return false;
	}

	if (m->kind == CT_META_STRING) {
		bool equal = true;

#pragma unroll
		for (int i = 0; i < 16; i++) {
			if (i < size && buf[i] != m->str[i]) {
				equal = false;
				break;
			}
		}
		return m->op == CT_CMP_NE ? !equal : equal;
	}

	switch (size) {
	case 1: val = buf[0]; if (m->kind == CT_META_SIGNED) val = (__s64)(__s8)val; break;
	case 2: val = *(__u16 *)buf; if (m->kind == CT_META_SIGNED) val = (__s64)(__s16)val; break;
	case 4: val = *(__u32 *)buf; if (m->kind == CT_META_SIGNED) val = (__s64)(__s32)val; break;
	case 8: val = *(__u64 *)buf; break;
	default: return false;
	}
	return ct_cmp(m->op, m->kind == CT_META_SIGNED, val & m->mask, m->value);
}

/*
 * Whether a hit at this probe is a drop, and whether to report it, before anything is
 * read from the skb: every test is on frozen configuration, so a probe that is not a drop
 * probe, or a collection without drop filters, keeps none of this code.
 */
static __always_inline bool ct_drop_filter(const volatile struct ct_probe_cfg *cfg,
					   bool is_drop, __u32 reason)
{
	if ((cfg->flags & CT_CFG_ONLY_DROPS) && !is_drop)
		return false;
	if (cfg->flags & CT_CFG_DROP_REASONS) {
		__u32 word = reason >> 5;

		if (!is_drop || !(cfg->flags & CT_CFG_DROP_REASON) || reason >= CT_DROP_REASON_BITS)
			return false;
		/* Masked after a barrier, as in ct_hdr_at: the compiler would drop a mask it
		 * proves redundant, and the verifier does not carry the bound over. */
		barrier_var(word);
		word &= CT_DROP_REASON_BITS / 32 - 1;
		if (!(cfg->drop_reasons[word] & (1U << (reason & 31))))
			return false;
	}
	return true;
}

#endif /* __CT_FILTER_H__ */
