//! Auto-reply rules: the rule format (TOML and JSON), validation, compiled rule sets,
//! matching and reply templating. Pure: no I/O, no clock.
//!
//! A [`Rule`] says which inbound messages it answers ([`Match`]) and with what
//! ([`PassiveReply`], whose strings may hold `{{placeholders}}`). Rules come from a rules file
//! ([`parse_toml`]) and from run-time storage (JSON of the same [`Rule`]); [`merge`] layers
//! the run-time rules over the file's, and [`RuleSet::compile`] validates and orders them once
//! so that [`RuleSet::decide`] only matches and renders. The format is described in
//! `docs/rules.md`.
//!
//! ```
//! use wxoa_rules::{parse_toml, RuleSet};
//! use wxoa_wire::{envelope::Envelope, inbound::Inbound};
//!
//! let file = parse_toml(r#"
//! [[rules]]
//! id = "hello"
//! match = { kind = "keyword", mode = "exact", patterns = ["hi", "hello"] }
//! reply = { type = "text", content = "Hello, {{openid}}!" }
//! "#).unwrap();
//! let set = RuleSet::compile(file.rules).unwrap();
//! let xml = b"<xml><ToUserName>gh_1</ToUserName><FromUserName>o1</FromUserName>\
//!     <CreateTime>1</CreateTime><MsgType>text</MsgType><Content> Hi </Content><MsgId>7</MsgId></xml>";
//! let envelope = Envelope::new("wx1", 0, Inbound::parse(xml).unwrap());
//! let decision = set.decide(&envelope).unwrap();
//! assert_eq!(decision.rule.id, "hello");
//! assert_eq!(
//!     decision.reply,
//!     Some(wxoa_wire::reply::PassiveReply::Text { content: "Hello, o1!".into() })
//! );
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod set;
mod template;

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use wxoa_wire::reply::PassiveReply;

pub use set::{Decision, RuleSet};

/// The longest rule id, in characters.
pub const MAX_ID_LEN: usize = 64;
/// The longest keyword pattern, in characters.
pub const MAX_PATTERN_LEN: usize = 256;
/// The compiled-size limit of one regex, in bytes (`RegexBuilder::size_limit`).
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;
/// The deepest nesting of one regex (`RegexBuilder::nest_limit`).
pub const REGEX_NEST_LIMIT: u32 = 64;

/// One auto-reply rule. The same fields in TOML (a rules file's `[[rules]]`) and JSON
/// (run-time storage and the API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The rule's id: 1 to 64 characters of `[A-Za-z0-9_-]`, unique within an app.
    pub id: String,
    /// The AppID the rule applies to; `None` applies to every app. Only meaningful in a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Higher is tried first.
    #[serde(default)]
    pub priority: i32,
    /// A disabled rule is kept and listed but never matches (and still masks a file rule of
    /// the same id when layered over it).
    #[serde(default = "enabled_default")]
    pub enabled: bool,
    /// Free text for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What the rule matches.
    #[serde(rename = "match")]
    pub matcher: Match,
    /// The reply, its strings templated; `None` means matched, explicitly no reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<PassiveReply>,
}

fn enabled_default() -> bool {
    true
}

/// What a rule matches, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Match {
    /// Text messages (`Content`) and voice messages with speech recognition (`Recognition`),
    /// trimmed of surrounding whitespace.
    Keyword {
        /// How a pattern is compared with the text.
        mode: KeywordMode,
        /// One or more patterns (each 1 to 256 characters); any one matching is enough.
        patterns: Vec<String>,
        /// Compare case-sensitively (default: no, Unicode lowercase on both sides).
        #[serde(default)]
        case_sensitive: bool,
    },
    /// Events by name (ASCII case-insensitive: `subscribe`, `CLICK`, `VIEW`, `SCAN`,
    /// `scancode_push`, …), and optionally by key: for `subscribe` the QR scene (`EventKey`
    /// without `qrscene_`), for `SCAN` the scene (`EventKey`), for the others the `EventKey`.
    /// No key matches any.
    Event {
        /// The event name.
        event: String,
        /// The key; `None` matches any (and no) key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// User messages of one `MsgType` (`image`, `voice`, `location`, …; never `event`).
    Message {
        /// The `MsgType` (ASCII case-insensitive).
        msg_type: String,
    },
    /// Anything no other rule matched: user messages and events alike.
    Default,
}

/// How a keyword pattern is compared with the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeywordMode {
    /// The text equals the pattern.
    Exact,
    /// The text starts with the pattern.
    Prefix,
    /// The text contains the pattern.
    Contains,
    /// The pattern is a regular expression found anywhere in the text (anchor it with `^…$`
    /// to match the whole text).
    Regex,
}

impl Match {
    /// The rank that orders rules of equal priority: keyword exact 0, prefix 1, contains 2,
    /// regex 3, event with a key 4, event without 5, message 6, default 7.
    pub fn rank(&self) -> u8 {
        match self {
            Match::Keyword { mode, .. } => match mode {
                KeywordMode::Exact => 0,
                KeywordMode::Prefix => 1,
                KeywordMode::Contains => 2,
                KeywordMode::Regex => 3,
            },
            Match::Event { key: Some(_), .. } => 4,
            Match::Event { key: None, .. } => 5,
            Match::Message { .. } => 6,
            Match::Default => 7,
        }
    }

    /// True when the rule can match a user message (keyword, message and default rules): its
    /// reply then follows the rules for answering a user message (one news article at most).
    pub fn can_match_user_message(&self) -> bool {
        !matches!(self, Match::Event { .. })
    }
}

/// A rules file: `[[rules]]` tables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesFile {
    /// The rules, in file order.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

impl RulesFile {
    /// The file's rules that apply to `app_id` (those without `app` and those naming it).
    pub fn rules_for(&self, app_id: &str) -> Vec<Rule> {
        self.rules
            .iter()
            .filter(|r| r.applies_to(app_id))
            .cloned()
            .collect()
    }
}

/// Why a rule or a rules file was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RuleError {
    /// The rule's id, or `#3` for the third rule of a file or list whose id is itself invalid;
    /// `None` when the error is not about one rule (a file that is not valid TOML).
    pub rule: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl RuleError {
    /// An error about the rule labelled `rule`.
    pub fn new(rule: impl Into<String>, reason: impl Into<String>) -> RuleError {
        RuleError {
            rule: Some(rule.into()),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Some(rule) => write!(f, "rule `{rule}`: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

/// True when `id` is a valid rule id (1 to 64 characters of `[A-Za-z0-9_-]`).
pub fn is_valid_id(id: &str) -> bool {
    id.len() <= MAX_ID_LEN && wxoa_wire::names::is_token(id)
}

impl Rule {
    /// Checks everything [`RuleSet::compile`] checks for one rule: id, app, matcher, regexes,
    /// reply (WeChat's rules and non-empty text) and templates.
    pub fn validate(&self) -> Result<(), RuleError> {
        set::compile_rule(self)
            .map(|_| ())
            .map_err(|reason| RuleError::new(self.label(None), reason))
    }

    /// True when the rule applies to `app_id`: it names no app, or that one.
    pub fn applies_to(&self, app_id: &str) -> bool {
        self.app.as_deref().is_none_or(|a| a == app_id)
    }

    /// The id for error messages, or `#<position>` (1-based) when the id is invalid.
    pub(crate) fn label(&self, position: Option<usize>) -> String {
        match position {
            Some(n) if !is_valid_id(&self.id) => format!("#{n}"),
            _ => self.id.clone(),
        }
    }
}

/// Parses a rules file and validates every rule; duplicate `(app, id)` pairs are an error.
pub fn parse_toml(text: &str) -> Result<RulesFile, RuleError> {
    let file: RulesFile = toml::from_str(text).map_err(|e| RuleError {
        rule: None,
        reason: format!("invalid rules file: {e}"),
    })?;
    let mut seen: HashSet<(Option<&str>, &str)> = HashSet::with_capacity(file.rules.len());
    for (i, rule) in file.rules.iter().enumerate() {
        set::compile_rule(rule)
            .map_err(|reason| RuleError::new(rule.label(Some(i + 1)), reason))?;
        if !seen.insert((rule.app.as_deref(), rule.id.as_str())) {
            let reason = match &rule.app {
                Some(app) => format!("duplicate id for app `{app}`"),
                None => "duplicate id".to_owned(),
            };
            return Err(RuleError::new(rule.id.clone(), reason));
        }
    }
    Ok(file)
}

/// Layers `overlay` (rules stored at run time) over `base` (a file's rules for one app): base
/// order is kept, a base rule with an overlay rule of the same id is replaced by it, and new
/// overlay ids are appended in overlay order. A disabled overlay rule thus masks a base rule.
pub fn merge(base: Vec<Rule>, overlay: Vec<Rule>) -> Vec<Rule> {
    let mut out = base;
    let mut index: HashMap<String, usize> = HashMap::with_capacity(out.len() + overlay.len());
    for (i, rule) in out.iter().enumerate() {
        index.entry(rule.id.clone()).or_insert(i);
    }
    for rule in overlay {
        match index.get(&rule.id) {
            Some(&i) => out[i] = rule,
            None => {
                index.insert(rule.id.clone(), out.len());
                out.push(rule);
            }
        }
    }
    out
}
