//! Reply templates: `{{name}}` placeholders, parsed once and rendered per message.

use regex::Captures;
use wxoa_wire::envelope::Envelope;
use wxoa_wire::inbound::Detail;
use wxoa_wire::reply::PassiveReply;

/// A value a placeholder names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Var {
    AppId,
    OpenId,
    ToUserName,
    MsgType,
    Event,
    EventKey,
    Scene,
    Content,
    Recognition,
    MsgId,
    CreateTime,
    /// `field.<path>`: a raw element of `Inbound::fields`.
    Field(String),
    /// `match.<N>`: a numbered capture group.
    MatchIndex(usize),
    /// `match.<name>`: a named capture group.
    MatchName(String),
}

impl Var {
    /// True for `match.*` placeholders.
    pub(crate) fn is_match(&self) -> bool {
        matches!(self, Var::MatchIndex(_) | Var::MatchName(_))
    }

    fn parse(name: &str) -> Option<Var> {
        Some(match name {
            "app_id" => Var::AppId,
            "openid" | "from_user_name" => Var::OpenId,
            "to_user_name" => Var::ToUserName,
            "msg_type" => Var::MsgType,
            "event" => Var::Event,
            "event_key" => Var::EventKey,
            "scene" => Var::Scene,
            "content" => Var::Content,
            "recognition" => Var::Recognition,
            "msg_id" => Var::MsgId,
            "create_time" => Var::CreateTime,
            _ => {
                if let Some(path) = name.strip_prefix("field.") {
                    if path.is_empty() || path.chars().any(char::is_whitespace) {
                        return None;
                    }
                    Var::Field(path.to_owned())
                } else if let Some(group) = name.strip_prefix("match.") {
                    if group.is_empty() {
                        return None;
                    }
                    match group.parse::<usize>() {
                        Ok(n) => Var::MatchIndex(n),
                        Err(_) if group.chars().all(|c| c.is_alphanumeric() || c == '_') => {
                            Var::MatchName(group.to_owned())
                        }
                        Err(_) => return None,
                    }
                } else {
                    return None;
                }
            }
        })
    }
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    Literal(String),
    Var(Var),
}

/// A parsed template string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`; the error is the reason, without the rule.
    pub(crate) fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                return Err(format!(
                    "unbalanced `{{{{` (no closing `}}}}`) in {:?}",
                    clip(text)
                ));
            };
            let name = after[..close].trim();
            let var =
                Var::parse(name).ok_or_else(|| format!("unknown placeholder `{{{{{name}}}}}`"))?;
            parts.push(Part::Var(var));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    /// The placeholders used.
    pub(crate) fn vars(&self) -> impl Iterator<Item = &Var> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v),
            Part::Literal(_) => None,
        })
    }

    /// True when the template holds no placeholder (it renders as its source).
    pub(crate) fn is_literal(&self) -> bool {
        self.vars().next().is_none()
    }

    /// Renders against a message; missing values are empty.
    pub(crate) fn render(&self, env: &Envelope, caps: Option<&Captures<'_>>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Var(v) => push_value(&mut out, v, env, caps),
            }
        }
        out
    }
}

fn clip(text: &str) -> String {
    const MAX: usize = 60;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(MAX).collect();
        s.push('…');
        s
    }
}

fn push_value(out: &mut String, var: &Var, env: &Envelope, caps: Option<&Captures<'_>>) {
    let m = &env.message;
    let event_key = || m.field("EventKey").map(str::trim);
    let value: Option<&str> = match var {
        Var::AppId => Some(&env.app_id),
        Var::OpenId => Some(&m.from_user_name),
        Var::ToUserName => Some(&m.to_user_name),
        Var::MsgType => Some(&m.msg_type),
        Var::Event => m.event.as_deref(),
        Var::EventKey => event_key(),
        Var::Scene => match &m.detail {
            Detail::Subscribe { scene, .. } => scene.as_deref(),
            Detail::Scan { event_key, .. } => event_key.as_deref(),
            _ => None,
        },
        Var::Content => match &m.detail {
            Detail::Text { content, .. } => Some(content),
            Detail::Voice { recognition, .. } => recognition.as_deref(),
            _ => None,
        },
        Var::Recognition => match &m.detail {
            Detail::Voice { recognition, .. } => recognition.as_deref(),
            _ => None,
        },
        Var::MsgId => m.msg_id.as_deref(),
        Var::CreateTime => {
            out.push_str(&m.create_time.to_string());
            None
        }
        Var::Field(path) => m.field(path),
        Var::MatchIndex(n) => caps.and_then(|c| c.get(*n)).map(|g| g.as_str()),
        Var::MatchName(name) => caps.and_then(|c| c.name(name)).map(|g| g.as_str()),
    };
    if let Some(v) = value {
        out.push_str(v);
    }
}

/// Every string of a reply that may hold placeholders, with a label for errors, in a fixed
/// order (the same order for a reply and its clone).
pub(crate) fn reply_strings(reply: &mut PassiveReply) -> Vec<(String, &mut String)> {
    let mut out: Vec<(String, &mut String)> = Vec::new();
    match reply {
        PassiveReply::Text { content } => out.push(("content".into(), content)),
        PassiveReply::Image { media_id } | PassiveReply::Voice { media_id } => {
            out.push(("media_id".into(), media_id))
        }
        PassiveReply::Video {
            media_id,
            title,
            description,
        } => {
            out.push(("media_id".into(), media_id));
            if let Some(t) = title {
                out.push(("title".into(), t));
            }
            if let Some(d) = description {
                out.push(("description".into(), d));
            }
        }
        PassiveReply::Music {
            title,
            description,
            music_url,
            hq_music_url,
            thumb_media_id,
        } => {
            for (label, v) in [
                ("title", title),
                ("description", description),
                ("music_url", music_url),
                ("hq_music_url", hq_music_url),
            ] {
                if let Some(v) = v {
                    out.push((label.into(), v));
                }
            }
            out.push(("thumb_media_id".into(), thumb_media_id));
        }
        PassiveReply::News { articles } => {
            for (i, a) in articles.iter_mut().enumerate() {
                out.push((format!("articles[{i}].title"), &mut a.title));
                out.push((format!("articles[{i}].description"), &mut a.description));
                out.push((format!("articles[{i}].pic_url"), &mut a.pic_url));
                out.push((format!("articles[{i}].url"), &mut a.url));
            }
        }
        PassiveReply::TransferCustomerService { kf_account } => {
            if let Some(k) = kf_account {
                out.push(("kf_account".into(), k));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_parts() {
        let t = Template::parse("Hi {{ openid }}, {{content}}!{{field.Label}}").unwrap();
        assert_eq!(
            t.parts,
            vec![
                Part::Literal("Hi ".into()),
                Part::Var(Var::OpenId),
                Part::Literal(", ".into()),
                Part::Var(Var::Content),
                Part::Literal("!".into()),
                Part::Var(Var::Field("Label".into())),
            ]
        );
        assert!(Template::parse("plain } { }} text").unwrap().is_literal());
        assert_eq!(
            Template::parse("{{match.2}}{{ match.word }}")
                .unwrap()
                .vars()
                .cloned()
                .collect::<Vec<_>>(),
            vec![Var::MatchIndex(2), Var::MatchName("word".into())]
        );
    }

    #[test]
    fn rejects_bad_templates() {
        for bad in [
            "{{nope}}",
            "{{}}",
            "a {{content",
            "{{content}} {{",
            "{{field.}}",
            "{{match.}}",
            "{{match.a-b}}",
            "{{ {{content}} }}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }
}
