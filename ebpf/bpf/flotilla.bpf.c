// SPDX-License-Identifier: Apache-2.0
//
// flotilla's socket load balancer (SPEC §7): cgroup sock_addr hooks that redirect a connection to a
// multi-cluster service's VIP:port to one of its backends, inside the kernel, before any packet
// exists, and translate the backend back to the VIP for the application.
//
//   connect4      TCP and connected UDP: VIP:port -> backend (TCP: random slot; UDP: by socket cookie)
//   sendmsg4      unconnected UDP: the same per datagram, by socket cookie (sticky per socket)
//   recvmsg4      unconnected UDP: the source of a datagram from a backend reads as the VIP
//   getpeername4  getpeername() on a redirected socket returns the VIP
//
// Maps (layouts mirrored byte for byte in ebpf/src/datapath.rs; sizes are asserted below and
// checked again by aya when the agent opens the maps):
//
//   flotilla_gen      ARRAY[1]: the active generation (0 or 1). The only word flipped on an update.
//   flotilla_svc      HASH (vip, port, proto, gen) -> (frontend id, slots per tier)
//   flotilla_slot     HASH (frontend id, gen, tier, slot) -> backend id
//   flotilla_be       HASH (backend id, gen) -> (address, port)
//   flotilla_rev      LRU_HASH (socket cookie, backend address, port) -> (VIP, port)
//   flotilla_state    ARRAY[1]: the applied document's version and hash (the agent's, not read here)
//   flotilla_stats    PERCPU_ARRAY: counters for the agent's metrics
//   flotilla_barrier  ARRAY_OF_MAPS[1]: never read; the agent updates it to wait for an RCU grace
//                     period (the kernel waits for running programs on every map-in-map update)
//
// Addresses and ports are in network byte order, everything else in host order. The agent writes a
// new document into the inactive generation (backends, then slots, then services), flips
// flotilla_gen, waits on flotilla_barrier, then deletes the old generation (services first). A
// program reads the generation once, so it sees one whole document or the other.

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>

#define MAX_TIERS 4
#define MAX_SVC (2 * 65536)
#define MAX_SLOTS (2 * 524288)
#define MAX_BACKENDS (2 * 262144)
#define MAX_REV 131072

struct svc_key {
	__u32 vip; // network order
	__u16 port; // network order
	__u8 proto; // IPPROTO_TCP or IPPROTO_UDP
	__u8 gen;
};

struct svc_val {
	__u32 id; // the frontend's id: the key of its slots
	__u16 nslots[MAX_TIERS]; // slots per priority tier; 0 = empty tier
	__u32 flags; // reserved
};

struct slot_key {
	__u32 id;
	__u8 gen;
	__u8 tier;
	__u16 slot;
};

struct be_key {
	__u32 id;
	__u32 gen;
};

struct be_val {
	__u32 addr; // network order
	__u16 port; // network order
	__u16 flags; // reserved
};

struct rev_key {
	__u64 cookie;
	__u32 addr; // backend, network order
	__u16 port; // network order
	__u16 pad;
};

struct rev_val {
	__u32 vip; // network order
	__u16 port; // network order
	__u16 pad;
};

struct state_val {
	__u64 version;
	__u8 hash[32];
};

_Static_assert(sizeof(struct svc_key) == 8, "svc_key");
_Static_assert(sizeof(struct svc_val) == 16, "svc_val");
_Static_assert(sizeof(struct slot_key) == 8, "slot_key");
_Static_assert(sizeof(struct be_key) == 8, "be_key");
_Static_assert(sizeof(struct be_val) == 8, "be_val");
_Static_assert(sizeof(struct rev_key) == 16, "rev_key");
_Static_assert(sizeof(struct rev_val) == 8, "rev_val");
_Static_assert(sizeof(struct state_val) == 40, "state_val");

enum stat {
	STAT_CONNECT = 0, // connect() redirected to a backend
	STAT_SENDMSG = 1, // datagram redirected to a backend
	STAT_NO_BACKEND = 2, // refused: the frontend has no backend in any tier
	STAT_REVERSE = 3, // getpeername/recvmsg address translated back to a VIP
	STAT_MAX = 4,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} flotilla_gen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SVC);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct svc_key);
	__type(value, struct svc_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} flotilla_svc SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SLOTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct slot_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} flotilla_slot SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_BACKENDS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct be_key);
	__type(value, struct be_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} flotilla_be SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_REV);
	__type(key, struct rev_key);
	__type(value, struct rev_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} flotilla_rev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct state_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} flotilla_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} flotilla_stats SEC(".maps");

struct barrier_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct barrier_inner);
} flotilla_barrier SEC(".maps");

static __always_inline void count(__u32 stat)
{
	__u64 *n = bpf_map_lookup_elem(&flotilla_stats, &stat);
	if (n)
		*n += 1;
}

// A 32-bit pick from the socket cookie and the frontend id (Fibonacci hashing): every datagram of a
// socket lands on the same slot while the frontend's table is unchanged.
static __always_inline __u32 sticky_pick(__u64 cookie, __u32 id)
{
	__u64 x = (cookie ^ ((__u64)id << 32)) * 0x9E3779B97F4A7C15ULL;
	return (__u32)(x >> 32);
}

// Rewrites ctx's destination when it is a frontend. Returns 1 to let the call proceed (rewritten or
// not ours), 0 to refuse it (EPERM): a frontend with no backend in any tier, or a generation that
// is inconsistent (never expected; refusing is safer than sending traffic to a VIP).
static __always_inline int redirect(struct bpf_sock_addr *ctx, __u8 proto, int sticky, __u32 stat)
{
	__u32 zero = 0;
	__u32 *active = bpf_map_lookup_elem(&flotilla_gen, &zero);
	if (!active)
		return 1;
	__u8 gen = (__u8)(*active & 1);

	struct svc_key sk = {};
	sk.vip = ctx->user_ip4;
	sk.port = (__u16)ctx->user_port;
	sk.proto = proto;
	sk.gen = gen;
	struct svc_val *svc = bpf_map_lookup_elem(&flotilla_svc, &sk);
	if (!svc)
		return 1;

	__u32 tier = MAX_TIERS;
	__u32 nslots = 0;
#pragma unroll
	for (__u32 t = 0; t < MAX_TIERS; t++) {
		if (tier == MAX_TIERS && svc->nslots[t] > 0) {
			tier = t;
			nslots = svc->nslots[t];
		}
	}
	if (tier == MAX_TIERS || nslots == 0) {
		count(STAT_NO_BACKEND);
		return 0;
	}

	__u64 cookie = bpf_get_socket_cookie(ctx);
	__u32 r = sticky ? sticky_pick(cookie, svc->id) : bpf_get_prandom_u32();

	struct slot_key slk = {};
	slk.id = svc->id;
	slk.gen = gen;
	slk.tier = (__u8)tier;
	slk.slot = (__u16)(r % nslots);
	__u32 *be_id = bpf_map_lookup_elem(&flotilla_slot, &slk);
	if (!be_id)
		return 0;
	struct be_key bk = {};
	bk.id = *be_id;
	bk.gen = gen;
	struct be_val *be = bpf_map_lookup_elem(&flotilla_be, &bk);
	if (!be)
		return 0;

	struct rev_key rk = {};
	rk.cookie = cookie;
	rk.addr = be->addr;
	rk.port = be->port;
	struct rev_val rv = {};
	rv.vip = sk.vip;
	rv.port = sk.port;
	struct rev_val *old = bpf_map_lookup_elem(&flotilla_rev, &rk);
	if (!old || old->vip != rv.vip || old->port != rv.port)
		bpf_map_update_elem(&flotilla_rev, &rk, &rv, BPF_ANY);

	ctx->user_ip4 = be->addr;
	ctx->user_port = (__u32)be->port;
	count(stat);
	return 1;
}

// Translates a backend address in ctx back to the VIP it was chosen for, if this socket was
// redirected to it.
static __always_inline int reverse(struct bpf_sock_addr *ctx)
{
	struct rev_key rk = {};
	rk.cookie = bpf_get_socket_cookie(ctx);
	rk.addr = ctx->user_ip4;
	rk.port = (__u16)ctx->user_port;
	struct rev_val *rv = bpf_map_lookup_elem(&flotilla_rev, &rk);
	if (rv) {
		ctx->user_ip4 = rv->vip;
		ctx->user_port = (__u32)rv->port;
		count(STAT_REVERSE);
	}
	return 1;
}

SEC("cgroup/connect4")
int flotilla_connect4(struct bpf_sock_addr *ctx)
{
	if (ctx->protocol == IPPROTO_TCP)
		return redirect(ctx, IPPROTO_TCP, 0, STAT_CONNECT);
	if (ctx->protocol == IPPROTO_UDP)
		return redirect(ctx, IPPROTO_UDP, 1, STAT_CONNECT);
	return 1;
}

SEC("cgroup/sendmsg4")
int flotilla_sendmsg4(struct bpf_sock_addr *ctx)
{
	if (ctx->protocol != IPPROTO_UDP)
		return 1;
	return redirect(ctx, IPPROTO_UDP, 1, STAT_SENDMSG);
}

SEC("cgroup/recvmsg4")
int flotilla_recvmsg4(struct bpf_sock_addr *ctx)
{
	return reverse(ctx);
}

SEC("cgroup/getpeername4")
int flotilla_getpeername4(struct bpf_sock_addr *ctx)
{
	return reverse(ctx);
}

char LICENSE[] SEC("license") = "Apache-2.0";
