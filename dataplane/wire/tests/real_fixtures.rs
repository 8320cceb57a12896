//! Frames captured from real peers (sofa-bolt-node / sofa-rpc-node, Dubbo node clients and
//! servers), one frame per file in `tests/fixtures/real/*.bin`; the file name starts with
//! `bolt` or `dubbo`. Each must decode as exactly one frame that re-encodes byte-identically;
//! Dubbo requests must also parse as invocations. No files yet: the test passes vacuously.

use std::path::PathBuf;

use bytes::BytesMut;
use mosn_wire::{bolt, dubbo};

fn real_fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("no {}: nothing to check", dir.display());
        return Vec::new();
    };
    let mut files: Vec<(String, Vec<u8>)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&p).unwrap();
            (name, bytes)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn real_peer_frames_round_trip() {
    let files = real_fixtures();
    let mut checked = 0;
    for (name, bytes) in &files {
        let mut buf = BytesMut::from(&bytes[..]);
        if name.starts_with("bolt") {
            let frame = bolt::Frame::decode(&mut buf, usize::MAX)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .unwrap_or_else(|| panic!("{name}: incomplete frame"));
            assert!(buf.is_empty(), "{name}: {} trailing bytes", buf.len());
            let view = bolt::Packet::new_checked(&bytes[..]).unwrap();
            assert_eq!(
                frame.header.encoded_len(),
                usize::from(view.header_len()),
                "{name}: header map had Java-null entries"
            );
            assert_eq!(
                &frame.to_bytes().unwrap()[..],
                &bytes[..],
                "{name}: re-encode"
            );
        } else if name.starts_with("dubbo") {
            let frame = dubbo::Frame::decode(&mut buf, usize::MAX)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .unwrap_or_else(|| panic!("{name}: incomplete frame"));
            assert!(buf.is_empty(), "{name}: {} trailing bytes", buf.len());
            assert_eq!(
                &frame.to_bytes().unwrap()[..],
                &bytes[..],
                "{name}: re-encode"
            );
            if frame.is_request() && !frame.is_event() {
                let inv = dubbo::parse_invocation(&frame.body)
                    .unwrap_or_else(|e| panic!("{name}: invocation: {e}"));
                assert!(!inv.method.is_empty(), "{name}: no method");
            }
        } else {
            panic!("{name}: the file name must start with bolt or dubbo");
        }
        checked += 1;
    }
    eprintln!("checked {checked} real-peer frames");
}
