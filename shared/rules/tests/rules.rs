//! The rules engine end to end: a realistic rules file, matching, ordering, templates,
//! validation and layering.

use wxoa_rules::{KeywordMode, Match, Rule, RuleError, RuleSet, merge, parse_toml};
use wxoa_wire::envelope::Envelope;
use wxoa_wire::inbound::Inbound;
use wxoa_wire::reply::{Article, PassiveReply};

const APP: &str = "wx1234567890abcdef";

const HEAD: &str = "<ToUserName><![CDATA[gh_7f083739789a]]></ToUserName>\
    <FromUserName><![CDATA[oUser1]]></FromUserName><CreateTime>1700000100</CreateTime>";

fn envelope(body: &str) -> Envelope {
    let xml = format!("<xml>{HEAD}{body}</xml>");
    let inbound = Inbound::parse(xml.as_bytes()).unwrap_or_else(|e| panic!("{e}: {xml}"));
    Envelope::new(APP, 1_700_000_100_000, inbound)
}

fn text(content: &str) -> Envelope {
    envelope(&format!(
        "<MsgType>text</MsgType><Content><![CDATA[{content}]]></Content><MsgId>1001</MsgId>"
    ))
}

fn event(name: &str, key: Option<&str>) -> Envelope {
    let key = key
        .map(|k| format!("<EventKey><![CDATA[{k}]]></EventKey>"))
        .unwrap_or_default();
    envelope(&format!(
        "<MsgType>event</MsgType><Event><![CDATA[{name}]]></Event>{key}"
    ))
}

fn text_reply(content: &str) -> Option<PassiveReply> {
    Some(PassiveReply::Text {
        content: content.into(),
    })
}

/// The id of the deciding rule and the reply's text (or `-` for no reply / another type).
fn decide(set: &RuleSet, env: &Envelope) -> Option<(String, String)> {
    set.decide(env).map(|d| {
        let reply = match &d.reply {
            Some(PassiveReply::Text { content }) => content.clone(),
            Some(other) => other.msg_type().to_owned(),
            None => "-".to_owned(),
        };
        (d.rule.id.clone(), reply)
    })
}

fn pair(id: &str, reply: &str) -> Option<(String, String)> {
    Some((id.to_owned(), reply.to_owned()))
}

const FILE: &str = r#"
# The rules of two accounts.

[[rules]]
id = "hello"
description = "Greetings"
match = { kind = "keyword", mode = "exact", patterns = ["hi", "hello", "你好"] }
reply = { type = "text", content = "Hello {{ openid }}, you said {{content}}." }

[[rules]]
id = "help-prefix"
match = { kind = "keyword", mode = "prefix", patterns = ["help"] }
reply = { type = "text", content = "Help is on the way." }

[[rules]]
id = "price"
match = { kind = "keyword", mode = "contains", patterns = ["price", "cost"] }
reply = { type = "text", content = "See our price list." }

[[rules]]
id = "order"
match = { kind = "keyword", mode = "regex", patterns = ['^order\s+(?P<number>\d{4,10})$'] }
reply = { type = "text", content = "Order {{match.1}} ({{ match.number }}) is on its way." }

[[rules]]
id = "welcome"
match = { kind = "event", event = "subscribe" }

[rules.reply]
type = "news"

[[rules.reply.articles]]
title = "Welcome, {{openid}}"
description = "Start here"
pic_url = "https://example.com/1.png"
url = "https://example.com/start"

[[rules.reply.articles]]
title = "Our menu"
url = "https://example.com/menu"

[[rules.reply.articles]]
title = "Contact"
url = "https://example.com/contact"

[[rules]]
id = "welcome-poster"
priority = 10
match = { kind = "event", event = "subscribe", key = "poster2024" }
reply = { type = "text", content = "Welcome from the poster (scene {{scene}}, key {{event_key}})." }

[[rules]]
id = "menu-news"
match = { kind = "event", event = "CLICK", key = "V1001_TODAY_NEWS" }
reply = { type = "text", content = "Today's news for {{event_key}}." }

[[rules]]
id = "scan-shop"
match = { kind = "event", event = "SCAN", key = "123123" }
reply = { type = "text", content = "Welcome back to shop {{scene}}." }

[[rules]]
id = "view-silence"
description = "Menu links need no answer."
match = { kind = "event", event = "VIEW" }

[[rules]]
id = "image"
match = { kind = "message", msg_type = "image" }
reply = { type = "image", media_id = "MEDIA_THANKS" }

[[rules]]
id = "where"
match = { kind = "message", msg_type = "location" }
reply = { type = "text", content = "You are at {{field.Label}} ({{field.Location_X}},{{field.Location_Y}})." }

[[rules]]
id = "fallback"
priority = -100
match = { kind = "default" }
reply = { type = "text", content = "Sorry, I did not understand ({{msg_type}})." }

[[rules]]
id = "hello"
app = "wxother"
match = { kind = "keyword", mode = "exact", patterns = ["hi"] }
reply = { type = "transfer_customer_service", kf_account = "agent@{{to_user_name}}" }
"#;

fn file_set() -> RuleSet {
    let file = parse_toml(FILE).unwrap();
    assert_eq!(file.rules.len(), 13);
    RuleSet::compile(file.rules_for(APP)).unwrap()
}

#[test]
fn realistic_file_matches_every_kind() {
    let set = file_set();
    assert_eq!(set.len(), 12);
    assert!(!set.is_empty());

    // Keywords: exact (case-insensitive, trimmed), prefix, contains, regex.
    assert_eq!(
        decide(&set, &text("  HeLLo \n")),
        pair("hello", "Hello oUser1, you said   HeLLo \n.")
    );
    assert_eq!(decide(&set, &text("你好")).unwrap().0, "hello");
    assert_eq!(
        decide(&set, &text("Help me please")),
        pair("help-prefix", "Help is on the way.")
    );
    assert_eq!(
        decide(&set, &text("what is the PRICE?")),
        pair("price", "See our price list.")
    );
    assert_eq!(
        decide(&set, &text("Order 123456")),
        pair("order", "Order 123456 (123456) is on its way.")
    );
    // Exact means exact; a near miss falls to the default.
    assert_eq!(
        decide(&set, &text("hello there")),
        pair("fallback", "Sorry, I did not understand (text).")
    );

    // Subscribe: plain follow gets the news; the poster's QR code gets its own welcome.
    let plain = set.decide(&event("subscribe", None)).unwrap();
    assert_eq!(plain.rule.id, "welcome");
    let Some(PassiveReply::News { articles }) = plain.reply else {
        panic!("{:?}", plain.reply)
    };
    assert_eq!(articles.len(), 3);
    assert_eq!(articles[0].title, "Welcome, oUser1");
    assert_eq!(articles[1].url, "https://example.com/menu");
    assert_eq!(
        decide(&set, &event("subscribe", Some(""))).unwrap().0,
        "welcome"
    );
    assert_eq!(
        decide(&set, &event("subscribe", Some("qrscene_poster2024"))),
        pair(
            "welcome-poster",
            "Welcome from the poster (scene poster2024, key qrscene_poster2024)."
        )
    );
    // Another scene: the general welcome.
    assert_eq!(
        decide(&set, &event("subscribe", Some("qrscene_flyer")))
            .unwrap()
            .0,
        "welcome"
    );

    // CLICK by key, SCAN by scene, VIEW with no reply.
    assert_eq!(
        decide(&set, &event("CLICK", Some("V1001_TODAY_NEWS"))),
        pair("menu-news", "Today's news for V1001_TODAY_NEWS.")
    );
    assert_eq!(
        decide(&set, &event("click", Some("V1001_TODAY_NEWS")))
            .unwrap()
            .0,
        "menu-news",
        "event names are case-insensitive"
    );
    assert_eq!(
        decide(&set, &event("CLICK", Some("OTHER"))).unwrap().0,
        "fallback"
    );
    assert_eq!(
        decide(&set, &event("SCAN", Some("123123"))),
        pair("scan-shop", "Welcome back to shop 123123.")
    );
    assert_eq!(
        decide(&set, &event("VIEW", Some("https://example.com"))),
        pair("view-silence", "-")
    );

    // Messages by type.
    let image = envelope(
        "<MsgType>image</MsgType><PicUrl>https://p/1.jpg</PicUrl><MediaId>m1</MediaId><MsgId>5</MsgId>",
    );
    assert_eq!(
        set.decide(&image).unwrap().reply,
        Some(PassiveReply::Image {
            media_id: "MEDIA_THANKS".into()
        })
    );
    let location = envelope(
        "<MsgType>location</MsgType><Location_X>23.134521</Location_X><Location_Y>113.358803</Location_Y>\
         <Scale>20</Scale><Label><![CDATA[广州市海珠区新港中路397号]]></Label><MsgId>6</MsgId>",
    );
    assert_eq!(
        decide(&set, &location),
        pair(
            "where",
            "You are at 广州市海珠区新港中路397号 (23.134521,113.358803)."
        )
    );

    // Voice with speech recognition answers like text; without it, it is just a voice.
    let voice = envelope(
        "<MsgType>voice</MsgType><MediaId>v1</MediaId><Format>amr</Format>\
         <Recognition><![CDATA[Hello]]></Recognition><MsgId>7</MsgId>",
    );
    assert_eq!(
        decide(&set, &voice),
        pair("hello", "Hello oUser1, you said Hello.")
    );
    let mute = envelope(
        "<MsgType>voice</MsgType><MediaId>v1</MediaId><Format>amr</Format><Recognition></Recognition><MsgId>8</MsgId>",
    );
    assert_eq!(decide(&set, &mute).unwrap().0, "fallback");

    // The other app's file rules.
    let other = parse_toml(FILE).unwrap().rules_for("wxother");
    assert_eq!(other.len(), 13);
    let other = RuleSet::compile(other).unwrap_err();
    assert_eq!(
        other.rule.as_deref(),
        Some("hello"),
        "two `hello`s for wxother"
    );
}

#[test]
fn json_form_has_the_same_fields() {
    let set = file_set();
    for rule in set.rules() {
        let json = serde_json::to_string(rule).unwrap();
        let back: Rule = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, rule, "{json}");
    }
    let rule: Rule = serde_json::from_str(
        r#"{"id":"hi","match":{"kind":"keyword","mode":"prefix","patterns":["hi"]},
            "reply":{"type":"text","content":"hey"}}"#,
    )
    .unwrap();
    assert!(rule.enabled);
    assert_eq!(rule.priority, 0);
    assert_eq!(
        rule.matcher,
        Match::Keyword {
            mode: KeywordMode::Prefix,
            patterns: vec!["hi".into()],
            case_sensitive: false
        }
    );
    let json = serde_json::to_value(&rule).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"id":"hi","priority":0,"enabled":true,
            "match":{"kind":"keyword","mode":"prefix","patterns":["hi"],"case_sensitive":false},
            "reply":{"type":"text","content":"hey"}})
    );
    let default: Rule =
        serde_json::from_str(r#"{"id":"d","match":{"kind":"default"},"reply":null}"#).unwrap();
    assert_eq!(default.matcher, Match::Default);
    assert_eq!(default.reply, None);
    // Typos are not silently ignored.
    assert!(
        serde_json::from_str::<Rule>(r#"{"id":"d","match":{"kind":"default"},"priorty":1}"#)
            .is_err()
    );
    assert!(
        serde_json::from_str::<Rule>(
            r#"{"id":"d","match":{"kind":"message","msg_type":"image","mode":"x"}}"#
        )
        .is_err()
    );
}

fn rule(id: &str, priority: i32, matcher: Match) -> Rule {
    Rule {
        id: id.into(),
        app: None,
        priority,
        enabled: true,
        description: None,
        matcher,
        reply: text_reply(id),
    }
}

fn keyword(mode: KeywordMode, pattern: &str) -> Match {
    Match::Keyword {
        mode,
        patterns: vec![pattern.into()],
        case_sensitive: false,
    }
}

#[test]
fn order_is_priority_then_rank_then_id() {
    let rules = vec![
        rule("z-default", 0, Match::Default),
        rule(
            "msg",
            0,
            Match::Message {
                msg_type: "text".into(),
            },
        ),
        rule(
            "ev",
            0,
            Match::Event {
                event: "CLICK".into(),
                key: None,
            },
        ),
        rule(
            "ev-key",
            0,
            Match::Event {
                event: "CLICK".into(),
                key: Some("K".into()),
            },
        ),
        rule("re", 0, keyword(KeywordMode::Regex, "a")),
        rule("contains", 0, keyword(KeywordMode::Contains, "a")),
        rule("prefix", 0, keyword(KeywordMode::Prefix, "a")),
        rule("b-exact", 0, keyword(KeywordMode::Exact, "a")),
        rule("a-exact", 0, keyword(KeywordMode::Exact, "a")),
        rule("urgent", 5, Match::Default),
        rule("low", -1, keyword(KeywordMode::Exact, "a")),
    ];
    let set = RuleSet::compile(rules).unwrap();
    let ids: Vec<&str> = set.rules().iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "urgent",
            "a-exact",
            "b-exact",
            "prefix",
            "contains",
            "re",
            "ev-key",
            "ev",
            "msg",
            "z-default",
            "low"
        ]
    );
    assert_eq!(decide(&set, &text("a")).unwrap().0, "urgent");

    // Without the high-priority default, the rank decides among overlapping rules.
    let rules: Vec<Rule> = set
        .rules()
        .iter()
        .filter(|r| r.id != "urgent")
        .cloned()
        .collect();
    let set = RuleSet::compile(rules).unwrap();
    assert_eq!(decide(&set, &text("a")).unwrap().0, "a-exact");
    assert_eq!(decide(&set, &text("ab")).unwrap().0, "prefix");
    assert_eq!(decide(&set, &text("ba")).unwrap().0, "contains");
    assert_eq!(decide(&set, &text("xyz")).unwrap().0, "msg");
    assert_eq!(
        decide(&set, &event("CLICK", Some("K"))).unwrap().0,
        "ev-key"
    );
    assert_eq!(decide(&set, &event("CLICK", Some("J"))).unwrap().0, "ev");
    assert_eq!(
        decide(&set, &event("VIEW", Some("J"))).unwrap().0,
        "z-default"
    );
    // A higher priority beats a better rank.
    let set = RuleSet::compile(vec![
        rule("exact", 0, keyword(KeywordMode::Exact, "a")),
        rule("contains", 1, keyword(KeywordMode::Contains, "a")),
    ])
    .unwrap();
    assert_eq!(decide(&set, &text("a")).unwrap().0, "contains");
}

#[test]
fn event_and_message_rules_stay_apart() {
    let set = RuleSet::compile(vec![
        rule(
            "click",
            0,
            Match::Event {
                event: "CLICK".into(),
                key: None,
            },
        ),
        rule(
            "text",
            0,
            Match::Message {
                msg_type: "text".into(),
            },
        ),
    ])
    .unwrap();
    assert_eq!(decide(&set, &text("CLICK")).unwrap().0, "text");
    assert_eq!(decide(&set, &event("CLICK", None)).unwrap().0, "click");
    // An event never reaches a keyword or message rule; nothing matched is None.
    assert_eq!(decide(&set, &event("VIEW", Some("text"))), None);
    let kw = RuleSet::compile(vec![rule("kw", 0, keyword(KeywordMode::Contains, "e"))]).unwrap();
    assert_eq!(decide(&kw, &event("subscribe", Some("e"))), None);
    assert_eq!(decide(&RuleSet::empty(), &text("hi")), None);
    assert!(RuleSet::empty().is_empty());
}

#[test]
fn case_sensitivity() {
    let insensitive = |mode| rule("i", 0, keyword(mode, "Straße ÄB"));
    for mode in [
        KeywordMode::Exact,
        KeywordMode::Prefix,
        KeywordMode::Contains,
        KeywordMode::Regex,
    ] {
        let set = RuleSet::compile(vec![insensitive(mode)]).unwrap();
        assert!(set.decide(&text("straße äb")).is_some(), "{mode:?}");
        assert!(set.decide(&text("STRASSE ÄB")).is_none(), "{mode:?}");
        let mut sensitive = insensitive(mode);
        if let Match::Keyword { case_sensitive, .. } = &mut sensitive.matcher {
            *case_sensitive = true;
        }
        let set = RuleSet::compile(vec![sensitive]).unwrap();
        assert!(set.decide(&text("straße äb")).is_none(), "{mode:?}");
        assert!(set.decide(&text("Straße ÄB")).is_some(), "{mode:?}");
    }
}

#[test]
fn templates_render_every_name() {
    let mut r = rule(
        "all",
        0,
        Match::Keyword {
            mode: KeywordMode::Regex,
            patterns: vec![r"^(\w+) (?<rest>.*)$".into(), r"^(?<solo>\w+)$".into()],
            case_sensitive: false,
        },
    );
    r.reply = text_reply(
        "{{app_id}}|{{openid}}|{{from_user_name}}|{{to_user_name}}|{{msg_type}}|{{event}}|\
         {{event_key}}|{{scene}}|{{content}}|{{recognition}}|{{msg_id}}|{{create_time}}|\
         {{field.MsgId}}|{{field.Missing}}|{{match.0}}|{{match.1}}|{{match.rest}}|{{ match.solo }}",
    );
    let set = RuleSet::compile(vec![r]).unwrap();
    assert_eq!(
        decide(&set, &text("Track parcel 9")).unwrap().1,
        format!(
            "{APP}|oUser1|oUser1|gh_7f083739789a|text||||Track parcel 9||1001|1700000100|\
             1001||Track parcel 9|Track|parcel 9|"
        )
    );
    // The second pattern's groups (`solo` is also group 1); `rest` is empty.
    assert_eq!(
        decide(&set, &text("solo")).unwrap().1,
        format!(
            "{APP}|oUser1|oUser1|gh_7f083739789a|text||||solo||1001|1700000100|1001||solo|solo||solo"
        )
    );

    // Event values.
    let mut r = rule(
        "ev",
        0,
        Match::Event {
            event: "subscribe".into(),
            key: None,
        },
    );
    r.reply = text_reply("{{event}}/{{event_key}}/{{scene}}/{{content}}/{{msg_id}}");
    let set = RuleSet::compile(vec![r]).unwrap();
    assert_eq!(
        decide(&set, &event("subscribe", Some("qrscene_42")))
            .unwrap()
            .1,
        "subscribe/qrscene_42/42//"
    );

    // Every string of a reply is a template.
    let mut r = rule(
        "news",
        0,
        Match::Event {
            event: "CLICK".into(),
            key: None,
        },
    );
    r.reply = Some(PassiveReply::News {
        articles: vec![
            Article {
                title: "t {{event_key}}".into(),
                description: "d {{openid}}".into(),
                pic_url: "https://p/{{event_key}}.png".into(),
                url: "https://u/?k={{event_key}}".into(),
            };
            2
        ],
    });
    let set = RuleSet::compile(vec![r]).unwrap();
    let article = Article {
        title: "t K".into(),
        description: "d oUser1".into(),
        pic_url: "https://p/K.png".into(),
        url: "https://u/?k=K".into(),
    };
    assert_eq!(
        set.decide(&event("CLICK", Some("K"))).unwrap().reply,
        Some(PassiveReply::News {
            articles: vec![article.clone(), article]
        })
    );
    let mut r = rule("music", 0, Match::Default);
    r.reply = Some(PassiveReply::Music {
        title: Some("{{msg_type}}".into()),
        description: None,
        music_url: Some("https://m/{{openid}}".into()),
        hq_music_url: None,
        thumb_media_id: "thumb-{{msg_id}}".into(),
    });
    let set = RuleSet::compile(vec![r]).unwrap();
    assert_eq!(
        set.decide(&text("x")).unwrap().reply,
        Some(PassiveReply::Music {
            title: Some("text".into()),
            description: None,
            music_url: Some("https://m/oUser1".into()),
            hq_music_url: None,
            thumb_media_id: "thumb-1001".into(),
        })
    );
}

fn expect_error(rules: Vec<Rule>, rule_label: &str, needle: &str) -> RuleError {
    let err = RuleSet::compile(rules).unwrap_err();
    assert_eq!(err.rule.as_deref(), Some(rule_label), "{err}");
    assert!(err.reason.contains(needle), "{err:?} lacks {needle:?}");
    err
}

fn with_reply(mut r: Rule, reply: PassiveReply) -> Rule {
    r.reply = Some(reply);
    r
}

#[test]
fn every_validation_error() {
    let ok = || rule("ok", 0, keyword(KeywordMode::Exact, "a"));
    // Ids.
    for bad in ["", "has space", "dot.ted", &"x".repeat(65)] {
        let mut r = ok();
        r.id = bad.into();
        let err = expect_error(vec![ok(), r.clone()], "#2", "id must be");
        assert!(
            err.to_string().starts_with("rule `#2`: id must be"),
            "{err}"
        );
        assert_eq!(r.validate().unwrap_err().rule.as_deref(), Some(bad));
    }
    let mut long = ok();
    long.id = "x".repeat(64);
    assert!(long.validate().is_ok());
    // Patterns.
    let patterns = |p: Vec<&str>| {
        rule(
            "p",
            0,
            Match::Keyword {
                mode: KeywordMode::Contains,
                patterns: p.into_iter().map(String::from).collect(),
                case_sensitive: false,
            },
        )
    };
    expect_error(vec![patterns(vec![])], "p", "at least one pattern");
    expect_error(vec![patterns(vec!["a", ""])], "p", "must not be empty");
    expect_error(vec![patterns(vec!["  "])], "p", "must not be empty");
    let long = "a".repeat(257);
    expect_error(vec![patterns(vec![&long])], "p", "at most 256");
    assert!(patterns(vec![&long[..256]]).validate().is_ok());
    // Regexes: bad syntax, too big, too deep.
    let err = expect_error(
        vec![rule("bad-re", 0, keyword(KeywordMode::Regex, "(unclosed"))],
        "bad-re",
        "invalid regex",
    );
    assert!(
        err.to_string()
            .starts_with("rule `bad-re`: invalid regex: "),
        "{err}"
    );
    expect_error(
        vec![rule(
            "huge",
            0,
            keyword(KeywordMode::Regex, r"\w{1000}{100}"),
        )],
        "huge",
        "invalid regex",
    );
    expect_error(
        vec![rule(
            "huge2",
            0,
            keyword(KeywordMode::Regex, "(a{999}){999}"),
        )],
        "huge2",
        "size limit",
    );
    let deep = format!("{}a{}", "(".repeat(70), ")".repeat(70));
    expect_error(
        vec![rule("deep", 0, keyword(KeywordMode::Regex, &deep))],
        "deep",
        "invalid regex",
    );
    // Templates.
    let t = |content: &str| {
        with_reply(
            ok(),
            PassiveReply::Text {
                content: content.into(),
            },
        )
    };
    expect_error(
        vec![t("hi {{nickname}}")],
        "ok",
        "unknown placeholder `{{nickname}}`",
    );
    expect_error(vec![t("hi {{openid")], "ok", "unbalanced");
    expect_error(vec![t("{{match.1}}")], "ok", "need a regex keyword rule");
    let re = |content: &str| {
        with_reply(
            rule("re", 0, keyword(KeywordMode::Regex, r"^(?<word>\w+)$")),
            PassiveReply::Text {
                content: content.into(),
            },
        )
    };
    assert!(
        re("{{match.0}} {{match.1}} {{match.word}}")
            .validate()
            .is_ok()
    );
    expect_error(vec![re("{{match.2}}")], "re", "no pattern defines");
    expect_error(vec![re("{{match.other}}")], "re", "no pattern defines");
    let mut ev = rule(
        "ev",
        0,
        Match::Event {
            event: "CLICK".into(),
            key: None,
        },
    );
    ev.reply = text_reply("{{match.0}}");
    expect_error(vec![ev], "ev", "need a regex keyword rule");
    // Templates anywhere in the reply are checked.
    let article = |title: &str| Article {
        title: title.into(),
        ..Article::default()
    };
    let news = with_reply(
        rule(
            "n",
            0,
            Match::Event {
                event: "subscribe".into(),
                key: None,
            },
        ),
        PassiveReply::News {
            articles: vec![article("ok"), article("{{bad}}")],
        },
    );
    expect_error(vec![news], "n", "articles[1].title");
    // Replies.
    let two = PassiveReply::News {
        articles: vec![article("a"), article("b")],
    };
    expect_error(vec![with_reply(ok(), two.clone())], "ok", "1 to 1 articles");
    let default_news = with_reply(rule("d", 0, Match::Default), two.clone());
    expect_error(vec![default_news], "d", "articles");
    let event_news = with_reply(
        rule(
            "e",
            0,
            Match::Event {
                event: "subscribe".into(),
                key: None,
            },
        ),
        two,
    );
    assert!(event_news.validate().is_ok());
    let nine = PassiveReply::News {
        articles: vec![article("a"); 9],
    };
    expect_error(
        vec![with_reply(
            rule(
                "e",
                0,
                Match::Event {
                    event: "subscribe".into(),
                    key: None,
                },
            ),
            nine,
        )],
        "e",
        "1 to 8",
    );
    expect_error(vec![t("")], "ok", "text content must not be empty");
    expect_error(vec![t(" \n")], "ok", "text content must not be empty");
    expect_error(
        vec![with_reply(
            ok(),
            PassiveReply::Image {
                media_id: String::new(),
            },
        )],
        "ok",
        "media_id",
    );
    // Duplicates.
    let err = expect_error(vec![ok(), ok()], "ok", "duplicate id");
    assert_eq!(err.to_string(), "rule `ok`: duplicate id");
    // Message and event names.
    expect_error(
        vec![rule(
            "m",
            0,
            Match::Message {
                msg_type: "event".into(),
            },
        )],
        "m",
        "event rule",
    );
    expect_error(
        vec![rule(
            "m",
            0,
            Match::Message {
                msg_type: "EVENT".into(),
            },
        )],
        "m",
        "event rule",
    );
    expect_error(
        vec![rule(
            "m",
            0,
            Match::Message {
                msg_type: "".into(),
            },
        )],
        "m",
        "msg_type",
    );
    expect_error(
        vec![rule(
            "e",
            0,
            Match::Event {
                event: "".into(),
                key: None,
            },
        )],
        "e",
        "event",
    );
    expect_error(
        vec![rule(
            "e",
            0,
            Match::Event {
                event: "CLICK".into(),
                key: Some("".into()),
            },
        )],
        "e",
        "event key",
    );
    // App ids.
    let mut app = ok();
    app.app = Some("wx 1".into());
    expect_error(vec![app], "ok", "app");
    // Disabled rules are validated too.
    let mut disabled = t("{{nope}}");
    disabled.enabled = false;
    expect_error(vec![disabled], "ok", "unknown placeholder");
}

#[test]
fn file_errors() {
    let err = parse_toml("[[rules]]\nid = \"a\"\nmatch = { kind = \"nope\" }\n").unwrap_err();
    assert_eq!(err.rule, None);
    assert!(err.reason.starts_with("invalid rules file"), "{err}");
    let err = parse_toml("[[rules]]\nid = \"a\"\nmatch = { kind = \"default\" }\nreplyy = 1\n")
        .unwrap_err();
    assert!(err.reason.contains("replyy"), "{err}");
    // The third rule, whose id is bad.
    let three = r#"
[[rules]]
id = "a"
match = { kind = "default" }
[[rules]]
id = "b"
match = { kind = "default" }
[[rules]]
id = "c d"
match = { kind = "default" }
"#;
    let err = parse_toml(three).unwrap_err();
    assert_eq!(err.rule.as_deref(), Some("#3"));
    // The same id for different apps is fine; twice for one app is not.
    let per_app = r#"
[[rules]]
id = "a"
match = { kind = "default" }
[[rules]]
id = "a"
app = "wx1"
match = { kind = "default" }
[[rules]]
id = "a"
app = "wx2"
match = { kind = "default" }
"#;
    let file = parse_toml(per_app).unwrap();
    assert_eq!(file.rules_for("wx1").len(), 2);
    assert_eq!(file.rules_for("wx3").len(), 1);
    assert!(file.rules[1].applies_to("wx1") && !file.rules[1].applies_to("wx2"));
    assert!(file.rules[0].applies_to("anything"));
    let err = parse_toml(&format!(
        "{per_app}[[rules]]\nid = \"a\"\napp = \"wx2\"\nmatch = {{ kind = \"default\" }}\n"
    ))
    .unwrap_err();
    assert_eq!(err.to_string(), "rule `a`: duplicate id for app `wx2`");
    let err = parse_toml(&format!(
        "{per_app}[[rules]]\nid = \"a\"\nmatch = {{ kind = \"default\" }}\n"
    ))
    .unwrap_err();
    assert_eq!(err.to_string(), "rule `a`: duplicate id");
    assert!(parse_toml("").unwrap().rules.is_empty());
}

#[test]
fn disabled_rules_are_listed_but_skipped() {
    let mut off = rule("hi", 10, keyword(KeywordMode::Exact, "hi"));
    off.enabled = false;
    let set = RuleSet::compile(vec![off, rule("any", 0, Match::Default)]).unwrap();
    assert_eq!(set.len(), 2);
    assert_eq!(set.rules()[0].id, "hi");
    assert!(!set.rules()[0].enabled);
    assert_eq!(decide(&set, &text("hi")).unwrap().0, "any");
}

#[test]
fn merge_layers_overlay_over_base() {
    let base = vec![
        rule("hello", 0, keyword(KeywordMode::Exact, "hi")),
        rule("price", 0, keyword(KeywordMode::Contains, "price")),
        rule("fallback", -1, Match::Default),
    ];
    let mut new_hello = rule("hello", 0, keyword(KeywordMode::Exact, "hi"));
    new_hello.reply = text_reply("run-time hello");
    let mut masked = rule("price", 0, keyword(KeywordMode::Contains, "price"));
    masked.enabled = false;
    let extra = rule("extra", 0, keyword(KeywordMode::Exact, "extra"));
    let merged = merge(
        base.clone(),
        vec![extra.clone(), new_hello.clone(), masked.clone()],
    );
    let ids: Vec<&str> = merged.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["hello", "price", "fallback", "extra"]);
    assert_eq!(merged[0], new_hello);
    assert_eq!(merged[1], masked);
    assert_eq!(merged[3], extra);
    assert_eq!(merge(base.clone(), vec![]), base);
    assert_eq!(merge(vec![], base.clone()), base);

    let set = RuleSet::compile(merged).unwrap();
    assert_eq!(decide(&set, &text("hi")), pair("hello", "run-time hello"));
    assert_eq!(
        decide(&set, &text("the price")).unwrap().0,
        "fallback",
        "masked"
    );
    assert_eq!(decide(&set, &text("extra")).unwrap().0, "extra");
}

#[test]
fn error_display() {
    let e = RuleError::new("hello", "invalid regex: x");
    assert_eq!(e.to_string(), "rule `hello`: invalid regex: x");
    let e = RuleError {
        rule: None,
        reason: "invalid rules file: y".into(),
    };
    assert_eq!(e.to_string(), "invalid rules file: y");
}

/// The real callbacks in `shared/fixtures/inbound/` (beside the checkout, like the wire
/// crate's vectors) against a rule set that covers them.
#[test]
fn real_fixtures() {
    let dir = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/inbound"
    ));
    assert!(
        dir.is_dir(),
        "the fixture folder {} is missing (…/main and …/shared side by side)",
        dir.display()
    );
    let file = parse_toml(
        r#"
[[rules]]
id = "hours"
match = { kind = "keyword", mode = "contains", patterns = ["营业时间"] }
reply = { type = "text", content = "9:00-18:00" }

[[rules]]
id = "wechat"
match = { kind = "keyword", mode = "regex", patterns = ["(微信)团队"] }
reply = { type = "text", content = "{{match.1}}: {{recognition}}" }

[[rules]]
id = "voice"
match = { kind = "message", msg_type = "voice" }
reply = { type = "text", content = "voice" }

[[rules]]
id = "qr"
match = { kind = "event", event = "subscribe", key = "123123" }
reply = { type = "text", content = "qr {{scene}}" }

[[rules]]
id = "welcome"
match = { kind = "event", event = "subscribe" }
reply = { type = "text", content = "welcome" }

[[rules]]
id = "scan"
match = { kind = "event", event = "scan", key = "123123" }
reply = { type = "text", content = "scan {{scene}}" }

[[rules]]
id = "music"
match = { kind = "event", event = "click", key = "V1001_TODAY_MUSIC" }
reply = { type = "text", content = "{{event_key}}" }

[[rules]]
id = "view"
match = { kind = "event", event = "view" }

[[rules]]
id = "image"
match = { kind = "message", msg_type = "image" }
reply = { type = "text", content = "{{field.PicUrl}}" }

[[rules]]
id = "where"
match = { kind = "message", msg_type = "location" }
reply = { type = "text", content = "{{field.Label}}" }

[[rules]]
id = "fallback"
match = { kind = "default" }
"#,
    )
    .unwrap();
    let set = RuleSet::compile(file.rules).unwrap();
    let expected = [
        ("msg_text.xml", "hours", "9:00-18:00"),
        ("msg_voice_recognition.xml", "wechat", "微信: 腾讯微信团队"),
        ("msg_voice.xml", "voice", "voice"),
        ("event_subscribe.xml", "welcome", "welcome"),
        ("event_subscribe_qrscene.xml", "qr", "qr 123123"),
        ("event_scan.xml", "scan", "scan 123123"),
        ("event_click.xml", "music", "V1001_TODAY_MUSIC"),
        ("event_view.xml", "view", "-"),
        ("msg_location.xml", "where", "广州市海珠区新港中路397号"),
        ("event_unsubscribe.xml", "fallback", "-"),
    ];
    let mut seen = 0;
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.starts_with("envelope_") || !name.ends_with(".xml") {
            continue;
        }
        let inbound = Inbound::parse(&std::fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let env = Envelope::new(APP, 0, inbound);
        let got = decide(&set, &env).unwrap_or_else(|| panic!("{name}: no decision"));
        if let Some((_, id, reply)) = expected.iter().find(|(f, ..)| *f == name) {
            assert_eq!(Some(got), pair(id, reply), "{name}");
            seen += 1;
        } else if name.starts_with("msg_image") {
            assert_eq!(got.0, "image", "{name}");
            assert!(got.1.starts_with("http"), "{name}: {got:?}");
        }
    }
    assert_eq!(seen, expected.len());
}
