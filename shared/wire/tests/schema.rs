//! The published envelope JSON Schema (`docs/envelope.schema.json`) and the code agree: every
//! shared fixture's envelope has the schema's required properties, and every `detail.kind`
//! the code produces is listed in the schema.

use std::collections::BTreeSet;

use wxoa_wire::envelope::Envelope;
use wxoa_wire::inbound::Inbound;

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

#[test]
fn fixture_envelopes_fit_the_published_schema() {
    let schema: serde_json::Value = serde_json::from_str(&read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/envelope.schema.json"
    )))
    .unwrap();
    let required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let kinds: BTreeSet<&str> = schema["$defs"]["detail"]["properties"]["kind"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let properties = schema["properties"].as_object().unwrap();

    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/inbound"
    );
    let mut seen = BTreeSet::new();
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("fixtures at {dir}: {e}")) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("envelope_") {
            continue;
        }
        let message = Inbound::parse(read(path.to_str().unwrap()).as_bytes()).unwrap();
        let json = serde_json::to_value(Envelope::new("wx1", 1, message)).unwrap();
        for key in &required {
            assert!(json.get(*key).is_some(), "{name}: missing {key}");
        }
        for key in json.as_object().unwrap().keys() {
            assert!(
                properties.contains_key(key),
                "{name}: {key} is not in the schema"
            );
        }
        let kind = json["detail"]["kind"].as_str().unwrap().to_owned();
        assert!(
            kinds.contains(kind.as_str()),
            "{name}: kind {kind} is not in the schema"
        );
        assert_ne!(
            kind, "unknown",
            "{name}: every documented type has a typed view"
        );
        seen.insert(kind);
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} fixtures");
    assert!(seen.len() >= 25, "kinds seen: {seen:?}");
}
