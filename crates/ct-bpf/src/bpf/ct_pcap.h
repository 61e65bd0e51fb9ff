/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * tcpdump filters (`-f`): libpcap compiles the expression to classic BPF in user space,
 * which translates it to eBPF and writes it over the placeholder regions below before
 * the program is loaded (crates/ct-pcap, crates/ct-bpf/src/pcap.rs).
 *
 * A region is fixed in length, so nothing else in the program moves when it is filled:
 * three moves that tell user space which registers the compiler chose (the frame copy,
 * its length, the scratch words), a marker saying which filter goes there, then
 * `goto +0` to the end. The translation is written at the end of the region, after the
 * `goto +0`s left over, which the verifier removes once it has checked the program. The
 * assembly clobbers r0-r5, so the compiler keeps the four operands in r6-r9 and the
 * translation has r0-r5 to itself.
 */
#ifndef __CT_PCAP_H__
#define __CT_PCAP_H__

/* Bytes of the packet the filter sees, from its MAC header where it has one. */
#define CT_PCAP_COPY_LEN 256
/* Instructions in each region: the largest translated filter is this minus the moves. */
#define CT_PCAP_REGION_INSNS 2048
/* Markers: the Ethernet program's region, the raw-IP program's. */
#define CT_PCAP_MARKER_ETHERNET 0x7fc0de02
#define CT_PCAP_MARKER_RAW_IP 0x7fc0de03
/* Classic BPF's 16 memory words, then the packet's length (what `len` loads). */
#define CT_PCAP_MEM_WORDS 17
#define CT_PCAP_MEM_WIRE_LEN 16

/* The numbers above for user space (through struct ct_abi): the macros stay, since the
 * assembly needs them spelled out. */
enum ct_pcap_layout {
	CT_PCAP_LAYOUT_COPY_LEN = CT_PCAP_COPY_LEN,
	CT_PCAP_LAYOUT_REGION_INSNS = CT_PCAP_REGION_INSNS,
	CT_PCAP_LAYOUT_MARKER_ETHERNET = CT_PCAP_MARKER_ETHERNET,
	CT_PCAP_LAYOUT_MARKER_RAW_IP = CT_PCAP_MARKER_RAW_IP,
	CT_PCAP_LAYOUT_MEM_WORDS = CT_PCAP_MEM_WORDS,
	CT_PCAP_LAYOUT_MEM_WIRE_LEN = CT_PCAP_MEM_WIRE_LEN,
};

#ifndef ETH_HLEN
#define ETH_HLEN 14 /* <linux/if_ether.h>: an Ethernet header */
#endif

#define CT_PCAP_STR_(x) #x
#define CT_PCAP_STR(x) CT_PCAP_STR_(x)

/* A region filled by user space: `ret` is nonzero when the packet matches. */
#define CT_PCAP_REGION(marker, frame, len, mem, ret)                                      \
	asm volatile("%[r] = %[f]\n\t"                                                    \
		     "%[r] = %[l]\n\t"                                                    \
		     "%[r] = %[m]\n\t"                                                    \
		     "%[r] = " CT_PCAP_STR(marker) "\n\t"                                 \
		     ".rept " CT_PCAP_STR(CT_PCAP_REGION_INSNS - 4) "\n\t"                \
		     "goto +0\n\t"                                                        \
		     ".endr"                                                              \
		     : [r] "=&r"(ret)                                                     \
		     : [f] "r"(frame), [l] "r"(len), [m] "r"(mem)                         \
		     : "r0", "r1", "r2", "r3", "r4", "r5", "memory")

/* Where the packet is, from struct sk_buff. */
struct ct_pcap_skb {
	const unsigned char *head;
	const unsigned char *data;
	__u32 len;
	__u32 tail;
	__u16 network_header;
	__u16 mac_header;
};

/*
 * Copies the packet for the filter: from its MAC header when an Ethernet-sized one sits
 * right in front of the network header (`*ethernet` set), else from the network header.
 * Returns the bytes copied (linear part only); `*wire_len` is the packet's length from
 * where the copy starts.
 */
static __always_inline __u64 ct_read_frame(__u8 *dst, const struct ct_pcap_skb *v,
					   bool *ethernet, __u32 *wire_len)
{
	const unsigned char *head = v->head;
	__u16 nh = v->network_header;
	__u16 mh = v->mac_header;
	__u64 tail = v->tail, l3, start, avail, data_off;

	*ethernet = false;
	if (!head)
		return 0;
	data_off = v->data - head;
	l3 = nh;
	if (mh != 0xffff && nh <= mh)
		l3 = data_off;
	start = l3;
	if (mh != 0xffff && (__u64)mh + ETH_HLEN == l3) {
		start = mh;
		*ethernet = true;
	}
	*wire_len = data_off + v->len > start ? data_off + v->len - start : 0;
	if (tail <= start)
		return 0;
	avail = tail - start;
	if (avail > CT_PCAP_COPY_LEN)
		avail = CT_PCAP_COPY_LEN;
	barrier_var(avail);
	if (avail > CT_PCAP_COPY_LEN || avail == 0)
		return 0;
	if (bpf_probe_read_kernel(dst, avail, head + start))
		return 0;
	return avail;
}

/*
 * Whether the packet matches the tcpdump filter. `frame` receives the copy, `mem` is the
 * filter's scratch words (per-CPU memory: the stack has no room for them; libpcap's
 * programs never read a word they have not written).
 */
static __always_inline bool ct_pcap_match(const struct ct_pcap_skb *v, __u8 *frame, __u32 *mem)
{
	bool ethernet;
	__u64 len, ret;

	len = ct_read_frame(frame, v, &ethernet, &mem[CT_PCAP_MEM_WIRE_LEN]);
	if (ethernet)
		CT_PCAP_REGION(CT_PCAP_MARKER_ETHERNET, frame, len, mem, ret);
	else
		CT_PCAP_REGION(CT_PCAP_MARKER_RAW_IP, frame, len, mem, ret);
	return ret != 0;
}

#endif /* __CT_PCAP_H__ */
