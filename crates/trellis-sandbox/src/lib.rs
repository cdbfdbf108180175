//! Starts a plugin process inside the sandbox layers this machine offers, and says which ones
//! those are.
//!
//! A host never forks into a sandbox from its own, multi-threaded process: it runs a
//! *launcher*, a fresh single-threaded copy of a program that calls
//! [`run_launcher_if_requested`] first thing in `main` (the `trellis` binary does; a program
//! that embeds the host does the same, or points the host at a `trellis` binary). The launcher
//! reads a [`LaunchSpec`], applies the layers and runs the plugin under an init process that
//! reaps orphans and kills everything the plugin started when the plugin exits or when the host
//! goes away (the host holds the other end of a *lifeline* pipe; its end closing, even by
//! SIGKILL, ends the sandbox).
//!
//! On Linux the layers are, outermost first: cgroup limits (processes, memory) where a cgroup
//! can be created; user, mount, PID, network, IPC and UTS namespaces where unprivileged
//! namespaces are allowed (a private `/proc`, the project's `.trellis/` covered by an empty
//! read-only mount, no network interface but loopback down); rlimits; Landlock (only the
//! granted project paths, the interpreter and the plugin's own files, read-only, and no TCP);
//! `no_new_privs` and a seccomp filter (no sockets, no namespaces, no tracing, no kernel
//! modules, no mounts). [`detect`] says which of them hold here; a spec asks for each one
//! explicitly, and a layer asked for but not applied fails the launch, so that what is reported
//! is what runs.
//!
//! This crate knows nothing of plugins, manifests, grants or protocols: it is handed absolute
//! paths, an environment and limits.

#[cfg(target_os = "linux")]
pub mod cgroup;
#[cfg(target_os = "linux")]
mod linux;
mod spec;

pub use spec::{LaunchSpec, Layer, Limits, PathRules, Support};

/// The first argument that makes a program the launcher.
pub const LAUNCHER_ARG: &str = "__trellis-sandbox";
/// The environment variable that carries the [`LaunchSpec`] (as JSON) to the launcher.
pub const SPEC_VAR: &str = "TRELLIS_SANDBOX_SPEC";
/// The descriptor number the plugin's protocol channel has in the plugin.
pub const PLUGIN_FD: i32 = 3;
/// The descriptor number of the lifeline's read end in the launcher.
pub const LIFELINE_FD: i32 = 4;
/// Exit status of a launcher that could not set up a layer it was asked for (its reason is on
/// stderr).
pub const SETUP_FAILED: i32 = 125;

static REGISTERED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Call this first thing in `main`, before any thread starts. When the program was started as
/// the launcher it runs the sandbox and exits; otherwise it returns at once and records that
/// this program can serve as its own launcher ([`current_exe_is_launcher`]).
pub fn run_launcher_if_requested() {
    REGISTERED.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut args = std::env::args_os().skip(1);
    if args.next().is_none_or(|a| a != LAUNCHER_ARG) {
        return;
    }
    let code = match args.next().as_deref().and_then(|a| a.to_str()) {
        Some("probe") => {
            println!(
                "{}",
                serde_json::to_string(&probe_here()).unwrap_or_else(|_| "{}".to_owned())
            );
            0
        }
        _ => launch_here(),
    };
    std::process::exit(code);
}

/// Whether this program called [`run_launcher_if_requested`], so that the host may start it
/// as the launcher.
pub fn current_exe_is_launcher() -> bool {
    REGISTERED.load(std::sync::atomic::Ordering::SeqCst)
}

#[cfg(target_os = "linux")]
fn launch_here() -> i32 {
    linux::launch()
}

#[cfg(not(target_os = "linux"))]
fn launch_here() -> i32 {
    eprintln!("trellis-sandbox: the sandbox launcher runs on Linux only");
    SETUP_FAILED
}

#[cfg(target_os = "linux")]
fn probe_here() -> Support {
    linux::probe()
}

#[cfg(not(target_os = "linux"))]
fn probe_here() -> Support {
    Support::none("this platform has no process sandbox in Trellis yet")
}

/// The layers the launcher at `launcher` can apply on this machine, by running it in probe
/// mode (a launcher is a fresh process: what a host process could do itself may differ).
pub fn detect(launcher: &std::path::Path) -> Support {
    let output = std::process::Command::new(launcher)
        .args([LAUNCHER_ARG, "probe"])
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    match output {
        Ok(out) if out.status.success() => {
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
                Support::none(&format!("the launcher's probe answered badly: {e}"))
            })
        }
        Ok(out) => Support::none(&format!("the launcher's probe failed ({})", out.status)),
        Err(e) => Support::none(&format!(
            "the launcher {} cannot run: {e}",
            launcher.display()
        )),
    }
}
