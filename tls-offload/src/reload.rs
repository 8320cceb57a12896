//! Reloader: polls the certificate files' metadata on a std thread and calls
//! [`ServerConfig::reload`] when any of them changed. Failures are logged and the old
//! certificates stay; the next change of any file triggers another attempt (a certificate
//! written before its key fails once, then succeeds when the key lands).

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crate::ServerConfig;

/// A running file poller; stops (and joins its thread) on [`Reloader::stop`] or drop.
pub struct Reloader {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

/// What is compared between polls: modification time, length and inode (an atomic rename
/// changes the inode even within one mtime tick). `None` while a file is missing.
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(file: &PathBuf) -> Stamp {
    let meta = std::fs::metadata(file).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some((meta.modified().ok()?, meta.len(), inode))
}

impl Reloader {
    /// Starts a thread that checks `config`'s files ([`ServerConfig::watched_files`]) every
    /// `every` and reloads when one changed. With no file to watch the thread is not started.
    pub fn spawn(config: ServerConfig, every: Duration) -> io::Result<Reloader> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let files = config.watched_files();
        if files.is_empty() {
            return Ok(Reloader { stop, thread: None });
        }
        // The first stamps are taken here, not on the new thread: a file replaced right after
        // `spawn` returns (before the thread got to run) is then still seen as a change.
        let first: Vec<Stamp> = files.iter().map(stamp).collect();
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("mosn-tls-reload".to_string())
            .spawn(move || poll(config, files, first, every, &stop2))?;
        Ok(Reloader {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the poller and waits for its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let (flag, cv) = &*self.stop;
        *flag.lock().unwrap_or_else(PoisonError::into_inner) = true;
        cv.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Reloader {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("running", &self.thread.is_some())
            .finish()
    }
}

fn poll(
    config: ServerConfig,
    files: Vec<PathBuf>,
    mut last: Vec<Stamp>,
    every: Duration,
    stop: &(Mutex<bool>, Condvar),
) {
    let (flag, cv) = stop;
    let mut stopped = flag.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let (guard, _) = cv
            .wait_timeout_while(stopped, every, |s| !*s)
            .unwrap_or_else(PoisonError::into_inner);
        stopped = guard;
        if *stopped {
            return;
        }
        let now: Vec<Stamp> = files.iter().map(stamp).collect();
        if now == last {
            continue;
        }
        last = now;
        if let Err(e) = config.reload() {
            tracing::warn!(path = %config.path(), error = %e, "TLS certificate reload failed: keeping the old certificates");
        }
    }
}
