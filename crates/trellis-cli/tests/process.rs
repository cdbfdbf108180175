//! Process plugins through the CLI: the Python SDK's UC-1 example, and a hostile plugin that
//! tries each way out of the sandbox with plain Python. Needs `python3` (CPython 3.9+) on PATH.

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use serde_json::Value;

fn example(name: &str) -> PathBuf {
    crate_dir().join("../../examples/plugins").join(name)
}

fn trellis(project: &Path, cache: &Path) -> Command {
    let mut cmd = Command::cargo_bin("trellis").expect("binary built");
    cmd.current_dir(project)
        .env_remove("TRELLIS_PROJECT")
        .env("TRELLIS_CACHE_DIR", cache)
        .env("TRELLIS_CONFIG_DIR", cache.join("user-config"))
        .env("HOSTILE_GRANTED", "granted-value")
        .env("HOSTILE_SECRET", "must-not-leak")
        .env_remove("TRELLIS_POLICY")
        .timeout(Duration::from_secs(60));
    cmd
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    project: PathBuf,
    cache: PathBuf,
}

impl Fixture {
    /// A project with the hostile plugin and the UC-1 scanner installed and enabled.
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(tmp.path()).unwrap();
        let (project, cache) = (root.join("project"), root.join("cache"));
        fs::create_dir_all(project.join("out")).unwrap();
        fs::write(project.join("README.md"), "readable\n").unwrap();
        fs::write(project.join("secret.txt"), "not granted\n").unwrap();
        fs::create_dir_all(root.join("home/.ssh")).unwrap();
        fs::write(root.join("home/.ssh/id_ed25519"), "PRIVATE KEY\n").unwrap();
        let f = Fixture {
            _tmp: tmp,
            root,
            project,
            cache,
        };
        for (dir, name) in [
            ("hostile-py", "hostile-py"),
            ("security-scanner-py", "security-scanner-py"),
        ] {
            f.cmd()
                .args(["plugin", "install", "--yes", example(dir).to_str().unwrap()])
                .assert()
                .success();
            f.cmd().args(["plugin", "enable", name]).assert().success();
        }
        f
    }

    fn cmd(&self) -> Command {
        trellis(&self.project, &self.cache)
    }

    /// A host embedded in the test, on the fixture's project and cache.
    fn host(&self) -> trellis_host::Host {
        let cache = self.cache.clone();
        let project =
            trellis_project::Project::open(&self.project).with_env(move |name| match name {
                "TRELLIS_CACHE_DIR" => Some(cache.to_string_lossy().into_owned()),
                other => std::env::var(other).ok(),
            });
        let runtimes = trellis_host::Runtimes::with_launcher(trellis_host::Launcher::Program(
            assert_cmd::cargo::cargo_bin("trellis"),
        ));
        trellis_host::Host::with_runtimes(project, runtimes).unwrap()
    }

    /// Runs a plugin command; its JSON output (`output` on success, the error otherwise) and
    /// whether it succeeded.
    fn run(&self, args: &[&str]) -> (bool, Value) {
        let out = self.cmd().arg("--json").args(args).output().unwrap();
        let text = if out.status.success() {
            &out.stdout
        } else {
            &out.stderr
        };
        let value: Value = serde_json::from_slice(text)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(text).into_owned()));
        (out.status.success(), value)
    }

    /// The JSON a trellis command prints (not a plugin command).
    fn output_of(&self, args: &[&str]) -> Value {
        let out = self.cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn output(&self, args: &[&str]) -> Value {
        let (ok, v) = self.run(args);
        assert!(ok, "{args:?} failed: {v}");
        v["output"].clone()
    }

    /// The UC-1 plugin still works: another plugin's failure did not take the host down.
    fn others_still_answer(&self) {
        let v = self.output(&["security-scan-py", "--dry-run"]);
        assert!(v["findings"].is_array(), "{v}");
    }

    fn audit(&self) -> Vec<Value> {
        fs::read_to_string(self.project.join(".trellis/audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Processes whose command line mentions this fixture's project (the plugin's entry path).
    fn plugin_processes(&self) -> Vec<u32> {
        let needle = self.project.to_string_lossy().into_owned();
        let mut found = Vec::new();
        for entry in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let mut cmdline = String::new();
            if fs::File::open(entry.path().join("cmdline"))
                .and_then(|mut f| f.read_to_string(&mut cmdline))
                .is_ok()
                && cmdline.contains(&needle)
                && !cmdline.contains("__trellis-sandbox")
            {
                found.push(pid);
            }
        }
        found
    }

    fn no_plugin_process_left(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = self.plugin_processes();
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "plugin processes outlived the host: {left:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn uc1_in_python_files_tasks_and_an_event() {
    let f = Fixture::new();
    fs::create_dir_all(f.project.join("src")).unwrap();
    fs::write(
        f.project.join("src/app.py"),
        "password = \"hunter22secret\"\n",
    )
    .unwrap();
    let v = f.output(&["security-scan-py"]);
    assert_eq!(v["findings"][0]["path"], "src/app.py", "{v}");
    assert_eq!(v["tasks"], serde_json::json!(["task-1"]));
    let task = fs::read_dir(f.project.join("backlog/tasks"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let text = fs::read_to_string(task.path()).unwrap();
    assert!(
        text.contains("plugin:security-scanner-py") && text.contains("security"),
        "{text}"
    );
    let events = fs::read_dir(f.project.join(".trellis/events"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let log = fs::read_to_string(events.path()).unwrap();
    assert!(log.contains("plugin.security.scan.completed"), "{log}");
    // The sandbox it ran in is on record.
    let sandbox = f
        .audit()
        .into_iter()
        .find(|r| r["action"] == "plugin.sandbox")
        .expect("a sandbox record");
    assert_eq!(sandbox["plugin"], "security-scanner-py");
    assert!(
        sandbox["details"]["layers"]
            .as_array()
            .is_some_and(|l| !l.is_empty()),
        "{sandbox}"
    );
}

#[test]
fn files_outside_the_grant_are_out_of_reach() {
    let f = Fixture::new();
    let read = |p: &str| f.output(&["hostile-read", p]);
    assert_eq!(read("README.md")["value"], "readable\n");
    let key = f.root.join("home/.ssh/id_ed25519");
    for path in [
        "secret.txt",
        ".trellis/state.json",
        ".trellis/audit.jsonl",
        "../home/.ssh/id_ed25519",
        key.to_str().unwrap(),
        "/etc/shadow",
    ] {
        let v = read(path);
        assert_eq!(v["ok"], false, "{path} was readable: {v}");
    }
    for path in [
        "README.md",
        "secret.txt",
        ".trellis/state.json",
        "../escape.txt",
        "/tmp/trellis-escape.txt",
    ] {
        let v = f.output(&["hostile-write", path]);
        assert_eq!(v["ok"], false, "{path} was writable: {v}");
    }
    assert_eq!(
        fs::read_to_string(f.project.join("README.md")).unwrap(),
        "readable\n"
    );
    assert!(!f.root.join("escape.txt").exists());
    let v = f.output(&["hostile-write", "out/report.txt"]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(
        fs::read_to_string(f.project.join("out/report.txt")).unwrap(),
        "pwned"
    );
    // `.trellis/` shows nothing but the plugin's own package.
    let v = f.output(&["hostile-list", ".trellis"]);
    let names = v["value"].as_array().cloned().unwrap_or_default();
    assert!(
        !names
            .iter()
            .any(|n| n == "state.json" || n == "audit.jsonl"),
        "{v}"
    );
    f.others_still_answer();
}

#[test]
fn no_network_without_a_grant() {
    let f = Fixture::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let v = f.output(&["hostile-connect", &port]);
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        listener.accept().is_err(),
        "the plugin reached the listener"
    );
    f.others_still_answer();
}

#[test]
fn the_environment_holds_only_granted_variables_and_one_channel() {
    let f = Fixture::new();
    let env = f.output(&["hostile-env"]);
    assert_eq!(env["HOSTILE_GRANTED"], "granted-value");
    assert!(env.get("HOSTILE_SECRET").is_none(), "{env}");
    assert!(env.get("TRELLIS_CACHE_DIR").is_none(), "{env}");
    let me = f.output(&["hostile-self"]);
    // stdin, stdout, stderr, the channel, and the descriptor of the listing itself.
    let fds: Vec<u64> = me["fds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(&fds[..4], &[0, 1, 2, 3], "{me}");
    assert!(fds.len() == 5, "{me}");
    // Its own PID namespace: the plugin sees only the sandbox's init and itself.
    assert_eq!(me["processes"], serde_json::json!([1, 2]), "{me}");
    assert_eq!(me["cwd"], f.project.to_str().unwrap());
}

#[test]
fn runaway_plugins_are_stopped_and_the_host_goes_on() {
    let f = Fixture::new();
    for (command, says) in [
        ("hostile-loop", "did not answer"),
        ("hostile-memory", "exited"),
        ("hostile-crash", "exit status 3"),
    ] {
        let started = Instant::now();
        let (ok, v) = f.run(&[command]);
        assert!(!ok, "{command} succeeded: {v}");
        assert!(v.to_string().contains(says), "{command}: {v}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{command} took {:?}",
            started.elapsed()
        );
        f.others_still_answer();
    }
    f.no_plugin_process_left();
}

#[test]
fn a_fork_bomb_is_bounded_and_nothing_outlives_the_call() {
    let f = Fixture::new();
    let v = f.output(&["hostile-fork"]);
    let children = v["children"].as_u64().unwrap();
    assert!(children < 64 && v["refused"].as_u64().unwrap() > 0, "{v}");
    f.no_plugin_process_left();
    let marker = f.project.join("out/orphan-pid");
    f.output(&["hostile-orphan", marker.to_str().unwrap()]);
    assert!(marker.exists(), "the orphan never ran");
    f.no_plugin_process_left();
    f.others_still_answer();
}

#[test]
fn stray_output_and_bad_messages_end_only_their_call() {
    let f = Fixture::new();
    assert_eq!(f.output(&["hostile-stdout"]), "still fine");
    let (ok, v) = f.run(&["hostile-garbage"]);
    assert!(!ok && v.to_string().contains("malformed"), "{v}");
    let (ok, v) = f.run(&["hostile-oversize"]);
    assert!(!ok && v.to_string().contains("16777216"), "{v}");
    f.others_still_answer();
}

#[test]
fn a_plugin_that_never_answers_the_handshake_fails_to_start() {
    let f = Fixture::new();
    f.cmd()
        .args([
            "plugin",
            "install",
            "--yes",
            example("silent-py").to_str().unwrap(),
        ])
        .assert()
        .success();
    f.cmd()
        .args(["plugin", "enable", "silent-py"])
        .assert()
        .success();
    let (ok, v) = f.run(&["silent"]);
    assert!(
        !ok && v.to_string().contains("did not answer `initialize`"),
        "{v}"
    );
    f.others_still_answer();
    f.no_plugin_process_left();
}

#[test]
fn a_killed_host_leaves_no_plugin_process() {
    let f = Fixture::new();
    let marker = f.project.join("out/sleeping");
    let mut host = std::process::Command::new(assert_cmd::cargo::cargo_bin("trellis"))
        .current_dir(&f.project)
        .env("TRELLIS_CACHE_DIR", &f.cache)
        .env("TRELLIS_CONFIG_DIR", f.cache.join("user-config"))
        .args(["hostile-sleep", marker.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the plugin never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !f.plugin_processes().is_empty(),
        "the plugin process is not visible"
    );
    let cgroups = trellis_sandbox::cgroup::Cgroups::detect();
    let left_by = |pid: u32| -> Vec<PathBuf> {
        [&cgroups.pids, &cgroups.memory]
            .into_iter()
            .flatten()
            .flat_map(|parent| {
                fs::read_dir(parent)
                    .into_iter()
                    .flatten()
                    .filter_map(Result::ok)
            })
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("trellis-{pid}-"))
            })
            .map(|e| e.path())
            .collect()
    };
    let pid = host.id();
    let had_cgroups = !left_by(pid).is_empty();
    host.kill().unwrap();
    host.wait().unwrap();
    f.no_plugin_process_left();
    // The killed host could not remove its cgroups; the next host does.
    f.others_still_answer();
    assert!(left_by(pid).is_empty(), "stale cgroups: {:?}", left_by(pid));
    if cgroups.pids.is_ok() || cgroups.memory.is_ok() {
        assert!(
            had_cgroups,
            "the plugin ran in no cgroup although cgroups are available"
        );
    }
}

#[test]
fn process_plugins_report_their_calls_in_plugin_stats() {
    let f = Fixture::new();
    f.others_still_answer();
    f.others_still_answer();
    let _ = f.run(&["hostile-crash"]);
    let stats = f.output_of(&["--json", "plugin", "stats"]);
    let of = |name: &str| {
        stats["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["plugin"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no stats for {name}: {stats}"))
    };
    let scanner = of("security-scanner-py");
    assert_eq!(scanner["calls"], 2, "{scanner}");
    assert_eq!(scanner["errors"], 0, "{scanner}");
    assert!(scanner["p50_ms"].as_f64().unwrap() > 0.0, "{scanner}");
    let hostile = of("hostile-py");
    assert_eq!(hostile["errors"], 1, "{hostile}");
    if trellis_sandbox::cgroup::Cgroups::detect().memory.is_ok() {
        assert!(
            scanner["peak_memory_bytes"].as_u64().unwrap() > 1 << 20,
            "{scanner}"
        );
    }
}

#[test]
fn subprocess_grants_hold_by_pattern() {
    let f = Fixture::new();
    let v = f.output(&["hostile-exec", "cat", "README.md"]);
    assert_eq!(v["stdout"], "readable\n", "{v}");
    // The pattern allows `cat` of anything; the sandbox the command runs in does not.
    let key = f.root.join("home/.ssh/id_ed25519");
    for target in ["secret.txt", ".trellis/state.json", key.to_str().unwrap()] {
        let v = f.output(&["hostile-exec", "cat", target]);
        assert_ne!(v["status"], 0, "{target}: {v}");
        assert!(!v["stdout"].as_str().unwrap().contains("PRIVATE"), "{v}");
    }
    let v = f.output(&[
        "hostile-exec",
        "sh",
        "-c",
        "echo x > escaped.txt; cat /dev/tcp/127.0.0.1/22",
    ]);
    assert_ne!(v["status"], 0, "{v}");
    assert!(!f.project.join("escaped.txt").exists());
    let (ok, v) = f.run(&["hostile-exec", "ls", "-la"]);
    assert!(!ok && v.to_string().contains("denied"), "{v}");
    assert!(
        f.audit()
            .iter()
            .any(|r| r["action"] == "capability.denied" && r["capability"] == "subprocess")
    );
}

#[test]
fn a_policy_can_require_the_whole_sandbox() {
    let f = Fixture::new();
    fs::write(
        f.project.join(".trellis/policy.yaml"),
        "plugin_policy:\n  sandbox: required\n",
    )
    .unwrap();
    // Every layer holds here: the plugin runs.
    f.others_still_answer();
    let weakened = || {
        let mut c = f.cmd();
        c.env("TRELLIS_SANDBOX_DISABLE", "landlock");
        c
    };
    let out = weakened()
        .args(["--json", "security-scan-py"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sandbox: required") && err.contains("missing landlock"),
        "{err}"
    );
    let refused = f
        .audit()
        .into_iter()
        .find(|r| r["action"] == "plugin.sandbox" && r["outcome"] == "refused");
    assert!(refused.is_some(), "no audit record of the refusal");
    let info = weakened()
        .args(["plugin", "info", "security-scanner-py"])
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains("missing landlock: turned off by TRELLIS_SANDBOX_DISABLE"),
        "{info}"
    );
}

/// The grant prompt, in a real pseudo-terminal, says what the sandbox holds here and what a
/// `subprocess` grant allows.
#[test]
fn the_install_prompt_says_what_the_sandbox_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, cache) = (tmp.path().join("project"), tmp.path().join("cache"));
    fs::create_dir_all(&p).unwrap();
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("trellis"));
    cmd.current_dir(&p)
        .env_remove("TRELLIS_PROJECT")
        .env_remove("TRELLIS_POLICY")
        .env("TRELLIS_CACHE_DIR", &cache)
        .env("TRELLIS_CONFIG_DIR", cache.join("user-config"))
        .args(["plugin", "install", example("hostile-py").to_str().unwrap()]);
    let mut session = rexpect::session::spawn_command(cmd, Some(20_000)).unwrap();
    session
        .exp_string("sandbox on this machine: namespaces, landlock, seccomp")
        .unwrap();
    for capability in ["filesystem.read", "filesystem.write", "environment"] {
        session
            .exp_string(&format!("Grant {capability}? [y/N]"))
            .unwrap();
        session.send_line("y").unwrap();
    }
    session
        .exp_string("each one runs in this plugin's sandbox, seeing only the files the plugin may see, with no network")
        .unwrap();
    session.exp_string("Grant subprocess? [y/N]").unwrap();
    session.send_line("n").unwrap();
    session.exp_string("Installed hostile-py 0.1.0").unwrap();
}

#[test]
fn requires_python_is_checked_at_install_with_both_versions_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, cache) = (tmp.path().join("project"), tmp.path().join("cache"));
    fs::create_dir_all(&p).unwrap();
    let plugin = tmp.path().join("future-py");
    fs::create_dir_all(&plugin).unwrap();
    let manifest = fs::read_to_string(example("silent-py").join("plugin.yaml"))
        .unwrap()
        .replace("name: silent-py", "name: future-py")
        .replace("provides:", "requires:\n  python: \">=99\"\nprovides:");
    fs::write(plugin.join("plugin.yaml"), manifest).unwrap();
    fs::write(plugin.join("main.py"), "").unwrap();
    let out = trellis(&p, &cache)
        .args([
            "--json",
            "plugin",
            "install",
            "--yes",
            plugin.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err: Value = serde_json::from_slice(&out.stdout).unwrap();
    let err = &err["error"];
    assert_eq!(err["kind"], "interpreter", "{err}");
    let message = err["message"].as_str().unwrap();
    assert!(
        message.contains("`requires.python` is `>=99`") && message.contains("is Python 3."),
        "{message}"
    );
}

/// `plugin init --runtime python` and `--runtime process` give plugins that validate, install,
/// enable and run.
#[test]
fn python_and_process_scaffolds_run() {
    for (runtime, name) in [("python", "greeter-py"), ("process", "greeter-raw")] {
        let tmp = tempfile::tempdir().unwrap();
        let (p, cache) = (tmp.path().join("project"), tmp.path().join("cache"));
        fs::create_dir_all(&p).unwrap();
        trellis(&p, &cache)
            .args(["plugin", "init", name, "--runtime", runtime, "--dir"])
            .arg(tmp.path().join(name))
            .assert()
            .success();
        let dir = tmp.path().join(name);
        trellis(&p, &cache)
            .args(["plugin", "validate", dir.to_str().unwrap()])
            .assert()
            .success();
        trellis(&p, &cache)
            .args(["plugin", "install", "--yes", dir.to_str().unwrap()])
            .assert()
            .success();
        trellis(&p, &cache)
            .args(["plugin", "enable", name])
            .assert()
            .success();
        trellis(&p, &cache)
            .args(["plugin", "config", name, "set", "greeting", "Howdy"])
            .assert()
            .success();
        let out = trellis(&p, &cache)
            .args(["--json", "hello", "Ada"])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["output"]["text"], "Howdy, Ada!", "{runtime}: {v}");
    }
}

/// examples/plugins/node-notes was written from docs/process.md alone (by someone who read
/// nothing else): it stores notes in state, files tasks, and handles its own
/// `backlog.task.created` while its `backlog.create_task` is waiting.
#[test]
fn a_node_plugin_written_from_the_protocol_doc_works() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, cache) = (tmp.path().join("project"), tmp.path().join("cache"));
    fs::create_dir_all(&p).unwrap();
    let dir = example("node-notes");
    trellis(&p, &cache)
        .args(["plugin", "install", "--yes", dir.to_str().unwrap()])
        .assert()
        .success();
    trellis(&p, &cache)
        .args(["plugin", "enable", "node-notes"])
        .assert()
        .success();
    for words in [&["buy", "milk"][..], &["call", "Ada"][..]] {
        trellis(&p, &cache)
            .arg("note-add")
            .args(words)
            .assert()
            .success();
    }
    let out = trellis(&p, &cache)
        .args(["--json", "note-list"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        v["output"]["notes"],
        serde_json::json!(["buy milk", "call Ada"]),
        "{v}"
    );
    assert_eq!(fs::read_dir(p.join("backlog/tasks")).unwrap().count(), 2);
}

#[test]
fn http_goes_through_the_host_to_granted_hosts_only() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::Write;
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 2048];
            let _ = std::io::Read::read(&mut s, &mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
            );
        }
    });
    // Without `network`: denied, audited.
    let f = Fixture::new();
    let url = format!("http://127.0.0.1:{port}/");
    let v = f.output(&["hostile-http", &url]);
    assert_eq!(v["ok"], false, "{v}");
    assert!(v["error"].as_str().unwrap().starts_with("Denied"), "{v}");
    assert!(
        f.audit()
            .iter()
            .any(|r| r["action"] == "capability.denied" && r["capability"] == "network")
    );
    // With `network` naming this address and port: the request goes through the host.
    let granted = f.root.join("granted");
    copy_dir(&example("hostile-py"), &granted);
    let manifest = fs::read_to_string(granted.join("plugin.yaml")).unwrap().replace(
        "    - name: environment\n",
        &format!("    - name: network\n      hosts: [\"127.0.0.1:{port}\"]\n    - name: environment\n"),
    );
    fs::write(granted.join("plugin.yaml"), manifest).unwrap();
    f.cmd()
        .args([
            "plugin",
            "install",
            "--yes",
            "--force",
            granted.to_str().unwrap(),
        ])
        .assert()
        .success();
    let v = f.output(&["hostile-http", &url]);
    assert_eq!(
        v["value"],
        serde_json::json!({"status": 200, "body": "hello"}),
        "{v}"
    );
    // Another port of the same address stays out of reach.
    let v = f.output(&["hostile-http", &format!("http://127.0.0.1:{}/", port + 1)]);
    assert_eq!(v["ok"], false, "{v}");
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap().flatten() {
        if entry.file_type().unwrap().is_file() {
            fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// In one host: a crashing plugin is restarted for each call, quarantined after the third
/// failure (marked `failed`, audited), and the other plugin answers throughout.
#[test]
fn repeated_crashes_quarantine_the_plugin_and_spare_the_others() {
    let f = Fixture::new();
    let host = f.host();
    let scan = || {
        host.run_command("security-scan-py", &["--dry-run".to_owned()])
            .expect("the other plugin answers")
    };
    let mut kinds = Vec::new();
    for _ in 0..3 {
        let err = host.run_command("hostile-crash", &[]).unwrap_err();
        kinds.push(err.kind());
        scan();
    }
    assert_eq!(
        kinds,
        ["process_crashed", "process_crashed", "quarantined"],
        "{kinds:?}"
    );
    let err = host.run_command("hostile-crash", &[]).unwrap_err();
    assert!(err.to_string().contains("quarantined"), "{err}");
    scan();
    let listed = f.output_of(&["--json", "plugin", "list"]);
    let hostile = listed["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "hostile-py")
        .cloned()
        .unwrap();
    assert_eq!(hostile["state"], "failed", "{hostile}");
    assert!(
        f.audit()
            .iter()
            .any(|r| r["action"] == "plugin.quarantined")
    );
}

/// A Python plugin implementing `meet`: it leaves a mark, then waits up to 10 s for the other
/// plugin's mark, so it only answers `true` when both run at the same time.
fn meeting_plugin(root: &Path, me: &str, other: &str) -> PathBuf {
    let dir = root.join(me);
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("plugin.yaml"),
        format!(
            "apiVersion: trellis.dev/v1\nkind: Plugin\nmetadata:\n  name: {me}\n  version: 0.1.0\n  description: Meets {other}\n  license: MIT\nprovides:\n  hooks:\n    - hook: meet\nrequires:\n  capabilities:\n    - name: filesystem.read\n      paths: [\"out/**\"]\n      reason: see the other mark\n    - name: filesystem.write\n      paths: [\"out/**\"]\n      reason: leave a mark\nruntime:\n  type: process\n  interpreter: python3\n  entry: main.py\nlimits:\n  timeout: 20s\n"
        ),
    )
    .unwrap();
    fs::write(
        dir.join("main.py"),
        format!(
            "import time\nfrom trellis_sdk import hook, run, NotFound\n\n@hook('meet')\ndef meet(ctx):\n    ctx.files.write('out/{me}', 'here')\n    deadline = time.time() + 10\n    while time.time() < deadline:\n        try:\n            ctx.files.read('out/{other}')\n            return {{'plugin': '{me}', 'met': True}}\n        except NotFound:\n            time.sleep(0.02)\n    return {{'plugin': '{me}', 'met': False}}\n\nif __name__ == '__main__':\n    run()\n"
        ),
    )
    .unwrap();
    dir
}

#[test]
fn a_concurrent_hook_fans_out_to_process_plugins_at_once_in_pluggy_order() {
    let f = Fixture::new();
    for (me, other) in [("meet-a", "meet-b"), ("meet-b", "meet-a")] {
        let dir = meeting_plugin(&f.root, me, other);
        f.cmd()
            .args(["plugin", "install", "--yes", dir.to_str().unwrap()])
            .assert()
            .success();
        f.cmd().args(["plugin", "enable", me]).assert().success();
    }
    let host = f.host();
    host.hooks()
        .add_hookspecs([trellis_core::HookSpec::new("meet").concurrent()])
        .unwrap();
    let results = host
        .hooks()
        .call("meet", &serde_json::json!({}))
        .unwrap()
        .values;
    // pluggy's order: the plugin loaded last is called first.
    let order: Vec<&str> = results
        .iter()
        .map(|r| r["plugin"].as_str().unwrap())
        .collect();
    let mut loaded = host.started();
    loaded.reverse();
    assert_eq!(order, loaded, "{results:?}");
    assert!(
        results.iter().all(|r| r["met"] == true),
        "they did not run together: {results:?}"
    );
}

fn python_plugin(root: &Path, name: &str, command: &str, main: &str) -> PathBuf {
    let dir = root.join(name);
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("plugin.yaml"),
        format!(
            "apiVersion: trellis.dev/v1\nkind: Plugin\nmetadata:\n  name: {name}\n  version: 0.1.0\n  description: Looks at its own interpreter\n  license: MIT\nprovides:\n  commands:\n    - name: {command}\nruntime:\n  type: process\n  interpreter: python3\n  entry: main.py\n"
        ),
    )
    .unwrap();
    fs::write(dir.join("main.py"), main).unwrap();
    dir
}

/// A plugin without `runtime.requirements` gets the standard library and the SDK: not the
/// packages installed next to the interpreter, nor their start-up `.pth` hooks. Importing one
/// fails to start the plugin with a message that says how to declare it.
#[test]
fn a_python_plugin_without_requirements_sees_only_the_standard_library_and_the_sdk() {
    let f = Fixture::new();
    let paths = python_plugin(
        &f.root,
        "site-py",
        "site-paths",
        "import sys\nfrom trellis_sdk import command, run\n\n@command('site-paths')\ndef paths():\n    return {'no_site': sys.flags.no_site, 'path': sys.path, 'modules': sorted(m for m in sys.modules if m in ('site', 'certifi', '_distutils_hack'))}\n\nif __name__ == '__main__':\n    run()\n",
    );
    let missing = python_plugin(
        &f.root,
        "needs-py",
        "needs-more",
        "import trellis_test_not_a_stdlib_module.sub\nfrom trellis_sdk import command, run\n\n@command('needs-more')\ndef more():\n    return 1\n\nif __name__ == '__main__':\n    run()\n",
    );
    for (dir, name) in [(&paths, "site-py"), (&missing, "needs-py")] {
        f.cmd()
            .args(["plugin", "install", "--yes", dir.to_str().unwrap()])
            .assert()
            .success();
        f.cmd().args(["plugin", "enable", name]).assert().success();
    }
    let v = f.output(&["site-paths"]);
    assert_eq!(v["no_site"], 1, "{v}");
    assert_eq!(v["modules"], serde_json::json!([]), "{v}");
    let path = v["path"].as_array().unwrap();
    assert!(
        !path
            .iter()
            .any(|p| p.as_str().unwrap().contains("site-packages")),
        "{v}"
    );
    let (ok, err) = f.run(&["needs-more"]);
    assert!(!ok);
    let message = err.to_string();
    assert!(
        message.contains("No module named 'trellis_test_not_a_stdlib_module")
            && message.contains(
                "runs with the standard library and the SDK only: pin `trellis_test_not_a_stdlib_module`"
            ),
        "{message}"
    );
    f.others_still_answer();
}

/// This crate's directory, read when the test runs (cargo sets it): a test binary that cargo
/// reuses after the checkout moved must not look in the old place.
fn crate_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR")
            .expect("run by cargo, which sets CARGO_MANIFEST_DIR"),
    )
}
