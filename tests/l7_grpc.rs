//! gRPC through the real `mosn` binary: a python grpcio server behind mosn (HTTP/2 on both
//! sides) and a python grpcio client: unary with a 1 MiB message, server streaming,
//! bidirectional ping-pong streaming, initial and trailing metadata (text and binary), and
//! a non-OK status with its details and trailers.

mod common;

use std::process::Command;

use common::http::*;
use serde_json::json;

fn grpc_client(py: &std::path::Path, target: std::net::SocketAddr, n: usize) -> String {
    let out = Command::new(py)
        .arg(tool_script("grpc_echo.py"))
        .args(["client", "--target", &target.to_string()])
        .args(["--messages", &n.to_string()])
        .output()
        .expect("run the grpc client");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "grpc client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn grpc_unary_streaming_and_status_through_mosn() {
    let py = python_with("grpc", "python3-grpcio");
    let (_server, port) = spawn_ready(
        Command::new(&py)
            .arg(tool_script("grpc_echo.py"))
            .args(["server", "--port", "0"]),
    );
    let upstream: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for downstream in ["Http2", "Auto"] {
        let m = Mosn::start(&simple_config(downstream, &[upstream], json!({})));
        let out = grpc_client(&py, m.l7(), 50);
        for want in [
            "OK unary",
            "OK server_stream 50",
            "OK bidi 50",
            "OK status NOT_FOUND",
        ] {
            assert!(
                out.contains(want),
                "{downstream}: missing {want:?} in\n{out}"
            );
        }
        let l = m.log_for("/test.Echo/Bidi");
        l.expect(200, &[]);
        assert_eq!(l.get("proto"), "Http2");
        assert_eq!(l.get("flags"), "-");
        m.log_for("/test.Echo/Fail").expect(200, &[]);
    }
}
