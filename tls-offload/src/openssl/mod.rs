//! The OpenSSL backend (cargo feature `openssl`): the system OpenSSL 3 with accelerator offload
//! through an ENGINE (OpenSSL 3.x, e.g. Intel QAT_Engine) or a provider (e.g. `qatprovider`;
//! engines are gone in OpenSSL 4), and `SSL_MODE_ASYNC` so a handshake whose private-key
//! operation is on the device pauses instead of blocking the worker (ACCELERATION.md §7).
//!
//! ```text
//!  mod.rs      config (OpenSslBackend, Offload, Polling, OnFailure), Accelerator (load once per
//!              process, ctrls, counters, external polling thread), OpenSslStats
//!  context.rs  TlsContext -> SslContext (server, client): the same params as rustls (versions,
//!              suites, groups, ALPN), keys loaded so the engine's methods apply to them
//!  driver.rs   the async driver: memory-buffered SSL over any tokio IO; WANT_READ/WRITE wait on
//!              the IO, WANT_ASYNC on the job's fds (AsyncFd, borrowed), WANT_ASYNC_JOB yields;
//!              an SSL dropped mid-job is parked until its job finishes
//!  ffi.rs      the ~12 calls the openssl crates do not bind (the only `unsafe` of the crate)
//! ```
//!
//! Selected by `tls_context.type: "openssl"` in `ServerConfig::build` / `ClientConfig::build`,
//! with the [`OpenSslBackend`] settings parsed from `extend_verify` (snake_case keys: `engine`
//! {`id` | `path`, `algorithms`, `ctrls`: [[name, value], ...]} or `provider` {`name`,
//! `search_path`, `properties`}, `async`, `polling`: `"internal"` | {`external`: {`interval`:
//! "1ms", `command`: "POLL"}}, `on_failure`: `"fallback"` | `"refuse"`; see the crate README),
//! or given explicitly to `build_openssl`.
//!
//! Offload is process-wide in OpenSSL: `ENGINE_set_default` and `EVP_set_default_properties`
//! change every later key and operation of the process, so an [`Accelerator`] is loaded once per
//! engine (or provider) and kept for the life of the process.

mod context;
mod driver;
mod ffi;

use std::ffi::CString;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

pub(crate) use context::{client_context, server_context};
pub(crate) use driver::{info, Stream};

use crate::TlsError;

/// The test accelerator ENGINE built with this crate (`engine/test_engine.c`, a shared object in
/// the build's `OUT_DIR`), loadable as `Offload::Engine { id_or_path: TEST_ENGINE_PATH, .. }`.
/// For tests and demos only: its "device" is a pool of threads computing in software.
pub const TEST_ENGINE_PATH: &str = env!("MOSN_TEST_ENGINE_PATH");

/// The OpenSSL backend's settings (from `extend_verify` with `type: "openssl"`, or given to
/// `ServerConfig::build_openssl` / `ClientConfig::build_openssl`).
/// `Default`: no offload, async mode on, internal polling, fall back to rustls on failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenSslBackend {
    /// The accelerator, if any. `None`: OpenSSL in software.
    pub offload: Option<Offload>,
    /// `SSL_MODE_ASYNC`: handshakes pause while the device works (the worker serves other
    /// connections meanwhile). Only on a current-thread runtime (a paused job must resume on its
    /// thread); elsewhere the handshake runs in sync mode with a warning. Off: the engine blocks.
    pub async_mode: bool,
    /// How the accelerator learns about completed requests.
    pub polling: Polling,
    /// What to do when the accelerator cannot be initialised.
    pub on_failure: OnFailure,
}

impl Default for OpenSslBackend {
    fn default() -> Self {
        OpenSslBackend {
            offload: None,
            async_mode: true,
            polling: Polling::Internal,
            on_failure: OnFailure::FallBack,
        }
    }
}

/// An accelerator reached through OpenSSL.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Offload {
    /// An ENGINE (OpenSSL 3.x), e.g. `qatengine`.
    Engine {
        /// An engine id (`qatengine`, found in OpenSSL's engines directory) or a path to the
        /// shared object (contains `/` or ends in `.so`), loaded through the `dynamic` engine.
        id_or_path: String,
        /// `ENGINE_set_default_string` list: `RSA,EC` (empty means that), `ALL`, `CIPHERS`, ...
        algorithms: String,
        /// Engine ctrl commands run in order before `ENGINE_init` (name, value; an empty value
        /// for commands without input), e.g. `("ENABLE_EXTERNAL_POLLING", "")`.
        ctrls: Vec<(String, String)>,
    },
    /// A provider (OpenSSL 3+), e.g. `qatprovider`; `default` stays loaded beside it.
    Provider {
        /// Provider name (or module path).
        name: String,
        /// Where to look for it (`OSSL_PROVIDER_set_default_search_path`); `None`: OpenSSL's.
        search_path: Option<String>,
        /// Default property query; `None`: `?provider=NAME` (prefer it, fall back to default).
        properties: Option<String>,
    },
}

/// How completed device requests are noticed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Polling {
    /// By the accelerator itself (its own thread or interrupts): nothing to do.
    #[default]
    Internal,
    /// By this crate: a thread calls the engine ctrl command (e.g. `POLL`) or asks the provider
    /// for the parameter named `command` (`OSSL_PROVIDER_get_params`) every `every`.
    External {
        /// Interval between polls.
        every: Duration,
        /// Engine ctrl command or provider parameter name.
        command: String,
    },
}

/// What a config does when its accelerator cannot be initialised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OnFailure {
    /// Build the config with the rustls backend instead, with a warning.
    #[default]
    FallBack,
    /// Fail the build with [`TlsError::Offload`].
    Refuse,
}

// === the accelerator ===

/// A loaded accelerator (cheap to clone). Loaded once per engine or provider per process.
#[derive(Clone)]
pub struct Accelerator {
    inner: Arc<Loaded>,
}

enum Handle {
    Engine(ffi::Engine),
    Provider(::openssl::provider::Provider),
}

struct Loaded {
    offload: Offload,
    handle: Handle,
    describe: String,
}

/// Accelerators loaded so far, by engine id/path or provider name, and whether their external
/// polling thread runs. OpenSSL 3 refuses a second live ENGINE from the same shared object, so an
/// engine is loaded once and later configs naming it reuse it.
static LOADED: Mutex<Vec<(String, Accelerator, bool)>> = Mutex::new(Vec::new());

fn identity(offload: &Offload) -> String {
    match offload {
        Offload::Engine { id_or_path, .. } => format!("engine:{id_or_path}"),
        Offload::Provider { name, .. } => format!("provider:{name}"),
    }
}

impl Accelerator {
    /// Loads `offload` (once per engine or provider per process), makes it OpenSSL's default for
    /// its algorithms and starts external polling if asked. When the engine is already loaded
    /// with other settings, this config's ctrls run now (after `ENGINE_init`) and its
    /// algorithms are made default again. Errors say what failed, for the log.
    pub fn load(offload: &Offload, polling: &Polling) -> Result<Accelerator, TlsError> {
        let mut loaded = LOADED.lock().unwrap_or_else(PoisonError::into_inner);
        let key = identity(offload);
        let pos = match loaded.iter().position(|(k, _, _)| *k == key) {
            Some(pos) => {
                let accel = &loaded[pos].1;
                if accel.offload() != offload {
                    accel.reconfigure(offload).map_err(TlsError::Offload)?;
                }
                pos
            }
            None => {
                let handle = load(offload).map_err(TlsError::Offload)?;
                let describe = match (&handle, offload) {
                    (Handle::Engine(e), Offload::Engine { id_or_path, .. }) => {
                        format!("engine {} ({id_or_path})", e.id())
                    }
                    (_, Offload::Provider { name, .. }) => format!("provider {name}"),
                    _ => unreachable!("handle kind follows the offload kind"),
                };
                let accel = Accelerator {
                    inner: Arc::new(Loaded {
                        offload: offload.clone(),
                        handle,
                        describe,
                    }),
                };
                tracing::info!(accelerator = %accel.describe(), "TLS offload initialised");
                loaded.push((key, accel, false));
                loaded.len() - 1
            }
        };
        let (_, accel, polled) = &mut loaded[pos];
        if let Polling::External { every, command } = polling {
            if !*polled {
                accel.start_polling(*every, command)?;
                *polled = true;
            }
        }
        Ok(accel.clone())
    }

    /// Applies a second config of an already loaded engine: its ctrls, then its algorithms.
    fn reconfigure(&self, offload: &Offload) -> Result<(), String> {
        match (&self.inner.handle, offload) {
            (
                Handle::Engine(e),
                Offload::Engine {
                    algorithms, ctrls, ..
                },
            ) => {
                for (cmd, arg) in ctrls {
                    e.ctrl(cmd, (!arg.is_empty()).then_some(arg.as_str()))
                        .map_err(|m| format!("{}: {m}", self.describe()))?;
                }
                e.set_default(default_algorithms(algorithms))
            }
            (
                Handle::Provider(_),
                Offload::Provider {
                    properties, name, ..
                },
            ) => {
                let props = properties
                    .clone()
                    .unwrap_or_else(|| format!("?provider={name}"));
                ffi::set_default_properties(&props)
            }
            _ => Ok(()),
        }
    }

    /// `engine ID (path)` or `provider NAME`.
    pub fn describe(&self) -> &str {
        &self.inner.describe
    }

    /// What was loaded (the first config that named this engine or provider).
    pub fn offload(&self) -> &Offload {
        &self.inner.offload
    }

    /// Runs an engine ctrl command now (e.g. the test engine's `LATENCY_US`, `FAIL_NEXT`).
    /// `None` for commands without input. Providers have no ctrls: an error.
    pub fn ctrl(&self, command: &str, value: Option<&str>) -> Result<(), TlsError> {
        match &self.inner.handle {
            Handle::Engine(e) => e.ctrl(command, value).map_err(TlsError::Offload),
            Handle::Provider(_) => Err(TlsError::Offload(format!(
                "{}: providers take no ctrl commands",
                self.describe()
            ))),
        }
    }

    /// A counter the engine reports through a ctrl command that fills a `long` (the test
    /// engine's `STAT_ASYNC`, `STAT_SYNC`, `STAT_FAILED`, `STAT_PAUSES`, `STAT_POLLS`).
    /// `None` when the engine has no such command, or for providers.
    pub fn counter(&self, command: &str) -> Option<i64> {
        match &self.inner.handle {
            Handle::Engine(e) => e.ctrl_read(command),
            Handle::Provider(_) => None,
        }
    }

    fn start_polling(&self, every: Duration, command: &str) -> Result<(), TlsError> {
        let name = CString::new(command)
            .map_err(|_| TlsError::Offload(format!("polling command `{command}` has a NUL")))?;
        let this = self.clone();
        std::thread::Builder::new()
            .name("tls-offload-poll".into())
            .spawn(move || {
                let mut failures = 0u64;
                loop {
                    std::thread::sleep(every);
                    let ok = match &this.inner.handle {
                        Handle::Engine(e) => e.ctrl_no_input(command_str(&name)),
                        Handle::Provider(p) => ffi::provider_poll(p, &name),
                    };
                    if !ok {
                        failures += 1;
                        if failures == 1 {
                            tracing::warn!(accelerator = %this.describe(), command = %command_str(&name), "external poll failed");
                        }
                    }
                }
            })
            .map(|_| ())
            .map_err(|e| TlsError::Offload(format!("cannot start the polling thread: {e}")))
    }
}

/// `algorithms`, empty meaning `RSA,EC`.
fn default_algorithms(algorithms: &str) -> &str {
    match algorithms.trim() {
        "" => "RSA,EC",
        a => a,
    }
}

fn command_str(name: &CString) -> &str {
    name.to_str().unwrap_or_default()
}

impl fmt::Debug for Accelerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accelerator")
            .field("describe", &self.describe())
            .finish()
    }
}

fn load(offload: &Offload) -> Result<Handle, String> {
    // the openssl crate's initialisation (no `OPENSSL_cleanup` at exit) comes first
    openssl_sys::init();
    match offload {
        Offload::Engine {
            id_or_path,
            algorithms,
            ctrls,
        } => {
            let engine = ffi::Engine::load(id_or_path, ctrls)?;
            engine.set_default(default_algorithms(algorithms))?;
            Ok(Handle::Engine(engine))
        }
        Offload::Provider {
            name,
            search_path,
            properties,
        } => {
            use ::openssl::provider::Provider;
            if let Some(path) = search_path {
                Provider::set_default_search_path(None, path)
                    .map_err(|e| format!("provider search path {path}: {e}"))?;
            }
            // Loading any provider stops OpenSSL from loading `default` by itself: keep it.
            let default =
                Provider::load(None, "default").map_err(|e| format!("provider default: {e}"))?;
            std::mem::forget(default);
            let provider =
                Provider::load(None, name).map_err(|e| format!("provider {name}: {e}"))?;
            // seeds the DRBG now, before the properties below could route it to the device
            let mut seed = [0u8; 16];
            ::openssl::rand::rand_bytes(&mut seed).map_err(|e| format!("RAND_bytes: {e}"))?;
            let props = properties
                .clone()
                .unwrap_or_else(|| format!("?provider={name}"));
            ffi::set_default_properties(&props)?;
            Ok(Handle::Provider(provider))
        }
    }
}

// === counters ===

/// Process-wide counters of the OpenSSL backend (see [`stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenSslStats {
    /// Completed handshakes of configs with an accelerator.
    pub handshakes_offloaded: u64,
    /// Completed handshakes of configs without one (OpenSSL in software).
    pub handshakes_software: u64,
    /// Times a handshake paused on `SSL_ERROR_WANT_ASYNC` and waited for the device.
    pub async_waits: u64,
    /// Times no async job was available (`SSL_ERROR_WANT_ASYNC_JOB`) and the call was retried.
    pub async_job_retries: u64,
    /// Connections dropped while their job was paused, kept until the job finished.
    pub parked: u64,
    /// Configs built with rustls because their accelerator failed (`OnFailure::FallBack`).
    pub fallbacks: u64,
}

pub(crate) struct Counters {
    pub handshakes_offloaded: AtomicU64,
    pub handshakes_software: AtomicU64,
    pub async_waits: AtomicU64,
    pub async_job_retries: AtomicU64,
    pub parked: AtomicU64,
    pub fallbacks: AtomicU64,
}

pub(crate) static COUNTERS: Counters = Counters {
    handshakes_offloaded: AtomicU64::new(0),
    handshakes_software: AtomicU64::new(0),
    async_waits: AtomicU64::new(0),
    async_job_retries: AtomicU64::new(0),
    parked: AtomicU64::new(0),
    fallbacks: AtomicU64::new(0),
};

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The OpenSSL backend's process-wide counters. Private-key operations per device are the
/// accelerator's own counters ([`Accelerator::counter`]).
pub fn stats() -> OpenSslStats {
    let c = &COUNTERS;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    OpenSslStats {
        handshakes_offloaded: get(&c.handshakes_offloaded),
        handshakes_software: get(&c.handshakes_software),
        async_waits: get(&c.async_waits),
        async_job_retries: get(&c.async_job_retries),
        parked: get(&c.parked),
        fallbacks: get(&c.fallbacks),
    }
}

// === what a config carries ===

/// The runtime part of an OpenSSL config: async mode and the accelerator in use.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub async_mode: bool,
    pub accelerator: Option<Accelerator>,
}

impl Settings {
    /// Loads the accelerator of `cfg`. `Ok(None)`: it failed and `cfg` says fall back to rustls
    /// (warned here, loudly); `Err`: it failed and `cfg` says refuse.
    pub(crate) fn load(cfg: &OpenSslBackend, path: &str) -> Result<Option<Settings>, TlsError> {
        let accelerator = match &cfg.offload {
            None => None,
            Some(offload) => match Accelerator::load(offload, &cfg.polling) {
                Ok(a) => Some(a),
                Err(e) => match cfg.on_failure {
                    OnFailure::Refuse => return Err(e),
                    OnFailure::FallBack => {
                        bump(&COUNTERS.fallbacks);
                        tracing::warn!(%path, error = %e, "TLS OFFLOAD UNAVAILABLE: the accelerator failed to initialise; this config falls back to rustls in software");
                        return Ok(None);
                    }
                },
            },
        };
        Ok(Some(Settings {
            async_mode: cfg.async_mode,
            accelerator,
        }))
    }

    pub(crate) fn record_handshake(&self) {
        if self.accelerator.is_some() {
            bump(&COUNTERS.handshakes_offloaded);
        } else {
            bump(&COUNTERS.handshakes_software);
        }
    }
}

impl TlsError {
    pub(crate) fn openssl(path: impl Into<String>, source: ::openssl::error::ErrorStack) -> Self {
        TlsError::OpenSsl {
            path: path.into(),
            source,
        }
    }
}
