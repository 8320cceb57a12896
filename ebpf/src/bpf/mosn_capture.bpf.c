// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only
/*
 * mosn transparent capture: the eBPF half. Loaded and attached by the mosn-ebpf crate (aya).
 *
 *   cgroup/connect4, cgroup/connect6  (app cgroup)
 *       a TCP connect to a captured destination is rewritten to the proxy's outbound port on
 *       loopback; the original destination is recorded under the socket cookie.
 *   sockops  (app cgroup and proxy cgroup)
 *       ACTIVE_ESTABLISHED on a redirected app socket: the record moves from the cookie to the
 *       client address {ip, port} (the proxy sees that address as its peer), and the socket
 *       joins sock_hash; PASSIVE_ESTABLISHED on the proxy's outbound port: the accepted socket
 *       joins sock_hash.
 *   sk_msg  (sock_hash)
 *       data sent on one end of an app<->proxy connection goes straight to the other end's
 *       receive queue, skipping the loopback TCP/IP stack.
 *   cgroup/getsockopt  (app cgroup and proxy cgroup)
 *       getsockopt(SOL_IP, SO_ORIGINAL_DST) / getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST) on an
 *       accepted proxy socket is answered from the record, when the kernel (conntrack) had no
 *       answer, so the proxy code is the same as under iptables REDIRECT.
 *
 * Which destinations are captured, and which sockets are the proxy's own, is data in maps
 * that the loader fills from the config. Map layouts: mosn_capture.h.
 *
 * Build: clang -O2 -g -target bpf -I/usr/include/$(uname -m)-linux-gnu -c mosn_capture.bpf.c
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "mosn_capture.h"

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOL_IP 0
#define SOL_IPV6 41
#define SO_ORIGINAL_DST 80 /* also IP6T_SO_ORIGINAL_DST at SOL_IPV6 */

/* Stores to the context go through volatile so that clang never merges two adjacent 32-bit
 * stores into one 64-bit store, which the verifier rejects ("invalid bpf_context access").
 * Building with -DMOSN_VERIFIER_PITFALL adds that mistake to the getsockopt program, to get an
 * object the kernel refuses (for the loader's error-path test; never shipped). */
#define CTX_STORE(field, value) (*(volatile __typeof__(field) *)&(field) = (value))

/* === maps === */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mosn_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mosn_lpm4);
	__type(value, __u32);
} dst4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mosn_lpm6);
	__type(value, __u32);
} dst6 SEC(".maps");

/* Destination ports never captured (network order), whatever the address. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16);
	__type(value, __u8);
} exclude_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct mosn_addr);
} orig_by_cookie SEC(".maps");

/* client address as the proxy sees its peer -> original destination */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct mosn_addr);
	__type(value, struct mosn_addr);
} orig_by_peer SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, struct mosn_sock_key);
	__type(value, __u32); /* a socket fd from userspace (aya reads it as a RawFd) */
} sock_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MOSN_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* === helpers === */

static __always_inline void stat_inc(__u32 index)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &index);
	if (v)
		__sync_fetch_and_add(v, 1);
}

static __always_inline struct mosn_config *get_config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&config, &zero);
}

static __always_inline int is_v4_mapped(__u32 w0, __u32 w1, __u32 w2)
{
	return w0 == 0 && w1 == 0 && w2 == bpf_htonl(0xffff);
}

/* Is a TCP connect by the current task on this socket one of the proxy's own? */
static __always_inline int proxy_own(struct bpf_sock_addr *ctx, const struct mosn_config *cfg)
{
	if ((cfg->flags & MOSN_F_UID) && (__u32)bpf_get_current_uid_gid() == cfg->proxy_uid)
		return 1;
	if (cfg->flags & MOSN_F_MARK) {
		struct bpf_sock *sk = ctx->sk;
		if (sk && sk->mark == cfg->proxy_mark)
			return 1;
	}
	return 0;
}

static __always_inline int port_excluded(__u16 port)
{
	return bpf_map_lookup_elem(&exclude_ports, &port) != 0;
}

static __always_inline int captured4(__u32 ip4, __u16 port)
{
	struct mosn_lpm4 key;
	__u32 *v;

	key.prefixlen = 48; /* every data byte is set below */
	__builtin_memcpy(&key.data[0], &port, 2);
	__builtin_memcpy(&key.data[2], &ip4, 4);
	v = bpf_map_lookup_elem(&dst4, &key);
	if (!v) {
		key.data[0] = 0;
		key.data[1] = 0;
		v = bpf_map_lookup_elem(&dst4, &key);
	}
	return v && *v == MOSN_DST_CAPTURE;
}

static __always_inline int captured6(const __u32 ip6[4], __u16 port)
{
	struct mosn_lpm6 key;
	__u32 *v;

	key.prefixlen = 144; /* every data byte is set below */
	__builtin_memcpy(&key.data[0], &port, 2);
	__builtin_memcpy(&key.data[2], ip6, 16);
	v = bpf_map_lookup_elem(&dst6, &key);
	if (!v) {
		key.data[0] = 0;
		key.data[1] = 0;
		v = bpf_map_lookup_elem(&dst6, &key);
	}
	return v && *v == MOSN_DST_CAPTURE;
}

static __always_inline void remember(void *ctx, struct mosn_addr *orig)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	bpf_map_update_elem(&orig_by_cookie, &cookie, orig, BPF_ANY);
}

/* === cgroup/connect4 === */

SEC("cgroup/connect4")
int mosn_connect4(struct bpf_sock_addr *ctx)
{
	struct mosn_config *cfg;
	struct mosn_addr orig = {};
	__u32 ip4;
	__u16 port;

	if (ctx->type != SOCK_STREAM)
		return 1;
	cfg = get_config();
	if (!cfg)
		return 1;
	ip4 = ctx->user_ip4;
	port = (__u16)ctx->user_port;
	if (ip4 == cfg->proxy_ip4 && port == cfg->outbound_port)
		return 1;
	if (port_excluded(port) || !captured4(ip4, port))
		return 1;
	if (proxy_own(ctx, cfg)) {
		stat_inc(MOSN_STAT_PROXY_OWN);
		return 1;
	}
	orig.ip[0] = ip4;
	orig.port = port;
	orig.family = AF_INET;
	remember(ctx, &orig);
	CTX_STORE(ctx->user_ip4, cfg->proxy_ip4);
	CTX_STORE(ctx->user_port, (__u32)cfg->outbound_port);
	stat_inc(MOSN_STAT_CONNECT4);
	return 1;
}

/* === cgroup/connect6 === */

SEC("cgroup/connect6")
int mosn_connect6(struct bpf_sock_addr *ctx)
{
	struct mosn_config *cfg;
	struct mosn_addr orig = {};
	__u32 ip6[4];
	__u16 port;

	if (ctx->type != SOCK_STREAM)
		return 1;
	cfg = get_config();
	if (!cfg)
		return 1;
	ip6[0] = *(volatile __u32 *)&ctx->user_ip6[0];
	ip6[1] = *(volatile __u32 *)&ctx->user_ip6[1];
	ip6[2] = *(volatile __u32 *)&ctx->user_ip6[2];
	ip6[3] = *(volatile __u32 *)&ctx->user_ip6[3];
	port = (__u16)ctx->user_port;

	if (is_v4_mapped(ip6[0], ip6[1], ip6[2])) {
		/* a dual-stack socket connecting to an IPv4 address: IPv4 rules apply */
		if (ip6[3] == cfg->proxy_ip4 && port == cfg->outbound_port)
			return 1;
		if (port_excluded(port) || !captured4(ip6[3], port))
			return 1;
		if (proxy_own(ctx, cfg)) {
			stat_inc(MOSN_STAT_PROXY_OWN);
			return 1;
		}
		orig.ip[0] = ip6[3];
		orig.family = AF_INET;
		orig.port = port;
		remember(ctx, &orig);
		CTX_STORE(ctx->user_ip6[3], cfg->proxy_ip4);
	} else {
		if (!(cfg->flags & MOSN_F_IPV6))
			return 1;
		if (ip6[0] == cfg->proxy_ip6[0] && ip6[1] == cfg->proxy_ip6[1] &&
		    ip6[2] == cfg->proxy_ip6[2] && ip6[3] == cfg->proxy_ip6[3] &&
		    port == cfg->outbound_port)
			return 1;
		if (port_excluded(port) || !captured6(ip6, port))
			return 1;
		if (proxy_own(ctx, cfg)) {
			stat_inc(MOSN_STAT_PROXY_OWN);
			return 1;
		}
		orig.ip[0] = ip6[0];
		orig.ip[1] = ip6[1];
		orig.ip[2] = ip6[2];
		orig.ip[3] = ip6[3];
		orig.family = AF_INET6;
		orig.port = port;
		remember(ctx, &orig);
		CTX_STORE(ctx->user_ip6[0], cfg->proxy_ip6[0]);
		CTX_STORE(ctx->user_ip6[1], cfg->proxy_ip6[1]);
		CTX_STORE(ctx->user_ip6[2], cfg->proxy_ip6[2]);
		CTX_STORE(ctx->user_ip6[3], cfg->proxy_ip6[3]);
	}
	CTX_STORE(ctx->user_port, (__u32)cfg->outbound_port);
	stat_inc(MOSN_STAT_CONNECT6);
	return 1;
}

/* === sockops === */

/* Fills `a` with an address, folding IPv4-mapped IPv6 into IPv4. */
static __always_inline void fill_addr(struct mosn_addr *a, __u32 family, __u32 ip4, __u32 w0,
				      __u32 w1, __u32 w2, __u32 w3, __u16 port)
{
	if (family == AF_INET6 && !is_v4_mapped(w0, w1, w2)) {
		a->ip[0] = w0;
		a->ip[1] = w1;
		a->ip[2] = w2;
		a->ip[3] = w3;
		a->family = AF_INET6;
	} else {
		a->ip[0] = family == AF_INET6 ? w3 : ip4;
		a->family = AF_INET;
	}
	a->port = port;
}

static __always_inline void add_to_sockhash(struct bpf_sock_ops *skops)
{
	struct mosn_addr local = {}, remote = {};
	struct mosn_sock_key key = {};
	__u32 family = skops->family;

	fill_addr(&local, family, skops->local_ip4, skops->local_ip6[0], skops->local_ip6[1],
		  skops->local_ip6[2], skops->local_ip6[3], 0);
	fill_addr(&remote, family, skops->remote_ip4, skops->remote_ip6[0], skops->remote_ip6[1],
		  skops->remote_ip6[2], skops->remote_ip6[3], 0);
	__builtin_memcpy(key.sip, local.ip, 16);
	__builtin_memcpy(key.dip, remote.ip, 16);
	key.sport = skops->local_port;
	key.dport = bpf_ntohl(skops->remote_port);
	key.family = local.family;
	if (bpf_sock_hash_update(skops, &sock_hash, &key, BPF_ANY) == 0)
		stat_inc(MOSN_STAT_SOCKHASH);
}

SEC("sockops")
int mosn_sockops(struct bpf_sock_ops *skops)
{
	struct mosn_config *cfg = get_config();
	__u32 family = skops->family;

	if (!cfg || (family != AF_INET && family != AF_INET6))
		return 1;

	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB: {
		__u64 cookie = bpf_get_socket_cookie(skops);
		struct mosn_addr *orig = bpf_map_lookup_elem(&orig_by_cookie, &cookie);
		struct mosn_addr client = {};

		if (!orig)
			break;
		fill_addr(&client, family, skops->local_ip4, skops->local_ip6[0],
			  skops->local_ip6[1], skops->local_ip6[2], skops->local_ip6[3],
			  bpf_htons((__u16)skops->local_port));
		bpf_map_update_elem(&orig_by_peer, &client, orig, BPF_ANY);
		bpf_map_delete_elem(&orig_by_cookie, &cookie);
		stat_inc(MOSN_STAT_ESTABLISHED);
		if (cfg->flags & MOSN_F_SOCKMAP)
			add_to_sockhash(skops);
		break;
	}
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		if ((cfg->flags & MOSN_F_SOCKMAP) &&
		    skops->local_port == bpf_ntohs(cfg->outbound_port))
			add_to_sockhash(skops);
		break;
	default:
		break;
	}
	return 1;
}

/* === sk_msg === */

SEC("sk_msg")
int mosn_sk_msg(struct sk_msg_md *msg)
{
	struct mosn_addr local = {}, remote = {};
	struct mosn_sock_key peer = {};
	__u32 family = msg->family;

	fill_addr(&local, family, msg->local_ip4, msg->local_ip6[0], msg->local_ip6[1],
		  msg->local_ip6[2], msg->local_ip6[3], 0);
	fill_addr(&remote, family, msg->remote_ip4, msg->remote_ip6[0], msg->remote_ip6[1],
		  msg->remote_ip6[2], msg->remote_ip6[3], 0);
	/* the peer socket's key: its source is our destination */
	__builtin_memcpy(peer.sip, remote.ip, 16);
	__builtin_memcpy(peer.dip, local.ip, 16);
	peer.sport = bpf_ntohl(msg->remote_port);
	peer.dport = msg->local_port;
	peer.family = local.family;
	if (bpf_msg_redirect_hash(msg, &sock_hash, &peer, BPF_F_INGRESS) == SK_PASS)
		stat_inc(MOSN_STAT_MSG_REDIRECT);
	return SK_PASS;
}

/* === cgroup/getsockopt === */

/* Did the kernel (conntrack) answer with a real NAT destination, i.e. not just the socket's
 * own local address (what conntrack says for a connection nobody rewrote)? Then an iptables
 * REDIRECT is at work for this connection and its answer stands. */
static __always_inline int nat_answered(struct bpf_sockopt *ctx, struct bpf_sock *sk, __s32 level)
{
	__u16 local_port = bpf_htons((__u16)sk->src_port);

	if (level == SOL_IP) {
		struct sockaddr_in *sa = ctx->optval;

		if ((void *)(sa + 1) > ctx->optval_end || ctx->optlen < (__s32)sizeof(*sa))
			return 0;
		return sa->sin_addr.s_addr != sk->src_ip4 || sa->sin_port != local_port;
	} else {
		struct sockaddr_in6 *sa6 = ctx->optval;

		if ((void *)(sa6 + 1) > ctx->optval_end || ctx->optlen < (__s32)sizeof(*sa6))
			return 0;
		return sa6->sin6_addr.in6_u.u6_addr32[0] != sk->src_ip6[0] ||
		       sa6->sin6_addr.in6_u.u6_addr32[1] != sk->src_ip6[1] ||
		       sa6->sin6_addr.in6_u.u6_addr32[2] != sk->src_ip6[2] ||
		       sa6->sin6_addr.in6_u.u6_addr32[3] != sk->src_ip6[3] ||
		       sa6->sin6_port != local_port;
	}
}

SEC("cgroup/getsockopt")
int mosn_getsockopt(struct bpf_sockopt *ctx)
{
	struct mosn_addr peer = {};
	struct mosn_addr *orig;
	struct bpf_sock *sk;
	__s32 level = ctx->level;
	__u32 family;

	if (ctx->optname != SO_ORIGINAL_DST || (level != SOL_IP && level != SOL_IPV6))
		return 1;
#ifdef MOSN_VERIFIER_PITFALL
	if (level == SOL_IP) {
		ctx->optlen = sizeof(struct sockaddr_in); /* merged with the next store: refused */
		ctx->retval = 0;
		return 1;
	}
#endif
	sk = ctx->sk;
	if (!sk)
		return 1;
	if (ctx->retval == 0 && nat_answered(ctx, sk, level))
		return 1;
	family = sk->family;
	if (family != AF_INET && family != AF_INET6)
		return 1;
	fill_addr(&peer, family, sk->dst_ip4, sk->dst_ip6[0], sk->dst_ip6[1], sk->dst_ip6[2],
		  sk->dst_ip6[3], sk->dst_port);
	orig = bpf_map_lookup_elem(&orig_by_peer, &peer);
	if (!orig) {
		stat_inc(MOSN_STAT_ORIG_MISS);
		return 1;
	}

	if (level == SOL_IP) {
		struct sockaddr_in *sa = ctx->optval;

		if (orig->family != AF_INET)
			return 1;
		if ((void *)(sa + 1) > ctx->optval_end)
			return 1;
		__builtin_memset(sa, 0, sizeof(*sa));
		sa->sin_family = AF_INET;
		sa->sin_port = orig->port;
		sa->sin_addr.s_addr = orig->ip[0];
		/* optlen and retval are adjacent s32 fields: see CTX_STORE */
		CTX_STORE(ctx->optlen, (__s32)sizeof(*sa));
		CTX_STORE(ctx->retval, 0);
	} else {
		struct sockaddr_in6 *sa6 = ctx->optval;

		if ((void *)(sa6 + 1) > ctx->optval_end)
			return 1;
		__builtin_memset(sa6, 0, sizeof(*sa6));
		sa6->sin6_family = AF_INET6;
		sa6->sin6_port = orig->port;
		if (orig->family == AF_INET) {
			sa6->sin6_addr.in6_u.u6_addr32[2] = bpf_htonl(0xffff);
			sa6->sin6_addr.in6_u.u6_addr32[3] = orig->ip[0];
		} else {
			sa6->sin6_addr.in6_u.u6_addr32[0] = orig->ip[0];
			sa6->sin6_addr.in6_u.u6_addr32[1] = orig->ip[1];
			sa6->sin6_addr.in6_u.u6_addr32[2] = orig->ip[2];
			sa6->sin6_addr.in6_u.u6_addr32[3] = orig->ip[3];
		}
		CTX_STORE(ctx->optlen, (__s32)sizeof(*sa6));
		CTX_STORE(ctx->retval, 0);
	}
	stat_inc(MOSN_STAT_ORIG_DST);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
