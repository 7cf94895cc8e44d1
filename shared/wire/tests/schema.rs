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

/// `docs/send-command.schema.json` and [`SendCommand`] agree: every message type of the code
/// has a schema branch with the same properties and required fields, and the schema's examples
/// are commands the code accepts.
#[test]
fn the_send_command_schema_matches_the_code() {
    use wxoa_wire::command::{CustomMessage, MenuItem, SendCommand};
    use wxoa_wire::reply::Article;

    let schema: serde_json::Value = serde_json::from_str(&read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/send-command.schema.json"
    )))
    .unwrap();
    let s = || "x".to_owned();
    // Every type, every field set.
    let samples = [
        CustomMessage::Text { content: s() },
        CustomMessage::Image { media_id: s() },
        CustomMessage::Voice { media_id: s() },
        CustomMessage::Video {
            media_id: s(),
            thumb_media_id: Some(s()),
            title: Some(s()),
            description: Some(s()),
        },
        CustomMessage::Music {
            title: Some(s()),
            description: Some(s()),
            music_url: s(),
            hq_music_url: Some(s()),
            thumb_media_id: s(),
        },
        CustomMessage::News {
            articles: vec![Article::default()],
        },
        CustomMessage::Mpnews { media_id: s() },
        CustomMessage::Mpnewsarticle { article_id: s() },
        CustomMessage::Msgmenu {
            head_content: s(),
            list: vec![MenuItem {
                id: s(),
                content: s(),
            }],
            tail_content: s(),
        },
        CustomMessage::Wxcard { card_id: s() },
        CustomMessage::Miniprogrampage {
            title: s(),
            appid: s(),
            pagepath: s(),
            thumb_media_id: s(),
        },
    ];
    let branches = schema["$defs"]["message"]["oneOf"].as_array().unwrap();
    assert_eq!(branches.len(), samples.len(), "one branch per type");
    for sample in &samples {
        let json = serde_json::to_value(sample).unwrap();
        let ty = json["type"].as_str().unwrap();
        let branch = branches
            .iter()
            .find(|b| b["title"] == ty)
            .unwrap_or_else(|| panic!("no schema branch for {ty}"));
        let properties = branch["properties"].as_object().unwrap();
        let keys: BTreeSet<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        let listed: BTreeSet<&str> = properties.keys().map(|k| k.as_str()).collect();
        assert_eq!(keys, listed, "{ty}: properties");
        for required in branch["required"].as_array().unwrap() {
            let field = required.as_str().unwrap();
            let mut without = json.clone();
            without.as_object_mut().unwrap().remove(field);
            if field != "type" {
                assert!(
                    serde_json::from_value::<CustomMessage>(without)
                        .map_or(true, |m| m.validate().is_err()),
                    "{ty}: the schema requires {field}, the code does not"
                );
            }
        }
    }
    for example in schema["examples"].as_array().unwrap() {
        let command: SendCommand = serde_json::from_value(example.clone())
            .unwrap_or_else(|e| panic!("example {example}: {e}"));
        command.validate().unwrap();
    }
    let top: BTreeSet<&str> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        top,
        BTreeSet::from(["id", "openid", "message", "typing", "kf_account"])
    );
}
