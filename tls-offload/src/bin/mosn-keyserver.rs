//! mosn-keyserver: holds private keys and signs for keyless TLS contexts (`type: "keyless"`)
//! over the protocol of `mosn_tls_offload::keyless::wire`.
//!
//! ```text
//! mosn-keyserver --listen unix:/run/keyserver.sock|host:port --key key.pem [--key ...]
//!                [--delay 50ms] [--fail-every N]
//! ```
//!
//! Keys: PEM (PKCS#8, PKCS#1 RSA, SEC1 EC), any type the rustls crypto provider signs with
//! (ECDSA P-256/P-384, RSA, Ed25519); each is known by the SHA-256 of its SubjectPublicKeyInfo.
//! `--delay` holds every answer back (test knob), `--fail-every N` answers every Nth signature
//! request with a failure (test knob). Prints `listening on ADDR` once ready (the bound port
//! when given port 0). Requests of a connection are served concurrently (replies carry the
//! request id); a client that goes away mid-request costs nothing but that reply.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mosn_tls_offload::keyless::wire::{self, Reply, Request, Status};
use mosn_tls_offload::keyless::{key_id, KeyServerAddr};
use rustls::sign::SigningKey;
use rustls::SignatureScheme;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

struct Args {
    listen: KeyServerAddr,
    keys: Vec<String>,
    delay: Duration,
    fail_every: u64,
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "mosn-keyserver: {problem}\nusage: mosn-keyserver --listen unix:/path|host:port --key key.pem [--key ...] [--delay 50ms] [--fail-every N]"
    );
    std::process::exit(2)
}

fn args() -> Args {
    let mut it = std::env::args().skip(1);
    let (mut listen, mut keys, mut delay, mut fail_every) = (None, Vec::new(), Duration::ZERO, 0);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--listen" => {
                // port 0 is fine here (an ephemeral port, printed once bound)
                let v = value();
                listen = Some(match v.strip_prefix("unix:") {
                    Some(path) if !path.is_empty() => KeyServerAddr::Unix(path.into()),
                    Some(_) => usage("`unix:` needs a socket path"),
                    None => KeyServerAddr::Tcp(v),
                });
            }
            "--key" => keys.push(value()),
            "--delay" => {
                delay = mosn_config::parse_go_duration(&value()).unwrap_or_else(|e| usage(&e));
            }
            "--fail-every" => {
                fail_every = value()
                    .parse()
                    .unwrap_or_else(|_| usage("--fail-every needs a number"));
            }
            "-h" | "--help" => usage("help"),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let listen = listen.unwrap_or_else(|| usage("--listen is required"));
    if keys.is_empty() {
        usage("at least one --key is required");
    }
    Args {
        listen,
        keys,
        delay,
        fail_every,
    }
}

struct State {
    keys: HashMap<[u8; 32], Arc<dyn SigningKey>>,
    delay: Duration,
    fail_every: u64,
    requests: AtomicU64,
    signed: AtomicU64,
    failed: AtomicU64,
}

fn load_key(file: &str) -> Result<([u8; 32], Arc<dyn SigningKey>), String> {
    let der = PrivateKeyDer::from_pem_file(file).map_err(|e| format!("{file}: {e}"))?;
    let key = default_provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| format!("{file}: {e}"))?;
    let spki = key
        .public_key()
        .ok_or_else(|| format!("{file}: the key's public key is unknown"))?;
    Ok((key_id(spki.as_ref()), key))
}

#[cfg(feature = "aws-lc-rs")]
fn default_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
fn default_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn main() {
    let args = args();
    let mut keys = HashMap::new();
    for file in &args.keys {
        match load_key(file) {
            Ok((id, key)) => {
                keys.insert(id, key);
            }
            Err(e) => usage(&e),
        }
    }
    let state = Arc::new(State {
        keys,
        delay: args.delay,
        fail_every: args.fail_every,
        requests: AtomicU64::new(0),
        signed: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| usage(&format!("cannot start the runtime: {e}")));
    if let Err(e) = rt.block_on(serve(args.listen, state)) {
        eprintln!("mosn-keyserver: {e}");
        std::process::exit(1);
    }
}

fn ready(addr: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();
}

async fn serve(listen: KeyServerAddr, state: Arc<State>) -> std::io::Result<()> {
    match listen {
        KeyServerAddr::Unix(path) => {
            // a stale socket from an earlier run
            if std::fs::symlink_metadata(&path)
                .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
            {
                std::fs::remove_file(&path)?;
            }
            let listener = tokio::net::UnixListener::bind(&path)?;
            ready(&format!("unix:{}", path.display()));
            loop {
                let (conn, _) = listener.accept().await?;
                tokio::spawn(connection(conn, state.clone()));
            }
        }
        KeyServerAddr::Tcp(addr) => {
            let listener = tokio::net::TcpListener::bind(&addr).await?;
            ready(&listener.local_addr()?.to_string());
            loop {
                let (conn, _) = listener.accept().await?;
                let _ = conn.set_nodelay(true);
                tokio::spawn(connection(conn, state.clone()));
            }
        }
    }
}

/// Reads requests and answers each from its own task; one writer task sends the replies.
async fn connection<S>(conn: S, state: Arc<State>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(conn);
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if wr.write_all(&frame).await.is_err() {
                return; // the client went away: drop the remaining replies
            }
        }
    });
    loop {
        let mut prefix = [0u8; 4];
        if rd.read_exact(&mut prefix).await.is_err() {
            break;
        }
        let len = match wire::body_len(prefix) {
            Ok(len) => len,
            Err(_) => break, // cannot resynchronise
        };
        let mut body = vec![0u8; len];
        if rd.read_exact(&mut body).await.is_err() {
            break;
        }
        let (state, tx) = (state.clone(), tx.clone());
        tokio::spawn(async move {
            let reply = answer(&body, &state).await;
            let _ = tx.send(reply.encode());
        });
    }
    drop(tx);
    // replies still being computed are sent if the client only half-closed
    let _ = writer.await;
}

async fn answer(body: &[u8], state: &State) -> Reply {
    let request = match Request::decode(body) {
        Ok(r) => r,
        Err(e) => return error(e.id.unwrap_or(0), Status::BadRequest, e.message),
    };
    match request.opcode {
        wire::OP_STATS => {
            let text = format!(
                "requests={}\nsigned={}\nfailed={}\n",
                state.requests.load(Ordering::Relaxed),
                state.signed.load(Ordering::Relaxed),
                state.failed.load(Ordering::Relaxed),
            );
            Reply {
                id: request.id,
                status: Status::Ok,
                payload: text.into_bytes(),
            }
        }
        wire::OP_SIGN => sign(request, state).await,
        op => error(
            request.id,
            Status::BadRequest,
            format!("unknown opcode {op}"),
        ),
    }
}

fn error(id: u64, status: Status, text: String) -> Reply {
    Reply {
        id,
        status,
        payload: text.into_bytes(),
    }
}

async fn sign(request: Request, state: &State) -> Reply {
    let n = state.requests.fetch_add(1, Ordering::Relaxed) + 1;
    if !state.delay.is_zero() {
        tokio::time::sleep(state.delay).await;
    }
    let id = request.id;
    let fail = |status, text: String| {
        state.failed.fetch_add(1, Ordering::Relaxed);
        error(id, status, text)
    };
    if state.fail_every > 0 && n.is_multiple_of(state.fail_every) {
        return fail(
            Status::SignFailed,
            format!("injected failure (request {n})"),
        );
    }
    let Some(key) = state.keys.get(&request.key_id).cloned() else {
        return fail(Status::UnknownKey, "no key with that key id".into());
    };
    let scheme = SignatureScheme::from(request.scheme);
    let Some(signer) = key.choose_scheme(&[scheme]) else {
        return fail(
            Status::BadScheme,
            format!("the key cannot sign with {scheme:?}"),
        );
    };
    // RSA signing takes a while: off the event loop
    let message = request.message;
    match tokio::task::spawn_blocking(move || signer.sign(&message)).await {
        Ok(Ok(signature)) => {
            state.signed.fetch_add(1, Ordering::Relaxed);
            Reply {
                id,
                status: Status::Ok,
                payload: signature,
            }
        }
        Ok(Err(e)) => fail(Status::SignFailed, e.to_string()),
        Err(e) => fail(Status::SignFailed, format!("signer task failed: {e}")),
    }
}
