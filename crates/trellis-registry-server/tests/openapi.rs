//! docs/registry-api.yaml documents exactly the routes the server has.

use std::collections::BTreeSet;

#[test]
fn the_openapi_document_matches_the_routes() {
    let path = crate_dir().join("../../docs/registry-api.yaml");
    let text = std::fs::read_to_string(path).expect("docs/registry-api.yaml");
    let doc: serde_json::Value = serde_norway::from_str(&text).expect("valid YAML");
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = BTreeSet::new();
    for (route, methods) in doc["paths"].as_object().expect("paths") {
        for method in methods.as_object().expect("methods").keys() {
            documented.insert(format!("{} {route}", method.to_uppercase()));
        }
    }
    let served: BTreeSet<String> = trellis_registry_server::ROUTES
        .iter()
        .map(|r| (*r).to_owned())
        .collect();
    assert_eq!(documented, served);
}

/// This crate's directory, read when the test runs (cargo sets it): a test binary that cargo
/// reuses after the checkout moved must not look in the old place.
fn crate_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR")
            .expect("run by cargo, which sets CARGO_MANIFEST_DIR"),
    )
}
