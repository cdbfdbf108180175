//! The registry server through its real binary on loopback: publishing with tokens (scoped,
//! revocable), the API, TUF-verified installs over HTTP, limits, metrics, and a server killed
//! in the middle of a publish.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};

use assert_cmd::cargo::CommandCargoExt;
use base64::Engine;
use serde_json::Value;

struct Env {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    project: PathBuf,
    /// The server's address, the same across restarts (the project's registry URL names it).
    listen: String,
    /// `--database URL` for the server and the token commands; SQLite in the data dir if not.
    database: Option<String>,
    /// Environment variables for every command (the object store's credentials).
    vars: Vec<(String, String)>,
}

/// A running `trellis registry serve`, killed when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_owned();
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let listen = probe.local_addr().unwrap().to_string();
        drop(probe);
        let env = Env {
            project: root.join("project"),
            root,
            listen,
            database: None,
            vars: Vec::new(),
            _tmp: tmp,
        };
        fs::create_dir_all(&env.project).unwrap();
        env
    }

    fn cmd(&self) -> StdCommand {
        let mut cmd = StdCommand::cargo_bin("trellis").unwrap();
        cmd.current_dir(&self.project)
            .env_remove("TRELLIS_PROJECT")
            .env_remove("TRELLIS_POLICY")
            .env_remove("TRELLIS_REGISTRY_TOKEN")
            .env_remove("TRELLIS_TEST_KILL_AT")
            .env("HOME", self.root.join("home"))
            .env("TRELLIS_CONFIG_DIR", self.root.join("user"))
            .env("TRELLIS_CACHE_DIR", self.root.join("cache"));
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        cmd
    }

    fn run(&self, args: &[&str], token: Option<&str>, ok: bool) -> String {
        let mut cmd = self.cmd();
        if let Some(t) = token {
            cmd.env("TRELLIS_REGISTRY_TOKEN", t);
        }
        let out = cmd.args(args).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.success(), ok, "trellis {args:?}:\n{text}");
        text
    }

    fn ok(&self, args: &[&str]) -> String {
        self.run(args, None, true)
    }

    fn data(&self) -> String {
        self.root.join("data").display().to_string()
    }

    fn keys(&self) -> String {
        self.root.join("registry-keys").display().to_string()
    }

    /// Starts the server on a free port with `extra` arguments and `env` variables.
    fn serve(&self, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = self.cmd();
        cmd.args(["--json", "registry", "serve", "--listen", &self.listen])
            .args([
                "--data",
                &self.data(),
                "--keys",
                &self.keys(),
                "--name",
                "team",
            ])
            .args(
                self.database
                    .iter()
                    .flat_map(|url| ["--database", url.as_str()]),
            )
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        Server {
            child,
            base: format!("http://{}", v["listening"].as_str().unwrap()),
        }
    }

    fn token(&self, owner: &str, scopes: &[&str]) -> (String, String) {
        let mut args = vec![
            "--json", "registry", "token", "create", "--owner", owner, "--data",
        ];
        let data = self.data();
        args.push(&data);
        if let Some(url) = &self.database {
            args.extend(["--database", url.as_str()]);
        }
        for s in scopes {
            args.extend(["--scope", s]);
        }
        let v: Value = serde_json::from_str(&self.ok(&args)).unwrap();
        (
            v["token"]["id"].as_str().unwrap().to_owned(),
            v["secret"].as_str().unwrap().to_owned(),
        )
    }

    /// A declarative plugin, built and signed; returns the archive.
    fn package(&self, name: &str, version: &str, key: &Path) -> PathBuf {
        self.package_described(name, version, key, &format!("the {name} plugin"), name)
    }

    /// A package with its own description and keywords (a YAML flow list's items).
    fn package_described(
        &self,
        name: &str,
        version: &str,
        key: &Path,
        description: &str,
        keywords: &str,
    ) -> PathBuf {
        let dir = self.root.join("src").join(format!("{name}-{version}"));
        fs::create_dir_all(dir.join("t")).unwrap();
        fs::write(
            dir.join("plugin.yaml"),
            format!(
                "apiVersion: trellis.dev/v1\nkind: Plugin\nmetadata:\n  name: {name}\n  version: {version}\n  description: {description}\n  license: MIT\n  keywords: [{keywords}]\n  categories: [commands]\nprovides:\n  commands:\n    - name: {name}-hi\n      description: hi\n      template: t/hi.md\n"
            ),
        )
        .unwrap();
        fs::write(dir.join("t/hi.md"), format!("hi from {name} {version}\n")).unwrap();
        fs::write(dir.join("README.md"), "# readme\n").unwrap();
        let dist = self.root.join("dist").display().to_string();
        let v: Value = serde_json::from_str(&self.ok(&[
            "--json",
            "plugin",
            "build",
            dir.to_str().unwrap(),
            "--out",
            &dist,
        ]))
        .unwrap();
        let archive = v["archive"].as_str().unwrap().to_owned();
        self.ok(&["plugin", "sign", &archive, "--key", key.to_str().unwrap()]);
        PathBuf::from(archive)
    }

    /// A registry server with alice's key registered, added to the project.
    fn started(&self, extra: &[&str]) -> (Server, PathBuf) {
        let server = self.serve(extra, &[]);
        let key = self.root.join("keys/alice");
        self.ok(&[
            "plugin",
            "keygen",
            "--principal",
            "alice@example.com",
            "--out",
            key.to_str().unwrap(),
        ]);
        let static_dir = self.root.join("data/static").display().to_string();
        let public = format!("{}.pub", key.display());
        self.ok(&[
            "registry",
            "add-key",
            &static_dir,
            "alice@example.com",
            &public,
            "--keys",
            &self.keys(),
        ]);
        self.ok(&[
            "plugin",
            "registry",
            "add",
            "team",
            &format!("{}/registry/", server.base),
        ]);
        (server, key)
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn get(url: &str) -> (u16, String) {
    let mut r = agent().get(url).call().unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

/// A raw publish, bypassing the client's own gates.
fn put(base: &str, archive: &Path, name: &str, version: &str, token: &str) -> (u16, String) {
    let sig = fs::read_to_string(format!("{}.sig", archive.display())).unwrap();
    let mut r = agent()
        .put(&format!("{base}/api/v1/plugins/{name}/versions/{version}"))
        .header("Authorization", &format!("Bearer {token}"))
        .header(
            "X-Trellis-Signature",
            &base64::engine::general_purpose::STANDARD.encode(sig),
        )
        .send(&fs::read(archive).unwrap()[..])
        .unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

#[test]
fn publish_with_tokens_search_and_install_over_http() {
    publish_search_install(Env::new());
}

/// A throwaway PostgreSQL server from scripts/postgres.sh, stopped when dropped.
struct Postgres {
    dir: tempfile::TempDir,
    url: String,
}

impl Postgres {
    fn start() -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("trellis-pg-")
            .tempdir_in("/tmp")
            .unwrap();
        let script = crate_dir().join("../../scripts/postgres.sh");
        let script = script.to_str().expect("a UTF-8 checkout path");
        let out = StdCommand::new("bash")
            .args([script, "start", dir.path().to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "PostgreSQL did not start (scripts/setup.sh installs it): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Postgres { dir, url }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let script = crate_dir().join("../../scripts/postgres.sh");
        let script = script.to_str().expect("a UTF-8 checkout path");
        let _ = StdCommand::new("bash")
            .args([script, "stop", self.dir.path().to_str().unwrap()])
            .output();
    }
}

/// A throwaway S3-compatible server from scripts/s3.sh with one bucket, stopped when dropped.
struct S3 {
    dir: tempfile::TempDir,
    endpoint: String,
}

impl S3 {
    fn start(bucket: &str) -> S3 {
        let dir = tempfile::tempdir().unwrap();
        let script = crate_dir().join("../../scripts/s3.sh");
        let script = script.to_str().expect("a UTF-8 checkout path");
        let out = StdCommand::new("bash")
            .args([script, "start", dir.path().to_str().unwrap(), bucket])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the S3 server did not start (scripts/setup.sh installs moto): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let endpoint = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        S3 { dir, endpoint }
    }

    /// What the server needs to reach it, as it would for AWS.
    fn vars(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", "trellis-test"),
            ("AWS_SECRET_ACCESS_KEY", "trellis-test-secret"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}

impl S3 {
    /// Reads or (with `put`) writes an object as the bucket's owner would, with boto3 (which
    /// moto's server installs), signed like any S3 client.
    fn object(&self, bucket: &str, key: &str, put: Option<&[u8]>) -> Vec<u8> {
        let file = self.dir.path().join("object");
        if let Some(bytes) = put {
            fs::write(&file, bytes).unwrap();
        }
        let script = r#"
import sys, boto3
endpoint, bucket, key, mode, path = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="trellis-test", aws_secret_access_key="trellis-test-secret")
if mode == "put":
    s3.put_object(Bucket=bucket, Key=key, Body=open(path, "rb").read())
else:
    open(path, "wb").write(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
"#;
        let out = StdCommand::new("python3")
            .args(["-c", script, &self.endpoint, bucket, key])
            .arg(if put.is_some() { "put" } else { "get" })
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        fs::read(&file).unwrap()
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let script = crate_dir().join("../../scripts/s3.sh");
        let script = script.to_str().expect("a UTF-8 checkout path");
        let _ = StdCommand::new("bash")
            .args([script, "stop", self.dir.path().to_str().unwrap()])
            .output();
    }
}

/// Archives in S3-compatible object storage: the bytes go to the bucket, the signed index
/// stays in the data directory, and clients verify the bytes as always, so an object changed
/// in the bucket is refused.
#[test]
fn archives_kept_in_s3_compatible_storage_are_served_verified_and_exported() {
    let s3 = S3::start("trellis-archives");
    let mut env = Env::new();
    env.vars = s3.vars();
    let store = "s3://trellis-archives/team";
    let (server, alice) = env.started(&["--archives", store]);
    let base = server.base.clone();
    let (_, token) = env.token("alice@example.com", &["publish:*"]);
    let notes = env.package("notes", "1.0.0", &alice);
    let bytes = fs::read(&notes).unwrap();
    assert_eq!(put(&base, &notes, "notes", "1.0.0", &token).0, 201);

    let archive_dir = env.root.join("data/static/targets/archives/notes");
    assert!(!archive_dir.join("notes-1.0.0.tar.gz").exists());
    assert!(archive_dir.join("notes-1.0.0.tar.gz.sig").is_file());
    let object = "team/archives/notes/notes-1.0.0.tar.gz";
    assert_eq!(s3.object("trellis-archives", object, None), bytes);

    // The API, the static form and the web UI read it from the bucket; the client installs
    // it verified by TUF.
    let download = format!("{base}/api/v1/plugins/notes/versions/1.0.0/download");
    assert_eq!(
        agent()
            .get(&download)
            .call()
            .unwrap()
            .body_mut()
            .read_to_vec()
            .unwrap(),
        bytes
    );
    let (status, page) = get(&format!("{base}/plugins/notes"));
    assert_eq!(status, 200);
    assert!(page.contains("<h1>readme</h1>"), "{page}");
    env.ok(&["plugin", "install", "notes", "--yes"]);
    let list: Value = serde_json::from_str(&env.ok(&["--json", "plugin", "list"])).unwrap();
    assert_eq!(list["plugins"][0]["version"], "1.0.0", "{list}");
    assert_eq!(list["plugins"][0]["trust"], "verified", "{list}");

    // A restart rebuilds the index from the static form; the archives stay in the bucket.
    // Without the store the server does not start, rather than answer 404 for them.
    drop(server);
    let data = env.data();
    let keys = env.keys();
    let err = env.run(
        &[
            "registry",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data",
            &data,
            "--keys",
            &keys,
        ],
        None,
        false,
    );
    assert!(
        err.contains("keeps 1 archive(s) in object storage") && err.contains("--archives"),
        "{err}"
    );
    let server = env.serve(&["--archives", store], &[]);
    let mut r = agent()
        .get(&format!(
            "{}/api/v1/plugins/notes/versions/1.0.0/download",
            server.base
        ))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.body_mut().read_to_vec().unwrap(), bytes);

    // The export copies the archives out of the bucket; without the store it cannot.
    let lacking = env.root.join("export-lacking");
    let mut cmd = env.cmd();
    let out = cmd
        .env_remove("TRELLIS_REGISTRY_ARCHIVES")
        .args([
            "registry",
            "export",
            lacking.to_str().unwrap(),
            "--from",
            &data,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("object storage"), "{err}");
    let exported = env.root.join("export");
    env.ok(&[
        "registry",
        "export",
        exported.to_str().unwrap(),
        "--from",
        &data,
        "--archives",
        store,
    ]);
    assert_eq!(
        fs::read(exported.join("targets/archives/notes/notes-1.0.0.tar.gz")).unwrap(),
        bytes
    );

    // Bytes changed in the bucket are refused by the client, which checks the signed hash.
    let mut tampered = bytes.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    s3.object("trellis-archives", object, Some(&tampered));
    env.ok(&["plugin", "remove", "notes"]);
    fs::remove_dir_all(env.root.join("cache")).unwrap();
    let err = env.run(&["plugin", "install", "notes", "--yes"], None, false);
    assert!(err.contains("does not match targets.json"), "{err}");
}

/// The same, with the database in a real PostgreSQL.
#[test]
fn the_server_runs_on_postgresql_with_the_same_code() {
    let postgres = Postgres::start();
    let mut env = Env::new();
    env.database = Some(postgres.url.clone());
    publish_search_install(env);
}

fn publish_search_install(env: Env) {
    let (server, alice) = env.started(&["--max-body", "200000"]);
    let base = server.base.clone();
    let (_, alice_token) = env.token("alice@example.com", &["publish:*", "yank:notes"]);
    let (bob_id, bob_token) = env.token("bob@example.com", &["publish:other"]);

    let notes = env.package("notes", "1.0.0", &alice);
    let archive = notes.to_str().unwrap();
    let err = env.run(&["plugin", "publish", archive], None, false);
    assert!(err.contains("TRELLIS_REGISTRY_TOKEN"), "{err}");
    let err = env.run(&["plugin", "publish", archive], Some(&bob_token), false);
    assert!(
        err.contains("403") && err.contains("may not publish `notes`"),
        "{err}"
    );
    env.run(&["plugin", "publish", archive], Some(&alice_token), true);
    // The server's own gates, without the client's: versions are immutable.
    let (status, body) = put(&base, &notes, "notes", "1.0.0", &alice_token);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("immutable"), "{body}");
    let (status, body) = put(&base, &notes, "notes", "1.0.0", "trl_wrong");
    assert_eq!(status, 401, "{body}");

    // An admin registers bob's key through the API; only an admin may.
    let (bob_key, _) = (env.root.join("keys/bob"), ());
    env.ok(&[
        "plugin",
        "keygen",
        "--principal",
        "bob@example.com",
        "--out",
        bob_key.to_str().unwrap(),
    ]);
    let bob_pub = fs::read_to_string(format!("{}.pub", bob_key.display())).unwrap();
    let add_key = |token: &str| {
        agent()
            .put(&format!("{base}/api/v1/keys/bob@example.com"))
            .header("Authorization", &format!("Bearer {token}"))
            .send(bob_pub.as_bytes())
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(add_key(&alice_token), 403);
    let (_, admin_token) = env.token("admin@example.com", &["admin"]);
    assert_eq!(add_key(&admin_token), 200);
    let (_, keys) = get(&format!("{base}/api/v1/keys"));
    assert!(keys.contains("bob@example.com"), "{keys}");
    let mut bad = agent()
        .put(&format!("{base}/api/v1/keys/eve@example.com"))
        .header("Authorization", &format!("Bearer {admin_token}"))
        .send(&b"not a key"[..])
        .unwrap();
    assert_eq!(
        bad.status().as_u16(),
        400,
        "{}",
        bad.body_mut().read_to_string().unwrap()
    );
    let by_bob = env.package("other", "1.0.0", &bob_key);
    assert_eq!(put(&base, &by_bob, "other", "1.0.0", &bob_token).0, 201);

    // A revoked token stops working.
    let data = env.data();
    let mut revoke = vec![
        "registry",
        "token",
        "revoke",
        bob_id.as_str(),
        "--data",
        &data,
    ];
    if let Some(url) = &env.database {
        revoke.extend(["--database", url.as_str()]);
    }
    env.ok(&revoke);
    let other = env.package("other", "1.1.0", &bob_key);
    let (status, _) = put(&base, &other, "other", "1.1.0", &bob_token);
    assert_eq!(status, 401);

    // The API.
    let (status, body) = get(&format!(
        "{base}/api/v1/plugins?q=notes&category=commands&trust=verified"
    ));
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["results"][0]["name"], "notes", "{v}");
    assert_eq!(v["results"][0]["owners"][0], "alice@example.com", "{v}");
    let (_, body) = get(&format!("{base}/api/v1/plugins?q=notes&trust=certified"));
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["results"],
        serde_json::json!([])
    );
    let (_, body) = get(&format!("{base}/api/v1/categories"));
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["categories"]["commands"],
        2,
        "{body}"
    );
    let (status, body) = get(&format!("{base}/api/v1/plugins/notes"));
    assert_eq!(status, 200);
    assert!(body.contains("trellis plugin install notes"), "{body}");
    let (status, _) = get(&format!("{base}/api/v1/plugins/ghost"));
    assert_eq!(status, 404);

    // Full-text search in the database: stems and prefixes, name matches ranked first, paging,
    // and no query syntax reaching SQL or the full-text parser.
    for (name, description, keywords) in [
        (
            "vuln-finder",
            "Scans dependencies for known vulnerabilities and license problems",
            "security, audit",
        ),
        (
            "license-check",
            "Checks the licenses of all dependencies",
            "compliance",
        ),
    ] {
        let archive = env.package_described(name, "1.0.0", &alice, description, keywords);
        assert_eq!(put(&base, &archive, name, "1.0.0", &alice_token).0, 201);
    }
    let names = |query: &str| -> (u64, Vec<String>) {
        let (status, body) = get(&format!("{base}/api/v1/plugins?{query}"));
        assert_eq!(status, 200, "{query}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let names = v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_owned())
            .collect();
        (v["total"].as_u64().unwrap(), names)
    };
    assert_eq!(names("q=scanning"), (1, vec!["vuln-finder".to_owned()]));
    assert_eq!(names("q=vuln").1, ["vuln-finder"]);
    assert_eq!(names("q=audit").1, ["vuln-finder"]);
    assert_eq!(names("q=depend").0, 2);
    assert_eq!(names("q=license").1, ["license-check", "vuln-finder"]);
    assert_eq!(names("q=license+compliance").1, ["license-check"]);
    assert_eq!(names("q=nothing-like-this").0, 0);
    let everything = names("").0;
    assert_eq!(everything, 4);
    assert_eq!(names("q=%22%27%29%28%2A%3B--").0, everything);
    assert_eq!(names("limit=1&offset=1"), (4, vec!["notes".to_owned()]));
    assert_eq!(get(&format!("{base}/api/v1/plugins?limit=0")).0, 400);
    assert_eq!(get(&format!("{base}/api/v1/plugins?limit=201")).0, 400);
    let mut r = agent()
        .get(&format!(
            "{base}/api/v1/plugins/notes/versions/1.0.0/download"
        ))
        .call()
        .unwrap();
    let downloaded = r.body_mut().read_to_vec().unwrap();
    assert_eq!(downloaded, fs::read(&notes).unwrap());

    // The client installs over HTTP, verified by TUF and attested by the registry.
    let out = env.ok(&["plugin", "search", "notes"]);
    assert!(out.contains("notes") && out.contains("verified"), "{out}");
    env.ok(&["plugin", "install", "notes", "--yes"]);
    let list: Value = serde_json::from_str(&env.ok(&["--json", "plugin", "list"])).unwrap();
    assert_eq!(list["plugins"][0]["trust"], "verified", "{list}");

    // Yank through the API.
    let mut r = agent()
        .post(&format!("{base}/api/v1/plugins/notes/versions/1.0.0/yank"))
        .header("Authorization", &format!("Bearer {alice_token}"))
        .send_empty()
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        200,
        "{}",
        r.body_mut().read_to_string().unwrap()
    );
    let (_, body) = get(&format!("{base}/api/v1/plugins?q=notes"));
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["results"],
        serde_json::json!([])
    );

    // Limits, health and metrics.
    // The server may answer 413 and close before the client has sent the whole body, so the
    // client sees either the 413 or a broken connection; the metrics say what the server did.
    let big = vec![0u8; 300_000];
    let sent = agent()
        .put(&format!("{base}/api/v1/plugins/big/versions/1.0.0"))
        .header("Authorization", &format!("Bearer {alice_token}"))
        .send(&big[..]);
    if let Ok(mut r) = sent {
        assert_eq!(
            r.status().as_u16(),
            413,
            "{}",
            r.body_mut().read_to_string().unwrap_or_default()
        );
    }
    let (status, body) = get(&format!("{base}/health"));
    assert_eq!((status, body.contains("\"ok\"")), (200, true), "{body}");
    let (_, metrics) = get(&format!("{base}/metrics"));
    assert!(
        metrics.contains("trellis_registry_published_total 4"),
        "{metrics}"
    );
    assert!(metrics.contains("status=\"401\""), "{metrics}");
    assert!(
        metrics.contains("route=\"/api/v1/plugins/{name}/versions/{version}\",status=\"413\""),
        "{metrics}"
    );
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");
}

#[test]
fn requests_past_the_rate_limit_are_refused() {
    let env = Env::new();
    // One request a second, and a burst of 20 at once: unless the machine spreads them over
    // 20 seconds, most are refused.
    let server = env.serve(&["--rate-limit", "1"], &[]);
    let url = format!("{}/health", server.base);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20).map(|_| scope.spawn(|| get(&url).0)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");
}

/// A server killed between writing a version's files and signing them finishes the publish
/// when it starts again; one killed before the index line was written never published it.
/// Either way the index, the archives and the signed metadata agree.
#[test]
fn a_server_killed_during_a_publish_leaves_no_half_published_version() {
    let env = Env::new();
    let (server, alice) = env.started(&[]);
    let (_, token) = env.token("alice@example.com", &["publish:*"]);
    let v1 = env.package("notes", "1.0.0", &alice);
    assert_eq!(put(&server.base, &v1, "notes", "1.0.0", &token).0, 201);
    drop(server);

    for (step, version, published) in [
        ("publish:marked", "1.1.0", false),
        ("publish:archived", "1.2.0", false),
        ("publish:indexed", "1.3.0", true),
    ] {
        let server = env.serve(&[], &[("TRELLIS_TEST_KILL_AT", step)]);
        let archive = env.package("notes", version, &alice);
        let sig = fs::read_to_string(format!("{}.sig", archive.display())).unwrap();
        let died = agent()
            .put(&format!(
                "{}/api/v1/plugins/notes/versions/{version}",
                server.base
            ))
            .header("Authorization", &format!("Bearer {token}"))
            .header(
                "X-Trellis-Signature",
                &base64::engine::general_purpose::STANDARD.encode(sig),
            )
            .send(&fs::read(&archive).unwrap()[..]);
        assert!(died.is_err(), "the server should have died at {step}");
        drop(server);

        let server = env.serve(&[], &[]);
        let (_, body) = get(&format!("{}/api/v1/plugins/notes", server.base));
        let listed = body.contains(&format!("\"{version}\""));
        assert_eq!(listed, published, "after a kill at {step}: {body}");
        // The client verifies the whole registry and installs the newest version whole.
        let out = env.ok(&["plugin", "search", "notes"]);
        assert!(out.contains("notes"), "{out}");
        drop(server);
    }
    let server = env.serve(&[], &[]);
    env.ok(&["plugin", "install", "notes", "--yes"]);
    let list: Value = serde_json::from_str(&env.ok(&["--json", "plugin", "list"])).unwrap();
    assert_eq!(list["plugins"][0]["version"], "1.3.0", "{list}");
    drop(server);

    // The static form exported for a CDN is a registry a project can use as it is.
    let exported = env.root.join("exported");
    env.ok(&[
        "registry",
        "export",
        exported.to_str().unwrap(),
        "--from",
        &env.data(),
    ]);
    assert!(!exported.join(".publishing").exists() && !exported.join(".lock").exists());
    let err = env.run(
        &[
            "registry",
            "export",
            exported.to_str().unwrap(),
            "--from",
            &env.data(),
        ],
        None,
        false,
    );
    assert!(err.contains("is not empty"), "{err}");
    // (The server is stopped, and a registry that cannot be read fails the whole read: a name
    // must never silently resolve from a lower-priority registry.)
    env.ok(&["plugin", "registry", "remove", "team"]);
    env.ok(&[
        "plugin",
        "registry",
        "add",
        "cdn",
        exported.to_str().unwrap(),
        "--priority",
        "1",
    ]);
    let found: Value =
        serde_json::from_str(&env.ok(&["--json", "plugin", "search", "notes"])).unwrap();
    assert_eq!(found["results"][0]["registry"], "cdn", "{found}");
    assert_eq!(found["results"][0]["version"], "1.3.0", "{found}");
}

/// What headless Chromium renders at `url` (the DOM after the page loaded).
fn browse(url: &str, profile: &Path) -> String {
    let out = StdCommand::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", url])
        .output()
        .expect("chromium (scripts/setup.sh installs Debian's chromium)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The web UI in a real browser: search with filters, follow a result to its plugin page, and
/// check the page shows the README (rendered, its HTML neutralised), versions, capabilities
/// with reasons, the trust badge and the install command.
#[test]
fn the_web_ui_searches_and_shows_a_plugin_in_headless_chromium() {
    let env = Env::new();
    let (server, alice) = env.started(&[]);
    let (_, token) = env.token("alice@example.com", &["publish:*"]);
    let dir = env.root.join("src/scanner");
    fs::create_dir_all(dir.join("t")).unwrap();
    fs::write(
        dir.join("plugin.yaml"),
        "apiVersion: trellis.dev/v1\nkind: Plugin\nmetadata:\n  name: scanner\n  version: 1.2.0\n  description: Finds leaked secrets\n  license: MIT\n  keywords: [security]\n  categories: [security]\nprovides:\n  commands:\n    - name: scan\n      description: Scan for leaked secrets\n      template: t/scan.md\n      arguments:\n        - name: paths\n          type: list\n          items: path\n          required: false\n          help: Where to look\n      options:\n        - name: severity\n          type: enum\n          choices: [low, high]\n          default: low\n          short: s\n          env: SCAN_SEVERITY\n          help: Lowest severity to report\nrequires:\n  capabilities:\n    - name: network\n      reason: looks up advisories\n      hosts: [api.example.com]\n",
    )
    .unwrap();
    fs::write(dir.join("t/scan.md"), "scan\n").unwrap();
    fs::write(
        dir.join("README.md"),
        "# Scanner\n\nKeeps **secrets** out of the repository.\n\n<script>document.title='pwned'</script>\n",
    )
    .unwrap();
    let dist = env.root.join("dist").display().to_string();
    let built: Value = serde_json::from_str(&env.ok(&[
        "--json",
        "plugin",
        "build",
        dir.to_str().unwrap(),
        "--out",
        &dist,
    ]))
    .unwrap();
    let archive = built["archive"].as_str().unwrap().to_owned();
    env.ok(&["plugin", "sign", &archive, "--key", alice.to_str().unwrap()]);
    assert_eq!(
        put(
            &server.base,
            Path::new(&archive),
            "scanner",
            "1.2.0",
            &token
        )
        .0,
        201
    );
    let notes = env.package("notes", "1.0.0", &alice);
    assert_eq!(put(&server.base, &notes, "notes", "1.0.0", &token).0, 201);

    let profile = tempfile::tempdir().unwrap();
    let all = browse(&format!("{}/", server.base), profile.path());
    assert!(all.contains("2 plugins"), "{all}");
    assert!(
        all.contains(r#"<option value="security">security (1)</option>"#),
        "{all}"
    );
    let search = browse(
        &format!(
            "{}/?q=secrets&category=security&trust=verified",
            server.base
        ),
        profile.path(),
    );
    assert!(search.contains("1 plugin<"), "{search}");
    let link = search
        .split(r#"class="name" href=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a result links to its page")
        .to_owned();
    assert_eq!(link, "/plugins/scanner");
    let none = browse(
        &format!("{}/?q=secrets&trust=certified", server.base),
        profile.path(),
    );
    assert!(none.contains("0 plugins"), "{none}");

    let page = browse(&format!("{}{link}", server.base), profile.path());
    assert!(
        page.contains("<title>scanner — Trellis plugin registry</title>"),
        "the README's script did not run: {page}"
    );
    assert!(page.contains("<strong>secrets</strong>"), "{page}");
    assert!(page.contains("&lt;script&gt;"), "{page}");
    assert!(page.contains(r#"data-trust="verified""#), "{page}");
    assert!(page.contains("trellis plugin install scanner"), "{page}");
    assert!(page.contains("looks up advisories"), "{page}");
    for part in [
        r#"<dl id="commands"><dt><code>trellis scan</code></dt><dd><p>Scan for leaked secrets</p>"#,
        "<tr><td><code>PATHS</code></td><td>list of path</td><td></td><td>Where to look</td></tr>",
        "<tr><td><code>--severity</code>, <code>-s</code></td><td>enum: low, high</td><td>low</td><td>Lowest severity to report (env: SCAN_SEVERITY)</td></tr>",
    ] {
        assert!(
            page.contains(part),
            "`{part}` is missing from the plugin page: {page}"
        );
    }
    assert!(page.contains("hosts: api.example.com"), "{page}");
    assert!(page.contains("1.2.0"), "{page}");
    assert!(page.contains("alice@example.com"), "{page}");
}

/// This crate's directory, read when the test runs (cargo sets it): a test binary that cargo
/// reuses after the checkout moved must not look in the old place.
fn crate_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR")
            .expect("run by cargo, which sets CARGO_MANIFEST_DIR"),
    )
}
