/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * A packet's identity along its path: the fingerprint that names it across probes,
 * clones, copies and NAT, and the first-seen table that turns it into a tracking id.
 * Included by ct.bpf.c only (its maps are shared between the probe objects by name).
 */
#ifndef __CT_TRACK_H__
#define __CT_TRACK_H__

#include "ct_event.h"
#include "ct_filter.h" /* ct_hdr_at */

/*
 * Packet tracking: a packet is named by the time it was first reported. It is found
 * again by a fingerprint of header fields that no probe point, clone, copy or NAT
 * changes: IPv4 id and length, IPv6 flow label and length, protocol, TCP sequence and
 * acknowledgement numbers, ICMP type and echo sequence, the first payload bytes of UDP
 * and ICMP, and the addresses where NAT cannot apply (multicast, IPv6 link-local).
 * Keying on content rather than on skb->head follows a packet into a new buffer (NAT on
 * a clone, a copy for headroom). A fingerprint not seen for 50 ms starts a new packet:
 * one packet is seen again within microseconds along its path, while an identical packet
 * sent again (a repeated multicast report) mostly comes later; and when a probe sees the
 * last reference to a packet freed (kfree_skb, consume_skb), its fingerprint is retired
 * at once. No hook on every free is needed, which many free paths never announce anyway.
 */
struct ct_track_slot {
	__u64 key;
	__u64 first_ts;
	__u64 last_ts;
};

#define CT_TRACK_WINDOW_NS 50000000ULL
#define CT_TRACK_SLOTS (1 << 16)

/*
 * A direct-mapped table rather than a hash map: a lookup is an inlined array index and
 * an insert three stores, where a hash map insert costs more than the rest of the
 * program. Two packets whose keys share a slot within one packet's path (microseconds)
 * would split the first one's id; writes racing on two CPUs likewise. Both are rare and
 * cost only grouping, never an event.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, CT_TRACK_SLOTS);
	__type(key, __u32);
	__type(value, struct ct_track_slot);
} ct_track SEC(".maps");

static __always_inline __u32 ct_be16(const __u8 *p, __u32 at)
{
	return (__u32)ct_hdr_at(p, at) << 8 | ct_hdr_at(p, at + 1);
}

static __always_inline __u32 ct_be32(const __u8 *p, __u32 at)
{
	return ct_be16(p, at) << 16 | ct_be16(p, at + 2);
}

static __always_inline __u64 ct_mix(__u64 h, __u64 v)
{
	h ^= v;
	h *= 0x9e3779b97f4a7c15ULL;
	return h ^ (h >> 29);
}

/* Header fields that stay the same for one packet all along its path; 0 if not IP. */
static __always_inline __u64 ct_fingerprint(const __u8 *hdr, __u32 len)
{
	__u64 fp;
	__u32 l4;
	__u8 proto;

	if (len < 20)
		return 0;
	if ((hdr[0] >> 4) == 4) {
		proto = hdr[9];
		fp = ct_mix(proto, (__u64)ct_be16(hdr, 4) << 16 | ct_be16(hdr, 2));
		if ((hdr[16] & 0xf0) == 0xe0) /* multicast: never NATed */
			fp = ct_mix(fp, (__u64)ct_be32(hdr, 12) << 32 | ct_be32(hdr, 16));
		l4 = (hdr[0] & 0x0f) * 4;
	} else if ((hdr[0] >> 4) == 6 && len >= 40) {
		proto = hdr[6];
		fp = ct_mix(proto, (__u64)(ct_be32(hdr, 0) & 0xfffff) << 16 | ct_be16(hdr, 4));
		if (hdr[24] == 0xff || (hdr[8] == 0xfe && (hdr[9] & 0xc0) == 0x80)) {
			/* multicast destination or link-local source: never NATed */
			fp = ct_mix(fp, (__u64)ct_be32(hdr, 20) << 32 | ct_be32(hdr, 36));
			fp = ct_mix(fp, (__u64)ct_be32(hdr, 12) << 32 | ct_be32(hdr, 16));
		}
		l4 = 40;
	} else {
		return 0;
	}
	if (l4 > CT_PKT_HDR_LEN - 16 || l4 + 16 > len)
		return fp ? fp : 1;
	switch (proto) {
	case IPPROTO_TCP: /* sequence and acknowledgement numbers */
		fp = ct_mix(fp, (__u64)ct_be32(hdr, l4 + 4) << 32 | ct_be32(hdr, l4 + 8));
		break;
	case IPPROTO_UDP: /* the first payload bytes */
	case IPPROTO_UDPLITE:
		fp = ct_mix(fp, (__u64)ct_be32(hdr, l4 + 8) << 32 | ct_be32(hdr, l4 + 12));
		break;
	case IPPROTO_ICMP: /* type, echo sequence, first payload bytes (the id may be NATed) */
	case IPPROTO_ICMPV6:
		fp = ct_mix(fp, (__u64)ct_hdr_at(hdr, l4) << 48 | (__u64)ct_be16(hdr, l4 + 6) << 32 |
				    ct_be32(hdr, l4 + 8));
		break;
	}
	return fp ? fp : 1;
}

/*
 * Whether `then`, a time another CPU may have written after this one read `now`, lies
 * within one tracking window of `now`: a `then` a little after `now` is recent, not
 * almost 2^64 ns old.
 */
static __always_inline bool ct_within_window(__u64 now, __u64 then)
{
	return (__s64)(now - then) < (__s64)CT_TRACK_WINDOW_NS;
}

/* The key a packet is tracked and followed by: its fingerprint, or its data buffer when
 * it is not IP. */
static __always_inline __u64 ct_track_key(const __u8 *hdr, __u32 len, __u64 head)
{
	__u64 fp = ct_fingerprint(hdr, len);

	return fp ? fp : head;
}

/* `key`: the packet's fingerprint, or its data buffer when it is not IP. */
static __always_inline __u64 ct_track_first_seen(__u64 key, __u64 now)
{
	__u32 idx = (__u32)(key ^ (key >> 32)) & (CT_TRACK_SLOTS - 1);
	struct ct_track_slot *slot = bpf_map_lookup_elem(&ct_track, &idx);

	if (!slot)
		return now;
	if (slot->key == key && ct_within_window(now, slot->last_ts)) {
		slot->last_ts = now;
		return slot->first_ts;
	}
	slot->key = key;
	slot->first_ts = now;
	slot->last_ts = now;
	return now;
}

/* The packet at `key` is gone: the next one with that fingerprint is another packet. */
static __always_inline void ct_track_end(__u64 key)
{
	__u32 idx = (__u32)(key ^ (key >> 32)) & (CT_TRACK_SLOTS - 1);
	struct ct_track_slot *slot = bpf_map_lookup_elem(&ct_track, &idx);

	if (slot && slot->key == key)
		slot->last_ts = 0;
}

#endif /* __CT_TRACK_H__ */
