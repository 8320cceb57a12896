//! `choose()` cost of every load balancer over 10 and 100 hosts.
//!
//! Hosts carry mixed weights (1..=4) and random active request / connection counts, so the
//! weighted paths (EDF table, alias draws, per-weight load comparison) are the ones measured.
//! One host in ten is unhealthy in the `unhealthy` group, which exercises the skip paths.
//!
//! Run: `cargo bench -p mosn-bench --bench lb`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mosn_proxy::host::{Host, HostSpec};
use mosn_proxy::lb::{new_lb, LbContext, LbType};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const SIZES: [usize; 2] = [10, 100];

fn hosts(n: usize, rng: &mut SmallRng) -> Arc<[Arc<Host>]> {
    (0..n)
        .map(|i| {
            let address: SocketAddr = format!("10.1.{}.{}:8080", i / 250, i % 250 + 1)
                .parse()
                .expect("address");
            let h = Host::detached(HostSpec {
                address,
                hostname: address.to_string(),
                weight: 1 + (i as u32 % 4),
                metadata: BTreeMap::new(),
                tls_disable: false,
            });
            h.stats.rq_active.set(rng.gen_range(0..50));
            h.stats.cx_active.set(rng.gen_range(0..20));
            Arc::new(h)
        })
        .collect()
}

fn keys(rng: &mut SmallRng) -> Vec<[u8; 16]> {
    (0..1024).map(|_| rng.gen()).collect()
}

fn bench_group(c: &mut Criterion, group_name: &str, unhealthy: bool) {
    let mut rng = SmallRng::seed_from_u64(1);
    let keys = keys(&mut rng);
    let mut group = c.benchmark_group(group_name);
    for n in SIZES {
        let hs = hosts(n, &mut rng);
        if unhealthy {
            for h in hs.iter().step_by(10) {
                h.set_healthy(false);
            }
        }
        for kind in LbType::ALL {
            let lb = new_lb(kind, hs.clone(), 42);
            let dst = hs[n / 2].address();
            let mut i = 0usize;
            group.bench_with_input(BenchmarkId::new(kind.mosn_name(), n), &n, |b, _| {
                b.iter(|| {
                    i = (i + 1) & 1023;
                    let ctx = LbContext {
                        original_dst: Some(dst),
                        hash_key: Some(&keys[i]),
                        avoid: &[],
                        metadata_match: None,
                    };
                    black_box(lb.choose(black_box(&ctx)))
                })
            });
        }
    }
    group.finish();
}

fn choose(c: &mut Criterion) {
    bench_group(c, "lb_choose", false);
    bench_group(c, "lb_choose_unhealthy", true);
}

/// Building a balancer per cluster snapshot: the Maglev table and the EDF table dominate.
fn build(c: &mut Criterion) {
    let mut rng = SmallRng::seed_from_u64(2);
    let mut group = c.benchmark_group("lb_build");
    for n in SIZES {
        let hs = hosts(n, &mut rng);
        for kind in [
            LbType::WeightedRoundRobin,
            LbType::LeastRequest,
            LbType::Maglev,
        ] {
            group.bench_with_input(BenchmarkId::new(kind.mosn_name(), n), &n, |b, _| {
                b.iter(|| black_box(new_lb(kind, hs.clone(), 42)))
            });
        }
    }
    group.finish();
}

/// A connect retry that avoids the host that just failed.
fn retry(c: &mut Criterion) {
    let mut rng = SmallRng::seed_from_u64(3);
    let hs = hosts(100, &mut rng);
    let avoid = [hs[7].address()];
    let mut group = c.benchmark_group("lb_choose_avoid");
    for kind in [LbType::RoundRobin, LbType::LeastRequest, LbType::Maglev] {
        let lb = new_lb(kind, hs.clone(), 42);
        group.bench_function(kind.mosn_name(), |b| {
            b.iter(|| {
                let ctx = LbContext::new()
                    .with_hash_key(b"user-42")
                    .with_avoid(&avoid);
                black_box(lb.choose(black_box(&ctx)))
            })
        });
    }
    group.finish();
}

/// An original destination that is not a host of the snapshot: a detached host is made.
fn original_dst_miss(c: &mut Criterion) {
    let lb = new_lb(LbType::OriginalDst, Arc::new([]), 42);
    let dst: SocketAddr = "192.0.2.1:443".parse().expect("address");
    c.bench_function("lb_choose_original_dst_detached", |b| {
        b.iter(|| {
            let ctx = LbContext::new().with_original_dst(dst);
            black_box(lb.choose(black_box(&ctx)))
        })
    });
}

criterion_group!(benches, choose, build, retry, original_dst_miss);
criterion_main!(benches);
