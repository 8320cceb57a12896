//! cargo-fuzz target: `mosn_wire::fuzz::dubbo` (see its doc for the properties checked).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mosn_wire::fuzz::dubbo(data);
});
