/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * ct_fill(): the conntrack extraction, as one inlinable function another tracer can
 * #include in its own BPF program (examples/own-tracer in the ct-trace repository does):
 *
 *     #include "ct_vmlinux.h"   (or your vmlinux.h)
 *     #include <bpf/bpf_helpers.h>
 *     #include <bpf/bpf_core_read.h>
 *     #include "ct_event.h"
 *     #include "ct_fill.h"
 *     ...
 *     struct ct_scratch *scratch = ct_scratch_get();
 *     ...
 *     __builtin_memset(ev, 0, sizeof(*ev));  // ev: a struct ct_raw_event you reserved
 *     ev->hz = hz;                           // CONFIG_HZ, for timeouts (0: none)
 *     ct_fill_skb(ev, skb, scratch);
 *
 * and in user space `ct_bpf::decode_ct(bytes_of(ev))`. The directory of these headers is
 * exported by the ct-bpf crate's build (DEP_CT_BPF_INCLUDE in a dependent's build.rs),
 * so the layout compiled into the program is the one the linked decoder reads.
 *
 * The contract, what the caller provides:
 * - `ev`: a struct ct_raw_event, zeroed first (a ring buffer reservation is not zeroed;
 *   ct_fill() only sets the fields and flag bits it finds). It may sit anywhere in the
 *   caller's own event (any offset; decode_ct() takes the bytes from there on). ct_fill()
 *   writes `version`, `ctinfo`, `ct_flags`, `base` and `parent`; the decoder of the ct
 *   section also reads `hz` (CONFIG_HZ, ct_bpf::kernel_hz(); 0 leaves timeouts out).
 *   The other fields are the caller's to fill or leave zero. Every record must go
 *   through ct_fill() or ct_fill_skb(), even one without conntrack: they stamp the layout
 *   version (CT_RECORD_VERSION), and the decoder refuses records without it.
 * - `scratch`: ct_scratch_get(), a per-CPU array (the map ct_scratch_map, defined here:
 *   one per object, sizeof(struct ct_scratch) = 1476 bytes per CPU). ct_fill() uses
 *   scratch->conn only, for one struct nf_conn at a time, so two programs that can run
 *   nested on one CPU (a probe that fires inside another program's helper call) must
 *   not both use it.
 * - Program type: any tracing program that may call bpf_probe_read_kernel() (tracepoint,
 *   BTF tracepoint, raw tracepoint, kprobe, fentry); Linux 5.5 or later (that helper,
 *   bpf_jiffies64); loaded by libbpf with CO-RE against the kernel's BTF. A struct
 *   nf_conn larger than CT_SCRATCH_LEN is never cut short: ct_fill() then reports
 *   CT_EV_CONN_READ_ERR (check that the kernel's sizes fit before loading, as
 *   ct-bpf's collector does: ct_bpf::Error::ScratchTooSmall).
 * - Stack: 24 bytes of the program's 512 (the nf_ct_ext offsets copy and a helper
 *   pointer); no loops, no tail calls, no map but ct_scratch_map.
 *
 * What it costs, measured on examples/own-tracer's program (Linux 6.18, 2026-11-30;
 * bpftool, the program with and without its ct_fill_skb() call):
 * - Size: 698 more instructions after load (856 against 158), 686 in the object.
 * - Verifier: 829 more instructions processed (1092 against 263), 40 more states, stack
 *   depth 48 bytes against 24. Far from any limit (1,000,000 processed instructions, 512
 *   bytes of stack); the branches CO-RE resolves (fields, enum values the kernel lacks)
 *   are dead code the verifier drops.
 * - Run time: one bpf_probe_read_kernel() of the whole nf_conn, one of the extension
 *   offsets and one per extension present (labels; helper pointer and name), the same
 *   again for the parent of a RELATED connection; a packet without conntrack costs one
 *   read of skb->_nfct. ct-trace's whole program (packet header, task, ids and this) costs
 *   410-630 ns per reported packet at a BTF tracepoint on the same machine
 *   (benches/README.md); this part alone was not timed.
 *
 * Cost model: each bpf_probe_read_kernel() has a fixed cost that dwarfs the copy itself,
 * so the nf_conn is read in one go into a per-CPU scratch buffer and fields are then
 * picked out at CO-RE-relocated offsets (constants once loaded, so the verifier checks
 * every access against the buffer at load time).
 */
#ifndef __CT_FILL_H__
#define __CT_FILL_H__

#include "ct_event.h" /* struct ct_raw_event, CT_RECORD_VERSION */
#include "ct_pcap.h"  /* CT_PCAP_COPY_LEN, CT_PCAP_MEM_WORDS: struct ct_scratch's size */

/*
 * Room for one struct sk_buff and one struct nf_conn in the scratch buffer. User space
 * compares it with the kernel's BTF sizes of both before loading and refuses a kernel
 * whose structs do not fit (Error::ScratchTooSmall in crates/ct-bpf/src/error.rs), so
 * the size tests below never cut a copy short: they are the verifier's bound.
 */
#define CT_SCRATCH_LEN 512

/* Extension ids index struct nf_ct_ext.offset[]; this many entries of it are copied. */
#define CT_EXT_OFFSETS_LEN 16
#define CT_EXT_ID_MASK (CT_EXT_OFFSETS_LEN - 1)

/* ip_conntrack_info values we test for. */
#define CT_CTINFO_MASK 7UL
#define CT_IPS_CONFIRMED (1UL << 3)

struct ct_scratch {
	__u8 skb[CT_SCRATCH_LEN];
	__u8 conn[CT_SCRATCH_LEN];
	/* Packet header copy, when a filter needs it before reserving: room for every index
	 * CT_HDR_INDEX_MASK lets through. */
	__u8 hdr[CT_HDR_INDEX_MASK + 1];
	/* The packet from its MAC header, for the tcpdump filter (ct_pcap.h). */
	__u8 frame[CT_PCAP_COPY_LEN];
	__u32 pcap_mem[CT_PCAP_MEM_WORDS];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ct_scratch);
} ct_scratch_map SEC(".maps");

static __always_inline struct ct_scratch *ct_scratch_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&ct_scratch_map, &zero);
}

/* Pointer to `field` of a `type` copied into `buf` (offset relocated by CO-RE). */
#define CT_AT(buf, type, field) ((void *)(buf) + bpf_core_field_offset(type, field))
#define CT_GET(buf, type, field, T) (*(T *)CT_AT(buf, type, field))

/* Copies one tuple out of an nf_conn image; `dir` must be a constant (0 or 1). */
#define CT_COPY_TUPLE(out, buf, dir)                                                          \
	do {                                                                                  \
		__builtin_memcpy((out)->src,                                                  \
				 CT_AT(buf, struct nf_conn, tuplehash[dir].tuple.src.u3), 16); \
		__builtin_memcpy((out)->dst,                                                  \
				 CT_AT(buf, struct nf_conn, tuplehash[dir].tuple.dst.u3), 16); \
		(out)->src_u = CT_GET(buf, struct nf_conn, tuplehash[dir].tuple.src.u.all,    \
				      __be16);                                                \
		(out)->dst_u = CT_GET(buf, struct nf_conn, tuplehash[dir].tuple.dst.u.all,    \
				      __be16);                                                \
		(out)->icmp_type = CT_GET(buf, struct nf_conn,                                \
					  tuplehash[dir].tuple.dst.u.icmp.type, __u8);        \
		(out)->icmp_code = CT_GET(buf, struct nf_conn,                                \
					  tuplehash[dir].tuple.dst.u.icmp.code, __u8);        \
		(out)->l3num = (__u8)CT_GET(buf, struct nf_conn,                              \
					    tuplehash[dir].tuple.src.l3num, __u16);           \
		(out)->protonum = CT_GET(buf, struct nf_conn,                                 \
					 tuplehash[dir].tuple.dst.protonum, __u8);            \
	} while (0)

/*
 * Where extension `id` starts, from a copy of struct nf_ct_ext.offset[]: relative to
 * ct->ext, 0 meaning absent. An id past the kernel's array (or past the copy) is absent
 * too, rather than a byte of whatever follows the array read as an offset.
 */
static __always_inline __u8 ct_ext_offset(const __u8 *offsets, __u32 id)
{
	if (id >= bpf_core_field_size(struct nf_ct_ext, offset) || id >= CT_EXT_OFFSETS_LEN)
		return 0;
	return offsets[id & CT_EXT_ID_MASK];
}

/*
 * Reads the conntrack extensions we report (labels, helper name). `ext` is the kernel
 * pointer ct->ext, whose offset[] array is found through CO-RE.
 */
static __always_inline void ct_fill_ext(struct ct_raw_conn *out, const void *ext)
{
	__u8 offsets[CT_EXT_OFFSETS_LEN] = {};
	__u32 id;
	__u8 off;

	/* Where the kernel's BTF lacks the extension header, no extension is read (and the
	 * offset below, which CO-RE could not relocate, is never reached). */
	if (!bpf_core_field_exists(struct nf_ct_ext, offset))
		return;
	if (!ext || bpf_probe_read_kernel(offsets, sizeof(offsets),
					  ext + bpf_core_field_offset(struct nf_ct_ext, offset)))
		return;

	if (bpf_core_enum_value_exists(enum nf_ct_ext_id, NF_CT_EXT_LABELS)) {
		id = bpf_core_enum_value(enum nf_ct_ext_id, NF_CT_EXT_LABELS);
		off = ct_ext_offset(offsets, id);
		if (off && !bpf_probe_read_kernel(out->labels, sizeof(out->labels), ext + off))
			out->present |= CT_CONN_HAS_LABELS;
	}

	/* nf_conn_help and nf_conntrack_helper live in the nf_conntrack module: where the
	 * kernel has no module BTF (before 5.11) their layout is unknown and names are left
	 * out rather than failing the load. */
	if (bpf_core_enum_value_exists(enum nf_ct_ext_id, NF_CT_EXT_HELPER) &&
	    bpf_core_field_exists(struct nf_conn_help, helper) &&
	    bpf_core_field_exists(struct nf_conntrack_helper, name)) {
		const struct nf_conntrack_helper *helper = NULL;

		id = bpf_core_enum_value(enum nf_ct_ext_id, NF_CT_EXT_HELPER);
		off = ct_ext_offset(offsets, id);
		if (off &&
		    !bpf_probe_read_kernel(&helper, sizeof(helper),
					   ext + off + bpf_core_field_offset(struct nf_conn_help, helper)) &&
		    helper &&
		    /* _str returns the length copied (with the NUL), not 0, on success */
		    bpf_probe_read_kernel_str(out->helper, sizeof(out->helper), helper->name) > 0)
			out->present |= CT_CONN_HAS_HELPER;
	}
}

/* Copies the nf_conn at `ct` into `buf` in one read. Returns 0 on success. */
static __always_inline long ct_read_conn(__u8 *buf, const struct nf_conn *ct)
{
	__u32 size = bpf_core_type_size(struct nf_conn);

	if (size > CT_SCRATCH_LEN)
		return -1; /* a partial copy would leave fields unread: see CT_SCRATCH_LEN */
	return bpf_probe_read_kernel(buf, size, ct);
}

/*
 * Fills `out` from an nf_conn image in `buf` (see ct_read_conn) of the entry at `ct`.
 * Returns the master connection pointer, 0 if none.
 */
static __always_inline long ct_extract_conn(struct ct_raw_conn *out, const struct nf_conn *ct,
					    const __u8 *buf)
{
	unsigned long status;
	__u32 timeout;
	__u8 l4;

	out->key = (__u64)ct;
	CT_COPY_TUPLE(&out->orig, buf, 0);
	CT_COPY_TUPLE(&out->reply, buf, 1);

	status = CT_GET(buf, struct nf_conn, status, unsigned long);
	out->status = (__u32)status;

	if (bpf_core_field_exists(struct nf_conn, zone)) {
		out->zone_id = CT_GET(buf, struct nf_conn, zone.id, __u16);
		out->zone_dir = CT_GET(buf, struct nf_conn, zone.dir, __u8);
		out->present |= CT_CONN_HAS_ZONE;
	}
	if (bpf_core_field_exists(struct nf_conn, mark)) {
		out->mark = CT_GET(buf, struct nf_conn, mark, __u32);
		out->present |= CT_CONN_HAS_MARK;
	}

	/* ct->timeout is absolute (in jiffies) once confirmed, relative before. */
	timeout = CT_GET(buf, struct nf_conn, timeout, __u32);
	if (status & CT_IPS_CONFIRMED)
		out->timeout = (__s32)(timeout - (__u32)bpf_jiffies64());
	else
		out->timeout = (__s32)timeout;
	out->present |= CT_CONN_HAS_TIMEOUT;

	l4 = out->orig.protonum;
	if (l4 == IPPROTO_TCP) {
		out->proto_state = CT_GET(buf, struct nf_conn, proto.tcp.state, __u8);
		out->present |= CT_CONN_HAS_PROTO_STATE;
	} else if (l4 == IPPROTO_SCTP &&
		   bpf_core_field_exists(struct nf_conn, proto.sctp)) {
		out->proto_state = (__u8)CT_GET(buf, struct nf_conn, proto.sctp.state, __u32);
		out->sctp_vtag[0] = CT_GET(buf, struct nf_conn, proto.sctp.vtag[0], __be32);
		out->sctp_vtag[1] = CT_GET(buf, struct nf_conn, proto.sctp.vtag[1], __be32);
		out->present |= CT_CONN_HAS_PROTO_STATE;
	}

	ct_fill_ext(out, CT_GET(buf, struct nf_conn, ext, void *));

	return (long)CT_GET(buf, struct nf_conn, master, void *);
}

/*
 * The extraction: conntrack state of a packet into `ev` (ctinfo, ct_flags, base, parent).
 * `nfct` is skb->_nfct, already read by the caller (which usually needs it to decide
 * whether to report the packet at all). When `conn_ready` is set the caller has already
 * copied the connection into scratch->conn (to evaluate conntrack filters) and it is not
 * read again. Returns 0, or -1 when a connection could not be read (the event then says
 * so through CT_EV_CONN_READ_ERR).
 */
static __always_inline int ct_fill(struct ct_raw_event *ev, unsigned long nfct,
				   struct ct_scratch *scratch, bool conn_ready)
{
	const struct nf_conn *ct = (const void *)(nfct & ~CT_CTINFO_MASK);
	const struct nf_conn *master;

	ev->version = CT_RECORD_VERSION;
	if (!nfct)
		return 0;
	ev->ct_flags |= CT_EV_HAS_CT;
	ev->ctinfo = nfct & CT_CTINFO_MASK;
	if (!ct)
		return 0; /* untracked: a state, no connection */

	if (!conn_ready && ct_read_conn(scratch->conn, ct)) {
		ev->ct_flags |= CT_EV_CONN_READ_ERR;
		return -1;
	}
	master = (const void *)ct_extract_conn(&ev->base, ct, scratch->conn);
	if (!master)
		return 0;
	if (ct_read_conn(scratch->conn, master)) {
		ev->ct_flags |= CT_EV_CONN_READ_ERR;
		return -1;
	}
	ct_extract_conn(&ev->parent, master, scratch->conn);
	ev->ct_flags |= CT_EV_HAS_PARENT;
	return 0;
}

/* ct_fill() for callers holding only the skb: reads skb->_nfct itself. */
static __always_inline int ct_fill_skb(struct ct_raw_event *ev, const struct sk_buff *skb,
				       struct ct_scratch *scratch)
{
	unsigned long nfct = 0;

	ev->version = CT_RECORD_VERSION;
	if (!bpf_core_field_exists(struct sk_buff, _nfct))
		return 0;
	if (bpf_probe_read_kernel(&nfct, sizeof(nfct), &skb->_nfct))
		return -1;
	return ct_fill(ev, nfct, scratch, false);
}

#endif /* __CT_FILL_H__ */
