/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Minimal CO-RE kernel type definitions: only the types and fields the ct program reads.
 *
 * Every struct is marked preserve_access_index, so libbpf relocates each field access
 * against the running kernel's BTF; the layouts below only need the right names and types,
 * not the right offsets. A field that a kernel lacks (mark without
 * CONFIG_NF_CONNTRACK_MARK, zone without CONFIG_NF_CONNTRACK_ZONES) is guarded with
 * bpf_core_field_exists() at the use site.
 *
 * This replaces a generated vmlinux.h (2.8 MB) so the build needs no bpftool and no BTF.
 */
#ifndef __CT_VMLINUX_H__
#define __CT_VMLINUX_H__

/* bpf_tracing.h picks kernel pt_regs field names when this is defined. */
#define __VMLINUX_H__

typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef short __s16;
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned long long __u64;
typedef long long __s64;
typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __s32 s32;
typedef __u64 u64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u64 __be64;
typedef __u32 __wsum;
typedef _Bool bool;
#define true 1
#define false 0

enum bpf_map_type {
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
};

/* bpf_map_update_elem flags */
enum {
	BPF_ANY = 0,
};

enum {
	BPF_RB_NO_WAKEUP = 1,
	BPF_RB_FORCE_WAKEUP = 2,
};

enum {
	BPF_RB_AVAIL_DATA = 0,
	BPF_RB_RING_SIZE = 1,
};

struct bpf_raw_tracepoint_args {
	__u64 args[0];
};

#if defined(__TARGET_ARCH_x86)
struct pt_regs {
	long unsigned int r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	long unsigned int ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
} __attribute__((preserve_access_index));
#elif defined(__TARGET_ARCH_arm64)
struct user_pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
} __attribute__((preserve_access_index));
struct pt_regs {
	union {
		struct user_pt_regs user_regs;
		struct {
			__u64 regs[31];
			__u64 sp;
			__u64 pc;
			__u64 pstate;
		};
	};
	__u64 orig_x0;
} __attribute__((preserve_access_index));
#else
#error "ct-bpf supports x86_64 and arm64 targets"
#endif

/*
 * Protocol numbers, named as in the kernel's uapi headers (linux/if_ether.h, linux/in.h,
 * linux/in6.h); a generated vmlinux.h has the IPPROTO_ ones as enumerators. Each is only
 * defined if no header included before this one (linux/in.h, say) has defined it.
 */
#ifndef ETH_P_IP
#define ETH_P_IP 0x0800
#endif
#ifndef ETH_P_IPV6
#define ETH_P_IPV6 0x86DD
#endif
#ifndef IPPROTO_HOPOPTS
#define IPPROTO_HOPOPTS 0 /* IPv6 hop-by-hop options */
#endif
#ifndef IPPROTO_ICMP
#define IPPROTO_ICMP 1
#endif
#ifndef IPPROTO_TCP
#define IPPROTO_TCP 6
#endif
#ifndef IPPROTO_UDP
#define IPPROTO_UDP 17
#endif
#ifndef IPPROTO_ROUTING
#define IPPROTO_ROUTING 43 /* IPv6 routing header */
#endif
#ifndef IPPROTO_FRAGMENT
#define IPPROTO_FRAGMENT 44 /* IPv6 fragmentation header */
#endif
#ifndef IPPROTO_ICMPV6
#define IPPROTO_ICMPV6 58
#endif
#ifndef IPPROTO_DSTOPTS
#define IPPROTO_DSTOPTS 60 /* IPv6 destination options */
#endif
#ifndef IPPROTO_SCTP
#define IPPROTO_SCTP 132
#endif
#ifndef IPPROTO_UDPLITE
#define IPPROTO_UDPLITE 136
#endif

/* --- the current task --------------------------------------------------------------------- */

/* Only to ask whether the running kernel has a helper (bpf_core_enum_value_exists). */
enum bpf_func_id {
	BPF_FUNC_get_current_task_btf = 158,
};

struct task_struct {
	int pid;
	int tgid;
	char comm[16];
} __attribute__((preserve_access_index));

/* --- namespaces and devices ------------------------------------------------------------ */

struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

typedef struct {
	struct net *net;
} possible_net_t;

struct net_device {
	char name[16];
	int ifindex;
	possible_net_t nd_net;
} __attribute__((preserve_access_index));

struct sock_common {
	possible_net_t skc_net;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
} __attribute__((preserve_access_index));

/* --- sk_buff ----------------------------------------------------------------------------- */

struct sk_buff {
	struct net_device *dev;
	struct sock *sk;
	unsigned long _nfct;
	unsigned int len;
	unsigned int data_len;
	__be16 protocol;
	__u16 transport_header;
	__u16 network_header;
	__u16 mac_header;
	unsigned int tail; /* sk_buff_data_t: an offset from head on 64-bit kernels */
	unsigned int end;  /* likewise; struct skb_shared_info starts there */
	unsigned char *head;
	unsigned char *data;
} __attribute__((preserve_access_index));

typedef struct {
	int counter;
} atomic_t;

struct skb_shared_info {
	atomic_t dataref;
} __attribute__((preserve_access_index));

/* --- conntrack ----------------------------------------------------------------------------- */

union nf_inet_addr {
	__u32 all[4];
	__be32 ip;
	__be32 ip6[4];
};

union nf_conntrack_man_proto {
	__be16 all;
	struct {
		__be16 port;
	} tcp;
	struct {
		__be16 port;
	} udp;
	struct {
		__be16 id;
	} icmp;
	struct {
		__be16 port;
	} sctp;
};

struct nf_conntrack_man {
	union nf_inet_addr u3;
	union nf_conntrack_man_proto u;
	u16 l3num;
} __attribute__((preserve_access_index));

struct nf_conntrack_tuple {
	struct nf_conntrack_man src;
	struct {
		union nf_inet_addr u3;
		union {
			__be16 all;
			struct {
				__be16 port;
			} tcp;
			struct {
				u8 type;
				u8 code;
			} icmp;
		} u;
		u8 protonum;
		u8 dir;
	} dst;
} __attribute__((preserve_access_index));

struct nf_conntrack_tuple_hash {
	struct nf_conntrack_tuple tuple;
} __attribute__((preserve_access_index));

struct nf_conntrack_zone {
	u16 id;
	u8 flags;
	u8 dir;
} __attribute__((preserve_access_index));

struct ip_ct_tcp {
	u8 state;
} __attribute__((preserve_access_index));

enum sctp_conntrack {
	SCTP_CONNTRACK_NONE = 0,
};

struct ip_ct_sctp {
	enum sctp_conntrack state;
	__be32 vtag[2];
} __attribute__((preserve_access_index));

union nf_conntrack_proto {
	struct ip_ct_sctp sctp;
	struct ip_ct_tcp tcp;
} __attribute__((preserve_access_index));

struct nf_ct_ext {
	u8 offset[9];
	u8 len;
	char data[0];
} __attribute__((preserve_access_index));

enum nf_ct_ext_id {
	NF_CT_EXT_HELPER = 0,
	NF_CT_EXT_LABELS = 7,
};

struct nf_conn_labels {
	unsigned long bits[2];
} __attribute__((preserve_access_index));

struct nf_conntrack_helper {
	char name[16];
} __attribute__((preserve_access_index));

struct nf_conn_help {
	struct nf_conntrack_helper *helper;
} __attribute__((preserve_access_index));

struct nf_conn {
	u32 timeout;
	struct nf_conntrack_zone zone;
	struct nf_conntrack_tuple_hash tuplehash[2];
	unsigned long status;
	struct nf_conn *master;
	u32 mark;
	struct nf_ct_ext *ext;
	union nf_conntrack_proto proto;
} __attribute__((preserve_access_index));

#endif /* __CT_VMLINUX_H__ */
