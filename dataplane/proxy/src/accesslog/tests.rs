use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::COOKIE;
use http::{HeaderMap, HeaderName, Method};
use mosn_metrics::Registry;

use super::format::{civil_from_days, push_go_duration, push_time};
use super::*;

/// Every variable, `|`-separated, in the order of `filled_expected`.
const ALL: &str = "%start_time%|%request_received_duration%|%response_received_duration%|\
    %request_finished_duration%|%process_time_duration%|%duration%|%bytes_sent%|\
    %bytes_received%|%protocol%|%response_code%|%response_flag%|%response_flags%|\
    %upstream_local_address%|%downstream_local_address%|%downstream_remote_address%|\
    %upstream_host%|%upstream_cluster%|%upstream_transport_failure_reason%|\
    %requested_server_name%|%route_name%|%request_header_x-request-id%|\
    %response_header_content-type%|%x-mosn-host%|%x-mosn-path%|%x-mosn-method%|\
    %x-mosn-querystring%|%x-mosn-rpc-service%|%x-mosn-rpc-method%|%request_path%|\
    %request_arg_id%|%request_arg_name%|%cookie_session%|%cookie_theme%|%connection_id%|\
    %stream_id%";

fn filled() -> LogRecord {
    let mut req = HeaderMap::new();
    req.insert("x-request-id", "abc-123".parse().unwrap());
    req.append(COOKIE, "a=1; session=s%20x".parse().unwrap());
    req.append(COOKIE, "theme = dark".parse().unwrap());
    let mut resp = HeaderMap::new();
    resp.insert("content-type", "text/plain".parse().unwrap());
    LogRecord {
        start_time: UNIX_EPOCH + Duration::from_millis(1_709_209_845_123),
        request_received_duration: Some(Duration::from_micros(1_500)),
        response_received_duration: Some(Duration::from_micros(12_345)),
        request_finished_duration: Some(Duration::from_nanos(12_500_001)),
        process_time_duration: Some(Duration::from_nanos(750)),
        duration: Some(Duration::from_millis(2_500)),
        bytes_sent: 1024,
        bytes_received: 512,
        protocol: Some("Http1".into()),
        response_code: Some(503),
        response_flags: ResponseFlags::UPSTREAM_CONNECT_FAILURE
            | ResponseFlags::RETRY_LIMIT_EXCEEDED,
        upstream_local_address: Some("10.0.0.1:40000".parse().unwrap()),
        downstream_local_address: Some("127.0.0.1:2045".parse().unwrap()),
        downstream_remote_address: Some("[::1]:50000".parse().unwrap()),
        upstream_host: Some("10.0.0.2:8080".parse().unwrap()),
        upstream_hostname: Some("backend-1".into()),
        upstream_cluster: Some("backend".into()),
        upstream_transport_failure_reason: Some("connection refused".into()),
        requested_server_name: Some("api.example.com".into()),
        route_name: Some("default".into()),
        request_headers: req,
        response_headers: resp,
        method: Some(Method::POST),
        path: Some("/api/v1/items".into()),
        query: Some("id=42&name=a+b%21&empty=&flag".into()),
        authority: Some("api.example.com:8080".into()),
        rpc_service: Some("com.example.Service:1.0".into()),
        rpc_method: Some("sayHello".into()),
        connection_id: Some(7),
        stream_id: Some(9),
    }
}

fn render(format: &str, record: &LogRecord) -> String {
    let mut out = Vec::new();
    AccessLogFormat::parse(format)
        .unwrap()
        .render(record, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn every_variable_renders_from_a_filled_record() {
    let expected = [
        "2024/02/29 12:30:45.123",
        "1.5ms",
        "12.345ms",
        "12.500001ms",
        "750ns",
        "2.5s",
        "1024",
        "512",
        "Http1",
        "503",
        "UF,URX",
        "UF,URX",
        "10.0.0.1:40000",
        "127.0.0.1:2045",
        "[::1]:50000",
        "backend-1",
        "backend",
        "connection refused",
        "api.example.com",
        "default",
        "abc-123",
        "text/plain",
        "api.example.com:8080",
        "/api/v1/items",
        "POST",
        "id=42&name=a+b%21&empty=&flag",
        "com.example.Service:1.0",
        "sayHello",
        "/api/v1/items",
        "42",
        "a b!",
        "s%20x",
        "dark",
        "7",
        "9",
    ];
    assert_eq!(render(ALL, &filled()), expected.join("|") + "\n");
}

#[test]
fn missing_values_print_a_dash() {
    let line = render(ALL, &LogRecord::default());
    let fields: Vec<&str> = line.trim_end().split('|').collect();
    assert_eq!(fields.len(), 35);
    assert_eq!(fields[0], "1970/01/01 00:00:00.000");
    for (i, f) in fields.iter().enumerate().skip(1) {
        let want = if i == 6 || i == 7 { "0" } else { "-" };
        assert_eq!(*f, want, "field {i} of {line:?}");
    }
    // Present headers, arguments and cookies that are absent by name also print `-`.
    let r = filled();
    assert_eq!(
        render(
            "%request_header_x-none% %response_header_x-none% %request_arg_none% %cookie_none%",
            &r
        ),
        "- - - -\n"
    );
}

#[test]
fn present_but_empty_values_print_nothing() {
    let r = filled();
    assert_eq!(
        render("[%request_arg_empty%][%request_arg_flag%]", &r),
        "[][]\n"
    );
}

#[test]
fn upstream_host_prefers_the_name_then_the_address() {
    let mut r = filled();
    r.upstream_hostname = Some("".into());
    assert_eq!(render("%upstream_host%", &r), "10.0.0.2:8080\n");
    r.upstream_hostname = None;
    assert_eq!(render("%upstream_host%", &r), "10.0.0.2:8080\n");
    r.upstream_host = None;
    assert_eq!(render("%upstream_host%", &r), "-\n");
}

#[test]
fn header_names_are_case_insensitive() {
    let r = filled();
    assert_eq!(
        render(
            "%request_header_X-Request-ID% %response_header_Content-Type%",
            &r
        ),
        "abc-123 text/plain\n"
    );
    let f = AccessLogFormat::parse(
        "%request_header_X-Request-Id% %request_header_x-request-id% %cookie_a% \
         %response_header_Content-Type%",
    )
    .unwrap();
    assert_eq!(
        f.request_header_names(),
        &[HeaderName::from_static("x-request-id"), COOKIE]
    );
    assert_eq!(
        f.response_header_names(),
        &[HeaderName::from_static("content-type")]
    );
}

#[test]
fn double_percent_is_a_literal_percent() {
    let r = filled();
    assert_eq!(
        render("100%% %protocol%%%|%%%%|%%", &r),
        "100% Http1%|%%|%\n"
    );
    assert_eq!(render("no variables", &r), "no variables\n");
}

#[test]
fn bad_formats_are_rejected_with_the_name() {
    let err = AccessLogFormat::parse("%start_time% %no_such_var%").unwrap_err();
    assert_eq!(
        err,
        FormatError::UnknownVariable {
            name: "no_such_var".into()
        }
    );
    assert!(err.to_string().contains("no_such_var"), "{err}");
    assert_eq!(
        AccessLogFormat::parse("ab %start_time").unwrap_err(),
        FormatError::Unclosed { offset: 3 }
    );
    assert_eq!(
        AccessLogFormat::parse("50% off").unwrap_err(),
        FormatError::Unclosed { offset: 2 }
    );
    assert_eq!(
        AccessLogFormat::parse("%request_header_%").unwrap_err(),
        FormatError::MissingName {
            prefix: "request_header_"
        }
    );
    assert_eq!(
        AccessLogFormat::parse("%cookie_%").unwrap_err(),
        FormatError::MissingName { prefix: "cookie_" }
    );
    assert_eq!(
        AccessLogFormat::parse("%response_header_bad name%").unwrap_err(),
        FormatError::InvalidHeaderName {
            name: "response_header_bad name".into()
        }
    );
    // Names are case-sensitive, as in MOSN.
    assert!(AccessLogFormat::parse("%START_TIME%").is_err());
}

#[test]
fn empty_format_is_mosns_default() {
    let f = AccessLogFormat::parse("").unwrap();
    assert_eq!(f.as_str(), DEFAULT_ACCESS_LOG_FORMAT);
    assert_eq!(f, AccessLogFormat::default());
    assert_eq!(f.to_string(), DEFAULT_ACCESS_LOG_FORMAT);
    let mut out = Vec::new();
    f.render(&filled(), &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "2024/02/29 12:30:45.123 1.5ms 12.345ms 1024 512 Http1 503 2.5s UF,URX 503 \
         10.0.0.1:40000 127.0.0.1:2045 [::1]:50000 backend-1\n"
    );
    let mut out = Vec::new();
    f.render(&LogRecord::default(), &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "1970/01/01 00:00:00.000 - - 0 0 - - - - - - - - -\n"
    );
}

#[test]
fn control_characters_cannot_break_the_line() {
    let mut r = filled();
    r.rpc_method = Some("a\nb\tc".into());
    r.query = Some("x=1%0d%0Ay&bad=%zz%4".into());
    assert_eq!(
        render("%x-mosn-rpc-method% %request_arg_x% %request_arg_bad%", &r),
        "a\\x0ab\\x09c 1\\x0d\\x0ay %zz%4\n"
    );
}

#[test]
fn durations_print_like_go() {
    let go = |d: Duration| {
        let mut out = Vec::new();
        push_go_duration(&mut out, d);
        String::from_utf8(out).unwrap()
    };
    let cases: &[(Duration, &str)] = &[
        (Duration::ZERO, "0s"),
        (Duration::from_nanos(1), "1ns"),
        (Duration::from_nanos(999), "999ns"),
        (Duration::from_micros(1), "1µs"),
        (Duration::from_nanos(1_500), "1.5µs"),
        (Duration::from_millis(1), "1ms"),
        (Duration::from_nanos(999_999_999), "999.999999ms"),
        (Duration::from_secs(1), "1s"),
        (Duration::from_millis(1_500), "1.5s"),
        (Duration::from_nanos(1_000_000_001), "1.000000001s"),
        (Duration::from_secs(60), "1m0s"),
        (Duration::from_millis(90_250), "1m30.25s"),
        (Duration::from_secs(3_600), "1h0m0s"),
        (Duration::from_millis(3_725_001), "1h2m5.001s"),
        (Duration::from_secs(360_000), "100h0m0s"),
    ];
    for (d, want) in cases {
        assert_eq!(go(*d), *want, "{d:?}");
    }
}

#[test]
fn start_time_is_utc_with_milliseconds() {
    let t = |st: SystemTime| {
        let mut out = Vec::new();
        push_time(&mut out, st);
        String::from_utf8(out).unwrap()
    };
    assert_eq!(t(UNIX_EPOCH), "1970/01/01 00:00:00.000");
    assert_eq!(
        t(UNIX_EPOCH + Duration::from_secs(951_782_400)),
        "2000/02/29 00:00:00.000"
    );
    assert_eq!(
        t(UNIX_EPOCH + Duration::from_millis(253_402_300_799_999)),
        "9999/12/31 23:59:59.999"
    );
    assert_eq!(
        t(UNIX_EPOCH - Duration::from_millis(1)),
        "1969/12/31 23:59:59.999"
    );
    assert_eq!(
        t(UNIX_EPOCH - Duration::from_secs(86_400)),
        "1969/12/31 00:00:00.000"
    );
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(-719_468), (0, 3, 1));
    assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    assert_eq!(civil_from_days(19_783), (2024, 3, 1));
}

// === the writer ===

fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "mosn-accesslog-{}-{name}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn ids(first: u64, n: u64) -> String {
    (first..first + n).map(|i| format!("{i}\n")).collect()
}

fn record(stream_id: u64) -> LogRecord {
    LogRecord {
        stream_id: Some(stream_id),
        ..LogRecord::default()
    }
}

fn stream_ids() -> AccessLogFormat {
    AccessLogFormat::parse("%stream_id%").unwrap()
}

#[test]
fn file_writer_writes_every_line_in_order() {
    let dir = temp_dir("order");
    let path = dir.join("logs/access.log"); // the parent directory does not exist yet
    let registry = Registry::new();
    let scope = registry.scope("accesslog", &[]);
    let log = AccessLog::open(path.to_str().unwrap(), stream_ids(), &scope).unwrap();
    assert_eq!(log.path(), path.to_str().unwrap());
    let workers: Vec<_> = (0..4u64)
        .map(|w| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..250 {
                    log.log(&record(w * 1000 + i));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    log.flush().unwrap();
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 1000);
    for w in 0..4u64 {
        // Each worker's lines keep their order.
        let mine: Vec<u64> = text
            .lines()
            .map(|l| l.parse::<u64>().unwrap())
            .filter(|id| id / 1000 == w)
            .collect();
        assert_eq!(mine, (w * 1000..w * 1000 + 250).collect::<Vec<_>>());
    }
    assert_eq!(log.dropped(), 0);

    // Single producer: exact order; the file is appended to, not truncated.
    for i in 0..100 {
        log.log(&record(i));
    }
    log.flush().unwrap();
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.ends_with(&ids(0, 100)));
    assert_eq!(text.lines().count(), 1100);
    drop(log);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dropping_the_log_drains_the_queue() {
    let dir = temp_dir("drain");
    let path = dir.join("access.log");
    let scope = Registry::new().scope("accesslog", &[]);
    let log = AccessLog::open(path.to_str().unwrap(), stream_ids(), &scope).unwrap();
    for i in 0..500 {
        log.log(&record(i));
    }
    drop(log);
    assert_eq!(fs::read_to_string(&path).unwrap(), ids(0, 500));
    // Appends on reopen of the same path.
    let log = AccessLog::open(path.to_str().unwrap(), stream_ids(), &scope).unwrap();
    log.log(&record(500));
    drop(log);
    assert_eq!(fs::read_to_string(&path).unwrap(), ids(0, 501));
    fs::remove_dir_all(&dir).unwrap();
}

/// A writer that signals when it is entered and then blocks until released.
struct Gate {
    entered: mpsc::Sender<()>,
    open: Arc<(Mutex<bool>, Condvar)>,
    out: Arc<Mutex<Vec<u8>>>,
}

impl Write for Gate {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = self.entered.send(());
        let (lock, cv) = &*self.open;
        let mut open = lock.lock().unwrap();
        while !*open {
            open = cv.wait(open).unwrap();
        }
        self.out.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_full_queue_drops_and_counts_lines() {
    let (entered_tx, entered_rx) = mpsc::channel();
    let open = Arc::new((Mutex::new(false), Condvar::new()));
    let out = Arc::new(Mutex::new(Vec::new()));
    let gate = Gate {
        entered: entered_tx,
        open: open.clone(),
        out: out.clone(),
    };
    let registry = Registry::new();
    let scope = registry.scope("listener", &[("listener", "ingress")]);
    let log = AccessLog::from_writer(Box::new(gate), stream_ids(), &scope, 2).unwrap();

    // Line 0 reaches the writer thread, which then blocks in the gate.
    log.log(&record(0));
    entered_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    // Two more fill the queue; the next three are dropped without blocking.
    for i in 1..6 {
        log.log(&record(i));
    }
    assert_eq!(log.dropped(), 3);
    assert_eq!(
        registry.value("listener", &[("listener", "ingress")], DROPPED_COUNTER),
        Some(3)
    );

    {
        let (lock, cv) = &*open;
        *lock.lock().unwrap() = true;
        cv.notify_all();
    }
    log.flush().unwrap();
    assert_eq!(
        String::from_utf8(out.lock().unwrap().clone()).unwrap(),
        ids(0, 3)
    );
    // Room again: nothing more is dropped.
    log.log(&record(3));
    log.flush().unwrap();
    assert_eq!(log.dropped(), 3);
    assert_eq!(
        String::from_utf8(out.lock().unwrap().clone()).unwrap(),
        ids(0, 4)
    );
}

#[test]
fn reopen_after_rename_writes_to_a_new_file() {
    let dir = temp_dir("reopen");
    let path = dir.join("access.log");
    let rotated = dir.join("access.log.1");
    let scope = Registry::new().scope("accesslog", &[]);
    let log = AccessLog::open(path.to_str().unwrap(), stream_ids(), &scope).unwrap();
    log.log(&record(1));
    log.flush().unwrap();
    fs::rename(&path, &rotated).unwrap();
    // Until reopen, lines still go to the renamed file.
    log.log(&record(2));
    log.reopen().unwrap();
    log.log(&record(3));
    log.flush().unwrap();
    assert_eq!(fs::read_to_string(&rotated).unwrap(), "1\n2\n");
    assert_eq!(fs::read_to_string(&path).unwrap(), "3\n");
    drop(log);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_disabled_log_writes_nothing() {
    let out = Arc::new(Mutex::new(Vec::new()));
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let scope = Registry::new().scope("accesslog", &[]);
    let log =
        AccessLog::from_writer(Box::new(Shared(out.clone())), stream_ids(), &scope, 8).unwrap();
    log.set_enabled(false);
    assert!(!log.is_enabled());
    log.log(&record(1));
    log.set_enabled(true);
    log.log(&record(2));
    log.reopen().unwrap(); // a plain writer: only flushes
    assert_eq!(
        String::from_utf8(out.lock().unwrap().clone()).unwrap(),
        "2\n"
    );
    assert_eq!(log.dropped(), 0);
}

#[test]
fn stdout_stderr_and_bad_paths() {
    let scope = Registry::new().scope("accesslog", &[]);
    for name in ["stdout", "stderr"] {
        let log = AccessLog::open(name, AccessLogFormat::default(), &scope).unwrap();
        assert_eq!(log.path(), name);
        log.flush().unwrap();
        log.reopen().unwrap();
    }
    let err = AccessLog::open("", AccessLogFormat::default(), &scope).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    // A directory cannot be opened as the log file.
    let dir = temp_dir("isdir");
    fs::create_dir_all(&dir).unwrap();
    assert!(AccessLog::open(dir.to_str().unwrap(), AccessLogFormat::default(), &scope).is_err());
    fs::remove_dir_all(&dir).unwrap();
}
