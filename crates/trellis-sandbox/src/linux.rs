//! The launcher on Linux: namespaces, an init that reaps and kills, rlimits, Landlock and
//! seccomp, then `execve` of the plugin.
//!
//! The launcher is a fresh process with one thread, so it may allocate between `fork` and
//! `execve`. Process layout, when namespaces are available:
//!
//! ```text
//! host ── launcher (waits, exits with the plugin's status)
//!            └── init (PID 1 of the new PID namespace: reaps orphans, watches the lifeline)
//!                  └── plugin (rlimits, Landlock, seccomp, execve)
//! ```
//!
//! When init exits, for any reason, the kernel kills every process left in its PID namespace.
//! Without namespaces init is a child subreaper instead, and kills what is left one generation
//! at a time until it has no children.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use landlock::{
    ABI, Access, AccessFs, AccessNet, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope,
};
use seccompiler::{
    SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch,
};

use crate::{LIFELINE_FD, LaunchSpec, Layer, PLUGIN_FD, SETUP_FAILED, SPEC_VAR, Support};

/// Why a layer could not be set up.
type Setup<T> = Result<T, String>;

fn errno_text(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn check(rc: libc::c_int, what: &str) -> Setup<()> {
    if rc < 0 {
        Err(errno_text(what))
    } else {
        Ok(())
    }
}

pub(crate) fn launch() -> i32 {
    let spec: LaunchSpec = match std::env::var(SPEC_VAR)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
    {
        Ok(spec) => spec,
        Err(e) => return fail(&format!("no launch spec in {SPEC_VAR}: {e}")),
    };
    match run(&spec) {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
}

fn fail(reason: &str) -> i32 {
    let _ = writeln!(std::io::stderr(), "trellis-sandbox: {reason}");
    SETUP_FAILED
}

fn run(spec: &LaunchSpec) -> Setup<i32> {
    for dir in &spec.cgroups {
        std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string())
            .map_err(|e| format!("cannot join the cgroup {}: {e}", dir.display()))?;
    }
    let namespaces = spec.wants(Layer::Namespaces);
    if namespaces {
        enter_namespaces(spec)?;
    }
    // SAFETY: the launcher has one thread; the child continues with ordinary code.
    match unsafe { libc::fork() } {
        -1 => Err(errno_text("fork")),
        0 => {
            let code = match init(spec, namespaces) {
                Ok(code) => code,
                Err(e) => fail(&e),
            };
            // SAFETY: ends the init process without running the launcher's exit handlers twice.
            unsafe { libc::_exit(code) }
        }
        child => {
            // The launcher keeps no descriptor of the plugin's: the lifeline and the channel are
            // init's and the plugin's.
            if spec.lifeline {
                unsafe {
                    libc::close(PLUGIN_FD);
                    libc::close(LIFELINE_FD);
                }
            }
            Ok(wait_exit_code(child))
        }
    }
}

fn wait_exit_code(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    loop {
        // SAFETY: plain waitpid on our own child.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            return exit_code(status);
        }
        if rc < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return SETUP_FAILED;
        }
    }
}

fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        SETUP_FAILED
    }
}

fn enter_namespaces(spec: &LaunchSpec) -> Setup<()> {
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS;
    // SAFETY: unshare affects only this process.
    check(unsafe { libc::unshare(flags) }, "unshare (namespaces)")?;
    std::fs::write("/proc/self/setgroups", "deny").map_err(|e| format!("setgroups: {e}"))?;
    std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1"))
        .map_err(|e| format!("uid_map: {e}"))?;
    std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1"))
        .map_err(|e| format!("gid_map: {e}"))?;
    mount(None, "/", None, libc::MS_REC | libc::MS_PRIVATE, None)?;
    for dir in &spec.paths.hidden {
        if dir.is_dir() {
            hide(dir, &spec.paths.exposed)?;
        }
    }
    Ok(())
}

/// Covers `dir` with an empty file system, then brings back the `exposed` directories inside
/// it, read-only, at their own paths.
fn hide(dir: &Path, exposed: &[std::path::PathBuf]) -> Setup<()> {
    let inside: Vec<(&std::path::PathBuf, std::fs::File)> = exposed
        .iter()
        .filter(|e| e.starts_with(dir) && e.is_dir())
        .map(|e| {
            // Opened before the cover goes on: the descriptor still reaches the directory.
            std::fs::File::open(e)
                .map(|f| (e, f))
                .map_err(|err| format!("cannot open {}: {err}", e.display()))
        })
        .collect::<Setup<_>>()?;
    let target = dir.to_string_lossy();
    let quiet = libc::MS_NOSUID | libc::MS_NODEV;
    mount(
        Some("trellis-hidden"),
        &target,
        Some("tmpfs"),
        quiet,
        Some("size=64k,mode=0755"),
    )?;
    for (path, handle) in &inside {
        std::fs::create_dir_all(path)
            .map_err(|e| format!("cannot recreate {}: {e}", path.display()))?;
        let source = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(handle));
        let at = path.to_string_lossy();
        mount(Some(&source), &at, None, libc::MS_BIND | libc::MS_REC, None)?;
        mount(
            None,
            &at,
            None,
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | quiet,
            None,
        )?;
    }
    mount(
        None,
        &target,
        None,
        libc::MS_REMOUNT | libc::MS_RDONLY | quiet,
        None,
    )
}

fn mount(
    source: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Setup<()> {
    let c = |s: &str| CString::new(s).map_err(|_| format!("a NUL byte in {s:?}"));
    let source = source.map(c).transpose()?;
    let target_c = c(target)?;
    let fstype = fstype.map(c).transpose()?;
    let data = data.map(c).transpose()?;
    let ptr = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: every pointer is a valid C string or null, as mount(2) takes them.
    let rc = unsafe {
        libc::mount(
            ptr(&source),
            target_c.as_ptr(),
            ptr(&fstype),
            flags,
            ptr(&data).cast(),
        )
    };
    check(rc, &format!("mount {target}"))
}

/// Init: starts the plugin, then reaps until the plugin exits or the lifeline breaks, and
/// leaves nothing behind.
fn init(spec: &LaunchSpec, namespaces: bool) -> Setup<i32> {
    if namespaces {
        mount(
            Some("proc"),
            "/proc",
            Some("proc"),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            None,
        )?;
    } else {
        // SAFETY: prctl with integer arguments.
        check(
            unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) },
            "PR_SET_CHILD_SUBREAPER",
        )?;
    }
    let mut mask = empty_sigset();
    // SAFETY: a valid sigset; SIGCHLD is handled through signalfd below.
    unsafe {
        libc::sigaddset(&mut mask, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_BLOCK, &mask, std::ptr::null_mut());
    }
    // SAFETY: one thread; the child execs or exits.
    let plugin = match unsafe { libc::fork() } {
        -1 => return Err(errno_text("fork (plugin)")),
        0 => {
            let reason = exec_plugin(spec).unwrap_err();
            let _ = writeln!(std::io::stderr(), "trellis-sandbox: {reason}");
            unsafe { libc::_exit(SETUP_FAILED) }
        }
        pid => pid,
    };
    // Init holds only the lifeline: the channel is the plugin's alone.
    if spec.lifeline {
        unsafe { libc::close(PLUGIN_FD) };
    }
    // SAFETY: a valid sigset with SIGCHLD blocked.
    let sfd = unsafe { libc::signalfd(-1, &mask, libc::SFD_CLOEXEC) };
    check(sfd, "signalfd")?;
    let code = supervise(plugin, sfd, spec.lifeline);
    kill_everything(namespaces);
    Ok(code)
}

fn empty_sigset() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set.
    unsafe {
        let mut set = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        set
    }
}

/// Waits for the plugin to exit (its status is the result) or the lifeline to close
/// (`SIGKILL`'s status), reaping every other child on the way.
fn supervise(plugin: libc::pid_t, sfd: libc::c_int, lifeline: bool) -> i32 {
    loop {
        let mut fds = [
            libc::pollfd {
                // A negative descriptor is ignored by poll.
                fd: if lifeline { LIFELINE_FD } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sfd,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if rc < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return SETUP_FAILED;
        }
        if fds[0].revents != 0 {
            // The host is gone (or stopped the plugin): nothing may outlive it.
            return 128 + libc::SIGKILL;
        }
        if fds[1].revents != 0 {
            let mut info = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
            // SAFETY: reads one siginfo into a buffer of its size.
            unsafe { libc::read(sfd, info.as_mut_ptr().cast(), info.len()) };
            loop {
                let mut status = 0;
                // SAFETY: reaps any child without blocking.
                let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
                if pid <= 0 {
                    break;
                }
                if pid == plugin {
                    return exit_code(status);
                }
            }
        }
    }
}

/// Kills every process the plugin left. In a PID namespace `kill(-1)` reaches them all (and
/// they would die with init anyway); as a subreaper, orphans become init's children, so init
/// kills its children until none is left.
fn kill_everything(namespaces: bool) {
    if namespaces {
        // SAFETY: signals every process of this PID namespace but init.
        unsafe { libc::kill(-1, libc::SIGKILL) };
        return;
    }
    for _ in 0..10_000 {
        let children = children_of_self();
        if children.is_empty() {
            let mut status = 0;
            // SAFETY: reaps any remaining zombie.
            while unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } > 0 {}
            if children_of_self().is_empty() {
                return;
            }
        }
        for pid in children {
            // SAFETY: signals a child of ours.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let mut status = 0;
        // SAFETY: waits for any child.
        unsafe { libc::waitpid(-1, &mut status, 0) };
    }
}

fn children_of_self() -> Vec<libc::pid_t> {
    let pid = std::process::id();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<libc::pid_t>().ok()),
            );
        }
    }
    out
}

/// The plugin process: the layers that bind it, then `execve`. Returns only on failure.
fn exec_plugin(spec: &LaunchSpec) -> Setup<std::convert::Infallible> {
    // SAFETY: restores the signal mask and dispositions init changed.
    unsafe {
        let mask = empty_sigset();
        libc::sigprocmask(libc::SIG_SETMASK, &mask, std::ptr::null_mut());
        // Dies with init: when init is killed the plugin must not be left running.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        libc::setsid();
    }
    if spec.lifeline {
        unsafe { libc::close(LIFELINE_FD) };
    }
    let program = cstring(spec.program.as_os_str().as_bytes())?;
    let mut argv = vec![program.clone()];
    for a in &spec.args {
        argv.push(cstring(a.as_bytes())?);
    }
    let env: Vec<CString> = spec
        .env
        .iter()
        .map(|(k, v)| cstring(format!("{k}={v}").as_bytes()))
        .collect::<Setup<_>>()?;
    let cwd = cstring(spec.cwd.as_os_str().as_bytes())?;
    // SAFETY: a valid C string.
    check(unsafe { libc::chdir(cwd.as_ptr()) }, "chdir")?;
    if spec.wants(Layer::Rlimits) {
        set_rlimits(spec)?;
    }
    close_other_descriptors(spec.lifeline);
    if spec.wants(Layer::Landlock) {
        restrict_files(spec)?;
    }
    if spec.wants(Layer::Seccomp) {
        filter_syscalls()?;
    }
    let argv_ptrs: Vec<*const libc::c_char> = argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let env_ptrs: Vec<*const libc::c_char> = env
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    // SAFETY: null-terminated arrays of valid C strings.
    unsafe { libc::execve(program.as_ptr(), argv_ptrs.as_ptr(), env_ptrs.as_ptr()) };
    Err(errno_text(&format!(
        "cannot run {}",
        spec.program.display()
    )))
}

fn cstring(bytes: &[u8]) -> Setup<CString> {
    CString::new(bytes)
        .map_err(|_| "a NUL byte in the program, an argument or the environment".into())
}

/// Only stdin, stdout, stderr and (for a plugin) the channel stay open.
fn close_other_descriptors(keep_channel: bool) {
    let first = if keep_channel { PLUGIN_FD + 1 } else { 3 };
    // SAFETY: closes descriptors nothing else in this process uses.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first as u32, u32::MAX, 0) };
    if rc != 0 {
        for fd in first..1024 {
            unsafe { libc::close(fd) };
        }
    }
}

fn set_rlimits(spec: &LaunchSpec) -> Setup<()> {
    let set = |resource, value: u64, what: &str| -> Setup<()> {
        let lim = libc::rlimit {
            rlim_cur: value,
            rlim_max: value,
        };
        // SAFETY: a valid rlimit.
        check(unsafe { libc::setrlimit(resource, &lim) }, what)
    };
    set(libc::RLIMIT_CORE, 0, "RLIMIT_CORE")?;
    if let Some(n) = spec.limits.open_files {
        set(libc::RLIMIT_NOFILE, n, "RLIMIT_NOFILE")?;
    }
    if let Some(s) = spec.limits.cpu_seconds {
        set(libc::RLIMIT_CPU, s, "RLIMIT_CPU")?;
    }
    // Memory and processes are the cgroup's when one holds them: RLIMIT_AS would also count
    // address space that is reserved but never used, and RLIMIT_NPROC counts every process of
    // the user on the machine.
    if let Some(bytes) = spec.limits.memory_bytes
        && !spec.wants(Layer::CgroupMemory)
    {
        set(libc::RLIMIT_AS, bytes, "RLIMIT_AS")?;
    }
    Ok(())
}

/// The Landlock ABI of the running kernel (0 without Landlock).
pub(crate) fn landlock_abi() -> i32 {
    // SAFETY: landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) only asks.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    rc.max(0) as i32
}

fn restrict_files(spec: &LaunchSpec) -> Setup<()> {
    let abi = ABI::from(landlock_abi());
    if abi == ABI::Unsupported {
        return Err("Landlock is not available".into());
    }
    let e = |err: landlock::RulesetError| format!("Landlock: {err}");
    let read = AccessFs::ReadFile | AccessFs::ReadDir;
    let read_exec = read | AccessFs::Execute;
    let all = AccessFs::from_all(abi);
    let mut ruleset = Ruleset::default().handle_access(all).map_err(e)?;
    if abi >= ABI::V4 {
        // Handled with no rule: no TCP bind or connect at all.
        ruleset = ruleset.handle_access(AccessNet::from_all(abi)).map_err(e)?;
    }
    if abi >= ABI::V6 {
        ruleset = ruleset.scope(Scope::from_all(abi)).map_err(e)?;
    }
    let mut created = ruleset.create().map_err(e)?;
    let p = &spec.paths;
    let file_rights = AccessFs::from_file(abi);
    let rules = p
        .read_exec_trees
        .iter()
        .map(|d| (d, read_exec))
        .chain(p.read_trees.iter().map(|d| (d, read)))
        .chain(p.write_trees.iter().map(|d| (d, all)))
        .chain(p.read_files.iter().map(|f| (f, AccessFs::ReadFile.into())))
        .chain(
            p.write_files
                .iter()
                .map(|f| (f, file_rights & !AccessFs::Execute)),
        )
        .chain(p.list_dirs.iter().map(|d| (d, AccessFs::ReadDir.into())));
    for (path, mut access) in rules {
        let Ok(fd) = PathFd::new(path) else {
            // A path that vanished since the host planned the rules gets none.
            continue;
        };
        if !Path::new(path).is_dir() {
            access &= file_rights;
        }
        created = created.add_rule(PathBeneath::new(fd, access)).map_err(e)?;
    }
    let status = created.restrict_self().map_err(e)?;
    if status.ruleset != RulesetStatus::FullyEnforced {
        return Err(format!(
            "Landlock enforced only part of the rules ({:?})",
            status.ruleset
        ));
    }
    Ok(())
}

/// System calls a plugin never needs, refused with `EPERM`: sockets (the host API carries
/// HTTP), namespaces and mounts, tracing and other processes' memory, kernel modules, BPF,
/// keyrings, io_uring (it bypasses this filter), and the clock and reboot. `clone3` answers
/// `ENOSYS` so that the C library falls back to `clone`, whose flags the filter can see.
fn filter_syscalls() -> Setup<()> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => TargetArch::x86_64,
        "aarch64" => TargetArch::aarch64,
        "riscv64" => TargetArch::riscv64,
        other => return Err(format!("no seccomp filter for the {other} architecture")),
    };
    fn e(err: impl std::fmt::Display) -> String {
        format!("seccomp: {err}")
    }
    let mut denied: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in [
        libc::SYS_socket,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_kexec_load,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_reboot,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_acct,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_adjtimex,
        libc::SYS_fsopen,
        libc::SYS_fsmount,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_syslog,
    ] {
        denied.insert(nr, Vec::new());
    }
    // `clone` with any namespace flag: each flag is its own rule (rules are alternatives).
    let clone_rules = [
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWNS,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWCGROUP,
    ]
    .iter()
    .map(|flag| {
        let flag = *flag as u64;
        SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(flag),
            flag,
        )
        .and_then(|c| SeccompRule::new(vec![c]))
    })
    .collect::<Result<Vec<_>, _>>()
    .map_err(e)?;
    denied.insert(libc::SYS_clone, clone_rules);
    let main = SeccompFilter::new(
        denied,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(e)?;
    let mut clone3 = BTreeMap::new();
    clone3.insert(libc::SYS_clone3, Vec::new());
    let fallback = SeccompFilter::new(
        clone3,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(e)?;
    // SAFETY: prctl with integer arguments; required before an unprivileged filter.
    check(
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) },
        "PR_SET_NO_NEW_PRIVS",
    )?;
    for filter in [main, fallback] {
        let program: seccompiler::BpfProgram = filter.try_into().map_err(e)?;
        seccompiler::apply_filter(&program).map_err(e)?;
    }
    Ok(())
}

/// What a launcher can apply here: each layer tried for real, in a throwaway child.
pub(crate) fn probe() -> Support {
    let mut support = Support::default();
    let mut note = |layer: Layer, result: Setup<()>| match result {
        Ok(()) => support.available.push(layer),
        Err(reason) => support.missing.push((layer, reason)),
    };
    note(
        Layer::Namespaces,
        in_child(|| enter_namespaces(&LaunchSpec::default())),
    );
    let abi = landlock_abi();
    note(
        Layer::Landlock,
        if abi > 0 {
            in_child(|| restrict_files(&LaunchSpec::default()))
        } else {
            Err("the kernel has no Landlock (Linux 5.13+ with Landlock enabled)".into())
        },
    );
    note(Layer::Seccomp, in_child(filter_syscalls));
    note(Layer::Rlimits, Ok(()));
    let cgroups = crate::cgroup::Cgroups::detect();
    note(Layer::CgroupPids, cgroups.pids.clone().map(drop));
    note(Layer::CgroupMemory, cgroups.memory.clone().map(drop));
    support.landlock_abi = (abi > 0).then_some(abi);
    support
}

/// Runs `f` in a forked child and reports whether it succeeded.
fn in_child(f: impl FnOnce() -> Setup<()>) -> Setup<()> {
    let mut pipe = [0; 2];
    // SAFETY: a valid array of two descriptors.
    check(unsafe { libc::pipe(pipe.as_mut_ptr()) }, "pipe")?;
    // SAFETY: the probing launcher has one thread.
    match unsafe { libc::fork() } {
        -1 => Err(errno_text("fork")),
        0 => {
            let message = match f() {
                Ok(()) => String::new(),
                Err(e) => e,
            };
            // SAFETY: writes to our pipe, then exits the child.
            unsafe {
                libc::write(pipe[1], message.as_ptr().cast(), message.len());
                libc::_exit(0)
            }
        }
        child => {
            unsafe { libc::close(pipe[1]) };
            let mut buf = vec![0u8; 4096];
            // SAFETY: reads into our buffer.
            let n = unsafe { libc::read(pipe[0], buf.as_mut_ptr().cast(), buf.len()) };
            unsafe { libc::close(pipe[0]) };
            wait_exit_code(child);
            let message = String::from_utf8_lossy(&buf[..n.max(0) as usize]).into_owned();
            if message.is_empty() {
                Ok(())
            } else {
                Err(message)
            }
        }
    }
}
