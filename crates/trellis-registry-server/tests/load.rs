//! A bounded load test on loopback: 50 concurrent clients (10 publishing new versions, 40
//! searching and downloading) for `TRELLIS_LOAD_SECONDS` (60 by default). Afterwards no
//! archive may be lost or corrupted and the signed index must list exactly what was
//! published. The figures (requests per second, p50 and p99 latency) are printed; run
//! `scripts/bench-registry.sh` to see them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::{Digest, Sha256};
use trellis_registry::local::LocalRegistry;
use trellis_registry::tuf::VerifiedRegistry;
use trellis_registry_server::{Db, ServerConfig};
use trellis_trust::SigningKey;

const PUBLISHERS: usize = 10;
const READERS: usize = 40;

struct Published {
    name: String,
    version: String,
    sha256: String,
}

fn build(root: &Path, key: &SigningKey, name: &str, version: &str) -> PathBuf {
    let dir = root.join("src").join(format!("{name}-{version}"));
    std::fs::create_dir_all(dir.join("t")).unwrap();
    std::fs::write(
        dir.join("plugin.yaml"),
        format!(
            "apiVersion: trellis.dev/v1\nkind: Plugin\nmetadata:\n  name: {name}\n  version: {version}\n  description: load test plugin {name}\n  license: MIT\n  keywords: [load]\n  categories: [commands]\nprovides:\n  commands:\n    - name: {name}-hi\n      description: hi\n      template: t/hi.md\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("t/hi.md"), format!("{name} {version}\n")).unwrap();
    std::fs::write(dir.join("README.md"), "# load\n").unwrap();
    let built = trellis_package::build(&dir, &root.join("dist").join(name)).unwrap();
    let sig = key
        .sign(
            &std::fs::read(&built.archive).unwrap(),
            trellis_trust::PACKAGE_NAMESPACE,
        )
        .unwrap();
    std::fs::write(trellis_trust::signature_path(&built.archive), sig).unwrap();
    built.archive
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[test]
fn fifty_clients_publish_and_download_without_losing_anything() {
    let seconds: u64 = std::env::var("TRELLIS_LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_owned();
    let data = root.join("data");
    let keys = root.join("keys");
    let key = SigningKey::generate("load@example.com");
    LocalRegistry::init(&data.join("static"), &keys, "load")
        .unwrap()
        .add_key("load@example.com", &key.public_key_openssh())
        .unwrap();
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data: data.clone(),
        database: None,
        keys,
        name: "load".to_owned(),
        max_body: 10 << 20,
        rate_limit: 0,
        archives: None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let token = runtime.block_on(async {
        let db = Db::connect(&config.database_url()).await.unwrap();
        db.create_token("load@example.com", &["publish:*".to_owned()])
            .await
            .unwrap()
            .1
    });
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(trellis_registry_server::serve(
        config,
        move |addr| {
            let _ = bound_tx.send(addr);
        },
        async {
            let _ = stop_rx.await;
        },
    ));
    let addr = bound_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let base = format!("http://{addr}");

    let published: Arc<Mutex<Vec<Published>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for p in 0..PUBLISHERS {
            let (agent, base, token, key, root) = (agent.clone(), &base, &token, &key, &root);
            let (published, latencies, failures, stop) = (&published, &latencies, &failures, &stop);
            scope.spawn(move || {
                let name = format!("load-p{p}");
                let mut patch = 0;
                while !stop.load(Ordering::Relaxed) {
                    let version = format!("1.0.{patch}");
                    patch += 1;
                    let archive = build(root, key, &name, &version);
                    let bytes = std::fs::read(&archive).unwrap();
                    let sig =
                        std::fs::read_to_string(trellis_trust::signature_path(&archive)).unwrap();
                    let t = Instant::now();
                    let response = agent
                        .put(&format!("{base}/api/v1/plugins/{name}/versions/{version}"))
                        .header("Authorization", &format!("Bearer {token}"))
                        .header(
                            "X-Trellis-Signature",
                            &base64::engine::general_purpose::STANDARD.encode(sig),
                        )
                        .send(&bytes[..]);
                    latencies.lock().unwrap().push(t.elapsed());
                    match response {
                        Ok(r) if r.status().as_u16() == 201 => {
                            published.lock().unwrap().push(Published {
                                name: name.clone(),
                                version,
                                sha256: hex::encode(Sha256::digest(&bytes)),
                            });
                        }
                        Ok(mut r) => failures.lock().unwrap().push(format!(
                            "publish {name} {version}: {} {}",
                            r.status(),
                            r.body_mut().read_to_string().unwrap_or_default()
                        )),
                        Err(e) => failures
                            .lock()
                            .unwrap()
                            .push(format!("publish {name}: {e}")),
                    }
                }
            });
        }
        for r in 0..READERS {
            let (agent, base) = (agent.clone(), &base);
            let (published, latencies, failures, stop) = (&published, &latencies, &failures, &stop);
            scope.spawn(move || {
                let mut i = r;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let target = {
                        let list = published.lock().unwrap();
                        (!list.is_empty()).then(|| {
                            let p = &list[i % list.len()];
                            (p.name.clone(), p.version.clone(), p.sha256.clone())
                        })
                    };
                    let t = Instant::now();
                    let outcome = match &target {
                        Some((name, version, sha)) if i % 2 == 0 => agent
                            .get(&format!(
                                "{base}/api/v1/plugins/{name}/versions/{version}/download"
                            ))
                            .call()
                            .map_err(|e| e.to_string())
                            .and_then(|mut res| {
                                let body =
                                    res.body_mut().read_to_vec().map_err(|e| e.to_string())?;
                                if hex::encode(Sha256::digest(&body)) == *sha {
                                    Ok(())
                                } else {
                                    Err(format!("{name} {version}: corrupted download"))
                                }
                            }),
                        _ => agent
                            .get(&format!("{base}/api/v1/plugins?q=load"))
                            .call()
                            .map_err(|e| e.to_string())
                            .and_then(|res| {
                                if res.status().as_u16() == 200 {
                                    Ok(())
                                } else {
                                    Err(format!("search: {}", res.status()))
                                }
                            }),
                    };
                    latencies.lock().unwrap().push(t.elapsed());
                    if let Err(e) = outcome {
                        failures.lock().unwrap().push(e);
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
    });
    let elapsed = started.elapsed();

    // Nothing lost or corrupted: every published version downloads with its hash, and the
    // signed index lists exactly the published versions.
    let published = published.lock().unwrap();
    for p in published.iter() {
        let mut res = agent
            .get(&format!(
                "{base}/api/v1/plugins/{}/versions/{}/download",
                p.name, p.version
            ))
            .call()
            .unwrap();
        let body = res.body_mut().read_to_vec().unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(&body)),
            p.sha256,
            "{} {}",
            p.name,
            p.version
        );
    }
    let _ = stop_tx.send(());
    runtime.block_on(server).unwrap().unwrap();
    let static_dir = data.join("static");
    let root_json = std::fs::read(static_dir.join("metadata/root.json")).unwrap();
    let verified = VerifiedRegistry::load(
        &root_json,
        &url::Url::from_directory_path(static_dir.join("metadata")).unwrap(),
        &url::Url::from_directory_path(static_dir.join("targets")).unwrap(),
        &root.join("datastore"),
    )
    .unwrap();
    let mut listed = 0;
    for p in 0..PUBLISHERS {
        let name = format!("load-p{p}");
        let index = verified
            .read_target(&format!("index/{name}.jsonl"))
            .unwrap()
            .map(|b| String::from_utf8(b).unwrap())
            .unwrap_or_default();
        let entries = trellis_registry::index::parse_index(&name, &index, "index").unwrap();
        let ours: Vec<&Published> = published.iter().filter(|x| x.name == name).collect();
        assert_eq!(
            entries.len(),
            ours.len(),
            "{name}: index and publishes differ"
        );
        for (entry, p) in entries.iter().zip(&ours) {
            assert_eq!(entry.version.to_string(), p.version);
            assert_eq!(entry.sha256, p.sha256);
        }
        listed += entries.len();
    }

    let mut all = latencies.lock().unwrap().clone();
    all.sort();
    let failures = failures.lock().unwrap();
    println!(
        "registry load: {} clients for {:.1}s: {} requests ({:.0}/s), p50 {:.1} ms, p99 {:.1} ms, {} versions published, {} failures",
        PUBLISHERS + READERS,
        elapsed.as_secs_f64(),
        all.len(),
        all.len() as f64 / elapsed.as_secs_f64(),
        percentile(&all, 0.50).as_secs_f64() * 1000.0,
        percentile(&all, 0.99).as_secs_f64() * 1000.0,
        listed,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{:?}",
        &failures[..failures.len().min(10)]
    );
    assert!(
        listed >= PUBLISHERS,
        "every publisher published at least once"
    );
}
