//! Running an external command for a plugin: no shell, cleared environment (only `PATH`), the
//! project as working directory, a deadline, and bounded output.
//!
//! The command runs in a process group of its own. When it exits, or when the deadline passes,
//! the whole group is killed, so nothing it started (a daemon, a `sleep &`) outlives the call.
//! Waiting blocks on the child (`waitid` without reaping, so that the group is still known
//! when it is killed); nothing polls.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::ApiError;

/// Most bytes of stdout (and, separately, of stderr) kept.
pub const MAX_STREAM_BYTES: usize = 1 << 20;
/// Most arguments of one command.
const MAX_ARGS: usize = 4096;
/// Longest command line (program and arguments), in bytes.
const MAX_COMMAND_LINE: usize = 256 << 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutput {
    /// The exit code; -1 when the command was ended by a signal.
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Runs commands inside a plugin's operating-system sandbox (the process runtime provides
/// one), so that a command a `subprocess` pattern allows is still held to the plugin's file and
/// network grants.
pub trait CommandSandbox: Send + Sync {
    /// The command that runs `program` (an absolute path) with `args` in `cwd` inside the
    /// sandbox, and what to keep until the command has ended (cleaned up when dropped).
    fn command(
        &self,
        program: &Path,
        args: &[String],
        cwd: &Path,
    ) -> Result<(Command, Box<dyn Send>), String>;
}

/// Runs `program args...` in `cwd` (inside `sandbox` when given), killing it when `timeout` has
/// passed.
pub fn run(
    program: &str,
    args: &[String],
    cwd: &Path,
    timeout: Duration,
    sandbox: Option<&dyn CommandSandbox>,
) -> Result<RunOutput, ApiError> {
    if program.is_empty() {
        return Err(ApiError::InvalidInput("the program name is empty".into()));
    }
    if args.len() > MAX_ARGS
        || program.len() + args.iter().map(|a| a.len() + 1).sum::<usize>() > MAX_COMMAND_LINE
    {
        return Err(ApiError::InvalidInput(
            "the command line is too long".into(),
        ));
    }
    if program.contains('\0') || args.iter().any(|a| a.contains('\0')) {
        return Err(ApiError::InvalidInput(
            "the command line contains a NUL character".into(),
        ));
    }
    if timeout.is_zero() {
        return Err(ApiError::Failed(
            "no time is left in this call to run a command".into(),
        ));
    }
    let deadline = Instant::now() + timeout;
    let (mut cmd, _sandbox_guard) = match sandbox {
        Some(sandbox) => {
            let resolved = find_program(program)
                .ok_or_else(|| ApiError::NotFound(format!("no program `{program}` on PATH")))?;
            sandbox
                .command(&resolved, args, cwd)
                .map_err(|e| ApiError::Failed(format!("cannot sandbox `{program}`: {e}")))?
        }
        None => {
            let mut cmd = Command::new(program);
            cmd.args(args).current_dir(cwd).env_clear();
            if let Some(path) = std::env::var_os("PATH") {
                cmd.env("PATH", path);
            }
            (cmd, Box::new(()) as Box<dyn Send>)
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            ApiError::NotFound(format!("no program `{program}` on PATH"))
        }
        _ => ApiError::Failed(format!("cannot run `{program}`: {e}")),
    })?;

    let (done_tx, done_rx) = mpsc::channel::<()>();
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let mut readers = 0;
    if let Some(pipe) = child.stdout.take() {
        spawn_reader(pipe, Arc::clone(&stdout), done_tx.clone());
        readers += 1;
    }
    if let Some(pipe) = child.stderr.take() {
        spawn_reader(pipe, Arc::clone(&stderr), done_tx.clone());
        readers += 1;
    }
    drop(done_tx);

    let exited = wait_for_exit(&child, timeout);
    // Whatever happened, nothing of the group survives the call.
    kill_tree(&mut child);
    let status = child
        .wait()
        .map_err(|e| ApiError::Failed(format!("cannot wait for `{program}`: {e}")))?;
    if !exited {
        return Err(ApiError::Timeout(format!(
            "`{program}` did not finish within the {} ms left in this call and was killed",
            timeout.as_millis()
        )));
    }
    // The pipes close when the command exits, unless it left a child holding them open: wait
    // for the readers until the deadline (plus a little), then take what they have.
    let grace = deadline.max(Instant::now()) + Duration::from_millis(50);
    for _ in 0..readers {
        let left = grace.saturating_duration_since(Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            break;
        }
    }
    let take = |buf: &Arc<Mutex<Vec<u8>>>| {
        std::mem::take(&mut *buf.lock().unwrap_or_else(|p| p.into_inner()))
    };
    Ok(RunOutput {
        status: status.code().unwrap_or(-1),
        stdout: take(&stdout),
        stderr: take(&stderr),
    })
}

/// `program` as a path: itself when it holds a `/`, else the first match on the host's `PATH`.
pub fn find_program(program: &str) -> Option<std::path::PathBuf> {
    if program.contains('/') {
        let p = std::path::PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Blocks until the child exits (without reaping it) or `timeout` passes; true when it exited.
fn wait_for_exit(child: &std::process::Child, timeout: Duration) -> bool {
    let (tx, rx) = mpsc::channel::<()>();
    let pid = child.id();
    std::thread::spawn(move || {
        wait_without_reaping(pid);
        let _ = tx.send(());
    });
    rx.recv_timeout(timeout).is_ok()
}

#[cfg(unix)]
fn wait_without_reaping(pid: u32) {
    use rustix::process::{Pid, WaitId, WaitIdOptions, waitid};
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return;
    };
    loop {
        match waitid(
            WaitId::Pid(pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            _ => return,
        }
    }
}

#[cfg(not(unix))]
fn wait_without_reaping(_pid: u32) {
    // Without process groups the timeout path kills the child itself; block until the
    // deadline so the caller's `recv_timeout` decides.
    std::thread::park();
}

/// Kills the child's whole process group (the child leads it), or the child alone where
/// there are no process groups.
fn kill_tree(child: &mut std::process::Child) {
    #[cfg(unix)]
    {
        use rustix::process::{Pid, Signal, kill_process_group};
        if let Some(pid) = i32::try_from(child.id()).ok().and_then(Pid::from_raw) {
            // ESRCH: the group is already empty.
            let _ = kill_process_group(pid, Signal::KILL);
        }
    }
    #[cfg(not(unix))]
    {
        let _ = child.kill();
    }
}

fn spawn_reader(
    mut pipe: impl Read + Send + 'static,
    out: Arc<Mutex<Vec<u8>>>,
    done: mpsc::Sender<()>,
) {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut buf = out.lock().unwrap_or_else(|p| p.into_inner());
                    let room = MAX_STREAM_BYTES.saturating_sub(buf.len());
                    // Beyond the cap keep reading (so the command never blocks on a full
                    // pipe) but drop the bytes.
                    buf.extend_from_slice(&chunk[..n.min(room)]);
                }
            }
        }
        let _ = done.send(());
    });
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn runs_with_cleared_environment_in_cwd() {
        let dir = tempfile::tempdir().unwrap();
        let out = run(
            "sh",
            &s(&["-c", "pwd; env | sort; echo err >&2; exit 3"]),
            dir.path(),
            Duration::from_secs(10),
            None,
        )
        .unwrap();
        assert_eq!(out.status, 3);
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines = text.lines();
        let pwd = lines.next().unwrap();
        assert_eq!(
            std::fs::canonicalize(pwd).unwrap(),
            std::fs::canonicalize(dir.path()).unwrap()
        );
        for line in lines {
            let name = line.split('=').next().unwrap();
            assert!(
                matches!(name, "PATH" | "PWD" | "SHLVL" | "_" | "OLDPWD"),
                "leaked {line}"
            );
        }
        assert_eq!(out.stderr, b"err\n");
    }

    #[test]
    fn output_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let out = run(
            "sh",
            &s(&["-c", "head -c 3000000 /dev/zero"]),
            dir.path(),
            Duration::from_secs(20),
            None,
        )
        .unwrap();
        assert_eq!(out.status, 0);
        assert_eq!(out.stdout.len(), MAX_STREAM_BYTES);
    }

    #[test]
    fn timeout_kills() {
        let dir = tempfile::tempdir().unwrap();
        let start = Instant::now();
        let err = run(
            "sleep",
            &s(&["30"]),
            dir.path(),
            Duration::from_millis(200),
            None,
        )
        .unwrap_err();
        assert!(
            matches!(err, ApiError::Timeout(ref m) if m.contains("killed")),
            "{err}"
        );
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    /// The pid a shell printed for a process it left running.
    fn alive(pid: i32) -> bool {
        // Signal 0 checks existence; a zombie still exists until reaped by its parent (init
        // reaps orphans quickly), so look at its state too.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        !stat.is_empty() && !stat.contains(") Z ")
    }

    /// Whether `pid` is gone within 2 s: killed processes are reaped by init asynchronously.
    fn gone_within_two_seconds(pid: i32) -> bool {
        (0..100).any(|_| {
            if alive(pid) {
                std::thread::sleep(Duration::from_millis(20));
                false
            } else {
                true
            }
        })
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_timeout_kills_the_whole_tree() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("grandchild.pid");
        let err = run(
            "sh",
            &s(&["-c", "sleep 30 & echo $! > grandchild.pid; wait"]),
            dir.path(),
            Duration::from_millis(500),
            None,
        )
        .unwrap_err();
        assert!(matches!(err, ApiError::Timeout(_)), "{err}");
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let gone = gone_within_two_seconds(pid);
        assert!(gone, "grandchild {pid} survived the timeout");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn nothing_outlives_a_command_that_exits() {
        let dir = tempfile::tempdir().unwrap();
        let out = run(
            "sh",
            &s(&["-c", "sleep 30 >/dev/null 2>&1 & echo $!"]),
            dir.path(),
            Duration::from_secs(10),
            None,
        )
        .unwrap();
        let pid: i32 = String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let gone = gone_within_two_seconds(pid);
        assert!(gone, "background process {pid} outlived its command");
    }

    #[test]
    fn missing_program() {
        let dir = tempfile::tempdir().unwrap();
        let err = run(
            "definitely-not-a-program-xyz",
            &[],
            dir.path(),
            Duration::from_secs(1),
            None,
        )
        .unwrap_err();
        assert!(matches!(err, ApiError::NotFound(_)), "{err}");
    }
}
