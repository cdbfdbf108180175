//! Costs of process plugins, measured through this crate's public API with the real sandbox
//! (the launcher is this program re-run: `main` calls `run_launcher_if_requested` first), next
//! to the floor any process plugin pays: a bare Python JSON-RPC echo child on a pipe, driven
//! from here. `scripts/bench-process.sh` runs it with pluggy's side
//! (`scripts/bench_process_peers.py`) and prints the table.
//!
//! Plugins: `examples/plugins/bench-echo-py` (the Python SDK, standard library only) and
//! `benches/bench-echo-process` (Rust, the raw protocol; its binary is passed with
//! `--rust-plugin`, by default `$CARGO_TARGET_DIR/release/bench-echo-process`). Hooks: `bench_echo` takes `{"x": 1}` and returns 2 (the shape of
//! `scripts/bench_pluggy.py`), `bench_payload` returns its 1 MiB string `data`, `bench_nested`
//! calls the host (`state.get`) before it answers.
//!
//! Prints `<key> <value>` lines on stdout: times in nanoseconds (the median of calls timed one
//! by one), memory in bytes. Progress goes to stderr.
//!
//! `--cases all` (default) measures everything. `--cases breakdown` measures the cold starts
//! and the warm Python call with each sandbox layer turned off in turn (one runtime per
//! setting of `TRELLIS_SANDBOX_DISABLE`, taking turns, so that the machine's drift falls on
//! all alike); keys `<case>@<layers off>`. `--cases warm` measures only the warm round trips
//! (for a run pinned to one CPU).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use trellis_audit::{AuditSink, MemoryAudit};
use trellis_core::{EventBus, HookSpec, PluginManager, RemoteHookEntry, RemoteHooks};
use trellis_process::{
    Launcher, PluginSpec, ProcessLimits, ProcessOptions, ProcessPlugin, ProcessRuntime,
    describe_support,
};

/// The payload of the large round trip.
const PAYLOAD_BYTES: usize = 1 << 20;
/// Fresh processes per cold-start figure.
const COLD_STARTS: usize = 20;
/// The pause before each cold start.
const PAUSE: Duration = Duration::from_millis(100);
/// Plugins in the widest fan-out (and in the idle-memory figure).
const FANOUT_MAX: usize = 100;

/// The bare echo: reads one JSON-RPC request per line on stdin, answers on stdout. `nested`
/// first sends a request of its own and waits for its answer, as a plugin calling the host.
const FLOOR_PY: &str = r#"import json, sys
inp, out = sys.stdin.buffer, sys.stdout.buffer
while True:
    line = inp.readline()
    if not line:
        break
    m = json.loads(line)
    p = m["params"]
    if m["method"] == "nested":
        out.write(b'{"jsonrpc":"2.0","id":"n1","method":"state.get","params":{"key":"k"}}\n')
        out.flush()
        json.loads(inp.readline())
        r = p["x"] + 1
    elif "data" in p:
        r = p["data"]
    else:
        r = p["x"] + 1
    out.write(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": r},
                         ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
    out.flush()
"#;

struct Options {
    rust_plugin: PathBuf,
    cases: String,
}

impl Options {
    fn parse() -> Options {
        let mut rust_plugin = None;
        let mut cases = "all".to_owned();
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--rust-plugin" => rust_plugin = args.next().map(PathBuf::from),
                "--cases" => cases = args.next().unwrap_or_default(),
                _ => {} // `--bench`, which cargo passes
            }
        }
        // Where scripts/bench-process.sh builds it (scripts/env.sh's target directory).
        let rust_plugin = rust_plugin.unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/trellis/target"))
                })
                .unwrap_or_default()
                .join("release/bench-echo-process")
        });
        if !rust_plugin.is_file() {
            eprintln!(
                "process_dispatch: no Rust plugin at {} (pass --rust-plugin PATH); build it with
  \
                 cargo build --release --manifest-path benches/bench-echo-process/Cargo.toml
\
                 or run the whole comparison: bash scripts/bench-process.sh",
                rust_plugin.display()
            );
            std::process::exit(2)
        }
        Options { rust_plugin, cases }
    }
}

fn emit(key: &str, value: f64) {
    println!("{key} {value:.0}");
    let _ = std::io::stdout().flush();
}

fn median(mut samples: Vec<u64>) -> f64 {
    samples.sort_unstable();
    let n = samples.len();
    if n % 2 == 1 {
        samples[n / 2] as f64
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) as f64 / 2.0
    }
}

/// Times each subject call by call, in alternating rounds of `round` (at least `min` calls a
/// round), so that drift of the machine (a shared VM's neighbours) falls on every subject
/// alike; after `warmup` untimed calls each. The median per subject, in nanoseconds.
fn interleaved(
    subjects: &mut [(&str, &mut dyn FnMut())],
    warmup: usize,
    min: usize,
    round: Duration,
    rounds: usize,
) {
    let mut samples: Vec<Vec<u64>> = subjects.iter().map(|_| Vec::new()).collect();
    for (_, f) in subjects.iter_mut() {
        for _ in 0..warmup {
            f();
        }
    }
    for _ in 0..rounds {
        for ((_, f), out) in subjects.iter_mut().zip(&mut samples) {
            let start = Instant::now();
            let mut n = 0;
            while n < min || start.elapsed() < round {
                let t = Instant::now();
                f();
                out.push(t.elapsed().as_nanos() as u64);
                n += 1;
            }
        }
    }
    for ((key, _), out) in subjects.iter().zip(samples) {
        emit(key, median(out));
    }
}

struct Bench {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    project: PathBuf,
    cache: PathBuf,
    python_dir: PathBuf,
    rust_dir: PathBuf,
    python: PathBuf,
    payload: String,
}

impl Bench {
    fn new(opts: &Options) -> Bench {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(tmp.path()).expect("tempdir path");
        let project = root.join("project");
        std::fs::create_dir_all(project.join(".trellis/state")).expect("project");
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let python_dir = std::fs::canonicalize(repo.join("examples/plugins/bench-echo-py"))
            .expect("examples/plugins/bench-echo-py");
        // The Rust plugin's directory: its manifest and the built binary, side by side.
        let rust_dir = root.join("bench-echo-process");
        std::fs::create_dir_all(&rust_dir).expect("plugin dir");
        std::fs::copy(
            repo.join("benches/bench-echo-process/plugin.yaml"),
            rust_dir.join("plugin.yaml"),
        )
        .expect("benches/bench-echo-process/plugin.yaml");
        std::fs::copy(&opts.rust_plugin, rust_dir.join("bench-echo-process")).unwrap_or_else(|e| {
            panic!("{}: {e}", opts.rust_plugin.display());
        });
        let python = trellis_process::interpreter::resolve("python3", None)
            .expect("python3 on PATH")
            .program;
        // Base64 text, as bytes travel in the protocol: a 1 MiB string that needs no escapes.
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let payload = (0..PAYLOAD_BYTES)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                alphabet[(seed % 64) as usize] as char
            })
            .collect();
        Bench {
            cache: root.join("cache"),
            _tmp: tmp,
            root,
            project,
            python_dir,
            rust_dir,
            python,
            payload,
        }
    }

    fn runtime(&self, launcher: Launcher) -> Arc<ProcessRuntime> {
        Arc::new(ProcessRuntime::new(ProcessOptions {
            project_root: self.project.clone(),
            cache_dir: self.cache.clone(),
            events: Arc::new(EventBus::new()),
            audit: Arc::new(MemoryAudit::new()) as Arc<dyn AuditSink>,
            state_dir: self.project.join(".trellis/state"),
            launcher,
        }))
    }

    /// A sandboxed runtime with `off` (comma-separated layer names) turned off, through the
    /// variable the runtime reads when it first looks at the sandbox. Only while this program
    /// has one thread: before any plugin starts.
    fn runtime_without(&self, off: &str) -> Arc<ProcessRuntime> {
        let before = std::env::var_os(trellis_process::DISABLE_VAR);
        // SAFETY: no other thread exists yet (see above), so none reads the environment.
        unsafe { std::env::set_var(trellis_process::DISABLE_VAR, off) };
        let runtime = self.runtime(Launcher::CurrentExe);
        runtime.support();
        match before {
            // SAFETY: as above.
            Some(v) => unsafe { std::env::set_var(trellis_process::DISABLE_VAR, v) },
            None => unsafe { std::env::remove_var(trellis_process::DISABLE_VAR) },
        }
        runtime
    }

    fn spec(&self, name: &str, dir: &Path) -> PluginSpec {
        let manifest = trellis_manifest::load_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .manifest;
        PluginSpec {
            name: name.to_owned(),
            dir: dir.to_owned(),
            grants: manifest.requires.capabilities.clone(),
            manifest,
            config: json!({}),
            limits: ProcessLimits::default(),
            on_quarantine: None,
            python_env: None,
        }
    }

    fn start(&self, runtime: &Arc<ProcessRuntime>, name: &str, dir: &Path) -> Arc<ProcessPlugin> {
        runtime
            .start(self.spec(name, dir))
            .unwrap_or_else(|e| panic!("starting {name}: {e}"))
    }

    fn payload_args(&self) -> String {
        format!(r#"{{"data":"{}"}}"#, self.payload)
    }

    /// Spawn + handshake + `init` + the first `bench_echo` call, in a fresh process (sandbox
    /// set-up and all); the time in nanoseconds. Stopping the process is not timed.
    fn cold_start(&self, runtime: &Arc<ProcessRuntime>, name: &str, dir: &Path) -> u64 {
        // The manifest is read before: a host reads it when it loads the project.
        let spec = self.spec(name, dir);
        let t = Instant::now();
        let plugin = runtime
            .start(spec)
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let answer = plugin
            .call_hook("bench_echo", r#"{"x":1}"#)
            .expect("first call");
        let took = t.elapsed().as_nanos() as u64;
        assert_eq!(answer, Some(json!(2)));
        plugin.stop();
        took
    }

    /// The same for the bare echo.
    fn cold_floor(&self) -> u64 {
        let t = Instant::now();
        let mut floor = self.floor();
        let answer = floor.call("echo", json!({"x": 1}));
        let took = t.elapsed().as_nanos() as u64;
        assert_eq!(answer, json!(2));
        took
    }

    /// Cold starts of each subject, taken in turn (`rounds` each, after one untimed: the
    /// runtime probes the sandbox and writes the SDK into the cache once). Each start
    /// comes after a pause, as a start on demand does: back to back, a start finds the
    /// kernel's state from the one before (joining a cgroup costs an RCU grace period, ~12 ms
    /// here, unless another join came just before) and the last process's teardown.
    fn cold_starts(
        &self,
        subjects: &[(String, &Arc<ProcessRuntime>, &Path)],
        floor: bool,
        rounds: usize,
    ) {
        for (key, runtime, dir) in subjects {
            self.cold_start(runtime, &format!("{key}-first"), dir);
        }
        let mut samples: Vec<Vec<u64>> = subjects.iter().map(|_| Vec::new()).collect();
        let mut floors = Vec::new();
        for i in 0..rounds {
            for ((key, runtime, dir), out) in subjects.iter().zip(&mut samples) {
                std::thread::sleep(PAUSE);
                out.push(self.cold_start(runtime, &format!("{key}-{i}"), dir));
            }
            if floor {
                std::thread::sleep(PAUSE);
                floors.push(self.cold_floor());
            }
        }
        for ((key, _, _), out) in subjects.iter().zip(samples) {
            emit(key, median(out));
        }
        if floor {
            emit("cold_floor", median(floors));
        }
    }

    /// A closure that calls `hook` with `args` and checks the first answer.
    fn caller<'a>(
        plugin: &'a ProcessPlugin,
        hook: &'a str,
        args: &'a str,
        expect: Value,
    ) -> impl FnMut() + 'a {
        assert_eq!(plugin.call_hook(hook, args).expect("call"), Some(expect));
        move || {
            std::hint::black_box(plugin.call_hook(hook, args).expect("call"));
        }
    }

    fn floor(&self) -> PipeEcho {
        PipeEcho::spawn(&self.python, &self.root)
    }
}

/// The floor: a bare Python echo child on a pipe.
struct PipeEcho {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next: u64,
    line: Vec<u8>,
}

impl PipeEcho {
    fn spawn(python: &Path, dir: &Path) -> PipeEcho {
        let script = dir.join("floor.py");
        if !script.is_file() {
            std::fs::write(&script, FLOOR_PY).expect("floor.py");
        }
        // The environment a plugin gets, less what only Trellis sets.
        let mut child = Command::new(python)
            .arg(&script)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", dir)
            .env("LANG", "C.UTF-8")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 floor.py");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::with_capacity(64 << 10, child.stdout.take().expect("stdout"));
        PipeEcho {
            child,
            stdin,
            stdout,
            next: 0,
            line: Vec::new(),
        }
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let mut request = serde_json::to_vec(
            &json!({"jsonrpc": "2.0", "id": self.next, "method": method, "params": params}),
        )
        .expect("JSON");
        request.push(b'\n');
        self.stdin.write_all(&request).expect("write to the echo");
        loop {
            self.line.clear();
            self.stdout
                .read_until(b'\n', &mut self.line)
                .expect("read from the echo");
            let mut message: Value = serde_json::from_slice(&self.line).expect("an answer");
            if message.get("method").is_some() {
                // The child's own request (state.get): answer it.
                let answer =
                    json!({"jsonrpc": "2.0", "id": message["id"], "result": {"value": null}});
                let mut line = serde_json::to_vec(&answer).expect("JSON");
                line.push(b'\n');
                self.stdin.write_all(&line).expect("write to the echo");
                continue;
            }
            return message["result"].take();
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for PipeEcho {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Memory of one process, from `/proc`.
#[derive(Default, Clone, Copy)]
struct Mem {
    rss: u64,
    pss: u64,
}

fn proc_kb(path: &str, field: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

fn mem_of(pid: u32) -> Mem {
    Mem {
        rss: proc_kb(&format!("/proc/{pid}/status"), "VmRSS:"),
        pss: proc_kb(&format!("/proc/{pid}/smaps_rollup"), "Pss:"),
    }
}

fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    out
}

fn descendants(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let next = children(all[i]);
        all.extend(next);
        i += 1;
    }
    all
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// The memory cgroup's usage of `pid` (v2 `memory.current`, v1 `memory.usage_in_bytes`).
fn cgroup_memory(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let path = path.trim_start_matches('/');
        let file = if controllers.is_empty() {
            PathBuf::from("/sys/fs/cgroup")
                .join(path)
                .join("memory.current")
        } else if controllers.split(',').any(|c| c == "memory") {
            PathBuf::from("/sys/fs/cgroup/memory")
                .join(path)
                .join("memory.usage_in_bytes")
        } else {
            continue;
        };
        if let Ok(v) = std::fs::read_to_string(file) {
            return v.trim().parse().ok();
        }
    }
    None
}

/// Memory of every sandboxed plugin process tree this process started (launcher, init, plugin)
/// that runs the Python bench plugin, on average per tree.
fn idle_memory(python_dir: &Path) {
    let me = std::process::id();
    let marker = python_dir.join("main.py").to_string_lossy().into_owned();
    let (mut trees, mut tree, mut plugin, mut cgroup, mut cgroups) =
        (0u64, Mem::default(), Mem::default(), 0u64, 0u64);
    for launcher in children(me) {
        if !cmdline(launcher).contains(trellis_sandbox::LAUNCHER_ARG) {
            continue;
        }
        let pids = descendants(launcher);
        let Some(python) = pids.iter().copied().find(|p| cmdline(*p).contains(&marker)) else {
            continue;
        };
        trees += 1;
        for pid in &pids {
            let m = mem_of(*pid);
            tree.rss += m.rss;
            tree.pss += m.pss;
        }
        let m = mem_of(python);
        plugin.rss += m.rss;
        plugin.pss += m.pss;
        if let Some(bytes) = cgroup_memory(python) {
            cgroup += bytes;
            cgroups += 1;
        }
    }
    assert!(trees > 0, "no sandboxed Python plugin process found");
    let per = |v: u64| v as f64 / trees as f64;
    emit("mem_trees", trees as f64);
    emit("mem_tree_rss", per(tree.rss));
    emit("mem_tree_pss", per(tree.pss));
    emit("mem_plugin_rss", per(plugin.rss));
    emit("mem_plugin_pss", per(plugin.pss));
    if cgroups > 0 {
        emit("mem_cgroup", cgroup as f64 / cgroups as f64);
    }
}

/// Layer settings of `--cases breakdown`: a name for the table and what is turned off.
const SETTINGS: &[(&str, &str)] = &[
    ("none", ""),
    ("namespaces", "namespaces"),
    ("landlock", "landlock"),
    ("seccomp", "seccomp"),
    ("rlimits", "rlimits"),
    ("cgroups", "cgroup-pids,cgroup-memory"),
    (
        "all",
        "namespaces,landlock,seccomp,rlimits,cgroup-pids,cgroup-memory",
    ),
];

/// Cold starts per subject in `--cases breakdown`.
const BREAKDOWN_STARTS: usize = 10;

fn main() {
    trellis_sandbox::run_launcher_if_requested();
    let opts = Options::parse();
    let bench = Bench::new(&opts);
    let (py, rs) = (bench.python_dir.clone(), bench.rust_dir.clone());
    let echo = r#"{"x":1}"#;
    let round = Duration::from_millis(200);

    if opts.cases == "breakdown" {
        // Every runtime is made first, while this program has one thread.
        let mut runtimes: Vec<(&str, Arc<ProcessRuntime>)> = SETTINGS
            .iter()
            .map(|(name, off)| (*name, bench.runtime_without(off)))
            .collect();
        runtimes.push(("unsandboxed", bench.runtime(Launcher::Unsandboxed)));
        for (name, runtime) in &runtimes {
            eprintln!("{name}: {}", describe_support(runtime.support()));
        }
        eprintln!("== warm Python call, per layer setting");
        {
            let plugins: Vec<Arc<ProcessPlugin>> = runtimes
                .iter()
                .map(|(name, runtime)| bench.start(runtime, &format!("bench-echo-py-{name}"), &py))
                .collect();
            let keys: Vec<String> = runtimes
                .iter()
                .map(|(n, _)| format!("call_py@{n}"))
                .collect();
            let mut callers: Vec<_> = plugins
                .iter()
                .map(|p| Bench::caller(p, "bench_echo", echo, json!(2)))
                .collect();
            let mut subjects: Vec<(&str, &mut dyn FnMut())> = keys
                .iter()
                .map(String::as_str)
                .zip(callers.iter_mut().map(|c| c as &mut dyn FnMut()))
                .collect();
            interleaved(&mut subjects, 200, 50, round, 5);
        }
        eprintln!("== cold starts, per layer setting");
        let mut subjects = Vec::new();
        for (name, runtime) in &runtimes {
            subjects.push((format!("cold_py@{name}"), runtime, py.as_path()));
            if *name != "unsandboxed" {
                subjects.push((format!("cold_rs@{name}"), runtime, rs.as_path()));
            }
        }
        bench.cold_starts(&subjects, false, BREAKDOWN_STARTS);
        return;
    }

    let sandboxed = bench.runtime(Launcher::CurrentExe);
    let layers = describe_support(sandboxed.support());
    eprintln!("sandbox: {layers}");
    println!("sandbox {layers}");

    {
        let plugin = bench.start(&sandboxed, "bench-echo-py", &py);
        let rust = bench.start(&sandboxed, "bench-echo-process", &rs);
        let mut floor = bench.floor();
        assert_eq!(floor.call("echo", json!({"x": 1})), json!(2));
        assert_eq!(floor.call("nested", json!({"x": 1})), json!(2));
        let floor = std::cell::RefCell::new(floor);

        eprintln!("== warm call round trip; nested host call (state.get)");
        let mut call_py = Bench::caller(&plugin, "bench_echo", echo, json!(2));
        let mut call_rs = Bench::caller(&rust, "bench_echo", echo, json!(2));
        let mut nested_py = Bench::caller(&plugin, "bench_nested", echo, json!(2));
        let mut call_floor = || {
            std::hint::black_box(floor.borrow_mut().call("echo", json!({"x": 1})));
        };
        let mut nested_floor = || {
            std::hint::black_box(floor.borrow_mut().call("nested", json!({"x": 1})));
        };
        interleaved(
            &mut [
                ("call_py", &mut call_py),
                ("call_rs", &mut call_rs),
                ("call_floor", &mut call_floor),
                ("nested_py", &mut nested_py),
                ("nested_floor", &mut nested_floor),
            ],
            500,
            100,
            round,
            10,
        );

        if opts.cases == "warm" {
            return;
        }

        eprintln!("== 1 MiB round trip");
        let args = bench.payload_args();
        let expect = Value::String(bench.payload.clone());
        let mut payload_py = Bench::caller(&plugin, "bench_payload", &args, expect.clone());
        let mut payload_rs = Bench::caller(&rust, "bench_payload", &args, expect.clone());
        let params = json!({"data": bench.payload});
        assert_eq!(floor.borrow_mut().call("echo", params.clone()), expect);
        let mut payload_floor = || {
            // Encoding the request is part of the round trip, as on the other side.
            std::hint::black_box(floor.borrow_mut().call("echo", params.clone()));
        };
        interleaved(
            &mut [
                ("payload_py", &mut payload_py),
                ("payload_rs", &mut payload_rs),
                ("payload_floor", &mut payload_floor),
            ],
            10,
            5,
            round,
            10,
        );
    }

    eprintln!("== cold start");
    let unsandboxed = bench.runtime(Launcher::Unsandboxed);
    bench.cold_starts(
        &[
            ("cold_py".to_owned(), &sandboxed, &py),
            ("cold_rs".to_owned(), &sandboxed, &rs),
            ("cold_py_unsandboxed".to_owned(), &unsandboxed, &py),
        ],
        true,
        COLD_STARTS,
    );

    eprintln!("== fan-out to 1, 10, {FANOUT_MAX} Python plugins (starting {FANOUT_MAX})");
    let plugins: Vec<Arc<ProcessPlugin>> = (0..FANOUT_MAX)
        .map(|i| bench.start(&sandboxed, &format!("bench-echo-py-{i}"), &py))
        .collect();
    let mut floors: Vec<PipeEcho> = (0..FANOUT_MAX).map(|_| bench.floor()).collect();
    let args = json!({"x": 1});
    for n in [1usize, 10, FANOUT_MAX] {
        let pm = PluginManager::new();
        pm.add_hookspecs([HookSpec::new("bench_echo")])
            .expect("spec");
        for p in &plugins[..n] {
            let entry = RemoteHookEntry {
                hook: "bench_echo".to_owned(),
                ..RemoteHookEntry::default()
            };
            pm.register(trellis_core::remote_registration(
                p.name(),
                &[entry],
                Arc::clone(p) as Arc<dyn RemoteHooks>,
            ))
            .expect("register");
        }
        let hook = pm.hook("bench_echo").expect("hook");
        assert_eq!(hook.call(&args).expect("call").values, vec![json!(2); n]);
        let mut fan_py = || {
            std::hint::black_box(hook.call(&args).expect("call"));
        };
        let mut fan_floor = || {
            let results: Vec<Value> = floors[..n]
                .iter_mut()
                .map(|f| f.call("echo", json!({"x": 1})))
                .collect();
            std::hint::black_box(results);
        };
        interleaved(
            &mut [
                (&format!("fanout_py_{n}"), &mut fan_py),
                (&format!("fanout_floor_{n}"), &mut fan_floor),
            ],
            20,
            5,
            round,
            10,
        );
    }

    eprintln!("== idle memory ({FANOUT_MAX} Python plugins, each called, now idle)");
    std::thread::sleep(Duration::from_millis(500));
    idle_memory(&py);
    let per_floor = |f: fn(&Mem) -> u64| {
        floors.iter().map(|e| f(&mem_of(e.pid()))).sum::<u64>() as f64 / floors.len() as f64
    };
    emit("mem_floor_rss", per_floor(|m| m.rss));
    emit("mem_floor_pss", per_floor(|m| m.pss));
    drop(floors);
    drop(plugins);
}
