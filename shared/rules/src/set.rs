//! Compiled rule sets: validation, ordering, matching and rendering.

use std::cmp::Reverse;
use std::collections::HashSet;

use regex::{Captures, Regex, RegexBuilder};
use wxoa_wire::envelope::Envelope;
use wxoa_wire::inbound::{Detail, Inbound};
use wxoa_wire::reply::PassiveReply;

use crate::template::{Template, Var, reply_strings};
use crate::{
    KeywordMode, MAX_PATTERN_LEN, Match, REGEX_NEST_LIMIT, REGEX_SIZE_LIMIT, Rule, RuleError,
    is_valid_id,
};

/// What a rule set decided for one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision<'a> {
    /// The rule that matched.
    pub rule: &'a Rule,
    /// Its reply, placeholders rendered; `None` when the rule answers with no reply.
    pub reply: Option<PassiveReply>,
}

/// A compiled, immutable rule set for one app (cheap to share behind an `Arc`).
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    /// Every rule, in evaluation order (disabled ones included).
    rules: Vec<Rule>,
    /// The enabled rules, in evaluation order.
    active: Vec<Compiled>,
}

impl RuleSet {
    /// Validates every rule, compiles regexes and templates, and orders the rules: priority
    /// descending, then [`Match::rank`], then id. Disabled rules are validated and listed but
    /// never match. Duplicate ids are an error.
    pub fn compile(rules: Vec<Rule>) -> Result<RuleSet, RuleError> {
        let mut compiled = Vec::with_capacity(rules.len());
        let mut seen = HashSet::with_capacity(rules.len());
        for (i, rule) in rules.iter().enumerate() {
            let c = compile_rule(rule)
                .map_err(|reason| RuleError::new(rule.label(Some(i + 1)), reason))?;
            if !seen.insert(rule.id.as_str()) {
                return Err(RuleError::new(rule.id.clone(), "duplicate id"));
            }
            compiled.push(c);
        }
        let mut pairs: Vec<(Rule, Compiled)> = rules.into_iter().zip(compiled).collect();
        pairs.sort_by(|(a, _), (b, _)| {
            (Reverse(a.priority), a.matcher.rank(), &a.id).cmp(&(
                Reverse(b.priority),
                b.matcher.rank(),
                &b.id,
            ))
        });
        let mut set = RuleSet {
            rules: Vec::with_capacity(pairs.len()),
            active: Vec::with_capacity(pairs.len()),
        };
        for (rule, mut c) in pairs {
            if rule.enabled {
                c.index = set.rules.len();
                set.active.push(c);
            }
            set.rules.push(rule);
        }
        Ok(set)
    }

    /// A set with no rules: it never decides anything.
    pub fn empty() -> RuleSet {
        RuleSet::default()
    }

    /// The first enabled rule that matches, with its reply rendered; `None` when none does.
    ///
    /// It does not look at [`Inbound::can_reply`]: the caller only asks for messages that can
    /// be answered (a default rule matches any event, `unsubscribe` included).
    pub fn decide(&self, envelope: &Envelope) -> Option<Decision<'_>> {
        let message = &envelope.message;
        let text = keyword_text(message);
        let mut lower: Option<String> = None;
        for c in &self.active {
            let mut caps: Option<Captures<'_>> = None;
            let matched = match &c.matcher {
                Matcher::Keyword {
                    mode,
                    patterns,
                    case_sensitive,
                    regexes,
                } => {
                    let Some(text) = text else { continue };
                    if *mode == KeywordMode::Regex {
                        if c.reply.as_ref().is_some_and(|r| r.needs_captures) {
                            caps = regexes.iter().find_map(|re| re.captures(text));
                            caps.is_some()
                        } else {
                            regexes.iter().any(|re| re.is_match(text))
                        }
                    } else {
                        let text = if *case_sensitive {
                            text
                        } else {
                            lower.get_or_insert_with(|| text.to_lowercase()).as_str()
                        };
                        patterns.iter().any(|p| match mode {
                            KeywordMode::Exact => text == p,
                            KeywordMode::Prefix => text.starts_with(p.as_str()),
                            KeywordMode::Contains => text.contains(p.as_str()),
                            KeywordMode::Regex => false,
                        })
                    }
                }
                Matcher::Event { event, key } => match_event(message, event, key.as_deref()),
                Matcher::Message { msg_type } => {
                    !message.is_event() && message.msg_type.eq_ignore_ascii_case(msg_type)
                }
                Matcher::Default => true,
            };
            if matched {
                return Some(Decision {
                    rule: &self.rules[c.index],
                    reply: c.reply.as_ref().map(|r| r.render(envelope, caps.as_ref())),
                });
            }
        }
        None
    }

    /// Every rule, in evaluation order (disabled ones included).
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// How many rules the set lists (disabled ones included).
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when the set lists no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// The text keyword rules look at: a text message's `Content`, or a voice message's
/// non-empty `Recognition`, trimmed.
fn keyword_text(message: &Inbound) -> Option<&str> {
    if message.is_event() {
        return None;
    }
    match &message.detail {
        Detail::Text { content, .. } => Some(content.trim()),
        Detail::Voice {
            recognition: Some(r),
            ..
        } => Some(r.trim()).filter(|r| !r.is_empty()),
        _ => None,
    }
}

fn match_event(message: &Inbound, event: &str, key: Option<&str>) -> bool {
    let Some(name) = message.event.as_deref() else {
        return false;
    };
    if !name.eq_ignore_ascii_case(event) {
        return false;
    }
    let Some(key) = key else { return true };
    let event_key = message.field("EventKey").map(str::trim);
    match &message.detail {
        // The scene; a key written with its `qrscene_` prefix matches too.
        Detail::Subscribe { scene, .. } => scene.as_deref() == Some(key) || event_key == Some(key),
        _ => event_key == Some(key),
    }
}

/// One enabled rule, compiled.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    /// Its position in [`RuleSet::rules`].
    index: usize,
    matcher: Matcher,
    reply: Option<CompiledReply>,
}

#[derive(Debug, Clone)]
enum Matcher {
    Keyword {
        mode: KeywordMode,
        /// Lowercased unless case-sensitive (unused for regex).
        patterns: Vec<String>,
        case_sensitive: bool,
        regexes: Vec<Regex>,
    },
    Event {
        event: String,
        key: Option<String>,
    },
    Message {
        msg_type: String,
    },
    Default,
}

#[derive(Debug, Clone)]
struct CompiledReply {
    /// The reply as written (its literal strings are already final).
    source: PassiveReply,
    /// One per [`reply_strings`] entry, in that order.
    templates: Vec<Template>,
    literal: bool,
    needs_captures: bool,
}

impl CompiledReply {
    fn render(&self, envelope: &Envelope, caps: Option<&Captures<'_>>) -> PassiveReply {
        let mut reply = self.source.clone();
        if self.literal {
            return reply;
        }
        for ((_, slot), template) in reply_strings(&mut reply).into_iter().zip(&self.templates) {
            if !template.is_literal() {
                *slot = template.render(envelope, caps);
            }
        }
        reply
    }
}

/// Validates and compiles one rule; the error is the reason, without the rule's label.
pub(crate) fn compile_rule(rule: &Rule) -> Result<Compiled, String> {
    if !is_valid_id(&rule.id) {
        return Err(format!(
            "id must be 1 to {} characters of [A-Za-z0-9_-], got {:?}",
            crate::MAX_ID_LEN,
            rule.id
        ));
    }
    if let Some(app) = &rule.app
        && !wxoa_wire::names::is_token(app)
    {
        return Err(format!("app must be an AppID ([A-Za-z0-9_-]), got {app:?}"));
    }
    let matcher = compile_match(&rule.matcher)?;
    let reply = match &rule.reply {
        None => None,
        Some(reply) => Some(compile_reply(reply, &rule.matcher, &matcher)?),
    };
    Ok(Compiled {
        index: 0,
        matcher,
        reply,
    })
}

fn compile_match(m: &Match) -> Result<Matcher, String> {
    Ok(match m {
        Match::Keyword {
            mode,
            patterns,
            case_sensitive,
        } => {
            if patterns.is_empty() {
                return Err("a keyword rule needs at least one pattern".into());
            }
            for p in patterns {
                if p.trim().is_empty() {
                    return Err("keyword patterns must not be empty".into());
                }
                if p.chars().count() > MAX_PATTERN_LEN {
                    return Err(format!(
                        "keyword patterns must be at most {MAX_PATTERN_LEN} characters"
                    ));
                }
            }
            let regexes = if *mode == KeywordMode::Regex {
                patterns
                    .iter()
                    .map(|p| {
                        RegexBuilder::new(p)
                            .case_insensitive(!case_sensitive)
                            .size_limit(REGEX_SIZE_LIMIT)
                            .nest_limit(REGEX_NEST_LIMIT)
                            .build()
                            .map_err(|e| format!("invalid regex: {e}"))
                    })
                    .collect::<Result<Vec<_>, _>>()?
            } else {
                Vec::new()
            };
            let patterns = if *case_sensitive || *mode == KeywordMode::Regex {
                patterns.clone()
            } else {
                patterns.iter().map(|p| p.to_lowercase()).collect()
            };
            Matcher::Keyword {
                mode: *mode,
                patterns,
                case_sensitive: *case_sensitive,
                regexes,
            }
        }
        Match::Event { event, key } => {
            if !wxoa_wire::names::is_token(event) {
                return Err(format!(
                    "event must be an event name ([A-Za-z0-9_-]), got {event:?}"
                ));
            }
            if let Some(key) = key
                && (key.trim().is_empty() || key.trim() != key)
            {
                return Err(format!(
                    "event key must be non-empty without surrounding whitespace (leave it out to match any), got {key:?}"
                ));
            }
            Matcher::Event {
                event: event.clone(),
                key: key.clone(),
            }
        }
        Match::Message { msg_type } => {
            if msg_type.eq_ignore_ascii_case("event") {
                return Err(
                    "a message rule cannot match msg_type `event`: use an event rule".into(),
                );
            }
            if !wxoa_wire::names::is_token(msg_type) {
                return Err(format!(
                    "msg_type must be a message type ([A-Za-z0-9_-]), got {msg_type:?}"
                ));
            }
            Matcher::Message {
                msg_type: msg_type.clone(),
            }
        }
        Match::Default => Matcher::Default,
    })
}

fn compile_reply(
    reply: &PassiveReply,
    matcher: &Match,
    compiled: &Matcher,
) -> Result<CompiledReply, String> {
    reply
        .validate(matcher.can_match_user_message())
        .map_err(|e| format!("invalid reply: {e}"))?;
    if let PassiveReply::Text { content } = reply
        && content.trim().is_empty()
    {
        return Err("invalid reply: text content must not be empty".into());
    }
    let regexes = match compiled {
        Matcher::Keyword {
            mode: KeywordMode::Regex,
            regexes,
            ..
        } => Some(regexes.as_slice()),
        _ => None,
    };
    let mut source = reply.clone();
    let mut templates = Vec::new();
    let mut needs_captures = false;
    for (label, value) in reply_strings(&mut source) {
        let template = Template::parse(value).map_err(|e| format!("invalid reply {label}: {e}"))?;
        for var in template.vars().filter(|v| v.is_match()) {
            let Some(regexes) = regexes else {
                return Err(format!(
                    "invalid reply {label}: `match.*` placeholders need a regex keyword rule"
                ));
            };
            let defined = match var {
                Var::MatchIndex(n) => regexes.iter().any(|re| *n < re.captures_len()),
                Var::MatchName(name) => regexes
                    .iter()
                    .any(|re| re.capture_names().flatten().any(|c| c == name)),
                _ => true,
            };
            if !defined {
                let name = match var {
                    Var::MatchIndex(n) => n.to_string(),
                    Var::MatchName(name) => name.clone(),
                    _ => String::new(),
                };
                return Err(format!(
                    "invalid reply {label}: `match.{name}` names a capture group no pattern defines"
                ));
            }
            needs_captures = true;
        }
        templates.push(template);
    }
    let literal = templates.iter().all(Template::is_literal);
    Ok(CompiledReply {
        source,
        templates,
        literal,
        needs_captures,
    })
}
