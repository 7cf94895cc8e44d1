//! Custom menus: WeChat's rules, checked before any call (`docs/wechat-protocol.md` §5.2).

use serde_json::Value;

/// Button types and the key each requires.
pub const BUTTON_TYPES: [(&str, &str); 11] = [
    ("click", "key"),
    ("view", "url"),
    ("scancode_push", "key"),
    ("scancode_waitmsg", "key"),
    ("pic_sysphoto", "key"),
    ("pic_photo_or_album", "key"),
    ("pic_weixin", "key"),
    ("location_select", "key"),
    ("media_id", "media_id"),
    ("article_id", "article_id"),
    ("view_limited", "media_id"),
];

/// What is wrong with a menu: where (`button[1].sub_button[0]`) and why, with the errcode
/// WeChat would answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason} (WeChat would answer {errcode})")]
pub struct MenuError {
    /// Where in the menu.
    pub path: String,
    /// Why.
    pub reason: String,
    /// WeChat's errcode for it.
    pub errcode: i64,
}

fn err(path: &str, reason: impl Into<String>, errcode: i64) -> MenuError {
    MenuError {
        path: path.to_owned(),
        reason: reason.into(),
        errcode,
    }
}

/// Checks a menu (`{"button": [...]}`) against WeChat's rules: 1–3 top buttons, 1–5 sub-buttons,
/// names of at most 16 (top) / 60 (sub) bytes, known types with their required keys (key ≤ 128
/// bytes, url ≤ 1024 bytes and http(s), miniprogram with appid, pagepath and url).
pub fn validate(menu: &Value) -> Result<(), MenuError> {
    let buttons = menu["button"]
        .as_array()
        .ok_or_else(|| err("button", "missing: a menu is {\"button\": [...]}", 40016))?;
    if buttons.is_empty() || buttons.len() > 3 {
        return Err(err(
            "button",
            format!("{} top buttons; 1 to 3 allowed", buttons.len()),
            40016,
        ));
    }
    for (i, button) in buttons.iter().enumerate() {
        let path = format!("button[{i}]");
        name(button, &path, 16, 40018)?;
        match button["sub_button"].as_array() {
            Some(subs) if !subs.is_empty() || button.get("type").is_none() => {
                if subs.is_empty() || subs.len() > 5 {
                    return Err(err(
                        &format!("{path}.sub_button"),
                        format!("{} sub-buttons; 1 to 5 allowed", subs.len()),
                        40023,
                    ));
                }
                for (j, sub) in subs.iter().enumerate() {
                    let path = format!("{path}.sub_button[{j}]");
                    name(sub, &path, 60, 40025)?;
                    if sub.get("sub_button").is_some_and(|s| !s.is_null()) {
                        return Err(err(&path, "sub-buttons cannot nest", 40022));
                    }
                    action(sub, &path, true)?;
                }
            }
            _ => action(button, &path, false)?,
        }
    }
    Ok(())
}

fn name(button: &Value, path: &str, max: usize, errcode: i64) -> Result<(), MenuError> {
    match button["name"].as_str() {
        Some(n) if !n.is_empty() && n.len() <= max => Ok(()),
        Some(n) => Err(err(
            &format!("{path}.name"),
            format!("{} bytes; 1 to {max} allowed", n.len()),
            errcode,
        )),
        None => Err(err(&format!("{path}.name"), "missing", errcode)),
    }
}

/// WeChat's errcodes for top-level buttons and for sub-buttons: (type, key, url size, url domain).
fn codes(sub: bool) -> (i64, i64, i64, i64) {
    if sub {
        (40024, 40026, 40027, 40054)
    } else {
        (40017, 40019, 40020, 40055)
    }
}

fn action(button: &Value, path: &str, sub: bool) -> Result<(), MenuError> {
    let (type_code, key_code, url_code, domain_code) = codes(sub);
    let kind = button["type"].as_str().ok_or_else(|| {
        err(
            &format!("{path}.type"),
            "missing (or give sub_button)",
            type_code,
        )
    })?;
    if kind == "miniprogram" {
        for field in ["appid", "pagepath", "url"] {
            if button[field].as_str().is_none_or(str::is_empty) {
                return Err(err(
                    &format!("{path}.{field}"),
                    "a miniprogram button needs appid, pagepath and url (the fallback page)",
                    40097,
                ));
            }
        }
        return Ok(());
    }
    let (_, field) = BUTTON_TYPES
        .iter()
        .find(|(t, _)| *t == kind)
        .ok_or_else(|| {
            err(
                &format!("{path}.type"),
                format!("unknown type {kind}"),
                type_code,
            )
        })?;
    let value = button[*field].as_str().unwrap_or_default();
    let (max, errcode) = match *field {
        "key" => (128, key_code),
        "url" => (1024, url_code),
        "media_id" => (256, 40007),
        _ => (256, 40097),
    };
    if value.is_empty() || value.len() > max {
        return Err(err(
            &format!("{path}.{field}"),
            format!("a {kind} button needs {field} of 1 to {max} bytes"),
            errcode,
        ));
    }
    if *field == "url" && !(value.starts_with("http://") || value.starts_with("https://")) {
        return Err(err(
            &format!("{path}.url"),
            "must be an http(s) URL",
            domain_code,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wechat_menu_rules() {
        let ok = json!({"button": [
            {"type": "click", "name": "今日歌曲", "key": "V1001_TODAY_MUSIC"},
            {"name": "菜单", "sub_button": [
                {"type": "view", "name": "搜索", "url": "http://www.soso.com/"},
                {"type": "miniprogram", "name": "wxa", "url": "http://mp.weixin.qq.com", "appid": "wx286b93c14bbf93aa", "pagepath": "pages/lunar/index"},
                {"type": "click", "name": "赞一下我们", "key": "V1001_GOOD"}]}]});
        validate(&ok).unwrap();
        let code = |menu: Value| validate(&menu).unwrap_err().errcode;
        assert_eq!(code(json!({"button": []})), 40016);
        let click = json!({"type":"click","name":"a","key":"k"});
        assert_eq!(code(json!({"button": vec![click.clone(); 4]})), 40016);
        assert_eq!(
            code(json!({"button": [{"type":"click","name":"一二三四五六","key":"k"}]})),
            40018
        );
        assert_eq!(
            code(json!({"button": [{"name":"a","sub_button": vec![click; 6]}]})),
            40023
        );
        assert_eq!(
            code(json!({"button": [{"type":"teleport","name":"a"}]})),
            40017
        );
        assert_eq!(
            code(json!({"button": [{"type":"click","name":"a"}]})),
            40019
        );
        assert_eq!(
            code(json!({"button": [{"type":"view","name":"a","url":"ftp://x"}]})),
            40055
        );
        assert_eq!(
            code(json!({"button": [{"type":"miniprogram","name":"a","appid":"wx1"}]})),
            40097
        );
        assert_eq!(
            code(
                json!({"button": [{"name":"a","sub_button":[{"type":"view","name":"b","url":"ftp://x"}]}]})
            ),
            40054
        );
        let e =
            validate(&json!({"button": [{"name":"a","sub_button":[{"type":"click","name":"b"}]}]}))
                .unwrap_err();
        assert_eq!(e.path, "button[0].sub_button[0].key");
    }
}
