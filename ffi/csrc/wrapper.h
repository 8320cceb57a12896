/* The DPDK headers bindgen reads (the allowlist in build.rs picks what it keeps). */
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include "shim.h"
