/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * Map layouts shared by mosn_capture.bpf.c and the Rust loader (ebpf/src/pod.rs mirrors every
 * struct here field by field; a size assertion on each side catches drift).
 *
 * Byte orders: addresses and `port` fields are network order, as the kernel hands them over.
 */
#ifndef MOSN_CAPTURE_H
#define MOSN_CAPTURE_H

#include <linux/types.h>

/* mosn_config.flags */
#define MOSN_F_SOCKMAP (1u << 0) /* add app<->proxy sockets to sock_hash (sk_msg shortcut) */
#define MOSN_F_IPV6 (1u << 1)    /* capture IPv6 destinations (connect6 with a non-mapped address) */
#define MOSN_F_UID (1u << 2)     /* proxy_uid is set: connects by this uid are never captured */
#define MOSN_F_MARK (1u << 3)    /* proxy_mark is set: sockets with this SO_MARK are never captured */

/* The one entry (key 0) of the `config` array. */
struct mosn_config {
	__u32 flags;
	__u32 proxy_uid;
	__u32 proxy_mark;
	__u32 proxy_ip4;    /* where captured IPv4 connects go (127.0.0.1) */
	__u32 proxy_ip6[4]; /* where captured IPv6 connects go (::1) */
	__u16 outbound_port;
	__u16 _pad;
};

/* An address: IPv4 in ip[0] (ip[1..3] zero), IPv6 in ip[0..3]. IPv4-mapped IPv6 addresses are
 * always stored as IPv4, so a dual-stack client and an IPv4 proxy agree on the key. */
struct mosn_addr {
	__u32 ip[4];
	__u16 port;
	__u16 family; /* AF_INET (2) or AF_INET6 (10) */
};

/* sock_hash key: one end of a local TCP connection, ports in host order. */
struct mosn_sock_key {
	__u32 sip[4];
	__u32 dip[4];
	__u32 sport;
	__u32 dport;
	__u32 family;
};

/* LPM keys of dst4 / dst6: the port (network order, 0 = any port) comes first, so the prefix
 * length is 16 + the CIDR length. A lookup tries the exact port, then port 0. Packed: the key
 * sizes are 10 and 22 bytes, exactly the matched data. */
struct mosn_lpm4 {
	__u32 prefixlen;
	__u8 data[6]; /* port[2] ip4[4] */
} __attribute__((packed));
struct mosn_lpm6 {
	__u32 prefixlen;
	__u8 data[18]; /* port[2] ip6[16] */
} __attribute__((packed));

/* dst4 / dst6 values */
#define MOSN_DST_EXCLUDE 0
#define MOSN_DST_CAPTURE 1

/* stats array indexes (u64 counters) */
#define MOSN_STAT_CONNECT4 0   /* IPv4 connects redirected to the proxy */
#define MOSN_STAT_CONNECT6 1   /* IPv6 (and IPv4-mapped) connects redirected */
#define MOSN_STAT_PROXY_OWN 2  /* connects skipped because they are the proxy's own (uid/mark) */
#define MOSN_STAT_ESTABLISHED 3 /* redirected connections re-keyed by client address */
#define MOSN_STAT_SOCKHASH 4   /* sockets added to sock_hash */
#define MOSN_STAT_MSG_REDIRECT 5 /* sk_msg redirects to the peer socket */
#define MOSN_STAT_ORIG_DST 6   /* SO_ORIGINAL_DST answers */
#define MOSN_STAT_ORIG_MISS 7  /* SO_ORIGINAL_DST asked for a socket we did not redirect */
#define MOSN_STAT_MAX 8

/* === inbound (mosn_inbound.bpf.c) === */

/* LPM keys of in_src4 / in_src6: a client address range (no port), network order. */
struct mosn_in_lpm4 {
	__u32 prefixlen;
	__u32 addr;
};
struct mosn_in_lpm6 {
	__u32 prefixlen;
	__u32 addr[4];
};

/* in_stats array indexes (u64 counters) */
#define MOSN_IN_STAT_CAPTURED 0      /* connections assigned to the inbound listener */
#define MOSN_IN_STAT_LOCAL 1         /* captured port, but made inside the namespace: left alone */
#define MOSN_IN_STAT_EXCLUDED 2      /* captured port, but from an excluded source */
#define MOSN_IN_STAT_NO_LISTENER 3   /* no listener in the slot of this address family */
#define MOSN_IN_STAT_ASSIGN_FAILED 4 /* bpf_sk_assign refused (e.g. IPv4 to a v6only socket) */
#define MOSN_IN_STAT_MAX 5

#endif
