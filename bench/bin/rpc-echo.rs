//! `rpc-echo`: the RPC benchmark's upstream (bench/rpc.sh). Answers every Bolt or Dubbo
//! request with a same-size success response, on any number of connections, pipelined: each
//! read decodes every whole frame in the buffer and the answers go out in order, in one write
//! per batch. One thread (a current-thread tokio runtime). Prints `READY <port>` once it
//! listens on 127.0.0.1.
//!
//! ```text
//! rpc-echo --proto bolt|dubbo [--port P]    (port 0, the default: any free port)
//! ```

use std::io::Write;
use std::net::Ipv4Addr;

use bytes::BytesMut;
use clap::Parser;
use mosn_bench::rpc::{Echo, Proto};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A fast Bolt / Dubbo echo upstream for the RPC benchmark.
#[derive(Parser, Debug)]
#[command(name = "rpc-echo")]
struct Args {
    /// The protocol to answer.
    #[arg(long, value_enum)]
    proto: Proto,
    /// Port on 127.0.0.1 (0: any free port; the port is printed as `READY <port>`).
    #[arg(long, default_value_t = 0)]
    port: u16,
}

const READ_CHUNK: usize = 64 * 1024;

async fn serve(mut s: TcpStream, echo: Echo) {
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let mut out = BytesMut::with_capacity(READ_CHUNK);
    loop {
        input.reserve(READ_CHUNK);
        match s.read_buf(&mut input).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if let Err(e) = echo.answer_all(&mut input, &mut out) {
            eprintln!("rpc-echo: closing a connection: {e}");
            return;
        }
        if !out.is_empty() {
            if s.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
    }
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let echo = Echo::new(args.proto);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, args.port)).await?;
        let port = listener.local_addr()?.port();
        {
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "READY {port}")?;
            stdout.flush()?;
        }
        loop {
            match listener.accept().await {
                Ok((s, _)) => {
                    s.set_nodelay(true)?;
                    tokio::spawn(serve(s, echo.clone()));
                }
                Err(e) => {
                    eprintln!("rpc-echo: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    })
}
