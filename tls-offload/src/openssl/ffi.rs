//! The OpenSSL calls the `openssl`/`openssl-sys` crates do not bind (ACCELERATION.md §7): ENGINE
//! loading and control, the `SSL_MODE_ASYNC` job state (`SSL_get_all_async_fds`,
//! `SSL_waiting_for_async`, mode set/clear through `SSL_ctrl`), the negotiated group, the default
//! property query and `OSSL_PROVIDER_get_params` for external polling; and the registration of
//! a paused job's fds in tokio's reactor (`AsyncFd::register_with_interest` is `unsafe`: the fd
//! must stay open while registered, which holds only for the job-bound wait done here).
//!
//! This is the one module of the crate allowed `unsafe`: foreign functions can only be called
//! in `unsafe` blocks. Every function here is a safe wrapper that owns its C strings and
//! buffers, takes the `SSL` from a live `SslRef`, and never frees anything OpenSSL owns (the
//! async fds belong to OpenSSL and the engine; ENGINE handles live for the whole process).
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_long, c_uint, c_void, CStr, CString};
use std::future::poll_fn;
use std::os::fd::{AsRawFd, RawFd};
use std::ptr::{self, NonNull};
use std::task::Poll;

use ::openssl::error::ErrorStack;
use ::openssl::provider::Provider;
use ::openssl::ssl::SslRef;
use foreign_types::ForeignTypeRef;
use openssl_sys::{ENGINE, OSSL_LIB_CTX, OSSL_PARAM, OSSL_PROVIDER, SSL};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// `SSL_MODE_ASYNC`.
const SSL_MODE_ASYNC: c_long = 0x100;
/// `SSL_CTRL_MODE` / `SSL_CTRL_CLEAR_MODE`.
const SSL_CTRL_MODE: c_int = 33;
const SSL_CTRL_CLEAR_MODE: c_int = 78;
/// `SSL_CTRL_GET_NEGOTIATED_GROUP` (the macro `SSL_get_negotiated_group`).
const SSL_CTRL_GET_NEGOTIATED_GROUP: c_int = 134;
/// `OPENSSL_INIT_ENGINE_DYNAMIC`: makes the `dynamic` engine (load by path) available.
const OPENSSL_INIT_ENGINE_DYNAMIC: u64 = 0x0000_0400;
/// `OPENSSL_INIT_NO_ATEXIT`: no `OPENSSL_cleanup` at exit, which would free the engines under
/// the polling thread and the device's threads (the openssl crate initialises the same way).
const OPENSSL_INIT_NO_ATEXIT: u64 = 0x0008_0000;
/// `SSL_ERROR_WANT_ASYNC`: the call's async job paused; wait on its fds, then retry it.
pub(crate) const SSL_ERROR_WANT_ASYNC: c_int = 9;
/// `SSL_ERROR_WANT_ASYNC_JOB`: no async job was available; retry later.
pub(crate) const SSL_ERROR_WANT_ASYNC_JOB: c_int = 10;

extern "C" {
    fn OPENSSL_init_crypto(opts: u64, settings: *const c_void) -> c_int;
    fn ENGINE_by_id(id: *const c_char) -> *mut ENGINE;
    fn ENGINE_ctrl_cmd_string(
        e: *mut ENGINE,
        cmd_name: *const c_char,
        arg: *const c_char,
        cmd_optional: c_int,
    ) -> c_int;
    fn ENGINE_ctrl_cmd(
        e: *mut ENGINE,
        cmd_name: *const c_char,
        i: c_long,
        p: *mut c_void,
        f: Option<unsafe extern "C" fn()>,
        cmd_optional: c_int,
    ) -> c_int;
    fn ENGINE_init(e: *mut ENGINE) -> c_int;
    fn ENGINE_free(e: *mut ENGINE) -> c_int;
    fn ENGINE_set_default_string(e: *mut ENGINE, def_list: *const c_char) -> c_int;
    fn ENGINE_get_id(e: *const ENGINE) -> *const c_char;
    fn SSL_get_all_async_fds(s: *mut SSL, fds: *mut c_int, numfds: *mut usize) -> c_int;
    fn SSL_waiting_for_async(s: *mut SSL) -> c_int;
    fn EVP_set_default_properties(libctx: *mut OSSL_LIB_CTX, propq: *const c_char) -> c_int;
    fn OSSL_PROVIDER_get_params(prov: *const OSSL_PROVIDER, params: *mut OSSL_PARAM) -> c_int;
}

fn cstring(what: &str, s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{what} `{s}` contains a NUL byte"))
}

/// The OpenSSL error queue as text (empties the queue).
fn errors() -> String {
    let stack = ErrorStack::get();
    if stack.errors().is_empty() {
        "no OpenSSL error reported".to_string()
    } else {
        stack.to_string()
    }
}

// === ENGINE ===

/// A structural + functional ENGINE reference, initialised. Never freed: engines stay loaded for
/// the life of the process (their worker threads and the defaults set with them may outlive
/// any one config).
#[derive(Debug)]
pub(crate) struct Engine(NonNull<ENGINE>);

// SAFETY: ENGINE objects are reference counted and internally locked by OpenSSL; every call made
// through this handle (ctrl, id) is documented thread-safe, and the handle is never freed.
unsafe impl Send for Engine {}
// SAFETY: as above; no method takes `&mut self` or hands out the pointer.
unsafe impl Sync for Engine {}

impl Engine {
    /// Loads an engine: a path (contains `/` or ends in `.so`) through the `dynamic` engine
    /// (`SO_PATH`, `LOAD`), else by id (built in, or found in OpenSSL's engines directory).
    /// `pre_init` ctrls (name, value; empty value = no input) run before `ENGINE_init`.
    pub(crate) fn load(id_or_path: &str, pre_init: &[(String, String)]) -> Result<Engine, String> {
        let by_path = id_or_path.contains('/') || id_or_path.ends_with(".so");
        openssl_sys::init();
        // SAFETY: plain library initialisation with constant flags and no settings.
        let ok = unsafe {
            OPENSSL_init_crypto(
                OPENSSL_INIT_ENGINE_DYNAMIC | OPENSSL_INIT_NO_ATEXIT,
                ptr::null(),
            )
        };
        if ok != 1 {
            return Err(format!("OPENSSL_init_crypto: {}", errors()));
        }
        let id = cstring("engine", if by_path { "dynamic" } else { id_or_path })?;
        // SAFETY: `id` is a valid NUL-terminated string for the duration of the call.
        let raw = unsafe { ENGINE_by_id(id.as_ptr()) };
        let Some(raw) = NonNull::new(raw) else {
            return Err(format!("no engine `{id_or_path}`: {}", errors()));
        };
        // From here on `raw` holds one structural reference; release it on every error.
        let fail = |message: String| {
            // SAFETY: `raw` is the structural reference ENGINE_by_id returned, released once.
            unsafe { ENGINE_free(raw.as_ptr()) };
            Err(message)
        };
        if by_path {
            for (cmd, arg) in [("SO_PATH", Some(id_or_path)), ("LOAD", None)] {
                if let Err(e) = ctrl_string(raw, cmd, arg) {
                    return fail(format!("cannot load engine {id_or_path}: {e}"));
                }
            }
        }
        for (cmd, arg) in pre_init {
            let arg = (!arg.is_empty()).then_some(arg.as_str());
            if let Err(e) = ctrl_string(raw, cmd, arg) {
                return fail(format!("engine {id_or_path}: {e}"));
            }
        }
        // SAFETY: `raw` is a valid structural reference; ENGINE_init adds a functional one.
        if unsafe { ENGINE_init(raw.as_ptr()) } != 1 {
            return fail(format!("ENGINE_init({id_or_path}): {}", errors()));
        }
        Ok(Engine(raw))
    }

    /// `ENGINE_set_default_string`: `RSA,EC`, `ALL`, `CIPHERS`, ... (process-wide).
    pub(crate) fn set_default(&self, algorithms: &str) -> Result<(), String> {
        let list = cstring("algorithms", algorithms)?;
        // SAFETY: valid engine handle and NUL-terminated list.
        if unsafe { ENGINE_set_default_string(self.0.as_ptr(), list.as_ptr()) } != 1 {
            return Err(format!(
                "ENGINE_set_default_string({algorithms}): {}",
                errors()
            ));
        }
        Ok(())
    }

    /// A string ctrl command (`ENGINE_ctrl_cmd_string`); `None` for commands without input.
    pub(crate) fn ctrl(&self, cmd: &str, arg: Option<&str>) -> Result<(), String> {
        ctrl_string(self.0, cmd, arg)
    }

    /// A ctrl command without input, by name (`ENGINE_ctrl_cmd`, e.g. `POLL`).
    pub(crate) fn ctrl_no_input(&self, cmd: &str) -> bool {
        let Ok(name) = CString::new(cmd) else {
            return false;
        };
        // SAFETY: valid engine handle and name; no pointer argument.
        unsafe { ENGINE_ctrl_cmd(self.0.as_ptr(), name.as_ptr(), 0, ptr::null_mut(), None, 0) == 1 }
    }

    /// A ctrl command that writes a `long` through its pointer argument (counters).
    pub(crate) fn ctrl_read(&self, cmd: &str) -> Option<i64> {
        let name = CString::new(cmd).ok()?;
        let mut value: c_long = 0;
        let out = ptr::addr_of_mut!(value).cast::<c_void>();
        // SAFETY: valid handle and name; `out` points to a live `long` for the whole call, which
        // is the documented argument of such commands (an engine without it fails the call).
        let ok = unsafe { ENGINE_ctrl_cmd(self.0.as_ptr(), name.as_ptr(), 0, out, None, 0) };
        if ok == 1 {
            #[allow(clippy::useless_conversion)] // `long` is 32 bits on some targets
            Some(i64::from(value))
        } else {
            let _ = ErrorStack::get();
            None
        }
    }

    /// The id the engine gave itself.
    pub(crate) fn id(&self) -> String {
        // SAFETY: valid handle; the id is a static string owned by the engine (or NULL).
        let id = unsafe { ENGINE_get_id(self.0.as_ptr()) };
        if id.is_null() {
            return String::new();
        }
        // SAFETY: non-NULL, NUL-terminated, lives as long as the engine (forever here).
        unsafe { CStr::from_ptr(id) }.to_string_lossy().into_owned()
    }
}

fn ctrl_string(e: NonNull<ENGINE>, cmd: &str, arg: Option<&str>) -> Result<(), String> {
    let name = cstring("ctrl command", cmd)?;
    let arg = arg.map(|a| cstring("ctrl value", a)).transpose()?;
    let arg_ptr = arg.as_ref().map_or(ptr::null(), |a| a.as_ptr());
    // SAFETY: valid engine reference; both strings outlive the call (NULL = no input).
    let ok = unsafe { ENGINE_ctrl_cmd_string(e.as_ptr(), name.as_ptr(), arg_ptr, 0) };
    if ok == 1 {
        Ok(())
    } else {
        Err(format!("ctrl {cmd}: {}", errors()))
    }
}

// === providers ===

/// `EVP_set_default_properties(NULL, props)` (process-wide default property query).
pub(crate) fn set_default_properties(props: &str) -> Result<(), String> {
    let p = cstring("properties", props)?;
    // SAFETY: NULL selects the default library context; `p` outlives the call.
    if unsafe { EVP_set_default_properties(ptr::null_mut(), p.as_ptr()) } != 1 {
        return Err(format!("EVP_set_default_properties({props}): {}", errors()));
    }
    Ok(())
}

/// One `OSSL_PROVIDER_get_params` call asking for the unsigned integer parameter `name`
/// (external polling: a provider has no polling fd). True when the provider answered.
pub(crate) fn provider_poll(provider: &Provider, name: &CStr) -> bool {
    let mut value: c_uint = 0;
    // SAFETY: the constructors only record the key pointer and the buffer address; both outlive
    // the get_params call below.
    let mut params = unsafe {
        [
            openssl_sys::OSSL_PARAM_construct_uint(name.as_ptr(), ptr::addr_of_mut!(value)),
            openssl_sys::OSSL_PARAM_construct_end(),
        ]
    };
    // SAFETY: a live provider handle and an END-terminated parameter array.
    let ok = unsafe { OSSL_PROVIDER_get_params(provider.as_ptr(), params.as_mut_ptr()) };
    ok == 1
}

// === SSL async state ===

/// A descriptor of a paused job, registered in tokio's reactor for one wait. Owned by OpenSSL or
/// the engine, never closed here.
struct JobFd(RawFd);

impl AsRawFd for JobFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Waits until one of the fds of the paused job of `ssl` is readable: registers them in tokio's
/// reactor (edge-triggered epoll reports an fd already readable at registration), waits, and
/// deregisters them before returning, so the caller's retry (which lets the engine close them)
/// comes after. False when there are no fds or they cannot be registered.
pub(crate) async fn wait_job_fds(ssl: &SslRef) -> bool {
    let mut registered = Vec::new();
    for fd in async_fds(ssl) {
        // SAFETY: `fd` belongs to the ASYNC_WAIT_CTX of the paused job of `ssl`. It stays open
        // and the same until that job resumes: only the job (on this thread, inside the next
        // SSL call) clears and closes it, and the `&SslRef` borrowed for this whole function
        // keeps the SSL from being resumed or freed meanwhile. Every AsyncFd is dropped
        // (deregistered) before this function returns.
        match unsafe { AsyncFd::register_with_interest(JobFd(fd), Interest::READABLE) } {
            Ok(a) => registered.push(a),
            Err(_) => return false,
        }
    }
    if registered.is_empty() {
        return false;
    }
    poll_fn(|cx| {
        if registered.iter().any(|a| a.poll_read_ready(cx).is_ready()) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    drop(registered);
    true
}

/// `SSL_set_mode(ssl, SSL_MODE_ASYNC)`.
pub(crate) fn set_async_mode(ssl: &SslRef) {
    // SAFETY: a live SSL; SSL_CTRL_MODE only ORs the flag into its mode.
    unsafe { openssl_sys::SSL_ctrl(ssl.as_ptr(), SSL_CTRL_MODE, SSL_MODE_ASYNC, ptr::null_mut()) };
}

/// `SSL_clear_mode(ssl, SSL_MODE_ASYNC)`: reads and writes after the handshake run without jobs
/// (a paused `SSL_read`/`SSL_write` would pin the caller's buffer until it resumes).
pub(crate) fn clear_async_mode(ssl: &SslRef) {
    // SAFETY: a live SSL; SSL_CTRL_CLEAR_MODE only clears the flag.
    unsafe {
        openssl_sys::SSL_ctrl(
            ssl.as_ptr(),
            SSL_CTRL_CLEAR_MODE,
            SSL_MODE_ASYNC,
            ptr::null_mut(),
        )
    };
}

/// `SSL_waiting_for_async`: a job of this SSL is paused. Such an SSL must not be freed.
pub(crate) fn waiting_for_async(ssl: &SslRef) -> bool {
    // SAFETY: a live SSL; the call only reads whether it has a job.
    unsafe { SSL_waiting_for_async(ssl.as_ptr()) == 1 }
}

/// `SSL_get_all_async_fds`: the fds the paused job waits on. Owned by OpenSSL/the engine: the
/// caller may poll them but must neither close them nor keep them past the retry.
pub(crate) fn async_fds(ssl: &SslRef) -> Vec<RawFd> {
    let mut n: usize = 0;
    // SAFETY: a live SSL; with a NULL array the call only stores the count in `n`.
    if unsafe { SSL_get_all_async_fds(ssl.as_ptr(), ptr::null_mut(), &mut n) } != 1 || n == 0 {
        return Vec::new();
    }
    let mut fds: Vec<c_int> = vec![-1; n];
    // SAFETY: `fds` has room for the `n` descriptors the first call reported; the job cannot
    // change in between (same thread, no OpenSSL call in between).
    if unsafe { SSL_get_all_async_fds(ssl.as_ptr(), fds.as_mut_ptr(), &mut n) } != 1 {
        return Vec::new();
    }
    fds.truncate(n);
    fds
}

/// `SSL_get_negotiated_group`: the key-exchange group's NID (0 when none).
pub(crate) fn negotiated_group(ssl: &SslRef) -> c_int {
    // SAFETY: a live SSL; the ctrl only reads the handshake's group.
    let nid = unsafe {
        openssl_sys::SSL_ctrl(
            ssl.as_ptr(),
            SSL_CTRL_GET_NEGOTIATED_GROUP,
            0,
            ptr::null_mut(),
        )
    };
    c_int::try_from(nid).unwrap_or(0)
}
