// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only
/*
 * mosn transparent capture, inbound half: one sk_lookup program, attached (as a bpf link) to
 * the network namespace mosn runs in. Loaded by the mosn-ebpf crate (src/inbound.rs).
 *
 *   sk_lookup  (mosn's network namespace)
 *       an incoming TCP connection (SYN) to a local port listed in `in_ports` is given to
 *       mosn's inbound listener (the socket in `in_listener`) with bpf_sk_assign, before the
 *       kernel looks for a socket bound to that port. Nothing is rewritten: the accepted
 *       socket's local address is the address the client connected to, which mosn takes as
 *       the original destination.
 *
 * Loop-breaker (mosn's own connections to the local application must reach the application,
 * not mosn again). A connection made inside the namespace itself is never captured; it is
 * recognised by any of:
 *   - it arrived on the loopback interface (ifindex 1 in every namespace): mosn's connect to
 *     127.0.0.1:8080. (A connection to one of the namespace's other addresses also travels
 *     over lo, but the kernel reports the interface owning that address, so:)
 *   - its source is its destination address: mosn's connect to the pod address
 *     198.18.0.1:8080 without a bind (the kernel picks the destination as the source);
 *   - its source is a loopback address (127.0.0.0/8, ::1), which no packet from outside can
 *     carry: e.g. mosn binding its upstream sockets to 127.0.0.6, as Istio does.
 * Only connections coming from another host or namespace are inbound traffic, as under
 * iptables (nat PREROUTING sees no locally generated connection). On top of that, clients in
 * `in_src4` / `in_src6` (`inbound_exclude_sources`: health checkers, a node agent, a second
 * local address mosn binds to, ...) are never captured.
 *
 * Map layouts: mosn_capture.h (struct mosn_in_lpm4/6, MOSN_IN_STAT_*).
 *
 * Needs kernel >= 5.17 (bpf_sk_lookup.ingress_ifindex); sk_lookup itself is 5.9.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "mosn_capture.h"

#define AF_INET6 10
#define LOOPBACK_IFINDEX 1

/* Captured local ports (network order) -> 1. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16);
	__type(value, __u8);
} in_ports SEC(".maps");

/* Client ranges never captured (value unused). */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mosn_in_lpm4);
	__type(value, __u8);
} in_src4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mosn_in_lpm6);
	__type(value, __u8);
} in_src6 SEC(".maps");

/* mosn's inbound listener: slot 0 takes IPv4 connections, slot 1 IPv6 ones (a dual-stack
 * IPv6 listener sits in both). Filled from userspace by socket fd. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32); /* a socket fd from userspace (aya writes it as a u32) */
} in_listener SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MOSN_IN_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} in_stats SEC(".maps");

static __always_inline void stat_inc(__u32 index)
{
	__u64 *v = bpf_map_lookup_elem(&in_stats, &index);
	if (v)
		__sync_fetch_and_add(v, 1);
}

static __always_inline int source_excluded(struct bpf_sk_lookup *ctx)
{
	if (ctx->family == AF_INET6) {
		struct mosn_in_lpm6 k = { .prefixlen = 128 };
		k.addr[0] = ctx->remote_ip6[0];
		k.addr[1] = ctx->remote_ip6[1];
		k.addr[2] = ctx->remote_ip6[2];
		k.addr[3] = ctx->remote_ip6[3];
		return bpf_map_lookup_elem(&in_src6, &k) != 0;
	}
	struct mosn_in_lpm4 k = { .prefixlen = 32, .addr = ctx->remote_ip4 };
	return bpf_map_lookup_elem(&in_src4, &k) != 0;
}

/* Was this connection made inside this network namespace (see the loop-breaker above)? */
static __always_inline int is_local(struct bpf_sk_lookup *ctx)
{
	if (ctx->ingress_ifindex == LOOPBACK_IFINDEX)
		return 1;
	if (ctx->family == AF_INET6) {
		__u32 r0 = ctx->remote_ip6[0], r1 = ctx->remote_ip6[1];
		__u32 r2 = ctx->remote_ip6[2], r3 = ctx->remote_ip6[3];
		if (r0 == 0 && r1 == 0 && r2 == 0 && r3 == bpf_htonl(1))
			return 1; /* ::1 */
		return r0 == ctx->local_ip6[0] && r1 == ctx->local_ip6[1] &&
		       r2 == ctx->local_ip6[2] && r3 == ctx->local_ip6[3];
	}
	__u32 remote = ctx->remote_ip4;
	if ((bpf_ntohl(remote) >> 24) == 127)
		return 1;
	return remote == ctx->local_ip4;
}

SEC("sk_lookup")
int mosn_sk_lookup(struct bpf_sk_lookup *ctx)
{
	if (ctx->protocol != IPPROTO_TCP)
		return SK_PASS;
	__u16 port = bpf_htons((__u16)ctx->local_port);
	if (!bpf_map_lookup_elem(&in_ports, &port))
		return SK_PASS;
	if (is_local(ctx)) {
		stat_inc(MOSN_IN_STAT_LOCAL);
		return SK_PASS;
	}
	if (source_excluded(ctx)) {
		stat_inc(MOSN_IN_STAT_EXCLUDED);
		return SK_PASS;
	}
	__u32 slot = ctx->family == AF_INET6 ? 1 : 0;
	struct bpf_sock *sk = bpf_map_lookup_elem(&in_listener, &slot);
	if (!sk) {
		stat_inc(MOSN_IN_STAT_NO_LISTENER);
		return SK_PASS;
	}
	long err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (err) {
		stat_inc(MOSN_IN_STAT_ASSIGN_FAILED);
		return SK_PASS;
	}
	stat_inc(MOSN_IN_STAT_CAPTURED);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
