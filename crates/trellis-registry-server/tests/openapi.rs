//! docs/registry-api.yaml documents exactly the routes the server has.

use std::collections::BTreeSet;

#[test]
fn the_openapi_document_matches_the_routes() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/registry-api.yaml");
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
