//! A bounded, deterministic stand-in for the cargo-fuzz targets (which need nightly): every
//! entry point of `mosn_wire::fuzz` is fed the golden fixtures, their truncations, byte flips
//! and splices, and random bytes from a fixed-seed generator (tens of thousands of inputs per
//! target). Any panic fails the test and prints the input.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

/// xorshift64*: small, deterministic, good enough to pick bytes and positions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// Bytes that matter to the decoders: tags, protocol codes, length extremes.
const INTERESTING: &[u8] = &[
    0x00, 0x01, 0x02, 0x03, 0x1f, 0x20, 0x30, 0x43, 0x48, 0x4d, 0x4e, 0x4f, 0x51, 0x52, 0x53, 0x55,
    0x56, 0x57, 0x58, 0x5a, 0x60, 0x70, 0x78, 0x7f, 0x80, 0x90, 0xbf, 0xc8, 0xd4, 0xda, 0xbb, 0xed,
    0xf0, 0xff,
];

fn inputs(seeds: &[(&'static str, Vec<u8>)], prefixes: &[&[u8]], rng_seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng(rng_seed);
    let mut out: Vec<Vec<u8>> = Vec::new();
    for (_, seed) in seeds {
        out.push(seed.clone());
        let small = seed.len() <= 4096;
        // Truncations.
        if small {
            out.extend((0..seed.len()).map(|n| seed[..n].to_vec()));
        } else {
            out.extend((0..8).map(|_| seed[..rng.below(seed.len())].to_vec()));
        }
        // Byte flips and interesting bytes at every position (sampled for big seeds, which
        // are slow to walk in a debug build).
        let positions: Vec<usize> = if small {
            (0..seed.len()).collect()
        } else {
            (0..8).map(|_| rng.below(seed.len())).collect()
        };
        for at in positions {
            for m in [0x01u8, 0x80, 0xff] {
                let mut v = seed.clone();
                v[at] ^= m;
                out.push(v);
            }
            for _ in 0..3 {
                let mut v = seed.clone();
                v[at] = INTERESTING[rng.below(INTERESTING.len())];
                out.push(v);
            }
        }
        // A few random multi-byte mutations.
        for _ in 0..if small { 200 } else { 8 } {
            let mut v = seed.clone();
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(v.len());
                v[at] = rng.byte();
            }
            out.push(v);
        }
    }
    // Splices: a prefix of one seed followed by a suffix of another (or the same).
    let small: Vec<&Vec<u8>> = seeds
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.len() <= 4096)
        .collect();
    for _ in 0..3000 {
        let a = small[rng.below(small.len())];
        let b = small[rng.below(small.len())];
        let mut v = a[..rng.below(a.len() + 1)].to_vec();
        v.extend_from_slice(&b[rng.below(b.len() + 1)..]);
        out.push(v);
    }
    // Concatenations of whole seeds (several frames in one buffer).
    for _ in 0..500 {
        let mut v = Vec::new();
        for _ in 0..1 + rng.below(4) {
            v.extend_from_slice(small[rng.below(small.len())]);
        }
        out.push(v);
    }
    // Random bytes, half of them behind a protocol prefix.
    for i in 0..15_000 {
        let mut v = Vec::new();
        if i % 2 == 0 {
            v.extend_from_slice(prefixes[rng.below(prefixes.len())]);
        }
        let len = rng.below(96);
        v.extend((0..len).map(|_| {
            if rng.below(4) == 0 {
                INTERESTING[rng.below(INTERESTING.len())]
            } else {
                rng.byte()
            }
        }));
        out.push(v);
    }
    out
}

fn run(target: &str, f: fn(&[u8]), inputs: &[Vec<u8>]) {
    assert!(
        inputs.len() >= 20_000,
        "{target}: only {} inputs",
        inputs.len()
    );
    for input in inputs {
        if catch_unwind(AssertUnwindSafe(|| f(input))).is_err() {
            panic!("{target}: finding on input {input:02x?}");
        }
    }
    eprintln!("{target}: {} inputs", inputs.len());
}

#[test]
fn fuzz_smoke_bolt() {
    let mut seeds = common::bolt_all();
    seeds.push(("dubbo_request", common::dubbo_request()));
    let prefixes: &[&[u8]] = &[
        &[0x01, 0x01, 0x00, 0x01],
        &[0x01, 0x00, 0x00, 0x02],
        &[0x02, 0x02, 0x01, 0x00, 0x01],
        &[0x02, 0x02, 0x00, 0x00, 0x02],
        &[0x01, 0x02],
    ];
    run(
        "bolt",
        mosn_wire::fuzz::bolt,
        &inputs(&seeds, prefixes, 0x0b01_7b01),
    );
}

#[test]
fn fuzz_smoke_dubbo() {
    let prefixes: &[&[u8]] = &[
        &[0xda, 0xbb, 0xc2, 0x00],
        &[0xda, 0xbb, 0x02, 0x14],
        &[0xda, 0xbb, 0xe2],
        &[0x05, b'2', b'.', b'0', b'.', b'2'],
    ];
    run(
        "dubbo",
        mosn_wire::fuzz::dubbo,
        &inputs(&common::dubbo_all(), prefixes, 0xd0bb_0d0b),
    );
}

#[test]
fn fuzz_smoke_hessian2() {
    let prefixes: &[&[u8]] = &[
        b"H",
        b"M",
        b"C",
        b"R",
        b"S",
        &[0x43, 0x01, b'A', 0x91, 0x01, b'f', 0x60],
        &[0x55, 0x01, b't'],
        &[0x57],
    ];
    run(
        "hessian2",
        mosn_wire::fuzz::hessian2,
        &inputs(&common::hessian2_all(), prefixes, 0x4e55_1a72),
    );
}
