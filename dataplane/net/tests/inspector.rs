//! The TLS inspector against ClientHellos captured from real clients (`openssl s_client`,
//! `curl`) at test time, re-fragmented, fed byte by byte and mutated, and `inspect_stream`
//! over real sockets on 127.0.0.1. A missing client binary skips its captures loudly.

use std::io::{ErrorKind, Read};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mosn_net::inspector::{
    inspect, inspect_stream, inspect_with_limit, ClientHelloInfo, InspectError, Inspection,
    MAX_HELLO,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A deterministic xorshift64* generator: the tests need no `rand`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A ClientHello captured from a real client, with what the client was asked to send.
struct Captured {
    client: &'static str,
    bytes: Vec<u8>,
}

/// Reads one ClientHello off `s`, framing it independently of the inspector: records until
/// the first handshake message is complete.
fn read_hello(s: &mut std::net::TcpStream) -> Vec<u8> {
    let (mut all, mut hs) = (Vec::new(), Vec::new());
    loop {
        let mut header = [0u8; 5];
        s.read_exact(&mut header).expect("record header");
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let mut fragment = vec![0u8; len];
        s.read_exact(&mut fragment).expect("record fragment");
        all.extend_from_slice(&header);
        all.extend_from_slice(&fragment);
        hs.extend_from_slice(&fragment);
        if hs.len() >= 4 {
            let want =
                4 + (usize::from(hs[1]) << 16 | usize::from(hs[2]) << 8 | usize::from(hs[3]));
            if hs.len() >= want {
                return all;
            }
        }
    }
}

/// Runs `program args(port)` against a plain listener that records the first ClientHello and
/// closes. `None` when the program is not installed.
fn capture(program: &str, args: impl Fn(u16) -> Vec<String>) -> Option<Vec<u8>> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut child = match Command::new(program)
        .args(args(port))
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            eprintln!("SKIPPED: `{program}` is not installed; its ClientHellos are not tested");
            return None;
        }
        r => r.unwrap(),
    };
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!("{program} exited before connecting: {status}");
                }
                assert!(Instant::now() < deadline, "{program} did not connect");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let hello = read_hello(&mut stream);
    drop(stream);
    // Ours, by its id; it fails the handshake and exits on its own anyway.
    let _ = child.kill();
    let _ = child.wait();
    Some(hello)
}

fn openssl(extra: &'static [&'static str]) -> impl Fn(u16) -> Vec<String> {
    move |port| {
        let mut a: Vec<String> = ["s_client", "-connect"].map(String::from).to_vec();
        a.push(format!("127.0.0.1:{port}"));
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    }
}

/// Every capture, taken once per test binary.
fn captures() -> &'static [Captured] {
    static CAPTURES: OnceLock<Vec<Captured>> = OnceLock::new();
    CAPTURES.get_or_init(|| {
        let runs: [(&'static str, &'static [&'static str]); 5] = [
            (
                "openssl",
                &["-servername", "example.com", "-alpn", "h2,http/1.1"],
            ),
            (
                "openssl -tls1_2",
                &[
                    "-tls1_2",
                    "-servername",
                    "tls12.example.com",
                    "-alpn",
                    "h2,http/1.1",
                ],
            ),
            (
                "openssl -tls1_3",
                &[
                    "-tls1_3",
                    "-servername",
                    "tls13.example.com",
                    "-alpn",
                    "h2,http/1.1",
                ],
            ),
            (
                "openssl -noservername",
                &["-noservername", "-alpn", "h2,http/1.1"],
            ),
            ("openssl mixed case", &["-servername", "WWW.Example.COM"]),
        ];
        let mut out = Vec::new();
        for (client, args) in runs {
            if let Some(bytes) = capture("openssl", openssl(args)) {
                out.push(Captured { client, bytes });
            }
        }
        let curl = capture("curl", |port| {
            [
                "-sk",
                "--http2",
                "--noproxy",
                "*",
                "--max-time",
                "20",
                "-o",
                "/dev/null",
                "--resolve",
                &format!("api.example.test:{port}:127.0.0.1"),
                &format!("https://api.example.test:{port}/"),
            ]
            .map(String::from)
            .to_vec()
        });
        if let Some(bytes) = curl {
            out.push(Captured {
                client: "curl --http2",
                bytes,
            });
        }
        out
    })
}

fn captured(client: &str) -> Option<&'static Captured> {
    captures().iter().find(|c| c.client == client)
}

fn tls(buf: &[u8]) -> ClientHelloInfo {
    match inspect(buf) {
        Ok(Inspection::Tls(h)) => h,
        other => panic!("expected Tls, got {other:?}"),
    }
}

/// A small hand-built hello, for when no client binary is installed.
fn synthetic_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[7; 32]);
    body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
    let exts: &[u8] = &[
        0, 0, 0, 8, 0, 6, 0, 0, 3, b'a', b'.', b'b', // server_name "a.b"
        0, 16, 0, 5, 0, 3, 2, b'h', b'2', // ALPN h2
    ];
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(exts);
    let mut hs = vec![1, 0, 0, body.len() as u8];
    hs.extend(body);
    let mut r = vec![0x16, 3, 1, 0, hs.len() as u8];
    r.extend(hs);
    r
}

/// The handshake bytes of a (possibly multi-record) hello, re-framed into records whose sizes
/// come from `size`.
fn refragment(hello: &[u8], mut size: impl FnMut() -> usize) -> Vec<u8> {
    let mut hs = Vec::new();
    let mut at = 0;
    while at + 5 <= hello.len() {
        let len = usize::from(u16::from_be_bytes([hello[at + 3], hello[at + 4]]));
        hs.extend_from_slice(&hello[at + 5..at + 5 + len]);
        at += 5 + len;
    }
    let (mut out, mut at) = (Vec::new(), 0);
    while at < hs.len() {
        let n = size().clamp(1, hs.len() - at);
        out.extend_from_slice(&[0x16, 0x03, 0x01]);
        out.extend_from_slice(&(n as u16).to_be_bytes());
        out.extend_from_slice(&hs[at..at + n]);
        at += n;
    }
    out
}

#[test]
fn real_client_hellos() {
    let all = captures();
    for c in all {
        let h = tls(&c.bytes);
        eprintln!(
            "{:<22} {:>4} bytes  sni={:?} alpn={:?} legacy={:#06x} supported_versions={:04x?} \
             suites={} extensions={:?}",
            c.client,
            c.bytes.len(),
            h.sni,
            h.alpn,
            h.legacy_version,
            h.supported_versions,
            h.cipher_suites.len(),
            h.extensions,
        );
        assert_eq!(h.record_bytes, c.bytes.len(), "{}", c.client);
        assert_eq!(h.legacy_version, 0x0303, "{}", c.client);
    }
    let h2_h1 = ["h2", "http/1.1"];
    if let Some(c) = captured("openssl") {
        let h = tls(&c.bytes);
        assert_eq!(h.sni.as_deref(), Some("example.com"));
        assert_eq!(h.alpn, h2_h1);
        // OpenSSL 3.0 offers TLS 1.3 down to its configured minimum (1.0 here).
        assert_eq!(h.supported_versions[..2], [0x0304, 0x0303]);
        assert_eq!(h.max_version(), 0x0304);
    }
    if let Some(c) = captured("openssl -tls1_2") {
        let h = tls(&c.bytes);
        assert_eq!(h.sni.as_deref(), Some("tls12.example.com"));
        assert_eq!(h.alpn, h2_h1);
        assert!(
            h.supported_versions.is_empty(),
            "{:x?}",
            h.supported_versions
        );
        assert_eq!(h.max_version(), 0x0303);
    }
    if let Some(c) = captured("openssl -tls1_3") {
        let h = tls(&c.bytes);
        assert_eq!(h.sni.as_deref(), Some("tls13.example.com"));
        assert_eq!(h.alpn, h2_h1);
        assert_eq!(h.supported_versions, [0x0304]);
    }
    if let Some(c) = captured("openssl -noservername") {
        let h = tls(&c.bytes);
        assert_eq!(h.sni, None);
        assert!(!h.extensions.contains(&0));
        assert_eq!(h.alpn, h2_h1);
    }
    if let Some(c) = captured("openssl mixed case") {
        let h = tls(&c.bytes);
        assert_eq!(h.sni.as_deref(), Some("www.example.com"));
        assert!(h.alpn.is_empty());
    }
    if let Some(c) = captured("curl --http2") {
        let h = tls(&c.bytes);
        assert_eq!(h.sni.as_deref(), Some("api.example.test"));
        assert_eq!(h.alpn, h2_h1);
        assert!(h.supported_versions.contains(&0x0304));
    }
}

/// Every prefix of `hello` is `NeedMore`, never an error, never `Plaintext`; the whole is `Tls`
/// with the same fields as `want`.
fn assert_prefixes(hello: &[u8], want: &ClientHelloInfo, what: &str) {
    for n in 0..hello.len() {
        match inspect(&hello[..n]) {
            Ok(Inspection::NeedMore) => {}
            other => panic!("{what}: prefix of {n}/{} bytes: {other:?}", hello.len()),
        }
    }
    let got = tls(hello);
    assert_eq!(got.record_bytes, hello.len(), "{what}");
    let got = ClientHelloInfo {
        record_bytes: want.record_bytes,
        ..got
    };
    assert_eq!(&got, want, "{what}");
}

#[test]
fn split_across_records_and_reads() {
    let mut corpus: Vec<(&str, Vec<u8>)> = captures()
        .iter()
        .map(|c| (c.client, c.bytes.clone()))
        .collect();
    corpus.push(("synthetic", synthetic_hello()));
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for (client, hello) in &corpus {
        let want = tls(hello);
        assert_prefixes(hello, &want, client);
        for (label, split) in [
            ("1-byte records", refragment(hello, || 1)),
            ("5-byte records", refragment(hello, || 5)),
            ("random records", refragment(hello, || 1 + rng.below(200))),
            ("3-byte records", refragment(hello, || 3)),
        ] {
            assert!(split.len() <= MAX_HELLO);
            assert_prefixes(&split, &want, &format!("{client}, {label}"));
        }
    }
}

#[test]
fn oversized_hello_is_too_large() {
    let hello = captured("openssl")
        .map(|c| c.bytes.clone())
        .unwrap_or_else(synthetic_hello);
    // The same hello in 1-byte records, under a cap smaller than that.
    let split = refragment(&hello, || 1);
    assert!(inspect(&split).is_ok());
    let e = inspect_with_limit(&split, hello.len() * 3).unwrap_err();
    assert!(matches!(e, InspectError::TooLarge), "{e}");
    // A handshake header declaring 20 000 bytes: refused as soon as the length is seen.
    let head = [0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x4e, 0x20];
    assert!(matches!(inspect(&head), Err(InspectError::TooLarge)));
    // A hello grown past 16 KiB with a padding extension (type 21), in two records.
    let mut grown = Vec::new(); // the handshake message
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[9; 32]);
    body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
    let pad = 17_000usize;
    body.extend_from_slice(&((pad + 4) as u16).to_be_bytes());
    body.extend_from_slice(&[0, 21]);
    body.extend_from_slice(&(pad as u16).to_be_bytes());
    body.extend(std::iter::repeat_n(0u8, pad));
    let len = (body.len() as u32).to_be_bytes();
    grown.extend_from_slice(&[1, len[1], len[2], len[3]]);
    grown.extend(body);
    let mut records = Vec::new();
    for chunk in grown.chunks(16_384) {
        records.extend_from_slice(&[0x16, 0x03, 0x01]);
        records.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        records.extend_from_slice(chunk);
    }
    assert!(matches!(inspect(&records), Err(InspectError::TooLarge)));
    assert!(matches!(
        inspect(&records[..9]),
        Err(InspectError::TooLarge)
    ));
    // With a larger configured cap it parses.
    assert!(matches!(
        inspect_with_limit(&records, 32 * 1024),
        Ok(Inspection::Tls(_))
    ));
}

#[test]
fn garbage_after_0x16_and_plaintext_protocols() {
    for garbage in [
        &b"\x16GET / HTTP/1.1\r\n"[..],
        b"\x16\x00\x00\x00\x00\x00",
        b"\x16\x03\x01\x00\x00",
        b"\x16\x03\x03\x00\x05\x02\x00\x00\x01\x00",
    ] {
        let e = inspect(garbage).unwrap_err();
        assert!(matches!(e, InspectError::Malformed(_)), "{garbage:?}: {e}");
    }
    let h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let bolt = [0x01, 0x01, 0x00, 0x01, 0x01];
    let dubbo = [0xda, 0xbb, 0xc2, 0x00];
    for plain in [&b"GET / HTTP/1.1\r\n\r\n"[..], h2, &bolt, &dubbo] {
        for n in 1..=plain.len() {
            assert_eq!(inspect(&plain[..n]).unwrap(), Inspection::Plaintext);
        }
    }
}

/// Byte flips, truncations, splices and insertions of the captured hellos: `inspect` must
/// never panic, and whatever it calls TLS must carry a clean server name.
#[test]
fn fuzz_smoke() {
    let mut corpus: Vec<Vec<u8>> = captures().iter().map(|c| c.bytes.clone()).collect();
    corpus.push(synthetic_hello());
    let split: Vec<Vec<u8>> = corpus.iter().map(|h| refragment(h, || 7)).collect();
    corpus.extend(split);
    let mut rng = Rng(0x00c0_ffee_d00d_f00d);
    let (mut tls_seen, mut errors, mut more) = (0, 0, 0);
    for i in 0..20_000 {
        let base = &corpus[rng.below(corpus.len())];
        let mut x = base.clone();
        match i % 8 {
            0 => {
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(x.len());
                    x[at] ^= 1 << rng.below(8);
                }
            }
            1 => x.truncate(rng.below(x.len() + 1)),
            2 => {
                let other = &corpus[rng.below(corpus.len())];
                let (a, b) = (rng.below(x.len() + 1), rng.below(other.len() + 1));
                x.truncate(a);
                x.extend_from_slice(&other[b..]);
            }
            3 => {
                let at = rng.below(x.len() + 1);
                let junk: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next() as u8).collect();
                x.splice(at..at, junk);
            }
            4 => {
                let at = rng.below(x.len());
                x[at] = [0x00, 0xff, 0x01, 0x7f, 0x80][rng.below(5)];
            }
            5 => {
                // Length fields are u8/u16 pairs: bump a random pair.
                let at = rng.below(x.len().saturating_sub(1));
                let v = u16::from_be_bytes([x[at], x[at + 1]]).wrapping_add(rng.below(5) as u16);
                x[at..at + 2].copy_from_slice(&v.wrapping_sub(2).to_be_bytes());
            }
            6 => {
                let n = rng.below(64);
                x = std::iter::once(0x16)
                    .chain((0..n).map(|_| rng.next() as u8))
                    .collect();
            }
            _ => {
                let at = rng.below(x.len());
                x.remove(at);
            }
        }
        match inspect(&x) {
            Ok(Inspection::Tls(h)) => {
                tls_seen += 1;
                if let Some(sni) = &h.sni {
                    assert!(!sni.is_empty() && !sni.contains('\0'));
                    assert_eq!(sni, &sni.to_ascii_lowercase());
                }
                assert!(h.alpn.iter().all(|p| !p.is_empty()));
            }
            Ok(Inspection::NeedMore) => more += 1,
            Ok(Inspection::Plaintext) => assert_ne!(x.first(), Some(&0x16)),
            Err(_) => errors += 1,
        }
        let _ = inspect_with_limit(&x, rng.below(600));
    }
    eprintln!("fuzz: {tls_seen} tls, {more} need-more, {errors} errors of 20000");
    assert!(tls_seen > 0 && errors > 0 && more > 0);
}

async fn listener() -> (tokio::net::TcpListener, std::net::SocketAddr) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

#[tokio::test]
async fn one_plaintext_byte_is_classified_at_once() {
    for first in [b'G', 0x01, 0xda] {
        let (l, addr) = listener().await;
        let client = tokio::spawn(async move {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(&[first]).await.unwrap();
            // Wait for the server; say nothing more.
            let mut b = [0u8; 1];
            let _ = c.read(&mut b).await;
        });
        let (mut conn, _) = l.accept().await.unwrap();
        let started = Instant::now();
        let (verdict, seen) = inspect_stream(&mut conn, Duration::from_secs(10), MAX_HELLO)
            .await
            .unwrap();
        assert_eq!(verdict, Inspection::Plaintext);
        assert_eq!(&seen[..], [first]);
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(conn);
        client.await.unwrap();
    }
}

#[tokio::test]
async fn slow_tls_client_is_classified_after_the_last_piece() {
    let hello = captured("curl --http2")
        .or_else(|| captured("openssl"))
        .map(|c| c.bytes.clone())
        .unwrap_or_else(synthetic_hello);
    // Pieces that cut the record header, the handshake header and the extensions.
    let cuts = [0, 1, 3, 7, 60, hello.len() - 1, hello.len()];
    let (l, addr) = listener().await;
    let last_sent = Arc::new(AtomicBool::new(false));
    let flag = last_sent.clone();
    let to_send = hello.clone();
    let (decided, wait_decided) = tokio::sync::oneshot::channel::<()>();
    let client = tokio::spawn(async move {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        for w in cuts.windows(2) {
            if w[1] == to_send.len() {
                flag.store(true, Ordering::SeqCst);
            }
            c.write_all(&to_send[w[0]..w[1]]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        // More bytes only once the server has decided, so none of them is read with the hello.
        wait_decided.await.unwrap();
        c.write_all(b"after the hello").await.unwrap();
        c
    });
    let (mut conn, _) = l.accept().await.unwrap();
    let (verdict, seen) = inspect_stream(&mut conn, Duration::from_secs(10), MAX_HELLO)
        .await
        .unwrap();
    assert!(
        last_sent.load(Ordering::SeqCst),
        "decided before the last piece"
    );
    decided.send(()).unwrap();
    assert_eq!(verdict, Inspection::Tls(tls(&hello)));
    assert_eq!(
        &seen[..],
        &hello[..],
        "every byte read is returned for replay"
    );
    // Nothing past the hello was read: the rest is still on the connection.
    let _client = client.await.unwrap();
    let mut rest = vec![0u8; 15];
    conn.read_exact(&mut rest).await.unwrap();
    assert_eq!(rest, b"after the hello");
}

#[tokio::test]
async fn timeout_close_too_large_and_malformed_on_a_stream() {
    let hello = synthetic_hello();
    let (mut client, mut server) = tokio::io::duplex(1024);
    client.write_all(&hello[..9]).await.unwrap();
    let e = inspect_stream(&mut server, Duration::from_millis(100), MAX_HELLO)
        .await
        .unwrap_err();
    assert!(matches!(e, InspectError::Timeout), "{e}");

    let (mut client, mut server) = tokio::io::duplex(1024);
    client.write_all(&hello[..20]).await.unwrap();
    drop(client);
    let e = inspect_stream(&mut server, Duration::from_secs(5), MAX_HELLO)
        .await
        .unwrap_err();
    assert!(matches!(e, InspectError::Closed), "{e}");

    let (client, mut server) = tokio::io::duplex(1024);
    drop(client);
    let e = inspect_stream(&mut server, Duration::from_secs(5), MAX_HELLO)
        .await
        .unwrap_err();
    assert!(matches!(e, InspectError::Closed), "{e}");

    let (mut client, mut server) = tokio::io::duplex(1024);
    client.write_all(&hello).await.unwrap();
    let e = inspect_stream(&mut server, Duration::from_secs(5), hello.len() - 1)
        .await
        .unwrap_err();
    assert!(matches!(e, InspectError::TooLarge), "{e}");

    let (mut client, mut server) = tokio::io::duplex(1024);
    client.write_all(b"\x16GET / HTTP/1.1\r\n").await.unwrap();
    let e = inspect_stream(&mut server, Duration::from_secs(5), MAX_HELLO)
        .await
        .unwrap_err();
    assert!(matches!(e, InspectError::Malformed(_)), "{e}");
}

#[tokio::test]
async fn openssl_through_inspect_stream() {
    let (l, addr) = listener().await;
    let mut child = match Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string()])
        .args(["-servername", "stream.example.com", "-alpn", "h2"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            eprintln!("SKIPPED: `openssl` is not installed");
            return;
        }
        r => r.unwrap(),
    };
    let (mut conn, _) = tokio::time::timeout(Duration::from_secs(30), l.accept())
        .await
        .expect("openssl did not connect")
        .unwrap();
    let (verdict, seen) = inspect_stream(&mut conn, Duration::from_secs(20), MAX_HELLO)
        .await
        .unwrap();
    let hello = verdict.client_hello().expect("tls");
    assert_eq!(hello.sni.as_deref(), Some("stream.example.com"));
    assert_eq!(hello.alpn, ["h2"]);
    assert_eq!(hello.record_bytes, seen.len());
    drop(conn);
    // Ours, by its id.
    let _ = child.kill();
    let _ = child.wait();
}
