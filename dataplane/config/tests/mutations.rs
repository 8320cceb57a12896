//! Property check without extra dependencies: random type/value mutations of the shipped
//! configs never panic, and whatever loads round-trips through `dump`.

use std::path::Path;

use mosn_config::{parse_value, Format};
use serde_json::{json, Value};

/// Small deterministic PRNG (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(v, p, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(v, p, out);
            }
        }
        _ => {}
    }
}

fn replacements() -> Vec<Value> {
    vec![
        Value::Null,
        json!(true),
        json!(0),
        json!(-1),
        json!(1.5),
        json!(u64::MAX),
        json!(""),
        json!("x"),
        json!("auto"),
        json!("10s"),
        json!("10.0.0.0/33"),
        json!("127.0.0.1:1"),
        json!("X"),
        json!([]),
        json!([null, 1, "a"]),
        json!({}),
        json!({"Name": "c", "unknown": 1}),
    ]
}

#[test]
fn random_mutations_never_panic_and_loaded_configs_round_trip() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut seeds = Vec::new();
    for name in [
        "reference-mesh.json",
        "current-shape.json",
        "quickstart.json",
    ] {
        let loaded = mosn_config::load(&dir.join(name)).expect("shipped config loads");
        seeds.push(loaded.config.dump_with_secrets());
        let text = std::fs::read_to_string(dir.join(name)).expect("readable");
        seeds.push(serde_json::from_str(&text).expect("json"));
    }
    let choices = replacements();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut loaded_ok = 0;
    for round in 0..1000 {
        let mut doc = seeds[round % seeds.len()].clone();
        for _ in 0..=rng.below(3) {
            let mut ptrs = Vec::new();
            pointers(&doc, String::new(), &mut ptrs);
            if ptrs.is_empty() {
                break;
            }
            let ptr = ptrs[rng.below(ptrs.len())].clone();
            if let Some(slot) = doc.pointer_mut(&ptr) {
                *slot = choices[rng.below(choices.len())].clone();
            }
        }
        if let Ok(loaded) = parse_value(&doc) {
            loaded_ok += 1;
            let dumped = loaded.config.dump().to_string();
            let again = mosn_config::parse_str(&dumped, Format::Json)
                .unwrap_or_else(|e| panic!("round {round}: dump does not load: {e}\n{dumped}"));
            assert_eq!(again.config, loaded.config.redacted(), "round {round}");
        }
    }
    assert!(
        loaded_ok > 40,
        "too few mutated configs loaded: {loaded_ok}"
    );
}
