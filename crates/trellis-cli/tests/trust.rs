//! Trust through the CLI: build, keygen, sign, verify, install with grants (flags, no
//! terminal, a real pseudo-terminal), trust levels in list/info/audit, policy refusals from the
//! project's and the admin's file, tampering, and the audit log.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;

/// A sandbox: a project, a user config dir (signer lists, keys) and an admin dir, all private.
struct Env {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    project: PathBuf,
    user: PathBuf,
    admin: PathBuf,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_owned();
        let env = Env {
            project: root.join("project"),
            user: root.join("user"),
            admin: root.join("admin"),
            root,
            _tmp: tmp,
        };
        fs::create_dir_all(&env.project).unwrap();
        fs::create_dir_all(&env.user).unwrap();
        fs::create_dir_all(&env.admin).unwrap();
        env
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::cargo_bin("trellis").expect("binary built");
        cmd.current_dir(&self.project)
            .env_remove("TRELLIS_PROJECT")
            .env_remove("TRELLIS_SIGNING_KEY")
            .env_remove("TRELLIS_SIGNING_KEY_PASSPHRASE")
            .env("HOME", self.root.join("home"))
            .env("TRELLIS_CONFIG_DIR", &self.user)
            .env("TRELLIS_CACHE_DIR", self.root.join("cache"));
        if self.admin.join("policy.yaml").exists() {
            cmd.env("TRELLIS_POLICY", self.admin.join("policy.yaml"));
        } else {
            cmd.env_remove("TRELLIS_POLICY");
        }
        cmd
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "trellis {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out: Output = self.cmd().args(args).output().unwrap();
        assert!(
            !out.status.success(),
            "trellis {args:?} should fail:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let text = self.ok(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// A declarative plugin with the given capabilities block.
    fn plugin(&self, dir: &str, name: &str, version: &str, capabilities: &str) -> PathBuf {
        let path = self.root.join(dir);
        fs::create_dir_all(path.join("templates")).unwrap();
        fs::write(
            path.join("plugin.yaml"),
            format!(
                "apiVersion: trellis.dev/v1\nkind: Plugin\nmetadata:\n  name: {name}\n  version: {version}\n  description: test plugin\n  license: MIT\nprovides:\n  commands:\n    - name: {name}-hello\n      description: says hello\n      template: templates/hello.md\nrequires:\n  capabilities:\n{capabilities}"
            ),
        )
        .unwrap();
        fs::write(
            path.join("templates/hello.md"),
            "hello from {{ plugin.name }}\n",
        )
        .unwrap();
        fs::write(path.join("README.md"), format!("# {name}\n")).unwrap();
        path
    }

    fn build(&self, dir: &Path) -> PathBuf {
        let out = self.json(&[
            "plugin",
            "build",
            dir.to_str().unwrap(),
            "--out",
            self.root.join("dist").to_str().unwrap(),
        ]);
        PathBuf::from(out["archive"].as_str().unwrap())
    }

    /// Makes a key for `principal` and returns (private key path, public key line).
    fn keygen(&self, file: &str, principal: &str) -> (PathBuf, String) {
        let key = self.root.join("keys").join(file);
        let out = self.json(&[
            "plugin",
            "keygen",
            "--principal",
            principal,
            "--out",
            key.to_str().unwrap(),
        ]);
        let public = fs::read_to_string(key.with_extension("pub"))
            .unwrap_or_else(|_| fs::read_to_string(format!("{}.pub", key.display())).unwrap());
        assert!(out["fingerprint"].as_str().unwrap().starts_with("SHA256:"));
        (key, public.trim().to_owned())
    }

    fn trust_signer(&self, principal: &str, public: &str) {
        let path = self.user.join("allowed_signers");
        let mut text = fs::read_to_string(&path).unwrap_or_default();
        text.push_str(&format!("{principal} {public}\n"));
        fs::write(path, text).unwrap();
    }

    /// Lists a key in the admin's allowed_signers, beside the admin policy.
    fn admin_trust_signer(&self, principal: &str, public: &str) {
        let path = self.admin.join("allowed_signers");
        let mut text = fs::read_to_string(&path).unwrap_or_default();
        text.push_str(&format!("{principal} {public}\n"));
        fs::write(path, text).unwrap();
    }

    fn audit_actions(&self) -> Vec<String> {
        self.json(&["audit", "log"])["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["action"].as_str().unwrap().to_owned())
            .collect()
    }
}

const NETWORK_AND_FS: &str = "    - name: network\n      reason: call the issue tracker\n      hosts: [api.example.com]\n    - name: filesystem.read\n      reason: read the specs\n      paths: [docs/**]\n";

#[test]
fn signed_package_is_verified_installed_with_grants_and_audited() {
    let env = Env::new();
    let dir = env.plugin("src-a", "alpha", "1.0.0", NETWORK_AND_FS);
    let archive = env.build(&dir);
    let (key, public) = env.keygen("alice", "alice@example.com");
    env.ok(&[
        "plugin",
        "sign",
        archive.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);

    // Unknown key: self-signed, the principal is not taken on faith.
    let v = env.json(&["plugin", "verify", archive.to_str().unwrap()]);
    assert_eq!(v["trust"], "self-signed", "{v}");
    assert!(v["signer"]["principal"].is_null(), "{v}");
    assert!(v["package_sha256"].as_str().unwrap().starts_with("sha256:"));

    env.trust_signer("alice@example.com", &public);
    let v = env.json(&["plugin", "verify", archive.to_str().unwrap()]);
    assert_eq!(v["trust"], "verified", "{v}");
    assert_eq!(v["signer"]["principal"], "alice@example.com");
    let text = env.ok(&["plugin", "verify", archive.to_str().unwrap()]);
    for needle in ["verified", "alice@example.com", "SHA256:", "sha256:"] {
        assert!(text.contains(needle), "{needle} missing in:\n{text}");
    }

    let report = env.json(&["plugin", "install", archive.to_str().unwrap(), "--yes"]);
    assert_eq!(report["trust"], "verified");
    assert_eq!(report["signer"], "alice@example.com");
    assert_eq!(
        report["granted"],
        serde_json::json!(["network", "filesystem.read"])
    );

    let list = env.json(&["plugin", "list"]);
    assert_eq!(list["plugins"][0]["trust"], "verified");
    let table = env.ok(&["plugin", "list"]);
    assert!(
        table.contains("TRUST") && table.contains("verified"),
        "{table}"
    );
    let info = env.ok(&["plugin", "info", "alpha"]);
    assert!(
        info.contains("verified (signed by alice@example.com)"),
        "{info}"
    );
    assert!(
        info.contains("capability network: call the issue tracker [granted]"),
        "{info}"
    );

    let audit = env.json(&["plugin", "audit"]);
    assert_eq!(audit["ok"], true, "{audit}");
    assert_eq!(audit["plugins"][0]["signature"], "valid");

    let actions = env.audit_actions();
    assert!(
        actions.contains(&"plugin.installed".to_owned()),
        "{actions:?}"
    );
    assert_eq!(
        actions.iter().filter(|a| *a == "grant.granted").count(),
        2,
        "{actions:?}"
    );
    let verified = env.ok(&["audit", "verify"]);
    assert!(verified.contains("chain intact"), "{verified}");
}

#[test]
fn ssh_keygen_accepts_a_trellis_signature() {
    let env = Env::new();
    let dir = env.plugin("src-b", "beta", "1.0.0", "    - state\n");
    let archive = env.build(&dir);
    let (key, public) = env.keygen("bob", "bob@example.com");
    env.ok(&[
        "plugin",
        "sign",
        archive.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    let signers = env.root.join("allowed_signers");
    fs::write(&signers, format!("bob@example.com {public}\n")).unwrap();
    let status = std::process::Command::new("ssh-keygen")
        .args(["-Y", "verify", "-f"])
        .arg(&signers)
        .args(["-I", "bob@example.com", "-n", "trellis-plugin", "-s"])
        .arg(format!("{}.sig", archive.display()))
        .stdin(fs::File::open(&archive).unwrap())
        .output()
        .expect("ssh-keygen is installed (openssh-client)");
    assert!(
        status.status.success(),
        "ssh-keygen refused the signature: {}{}",
        String::from_utf8_lossy(&status.stdout),
        String::from_utf8_lossy(&status.stderr)
    );
}

#[test]
fn an_existing_ssh_key_signs() {
    let env = Env::new();
    let home_ssh = env.root.join("home/.ssh");
    fs::create_dir_all(&home_ssh).unwrap();
    let made = std::process::Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "carol@example.com",
            "-f",
        ])
        .arg(home_ssh.join("id_ed25519"))
        .output()
        .unwrap();
    assert!(made.status.success());
    let dir = env.plugin("src-c", "gamma", "1.0.0", "    - state\n");
    let archive = env.build(&dir);
    // No --key: the trellis key does not exist, so ~/.ssh/id_ed25519 is used.
    let signed = env.json(&["plugin", "sign", archive.to_str().unwrap()]);
    assert!(
        signed["key"].as_str().unwrap().ends_with(".ssh/id_ed25519"),
        "{signed}"
    );
    let public = fs::read_to_string(home_ssh.join("id_ed25519.pub")).unwrap();
    env.trust_signer("carol@example.com", public.trim());
    let v = env.json(&["plugin", "verify", archive.to_str().unwrap()]);
    assert_eq!(v["trust"], "verified");
    assert_eq!(v["signer"]["principal"], "carol@example.com");
}

#[test]
fn tampered_package_and_wrong_signer_are_refused_and_nothing_is_written() {
    let env = Env::new();
    let dir = env.plugin("src-d", "delta", "1.0.0", "    - state\n");
    let archive = env.build(&dir);
    let (key, public) = env.keygen("dave", "dave@example.com");
    env.ok(&[
        "plugin",
        "sign",
        archive.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    env.trust_signer("dave@example.com", &public);

    let mut bytes = fs::read(&archive).unwrap();
    let last = bytes.len() - 20;
    bytes[last] ^= 0x55;
    let tampered = env.root.join("tampered.tar.gz");
    fs::write(&tampered, &bytes).unwrap();
    fs::copy(
        format!("{}.sig", archive.display()),
        format!("{}.sig", tampered.display()),
    )
    .unwrap();
    let err = env.fails(&["plugin", "verify", tampered.to_str().unwrap()]);
    assert!(err.to_lowercase().contains("signature"), "{err}");
    let err = env.fails(&["plugin", "install", tampered.to_str().unwrap(), "--yes"]);
    assert!(err.to_lowercase().contains("signature"), "{err}");
    assert!(
        !env.project.join(".trellis/state.json").exists()
            && !env.project.join(".trellis/plugins").exists(),
        "a refused install wrote plugin state"
    );
    assert_eq!(env.audit_actions(), ["install.refused"]);

    // The same principal listed with another key: a different signer is refused.
    let (mallory_key, _) = env.keygen("mallory", "mallory@example.com");
    let other = env.root.join("other.tar.gz");
    fs::copy(&archive, &other).unwrap();
    env.ok(&[
        "plugin",
        "sign",
        other.to_str().unwrap(),
        "--key",
        mallory_key.to_str().unwrap(),
    ]);
    let v = env.json(&["plugin", "verify", other.to_str().unwrap()]);
    assert_eq!(
        v["trust"], "self-signed",
        "mallory's key is listed for nobody: {v}"
    );
}

#[test]
fn without_a_terminal_nothing_is_granted_and_the_error_lists_what_to_pass() {
    let env = Env::new();
    let dir = env.plugin("src-e", "echo", "1.0.0", NETWORK_AND_FS);
    let err = env.fails(&["plugin", "install", dir.to_str().unwrap()]);
    assert!(err.contains("--grant network"), "{err}");
    assert!(err.contains("--grant filesystem.read"), "{err}");
    assert!(err.contains("call the issue tracker"), "{err}");
    assert!(!env.project.join(".trellis/state.json").exists());

    let report = env.json(&[
        "plugin",
        "install",
        dir.to_str().unwrap(),
        "--grant",
        "network",
        "--deny",
        "filesystem.read",
    ]);
    assert_eq!(report["granted"], serde_json::json!(["network"]));
    assert_eq!(report["refused"], serde_json::json!(["filesystem.read"]));
    let err = env.fails(&[
        "plugin",
        "install",
        dir.to_str().unwrap(),
        "--force",
        "--grant",
        "netwrok",
    ]);
    assert!(err.contains("did you mean `network`"), "{err}");

    // Revoking is recorded and shown.
    env.ok(&["plugin", "grants", "echo", "revoke", "network"]);
    let grants = env.json(&["plugin", "grants", "echo"]);
    assert_eq!(grants["granted"], serde_json::json!([]));
    assert!(env.audit_actions().contains(&"grant.revoked".to_owned()));
}

#[test]
fn an_update_asks_only_for_what_changed() {
    let env = Env::new();
    let v1 = env.plugin(
        "src-f1",
        "foxtrot",
        "1.0.0",
        "    - name: network\n      hosts: [api.example.com]\n",
    );
    env.ok(&[
        "plugin",
        "install",
        v1.to_str().unwrap(),
        "--grant",
        "network",
    ]);
    let v2 = env.plugin(
        "src-f2",
        "foxtrot",
        "1.1.0",
        "    - name: network\n      hosts: [api.example.com]\n    - name: environment\n      variables: [JIRA_TOKEN]\n",
    );
    let err = env.fails(&["plugin", "install", v2.to_str().unwrap(), "--force"]);
    assert!(err.contains("--grant environment"), "{err}");
    assert!(
        !err.contains("--grant network"),
        "network was granted already: {err}"
    );
    let report = env.json(&[
        "plugin",
        "install",
        v2.to_str().unwrap(),
        "--force",
        "--grant",
        "environment",
    ]);
    assert_eq!(
        report["granted"],
        serde_json::json!(["network", "environment"])
    );
    assert_eq!(report["replaced"], "1.0.0");

    // A wider scope is a new request.
    let v3 = env.plugin("src-f3", "foxtrot", "1.2.0", "    - name: network\n      hosts: [\"*.example.com\"]\n    - name: environment\n      variables: [JIRA_TOKEN]\n");
    let err = env.fails(&["plugin", "install", v3.to_str().unwrap(), "--force"]);
    assert!(err.contains("--grant network"), "{err}");
    assert!(!err.contains("--grant environment"), "{err}");
}

#[test]
fn policy_refusals_name_the_rule_and_the_file() {
    let env = Env::new();
    let dir = env.plugin("src-g", "golf", "1.0.0", NETWORK_AND_FS);

    // Project policy: a minimum trust level.
    fs::create_dir_all(env.project.join(".trellis")).unwrap();
    let project_policy = env.project.join(".trellis/policy.yaml");
    fs::write(
        &project_policy,
        "plugin_policy:\n  trust:\n    minimum_level: self-signed\n",
    )
    .unwrap();
    let err = env.fails(&["plugin", "install", dir.to_str().unwrap(), "--yes"]);
    assert!(err.contains("trust.minimum_level"), "{err}");
    assert!(err.contains(&project_policy.display().to_string()), "{err}");

    // Admin policy: a blocked capability, while the project allows unsigned again.
    fs::write(
        &project_policy,
        "plugin_policy:\n  plugins:\n    blocked: [\"experimental-*\"]\n",
    )
    .unwrap();
    let admin_policy = env.admin.join("policy.yaml");
    fs::write(
        &admin_policy,
        "plugin_policy:\n  capabilities:\n    blocked: [network]\n",
    )
    .unwrap();
    let err = env.fails(&["plugin", "install", dir.to_str().unwrap(), "--yes"]);
    assert!(err.contains("capabilities.blocked"), "{err}");
    assert!(err.contains(&admin_policy.display().to_string()), "{err}");
    let actions = env.audit_actions();
    assert!(
        actions.contains(&"policy.refused".to_owned()),
        "{actions:?}"
    );

    // Approval required: --yes does not grant it, --grant does.
    fs::write(
        &admin_policy,
        "plugin_policy:\n  capabilities:\n    require_approval: [network]\n",
    )
    .unwrap();
    let err = env.fails(&["plugin", "install", dir.to_str().unwrap(), "--yes"]);
    assert!(err.contains("--grant network"), "{err}");
    assert!(err.contains("approval required by"), "{err}");
    env.ok(&[
        "plugin",
        "install",
        dir.to_str().unwrap(),
        "--yes",
        "--grant",
        "network",
    ]);
    env.ok(&["plugin", "enable", "golf"]);

    // A policy tightened after install: check, enable and start all refuse.
    fs::write(
        &admin_policy,
        "plugin_policy:\n  plugins:\n    blocked: [golf]\n",
    )
    .unwrap();
    let err = env.fails(&["policy", "check"]);
    assert!(
        err.contains("plugins.blocked") && err.contains("golf"),
        "{err}"
    );
    let err = env.fails(&["golf-hello"]);
    assert!(err.contains("plugins.blocked"), "{err}");
    fs::remove_file(&admin_policy).unwrap();
    env.ok(&["policy", "check"]);
}

#[test]
fn changed_installed_files_are_found_and_the_plugin_does_not_start() {
    let env = Env::new();
    let dir = env.plugin("src-h", "hotel", "1.0.0", "    - state\n");
    env.ok(&["plugin", "install", dir.to_str().unwrap(), "--yes"]);
    env.ok(&["plugin", "enable", "hotel"]);
    let out = env.ok(&["hotel-hello"]);
    assert!(out.contains("hello from hotel"), "{out}");

    fs::write(
        env.project
            .join(".trellis/plugins/hotel/templates/hello.md"),
        "{{ config }} pwned\n",
    )
    .unwrap();
    let err = env.fails(&["plugin", "audit"]);
    assert!(err.contains("templates/hello.md"), "{err}");
    let err = env.fails(&["hotel-hello"]);
    assert!(err.contains("changed since install"), "{err}");
    assert!(env.audit_actions().contains(&"plugin.integrity".to_owned()));
}

#[test]
fn certified_needs_a_certifier_the_policy_names() {
    let env = Env::new();
    let dir = env.plugin("src-i", "india", "1.0.0", "    - state\n");
    let archive = env.build(&dir);
    let (author, author_pub) = env.keygen("author", "author@example.com");
    let (certifier, certifier_pub) = env.keygen("certifier", "audit@example.com");
    env.trust_signer("author@example.com", &author_pub);
    env.ok(&[
        "plugin",
        "sign",
        archive.to_str().unwrap(),
        "--key",
        author.to_str().unwrap(),
    ]);
    env.ok(&[
        "plugin",
        "certify",
        archive.to_str().unwrap(),
        "--key",
        certifier.to_str().unwrap(),
    ]);

    let v = env.json(&["plugin", "verify", archive.to_str().unwrap()]);
    assert_eq!(
        v["trust"], "verified",
        "certifier unknown to the policy: {v}"
    );

    fs::write(
        env.admin.join("policy.yaml"),
        format!("plugin_policy:\n  trust:\n    minimum_level: certified\n    certifiers:\n      - \"{certifier_pub}\"\n"),
    )
    .unwrap();
    // Under an admin policy only the admin's signer list counts.
    let v = env.json(&["plugin", "verify", archive.to_str().unwrap()]);
    assert_eq!(v["trust"], "self-signed", "{v}");
    env.admin_trust_signer("author@example.com", &author_pub);
    let v = env.json(&["plugin", "verify", archive.to_str().unwrap()]);
    assert_eq!(v["trust"], "certified", "{v}");
    let report = env.json(&["plugin", "install", archive.to_str().unwrap(), "--yes"]);
    assert_eq!(report["trust"], "certified");
}

#[test]
fn builds_are_reproducible_through_the_cli() {
    let env = Env::new();
    let dir = env.plugin("src-j", "juliet", "1.0.0", "    - state\n");
    let a = env.json(&[
        "plugin",
        "build",
        dir.to_str().unwrap(),
        "--out",
        env.root.join("a").to_str().unwrap(),
    ]);
    let b = env.json(&[
        "plugin",
        "build",
        dir.to_str().unwrap(),
        "--out",
        env.root.join("b").to_str().unwrap(),
    ]);
    assert_eq!(a["sha256"], b["sha256"]);
    assert_eq!(
        fs::read(a["archive"].as_str().unwrap()).unwrap(),
        fs::read(b["archive"].as_str().unwrap()).unwrap()
    );
}

#[test]
fn audit_verify_fails_on_an_edited_record() {
    let env = Env::new();
    let dir = env.plugin("src-k", "kilo", "1.0.0", "    - state\n");
    env.ok(&["plugin", "install", dir.to_str().unwrap(), "--yes"]);
    env.ok(&["plugin", "enable", "kilo"]);
    env.ok(&["plugin", "disable", "kilo"]);
    let log = env.project.join(".trellis/audit.jsonl");
    let text = fs::read_to_string(&log).unwrap();
    fs::write(&log, text.replacen("plugin.enabled", "plugin.disabled", 1)).unwrap();
    let err = env.fails(&["audit", "verify"]);
    assert!(err.contains("edited"), "{err}");
}

/// The grant prompt, driven through a real pseudo-terminal.
#[test]
fn the_grant_prompt_works_in_a_terminal() {
    let env = Env::new();
    let dir = env.plugin("src-l", "lima", "1.0.0", NETWORK_AND_FS);
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("trellis"));
    cmd.current_dir(&env.project)
        .env_remove("TRELLIS_PROJECT")
        .env_remove("TRELLIS_POLICY")
        .env("HOME", env.root.join("home"))
        .env("TRELLIS_CONFIG_DIR", &env.user)
        .args(["plugin", "install", dir.to_str().unwrap()]);
    let mut session = rexpect::session::spawn_command(cmd, Some(20_000)).unwrap();
    session.exp_string("trust: unsigned").unwrap();
    session.exp_string("call the issue tracker").unwrap();
    session.exp_string("hosts: api.example.com").unwrap();
    session.exp_string("Grant network? [y/N]").unwrap();
    session.send_line("n").unwrap();
    session.exp_string("read the specs").unwrap();
    session.exp_string("Grant filesystem.read? [y/N]").unwrap();
    session.send_line("y").unwrap();
    session.exp_string("Installed lima 1.0.0").unwrap();
    session.exp_eof().unwrap();
    let grants = env.json(&["plugin", "grants", "lima"]);
    assert_eq!(grants["granted"][0]["name"], "filesystem.read");
    assert_eq!(grants["refused"], serde_json::json!(["network"]));
}

/// Accepts HTTP requests on a loopback port and hands back each request body.
fn collecting_server() -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/usage", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            if tx
                .send(String::from_utf8_lossy(&body).into_owned())
                .is_err()
            {
                return;
            }
        }
    });
    (url, rx)
}

#[test]
fn telemetry_sends_only_consented_usage_records() {
    let env = Env::new();
    let (url, bodies) = collecting_server();
    let dir = env.plugin("src-m", "mike", "1.2.3", "    - state\n");
    env.ok(&["plugin", "install", dir.to_str().unwrap(), "--yes"]);
    env.ok(&["plugin", "enable", "mike"]);

    // Before consent nothing is recorded.
    env.ok(&["mike-hello"]);
    let status = env.json(&["telemetry", "status"]);
    assert_eq!(status["enabled"], false);
    assert!(
        !env.user.join("telemetry").exists(),
        "something was recorded before consent"
    );

    env.ok(&["telemetry", "enable", "--endpoint", &url]);
    env.ok(&["mike-hello", "secret-argument"]);
    let status = env.json(&["telemetry", "status"]);
    assert_eq!(status["pending"], 1, "{status}");
    let flushed = env.json(&["telemetry", "flush"]);
    assert_eq!(flushed["sent"], 1, "{flushed}");

    let body: Value = serde_json::from_str(
        &bodies
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("a batch arrived"),
    )
    .unwrap();
    assert_eq!(body["schema"], 1);
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    let event = events[0].as_object().unwrap();
    let keys: Vec<&str> = event.keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 5, "{event:?}");
    for key in ["plugin", "version", "command", "success", "duration_ms"] {
        assert!(event.contains_key(key), "{key} missing: {event:?}");
    }
    assert_eq!(event["plugin"], "mike");
    assert_eq!(event["version"], "1.2.3");
    assert_eq!(event["command"], "mike-hello");
    assert_eq!(event["success"], true);
    assert!(
        !body.to_string().contains("secret-argument"),
        "arguments leaked: {body}"
    );

    env.ok(&["telemetry", "disable"]);
    env.ok(&["mike-hello"]);
    assert_eq!(env.json(&["telemetry", "status"])["pending"], 0);
}

/// Trust is re-verified at every start and audit, not read back from the state file.
#[test]
fn a_signer_dropped_from_allowed_signers_stops_the_plugin() {
    let env = Env::new();
    let dir = env.plugin("src-n", "november", "1.0.0", "    - state\n");
    let archive = env.build(&dir);
    let (key, public) = env.keygen("nora", "nora@example.com");
    env.ok(&[
        "plugin",
        "sign",
        archive.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    env.trust_signer("nora@example.com", &public);
    fs::write(
        env.admin.join("policy.yaml"),
        "plugin_policy:\n  trust:\n    minimum_level: verified\n",
    )
    .unwrap();
    // The user's own list cannot lift a package past the admin's minimum.
    let err = env.fails(&["plugin", "install", archive.to_str().unwrap(), "--yes"]);
    assert!(err.contains("trust.minimum_level"), "{err}");
    let shown = env.ok(&["policy", "show"]);
    assert!(shown.contains("not consulted"), "{shown}");
    env.admin_trust_signer("nora@example.com", &public);
    env.ok(&["plugin", "install", archive.to_str().unwrap(), "--yes"]);
    env.ok(&["plugin", "enable", "november"]);
    env.ok(&["november-hello"]);

    // Forging the recorded trust does not help either.
    fs::write(env.admin.join("allowed_signers"), "").unwrap();
    let state_path = env.project.join(".trellis/state.json");
    let state = fs::read_to_string(&state_path).unwrap();
    fs::write(&state_path, state.replace("\"verified\"", "\"certified\"")).unwrap();

    let err = env.fails(&["plugin", "audit"]);
    assert!(
        err.contains("trust dropped from certified at install to self-signed"),
        "{err}"
    );
    let err = env.fails(&["policy", "check"]);
    assert!(err.contains("trust.minimum_level"), "{err}");
    let err = env.fails(&["november-hello"]);
    assert!(err.contains("trust.minimum_level"), "{err}");
}

/// A manifest claiming a signer whose listed key is not the one that signed is refused by
/// verify, as by install.
#[test]
fn verify_checks_the_signer_the_manifest_claims() {
    let env = Env::new();
    let dir = env.plugin("src-o", "oscar", "1.0.0", "    - state\n");
    let manifest = dir.join("plugin.yaml");
    let text = fs::read_to_string(&manifest).unwrap();
    fs::write(
        &manifest,
        format!("{text}signatures:\n  signer: olga@example.com\n"),
    )
    .unwrap();
    let archive = env.build(&dir);
    let (_, olga_pub) = env.keygen("olga", "olga@example.com");
    let (mallory, _) = env.keygen("mallory", "mallory@example.com");
    env.trust_signer("olga@example.com", &olga_pub);
    env.ok(&[
        "plugin",
        "sign",
        archive.to_str().unwrap(),
        "--key",
        mallory.to_str().unwrap(),
    ]);
    let err = env.fails(&["plugin", "verify", archive.to_str().unwrap()]);
    assert!(err.contains("olga@example.com"), "{err}");
    let err = env.fails(&["plugin", "install", archive.to_str().unwrap(), "--yes"]);
    assert!(err.contains("olga@example.com"), "{err}");
}

/// Runs trellis with an abort injected at `step` and checks that it died there.
fn killed_at(env: &Env, step: &str, args: &[&str]) {
    let out = env
        .cmd()
        .env("TRELLIS_TEST_KILL_AT", step)
        .args(args)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "trellis {args:?} should have died at {step}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// What is left under `.trellis/plugins` and `.trellis/packages`, hidden entries included.
fn leftovers(env: &Env) -> Vec<String> {
    let mut out = Vec::new();
    for dir in ["plugins", "packages"] {
        if let Ok(entries) = fs::read_dir(env.project.join(".trellis").join(dir)) {
            for e in entries {
                out.push(format!(
                    "{dir}/{}",
                    e.unwrap().file_name().to_string_lossy()
                ));
            }
        }
    }
    if env.project.join(".trellis/journal.json").exists() {
        out.push("journal.json".to_owned());
    }
    out.sort();
    out
}

/// Killing the process at every step of an install, an update and a remove leaves the old
/// project or the new one (never a plugin without its files), settled by the next command.
#[test]
fn an_interrupted_install_update_or_remove_leaves_the_old_state_or_the_new() {
    let env = Env::new();
    let v1 = env.plugin("src-p1", "papa", "1.0.0", "    - state\n");
    let v2 = env.plugin("src-p2", "papa", "2.0.0", "    - state\n");
    fs::write(v2.join("templates/hello.md"), "hello from papa two\n").unwrap();
    let installed = |env: &Env| -> Option<String> {
        env.json(&["plugin", "list"])["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "papa")
            .map(|p| p["version"].as_str().unwrap().to_owned())
    };

    // A first install cut short leaves nothing behind.
    for step in ["install:journal", "install:aside", "install:placed"] {
        killed_at(
            &env,
            step,
            &["plugin", "install", v1.to_str().unwrap(), "--yes"],
        );
        assert_eq!(installed(&env), None, "after a kill at {step}");
        assert_eq!(
            leftovers(&env),
            Vec::<String>::new(),
            "after a kill at {step}"
        );
    }
    killed_at(
        &env,
        "install:committed",
        &["plugin", "install", v1.to_str().unwrap(), "--yes"],
    );
    assert_eq!(installed(&env).as_deref(), Some("1.0.0"));
    assert_eq!(leftovers(&env), ["packages/papa", "plugins/papa"]);
    env.ok(&["plugin", "enable", "papa"]);

    // An update cut short before its commit keeps 1.0.0 whole; after it, 2.0.0.
    for step in ["install:journal", "install:aside", "install:placed"] {
        killed_at(
            &env,
            step,
            &[
                "plugin",
                "install",
                v2.to_str().unwrap(),
                "--force",
                "--yes",
            ],
        );
        assert_eq!(
            installed(&env).as_deref(),
            Some("1.0.0"),
            "after a kill at {step}"
        );
        assert_eq!(
            leftovers(&env),
            ["packages/papa", "plugins/papa"],
            "after {step}"
        );
        let out = env.ok(&["papa-hello"]);
        assert!(out.contains("hello from papa"), "{out}");
        assert!(!out.contains("two"), "{out}");
        env.ok(&["plugin", "audit"]);
    }
    killed_at(
        &env,
        "install:committed",
        &[
            "plugin",
            "install",
            v2.to_str().unwrap(),
            "--force",
            "--yes",
        ],
    );
    let out = env.ok(&["papa-hello"]);
    assert!(out.contains("hello from papa two"), "{out}");
    assert_eq!(installed(&env).as_deref(), Some("2.0.0"));
    env.ok(&["plugin", "audit"]);

    // A remove cut short before its commit keeps the plugin; after it, it is gone.
    for step in ["remove:journal", "remove:aside"] {
        killed_at(&env, step, &["plugin", "remove", "papa"]);
        assert_eq!(
            installed(&env).as_deref(),
            Some("2.0.0"),
            "after a kill at {step}"
        );
        env.ok(&["papa-hello"]);
    }
    killed_at(&env, "remove:committed", &["plugin", "remove", "papa"]);
    assert_eq!(installed(&env), None);
    assert_eq!(leftovers(&env), Vec::<String>::new());

    // Each settled change is on the record.
    let recovered = env.json(&["audit", "log"])["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "plugin.recovered")
        .count();
    assert_eq!(recovered, 11);
    env.ok(&["audit", "verify"]);
}

/// A blanket `--yes` grant made before the admin required approval for that capability is
/// withheld from then on, shown as such, until the user approves it one by one.
#[test]
fn a_rule_requiring_approval_withholds_earlier_blanket_grants() {
    let env = Env::new();
    let dir = env.plugin("src-q", "quebec", "1.0.0", NETWORK_AND_FS);
    env.ok(&["plugin", "install", dir.to_str().unwrap(), "--yes"]);
    let granted = |env: &Env| -> Value { env.json(&["plugin", "list"])["plugins"][0].clone() };
    assert_eq!(
        granted(&env)["granted"],
        serde_json::json!(["network", "filesystem.read"])
    );

    let admin_policy = env.admin.join("policy.yaml");
    fs::write(
        &admin_policy,
        "plugin_policy:\n  capabilities:\n    require_approval: [network]\n",
    )
    .unwrap();
    let summary = granted(&env);
    assert_eq!(summary["granted"], serde_json::json!(["filesystem.read"]));
    assert!(
        summary["withheld"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("needs approval"),
        "{summary}"
    );
    let info = env.ok(&["plugin", "info", "quebec"]);
    assert!(
        info.contains("granted, not in effect: needs approval"),
        "{info}"
    );
    let audit = env.ok(&["plugin", "audit"]);
    assert!(audit.contains("withheld:  network"), "{audit}");

    // An update with --yes does not carry the blanket grant past the rule either.
    let err = env.fails(&[
        "plugin",
        "install",
        dir.to_str().unwrap(),
        "--force",
        "--yes",
    ]);
    assert!(err.contains("--grant network"), "{err}");

    // Approving it one by one puts it in effect.
    env.ok(&["plugin", "grants", "quebec", "grant", "network"]);
    assert_eq!(
        granted(&env)["granted"],
        serde_json::json!(["network", "filesystem.read"])
    );
    env.ok(&[
        "plugin",
        "install",
        dir.to_str().unwrap(),
        "--force",
        "--yes",
    ]);
    assert_eq!(
        granted(&env)["granted"],
        serde_json::json!(["network", "filesystem.read"])
    );
}

/// A policy refusal at start depends on the admin's files, not on the plugin: the plugin is
/// not marked failed, and starts again once the policy allows it.
#[test]
fn a_policy_refusal_at_start_is_not_kept_as_a_failure() {
    let env = Env::new();
    let dir = env.plugin("src-r", "romeo", "1.0.0", "    - state\n");
    env.ok(&["plugin", "install", dir.to_str().unwrap(), "--yes"]);
    env.ok(&["plugin", "enable", "romeo"]);
    let admin_policy = env.admin.join("policy.yaml");
    fs::write(
        &admin_policy,
        "plugin_policy:\n  plugins:\n    blocked: [romeo]\n",
    )
    .unwrap();
    let err = env.fails(&["romeo-hello"]);
    assert!(err.contains("plugins.blocked"), "{err}");
    fs::remove_file(&admin_policy).unwrap();
    let list = env.json(&["plugin", "list"]);
    assert_eq!(list["plugins"][0]["state"], "enabled", "{list}");
    let out = env.ok(&["romeo-hello"]);
    assert!(out.contains("hello from romeo"), "{out}");
}
