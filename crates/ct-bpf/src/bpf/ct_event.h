/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The raw event: the one record layout shared by the BPF program and user space.
 *
 * Mirrored by `RawCtEvent` in crates/ct-bpf/src/raw.rs. Both sides assert the size and
 * every field offset, so a change here that is not made there fails the build.
 *
 * Byte order: addresses, ports, ICMP ids and SCTP vtags are kept exactly as the kernel
 * stores them (network order); everything else is host order.
 *
 * Versioning: every record carries CT_RECORD_VERSION in `version`, written by ct_fill()
 * (ct_fill.h). The decoder (ct_bpf::decode_ct, ct_bpf::Decoder) reads only records of
 * the version it was built with and refuses any other with DecodeError::Version, so a
 * program compiled against another copy of this header is never misread. Any change to
 * this file that moves, resizes, adds or reinterprets a field bumps CT_RECORD_VERSION
 * (raw.rs takes the number from the object's BTF, through struct ct_abi in ct.bpf.c),
 * and the records in fixtures/raw/ are then recaptured or converted.
 */
#ifndef __CT_EVENT_H__
#define __CT_EVENT_H__

/*
 * The layout version of struct ct_raw_event below (0 is never used: a record ct_fill()
 * did not fill). An enum, as the flags below, so that user space reads it from BTF.
 */
enum ct_record {
	CT_RECORD_VERSION = 1,
};

#define CT_NAME_LEN 16
#define CT_PKT_HDR_LEN 96
/*
 * Mask for header bytes read at a computed index (ct_hdr_at): a power of two covering
 * CT_PKT_HDR_LEN, so a masked index stays inside the 128-byte scratch copy and, for
 * ev->hdr, inside the record that follows it (asserted below).
 */
#define CT_HDR_INDEX_MASK 0x7f

/*
 * Flag values are enums rather than #defines so that they reach the object's BTF and
 * from there the generated skeleton: user space reads them from it instead of keeping
 * a copy (see struct ct_abi in ct.bpf.c).
 */

/* struct ct_raw_conn.present: which optional fields this kernel/connection provided. */
enum ct_conn_present {
	CT_CONN_HAS_ZONE = 1 << 0,
	CT_CONN_HAS_MARK = 1 << 1,
	CT_CONN_HAS_LABELS = 1 << 2,
	CT_CONN_HAS_HELPER = 1 << 3,
	CT_CONN_HAS_TIMEOUT = 1 << 4,
	CT_CONN_HAS_PROTO_STATE = 1 << 5,
};

/* struct ct_raw_event.ct_flags */
enum ct_ev_flag {
	CT_EV_HAS_CT = 1 << 0,        /* skb->_nfct was non-zero */
	CT_EV_HAS_PARENT = 1 << 1,    /* ct->master was set and read */
	CT_EV_CONN_READ_ERR = 1 << 2, /* reading the nf_conn failed (freed under us?) */
};

/* struct ct_raw_event.pkt_flags */
enum ct_pkt_flag {
	CT_PKT_HAS_DEV = 1 << 0,
	CT_PKT_HAS_NETNS = 1 << 1,
	CT_PKT_DROP = 1 << 2,        /* seen dropped (skb:kfree_skb) */
	CT_PKT_DROP_REASON = 1 << 3, /* drop_reason/drop_subsys hold the kernel's reason */
};

/* One direction of a connection, as in struct nf_conntrack_tuple. */
struct ct_raw_tuple {
	__u8 src[16];      /* IPv4 uses the first 4 bytes */
	__u8 dst[16];
	__be16 src_u;      /* tcp/udp/sctp source port, icmp id (network order) */
	__be16 dst_u;      /* tcp/udp/sctp destination port (network order) */
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 l3num;        /* AF_INET (2) or AF_INET6 (10); 0 in templates */
	__u8 protonum;
};

/* One conntrack entry. */
struct ct_raw_conn {
	struct ct_raw_tuple orig;
	struct ct_raw_tuple reply;
	__u8 labels[16];          /* struct nf_conn_labels, host-order longs */
	char helper[CT_NAME_LEN]; /* nf_conntrack_helper.name */
	__u64 key;                /* opaque identity (hashed in user space, never printed) */
	__u32 status;
	__u32 mark;
	__s32 timeout;            /* remaining jiffies */
	__be32 sctp_vtag[2];
	__u16 zone_id;
	__u8 zone_dir;
	__u8 proto_state;         /* tcp_conntrack or sctp_conntrack */
	__u8 present;             /* CT_CONN_HAS_* */
	__u8 _pad[7];
};

struct ct_raw_event {
	__u64 ts;                 /* bpf_ktime_get_ns() */
	__u64 skb_key;            /* skb->head: packet identity, hashed in user space */
	__u32 pid;
	__u32 tgid;
	char comm[CT_NAME_LEN];
	__u32 netns;
	__u32 ifindex;
	char ifname[CT_NAME_LEN];
	__u32 probe_id;
	__u32 skb_len;
	__u32 hz;                 /* CONFIG_HZ if known, else 0 (timeouts are then dropped) */
	__be16 l3_proto;          /* skb->protocol */
	__u8 pkt_flags;           /* CT_PKT_* */
	__u8 hdr_len;             /* valid bytes in hdr[] */
	__u8 ctinfo;              /* skb->_nfct & 7 */
	__u8 ct_flags;            /* CT_EV_* */
	__u16 drop_reason;        /* enum skb_drop_reason, low 16 bits (CT_PKT_DROP_REASON) */
	__u16 drop_subsys;        /* its high 16 bits: the subsystem of a subsystem reason */
	__u16 version;            /* CT_RECORD_VERSION, set by ct_fill() */
	__u8 hdr[CT_PKT_HDR_LEN]; /* network header onwards, linear part only */
	struct ct_raw_conn base;
	struct ct_raw_conn parent;
	__u64 skb_first_ts;       /* when this data buffer was first reported: with skb_key,
				   * tells a packet from a later one reusing the buffer */
};

#define CT_ASSERT_OFFSET(type, field, off) \
	_Static_assert(__builtin_offsetof(type, field) == (off), #type "." #field " moved")

_Static_assert(sizeof(struct ct_raw_tuple) == 40, "ct_raw_tuple size changed");
_Static_assert(sizeof(struct ct_raw_conn) == 152, "ct_raw_conn size changed");
_Static_assert(sizeof(struct ct_raw_event) == 496, "ct_raw_event size changed");
CT_ASSERT_OFFSET(struct ct_raw_tuple, src_u, 32);
CT_ASSERT_OFFSET(struct ct_raw_tuple, l3num, 38);
CT_ASSERT_OFFSET(struct ct_raw_conn, reply, 40);
CT_ASSERT_OFFSET(struct ct_raw_conn, labels, 80);
CT_ASSERT_OFFSET(struct ct_raw_conn, helper, 96);
CT_ASSERT_OFFSET(struct ct_raw_conn, key, 112);
CT_ASSERT_OFFSET(struct ct_raw_conn, status, 120);
CT_ASSERT_OFFSET(struct ct_raw_conn, mark, 124);
CT_ASSERT_OFFSET(struct ct_raw_conn, timeout, 128);
CT_ASSERT_OFFSET(struct ct_raw_conn, sctp_vtag, 132);
CT_ASSERT_OFFSET(struct ct_raw_conn, zone_id, 140);
CT_ASSERT_OFFSET(struct ct_raw_conn, present, 144);
CT_ASSERT_OFFSET(struct ct_raw_event, pid, 16);
CT_ASSERT_OFFSET(struct ct_raw_event, comm, 24);
CT_ASSERT_OFFSET(struct ct_raw_event, netns, 40);
CT_ASSERT_OFFSET(struct ct_raw_event, ifname, 48);
CT_ASSERT_OFFSET(struct ct_raw_event, probe_id, 64);
CT_ASSERT_OFFSET(struct ct_raw_event, hz, 72);
CT_ASSERT_OFFSET(struct ct_raw_event, l3_proto, 76);
CT_ASSERT_OFFSET(struct ct_raw_event, ctinfo, 80);
CT_ASSERT_OFFSET(struct ct_raw_event, drop_reason, 82);
CT_ASSERT_OFFSET(struct ct_raw_event, drop_subsys, 84);
CT_ASSERT_OFFSET(struct ct_raw_event, version, 86);
CT_ASSERT_OFFSET(struct ct_raw_event, hdr, 88);
CT_ASSERT_OFFSET(struct ct_raw_event, base, 184);
CT_ASSERT_OFFSET(struct ct_raw_event, parent, 336);
CT_ASSERT_OFFSET(struct ct_raw_event, skb_first_ts, 488);

_Static_assert(CT_HDR_INDEX_MASK + 1 >= CT_PKT_HDR_LEN, "the mask must cover the header copy");
_Static_assert(__builtin_offsetof(struct ct_raw_event, hdr) + CT_HDR_INDEX_MASK <
		       sizeof(struct ct_raw_event),
	       "a masked read of ev->hdr must stay inside the record");

#endif /* __CT_EVENT_H__ */
