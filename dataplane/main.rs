//! `mosn`: the binary. Parses the command line, loads the config, and hands over to
//! mosn-server; exit status 0 ok, 2 config error, 1 runtime error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use mosn_server::{logging, plan, BuildInfo, Server, Signal};

/// mimalloc: per-thread free lists suit one event loop per core, and cut the allocator's share
/// of a proxied request (glibc malloc was ~5% of CPU per HTTP request in `perf`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BUILD: BuildInfo = BuildInfo {
    version: env!("CARGO_PKG_VERSION"),
    commit: env!("MOSN_GIT_COMMIT"),
};
const EXIT_RUNTIME: u8 = 1;
const EXIT_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(
    name = "mosn",
    about = "mosn-rs: a MOSN-compatible sidecar and gateway proxy",
    version
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the proxy.
    Start {
        /// Config file (JSON, or YAML by extension).
        #[arg(short = 'c', long = "config", env = "MOSN_CONFIG")]
        config: PathBuf,
    },
    /// Check a config file and print every problem found.
    Validate {
        /// Config file (JSON, or YAML by extension).
        #[arg(short = 'c', long = "config", env = "MOSN_CONFIG")]
        config: PathBuf,
    },
    /// Print the version.
    Version,
    /// Stop the running instance recorded in the pid file (SIGTERM: graceful drain).
    Stop {
        /// Config file whose `pid` names the pid file.
        #[arg(short = 'c', long = "config", env = "MOSN_CONFIG")]
        config: Option<PathBuf>,
        /// The pid file (overrides the config).
        #[arg(long = "pid-file")]
        pid_file: Option<PathBuf>,
        /// Seconds to wait for the process to exit (0: do not wait).
        #[arg(long, default_value_t = 60)]
        wait: u64,
    },
}

fn default_pid_file() -> PathBuf {
    std::env::temp_dir().join("mosn.pid")
}

fn load(path: &Path) -> Result<mosn_config::Loaded, ExitCode> {
    mosn_config::load(path).map_err(|e| {
        eprintln!("mosn: config {} is invalid:\n{e}", path.display());
        ExitCode::from(EXIT_CONFIG)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Version => {
            println!(
                "mosn-rs version {} (commit {})",
                BUILD.version, BUILD.commit
            );
            ExitCode::SUCCESS
        }
        Cmd::Validate { config } => validate(&config),
        Cmd::Start { config } => start(&config),
        Cmd::Stop {
            config,
            pid_file,
            wait,
        } => stop(config.as_deref(), pid_file, wait),
    }
}

fn validate(path: &Path) -> ExitCode {
    let loaded = match load(path) {
        Ok(l) => l,
        Err(code) => return code,
    };
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    if let Err(problems) = plan::plan(&loaded.config) {
        for p in &problems {
            eprintln!("warning: {p} (valid MOSN config; `mosn start` refuses it until that support lands)");
        }
    }
    println!("{}: ok", path.display());
    ExitCode::SUCCESS
}

fn start(path: &Path) -> ExitCode {
    let loaded = match load(path) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let mut p = match plan::plan(&loaded.config) {
        Ok(p) => p,
        Err(problems) => {
            eprintln!(
                "mosn: config {} asks for what this build cannot run:",
                path.display()
            );
            for p in &problems {
                eprintln!("{p}");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // Handlers first: a SIGTERM during start-up must drain, not kill.
    let mut signals = match mosn_server::run::Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mosn: cannot install signal handlers: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let pid_file = p.pid_file.clone().unwrap_or_else(default_pid_file);
    p.pid_file = Some(pid_file.clone());
    let log = match logging::init(&p.log_target, &p.log_level) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("mosn: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    for w in &loaded.warnings {
        tracing::warn!("config: {w}");
    }
    let server = match Server::start(p, BUILD, Some(log)) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("start-up failed: {e}");
            eprintln!("mosn: start-up failed: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    while signals.wait() == Signal::Reload {
        tracing::info!(config = %path.display(), "SIGHUP: reloading");
        match mosn_config::load(path) {
            Ok(l) => match plan::plan(&l.config) {
                Ok(p) => {
                    if let Err(e) = server.reload(&p) {
                        tracing::error!("reload failed, keeping the running config: {e}");
                    }
                }
                Err(problems) => {
                    for p in problems {
                        tracing::error!("reload refused, keeping the running config: {p}");
                    }
                }
            },
            Err(e) => tracing::error!("reload refused, keeping the running config:\n{e}"),
        }
    }
    let left = server.drain();
    let _ = std::fs::remove_file(&pid_file);
    tracing::info!(left, "mosn stopped");
    ExitCode::SUCCESS
}

fn stop(config: Option<&Path>, pid_file: Option<PathBuf>, wait: u64) -> ExitCode {
    let pid_file = match (pid_file, config) {
        (Some(p), _) => p,
        (None, Some(c)) => match load(c) {
            Ok(l) => l.config.pid_file.unwrap_or_else(default_pid_file),
            Err(code) => return code,
        },
        (None, None) => default_pid_file(),
    };
    let text = match std::fs::read_to_string(&pid_file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("mosn: cannot read pid file {}: {e}", pid_file.display());
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        eprintln!(
            "mosn: pid file {} does not hold a pid: {:?}",
            pid_file.display(),
            text.trim()
        );
        return ExitCode::from(EXIT_RUNTIME);
    };
    let pid = nix::unistd::Pid::from_raw(pid);
    if let Err(e) = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM) {
        eprintln!(
            "mosn: cannot signal process {pid} from {}: {e}",
            pid_file.display()
        );
        return ExitCode::from(EXIT_RUNTIME);
    }
    println!("mosn: sent SIGTERM to {pid}");
    let deadline = Instant::now() + Duration::from_secs(wait);
    while wait > 0 && Instant::now() < deadline {
        if nix::sys::signal::kill(pid, None).is_err() {
            println!("mosn: process {pid} exited");
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if wait > 0 {
        eprintln!("mosn: process {pid} still running after {wait}s");
        return ExitCode::from(EXIT_RUNTIME);
    }
    ExitCode::SUCCESS
}
