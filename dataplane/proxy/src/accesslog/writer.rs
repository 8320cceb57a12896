//! The access-log writer: workers render lines and `try_send` them into a bounded queue; one
//! background thread per log drains the queue in batches into a buffered file, stdout or
//! stderr, flushing whenever the queue runs empty.
//!
//! A full queue (or a failed write) drops the line and counts it in the scope's
//! [`DROPPED_COUNTER`]; workers never wait. [`AccessLog::flush`], [`AccessLog::reopen`] and
//! dropping the last `Arc<AccessLog>` wait for the writer: call them from a control thread,
//! not from an event loop.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use mosn_metrics::{Counter, Scope};

use super::{AccessLogFormat, LogRecord};

/// Lines an [`AccessLog`] queues before it starts dropping.
pub const DEFAULT_QUEUE_CAPACITY: usize = 4096;

/// Counter (in the scope given to [`AccessLog::open`]) of lines dropped because the queue
/// was full or the write failed.
pub const DROPPED_COUNTER: &str = "access_log_dropped_total";

/// Size of the writer thread's output buffer.
const BUFFER_SIZE: usize = 64 * 1024;

/// Initial capacity of one rendered line.
const LINE_CAPACITY: usize = 256;

enum Msg {
    Line(Vec<u8>),
    Flush(SyncSender<io::Result<()>>),
    Reopen(SyncSender<io::Result<()>>),
}

/// Where the writer thread writes.
enum Target {
    Stdout,
    Stderr,
    File(PathBuf),
    /// A caller-supplied writer ([`AccessLog::from_writer`]); `reopen` only flushes it.
    Writer,
}

/// One access log: a compiled format plus an asynchronous writer. Shared by every worker
/// (`Arc`); the writer thread stops, after writing every queued line, when the last
/// reference is dropped.
#[derive(Debug)]
pub struct AccessLog {
    path: Box<str>,
    format: AccessLogFormat,
    tx: Option<SyncSender<Msg>>,
    thread: Option<JoinHandle<()>>,
    dropped: Arc<Counter>,
    enabled: AtomicBool,
}

impl AccessLog {
    /// Opens `path` (a file, created with its parent directories and appended to, or
    /// `"stdout"` / `"stderr"`) and starts its writer thread with a queue of
    /// [`DEFAULT_QUEUE_CAPACITY`] lines. Dropped lines count in `scope`'s
    /// [`DROPPED_COUNTER`].
    pub fn open(path: &str, format: AccessLogFormat, scope: &Scope) -> io::Result<Arc<Self>> {
        Self::open_with_capacity(path, format, scope, DEFAULT_QUEUE_CAPACITY)
    }

    /// [`AccessLog::open`] with a queue of `capacity` lines (at least 1).
    pub fn open_with_capacity(
        path: &str,
        format: AccessLogFormat,
        scope: &Scope,
        capacity: usize,
    ) -> io::Result<Arc<Self>> {
        let (target, out): (Target, Box<dyn Write + Send>) = match path {
            "" => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "access log path is empty",
                ))
            }
            "stdout" => (Target::Stdout, Box::new(io::stdout())),
            "stderr" => (Target::Stderr, Box::new(io::stderr())),
            file => (
                Target::File(PathBuf::from(file)),
                Box::new(open_append(Path::new(file))?),
            ),
        };
        Self::start(path, target, out, format, scope, capacity)
    }

    /// An access log writing to any `writer` (tests, pipes, embedding). `reopen` only
    /// flushes it.
    pub fn from_writer(
        writer: Box<dyn Write + Send>,
        format: AccessLogFormat,
        scope: &Scope,
        capacity: usize,
    ) -> io::Result<Arc<Self>> {
        Self::start("<writer>", Target::Writer, writer, format, scope, capacity)
    }

    fn start(
        path: &str,
        target: Target,
        out: Box<dyn Write + Send>,
        format: AccessLogFormat,
        scope: &Scope,
        capacity: usize,
    ) -> io::Result<Arc<Self>> {
        let (tx, rx) = mpsc::sync_channel(capacity.max(1));
        let dropped = scope.counter(DROPPED_COUNTER);
        let sink = Sink {
            target,
            out: BufWriter::with_capacity(BUFFER_SIZE, out),
            dropped: dropped.clone(),
            failing: false,
        };
        let thread = thread::Builder::new()
            .name("mosn-accesslog".into())
            .spawn(move || sink.run(rx))?;
        Ok(Arc::new(AccessLog {
            path: path.into(),
            format,
            tx: Some(tx),
            thread: Some(thread),
            dropped,
            enabled: AtomicBool::new(true),
        }))
    }

    /// Renders `record` on the calling thread and queues the line without blocking; a full
    /// queue drops it (and counts it). Does nothing while the log is disabled.
    pub fn log(&self, record: &LogRecord) {
        if !self.is_enabled() {
            return;
        }
        let mut line = Vec::with_capacity(LINE_CAPACITY);
        self.format.render(record, &mut line);
        let queued = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.try_send(Msg::Line(line)).is_ok());
        if !queued {
            self.dropped.inc();
        }
    }

    /// Waits until every line queued before this call is written and flushed; returns the
    /// flush's result. Blocks: not for event-loop threads.
    pub fn flush(&self) -> io::Result<()> {
        self.call(Msg::Flush)
    }

    /// Log rotation: after the lines queued so far are written, closes the file and opens
    /// `path` again (creating it), so lines go to a fresh file once the old one was renamed.
    /// For stdout/stderr it only flushes. On error the old file stays in use. Blocks.
    pub fn reopen(&self) -> io::Result<()> {
        self.call(Msg::Reopen)
    }

    fn call(&self, msg: fn(SyncSender<io::Result<()>>) -> Msg) -> io::Result<()> {
        let gone = || io::Error::new(io::ErrorKind::BrokenPipe, "access log writer has stopped");
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        let tx = self.tx.as_ref().ok_or_else(gone)?;
        tx.send(msg(ack_tx)).map_err(|_| gone())?;
        ack_rx.recv().map_err(|_| gone())?
    }

    /// Turns logging on or off at run time (MOSN's admin `enable_log` / `disable_log`).
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Relaxed);
    }

    /// Whether [`AccessLog::log`] writes.
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// The configured path (`stdout`, `stderr`, a file, or `<writer>`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The compiled format.
    pub fn format(&self) -> &AccessLogFormat {
        &self.format
    }

    /// Lines dropped so far (the [`DROPPED_COUNTER`], shared with other logs of the scope).
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }
}

impl Drop for AccessLog {
    /// Closes the queue and waits for the writer to write and flush what is left.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// The writer thread's state.
struct Sink {
    target: Target,
    out: BufWriter<Box<dyn Write + Send>>,
    dropped: Arc<Counter>,
    /// Set after a failed write, so a failing disk logs one warning, not one per line.
    failing: bool,
}

impl Sink {
    fn run(mut self, rx: Receiver<Msg>) {
        while let Ok(msg) = rx.recv() {
            self.handle(msg);
            // Batch: take whatever else is queued, then flush once.
            while let Ok(msg) = rx.try_recv() {
                self.handle(msg);
            }
            let flushed = self.out.flush();
            self.note(&flushed);
        }
        let flushed = self.out.flush();
        self.note(&flushed);
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Line(line) => {
                let written = self.out.write_all(&line);
                if written.is_err() {
                    self.dropped.inc();
                }
                self.note(&written);
            }
            Msg::Flush(ack) => {
                let flushed = self.out.flush();
                self.note(&flushed);
                let _ = ack.send(flushed);
            }
            Msg::Reopen(ack) => {
                let reopened = self.reopen();
                let _ = ack.send(reopened);
            }
        }
    }

    fn reopen(&mut self) -> io::Result<()> {
        let flushed = self.out.flush();
        self.note(&flushed);
        let Target::File(path) = &self.target else {
            return flushed;
        };
        let file = open_append(path)?;
        // Dropping the old writer closes the old file (its buffer was just flushed).
        self.out = BufWriter::with_capacity(BUFFER_SIZE, Box::new(file));
        self.failing = false;
        tracing::debug!(path = %path.display(), "access log reopened");
        Ok(())
    }

    fn note(&mut self, result: &io::Result<()>) {
        match result {
            Err(e) if !self.failing => {
                self.failing = true;
                tracing::warn!(output = %self.target_name(), error = %e, "access log write failed; dropping lines");
            }
            Ok(()) if self.failing => {
                self.failing = false;
                tracing::info!(output = %self.target_name(), "access log writes recovered");
            }
            _ => {}
        }
    }

    fn target_name(&self) -> String {
        match &self.target {
            Target::Stdout => "stdout".into(),
            Target::Stderr => "stderr".into(),
            Target::File(p) => p.display().to_string(),
            Target::Writer => "<writer>".into(),
        }
    }
}
