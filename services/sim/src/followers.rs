//! The followers of one app, cheap at a million: **generated** followers are only a count (their
//! openid, unionid and profile derive from their index, so a generated openid maps back to its
//! index without a map), plus a set of generated indexes that left; **explicit** followers (added
//! by `subscribe` callbacks) are kept one by one. Remarks, tags and blacklist entries are stored
//! sparsely, only for the users that have them.
//!
//! Listing order: generated followers by index, then explicit ones in insertion order. A page
//! starts from the cursor's position, never scanning what comes before it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::{Bound, Range};

use serde_json::{Value, json};

use crate::SimError;

/// The openid of generated follower `i`: this prefix and `i` as 24 zero-padded decimal digits
/// (28 characters, like real openids), e.g. `oGEN000000000000000000000042`.
pub const GENERATED_OPENID_PREFIX: &str = "oGEN";
/// The unionid of generated follower `i`: this prefix and the same 24 digits.
pub const GENERATED_UNIONID_PREFIX: &str = "uGEN";
/// Digits after the prefix of a generated openid or unionid.
const GENERATED_DIGITS: usize = 24;
/// The `subscribe_time` of generated follower `i` is this plus `i` (Unix seconds).
pub const GENERATED_SUBSCRIBE_BASE: i64 = 1_600_000_000;
/// The `subscribe_scene` of generated follower `i` is entry `i % 6` of this list.
pub const GENERATED_SCENES: &[&str] = &[
    "ADD_SCENE_SEARCH",
    "ADD_SCENE_QR_CODE",
    "ADD_SCENE_PROFILE_CARD",
    "ADD_SCENE_ACCOUNT_MIGRATION",
    "ADD_SCENE_PROFILE_LINK",
    "ADD_SCENE_OTHERS",
];
/// The most generated followers one app can have.
pub(crate) const MAX_GENERATED: u64 = 100_000_000;

/// Openids per page of `user/get`, `user/tag/get` and `getblacklist`.
pub(crate) const PAGE: usize = 10_000;
/// Openids per `batchtagging` / `batchuntagging`.
pub(crate) const MAX_TAGGING: usize = 50;
/// Users per `user/info/batchget`.
pub(crate) const MAX_BATCHGET: usize = 100;
/// Openids per `batchblacklist` / `batchunblacklist`.
pub(crate) const MAX_BLACKLISTING: usize = 20;
/// Tags an account may create.
const MAX_TAGS: usize = 100;
/// Tags one user may have.
const MAX_TAGS_PER_USER: usize = 20;
/// Characters of a tag name.
const MAX_TAG_NAME: usize = 30;
/// Characters of a remark.
const MAX_REMARK: usize = 30;
/// A tag with more members than this cannot be deleted (45057).
const MAX_DELETABLE_TAG_FANS: usize = 100_000;
/// The first id of a created tag; 0, 1 and 2 are system tags.
const FIRST_TAG_ID: u32 = 100;
/// The highest system tag id.
const LAST_SYSTEM_TAG_ID: u32 = 2;
/// The system tag every account lists (and which may be given to users).
const STAR_TAG: (u32, &str) = (2, "星标组");
/// Every follower's `language`.
const LANGUAGE: &str = "zh_CN";

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The openid of generated follower `index`.
pub fn generated_openid(index: u64) -> String {
    format!("{GENERATED_OPENID_PREFIX}{index:024}")
}

fn generated_unionid(index: u64) -> String {
    format!("{GENERATED_UNIONID_PREFIX}{index:024}")
}

/// The index of a generated-format openid (whether or not that many were generated).
fn generated_index(openid: &str) -> Option<u64> {
    let digits = openid.strip_prefix(GENERATED_OPENID_PREFIX)?;
    if digits.len() != GENERATED_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn fnv1a64_from(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// FNV-1a 64 of `bytes` (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    fnv1a64_from(FNV_OFFSET, bytes)
}

/// The digest of a set of openids as `GET /_sim/users` answers it: the XOR over the openids of
/// FNV-1a 64 of their UTF-8 bytes, as 16 lower-case hex digits. Order does not matter; each
/// openid must appear once (the empty set is `0000000000000000`).
pub fn follower_digest<I, S>(openids: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let xor = openids
        .into_iter()
        .fold(0u64, |x, o| x ^ fnv1a64(o.as_ref().as_bytes()));
    format!("{xor:016x}")
}

/// XOR of the FNV-1a 64 of the generated openids with an index in `range`, without formatting
/// each: the hash state after the constant head (prefix and the upper 16 digits) is computed
/// once per 10^8 indexes and only the low 8 digits are hashed per openid.
pub(crate) fn generated_xor(range: Range<u64>) -> u64 {
    const LOW: u64 = 100_000_000;
    let mut xor = 0u64;
    let mut i = range.start;
    while i < range.end {
        let block = i / LOW;
        let block_end = block.saturating_add(1).saturating_mul(LOW).min(range.end);
        let head = format!("{GENERATED_OPENID_PREFIX}{block:016}");
        let state = fnv1a64_from(FNV_OFFSET, head.as_bytes());
        let mut low = [0u8; 8];
        low.copy_from_slice(format!("{:08}", i % LOW).as_bytes());
        for _ in i..block_end {
            xor ^= fnv1a64_from(state, &low);
            for digit in low.iter_mut().rev() {
                if *digit == b'9' {
                    *digit = b'0';
                } else {
                    *digit += 1;
                    break;
                }
            }
        }
        i = block_end;
    }
    xor
}

/// A user's place in the listing order: generated ones by index, then explicit ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Uid {
    Generated(u64),
    Explicit(u32),
}

/// How and when a user followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subscription {
    /// Unix seconds.
    pub(crate) time: i64,
    pub(crate) scene: &'static str,
    pub(crate) qr_scene: u64,
    pub(crate) qr_scene_str: String,
}

impl Subscription {
    /// A `subscribe` event at `now_secs`: through a QR code when its EventKey is `qrscene_<x>`
    /// (a number is `qr_scene`, anything else `qr_scene_str`), else by search.
    pub(crate) fn from_event(now_secs: i64, event_key: Option<&str>) -> Subscription {
        let scene = event_key.and_then(|k| k.strip_prefix("qrscene_"));
        let (scene_name, qr_scene, qr_scene_str) = match scene {
            None => ("ADD_SCENE_SEARCH", 0, String::new()),
            Some(s) => match s.parse::<u64>() {
                Ok(n) => ("ADD_SCENE_QR_CODE", n, String::new()),
                Err(_) => ("ADD_SCENE_QR_CODE", 0, s.to_owned()),
            },
        };
        Subscription {
            time: now_secs,
            scene: scene_name,
            qr_scene,
            qr_scene_str,
        }
    }

    fn generated(index: u64) -> Subscription {
        let scenes = GENERATED_SCENES.len() as u64;
        Subscription {
            time: GENERATED_SUBSCRIBE_BASE.saturating_add_unsigned(index),
            scene: GENERATED_SCENES[usize::try_from(index % scenes).unwrap_or(0)],
            qr_scene: 0,
            qr_scene_str: String::new(),
        }
    }
}

struct Explicit {
    openid: String,
    subscription: Subscription,
    following: bool,
}

struct Tag {
    name: String,
    members: BTreeSet<Uid>,
}

/// The followers, tags, remarks and blacklist of one app.
pub(crate) struct Followers {
    generated: u64,
    /// Generated indexes that left.
    left: BTreeSet<u64>,
    /// Generated users who followed again (or again while following): their new subscription.
    resubscribed: HashMap<u64, Subscription>,
    explicit: Vec<Explicit>,
    explicit_ids: HashMap<String, u32>,
    explicit_following: u64,
    /// Indexes of explicit users whose openid has the generated format (`generate` must not
    /// reach them).
    generated_like: BTreeSet<u64>,
    remarks: HashMap<Uid, String>,
    /// A user's tags, in the order given.
    user_tags: HashMap<Uid, Vec<u32>>,
    tags: BTreeMap<u32, Tag>,
    next_tag_id: u32,
    blacklist: BTreeSet<Uid>,
    /// (n, XOR of the hashes of generated openids 0..n): the digest's cache.
    digest_prefix: (u64, u64),
}

impl Default for Followers {
    fn default() -> Followers {
        let mut tags = BTreeMap::new();
        tags.insert(
            STAR_TAG.0,
            Tag {
                name: STAR_TAG.1.to_owned(),
                members: BTreeSet::new(),
            },
        );
        Followers {
            generated: 0,
            left: BTreeSet::new(),
            resubscribed: HashMap::new(),
            explicit: Vec::new(),
            explicit_ids: HashMap::new(),
            explicit_following: 0,
            generated_like: BTreeSet::new(),
            remarks: HashMap::new(),
            user_tags: HashMap::new(),
            tags,
            next_tag_id: FIRST_TAG_ID,
            blacklist: BTreeSet::new(),
            digest_prefix: (0, 0),
        }
    }
}

/// One page of openids and the cursor for the next (`""` when the page is empty).
pub(crate) struct Page {
    pub(crate) openids: Vec<String>,
    pub(crate) next_openid: String,
}

impl Page {
    /// `{count, data: {openid: [...]}, next_openid}`, or `{count: 0, next_openid: ""}`.
    pub(crate) fn to_json(&self) -> Value {
        if self.openids.is_empty() {
            json!({ "count": 0, "next_openid": "" })
        } else {
            json!({
                "count": self.openids.len(),
                "data": { "openid": self.openids },
                "next_openid": self.next_openid,
            })
        }
    }
}

fn api<T>(errcode: i64) -> Result<T, SimError> {
    Err(SimError::api(errcode))
}

impl Followers {
    /// Current followers.
    pub(crate) fn total(&self) -> u64 {
        self.generated - self.left.len() as u64 + self.explicit_following
    }

    /// Adds `count` generated followers (O(1)); answers the current total.
    pub(crate) fn generate(&mut self, count: u64) -> Result<u64, SimError> {
        let end = self
            .generated
            .checked_add(count)
            .filter(|n| *n <= MAX_GENERATED)
            .ok_or_else(|| {
                SimError::BadRequest(format!(
                    "at most {MAX_GENERATED} generated followers per app"
                ))
            })?;
        if let Some(i) = self.generated_like.range(self.generated..end).next() {
            return Err(SimError::BadRequest(format!(
                "{} already follows as an explicit user",
                generated_openid(*i)
            )));
        }
        self.generated = end;
        Ok(self.total())
    }

    fn resolve(&self, openid: &str) -> Option<Uid> {
        if let Some(i) = generated_index(openid).filter(|i| *i < self.generated) {
            return Some(Uid::Generated(i));
        }
        self.explicit_ids.get(openid).map(|p| Uid::Explicit(*p))
    }

    pub(crate) fn is_following(&self, uid: Uid) -> bool {
        match uid {
            Uid::Generated(i) => !self.left.contains(&i),
            Uid::Explicit(p) => self.explicit[p as usize].following,
        }
    }

    /// The user if `openid` follows the app, else 40003.
    fn follower(&self, openid: &str) -> Result<Uid, SimError> {
        match self.resolve(openid) {
            Some(uid) if self.is_following(uid) => Ok(uid),
            _ => api(40003),
        }
    }

    /// A paging cursor: `""` is the start, any other value must be a known user (40003).
    fn cursor(&self, openid: &str) -> Result<Option<Uid>, SimError> {
        if openid.is_empty() {
            return Ok(None);
        }
        self.resolve(openid)
            .map(Some)
            .ok_or_else(|| SimError::api(40003))
    }

    fn openid_of(&self, uid: Uid) -> String {
        match uid {
            Uid::Generated(i) => generated_openid(i),
            Uid::Explicit(p) => self.explicit[p as usize].openid.clone(),
        }
    }

    fn unionid_of(&self, uid: Uid) -> String {
        match uid {
            Uid::Generated(i) => generated_unionid(i),
            Uid::Explicit(p) => format!("u{}", self.explicit[p as usize].openid),
        }
    }

    /// The user if `openid` follows the app.
    pub(crate) fn following_uid(&self, openid: &str) -> Option<Uid> {
        self.follower(openid).ok()
    }

    /// Whether the user is blacklisted.
    pub(crate) fn is_blacklisted(&self, uid: Uid) -> bool {
        self.blacklist.contains(&uid)
    }

    /// The blacklisted users (all of them follow: leaving drops the entry).
    pub(crate) fn blacklisted(&self) -> impl Iterator<Item = Uid> + '_ {
        self.blacklist.iter().copied()
    }

    /// The members of an existing tag (45159 for an unknown one).
    pub(crate) fn tag_member_uids(&self, id: i64) -> Result<&BTreeSet<Uid>, SimError> {
        let id = self.existing_tag(id)?;
        Ok(&self.tags[&id].members)
    }

    /// `openid` follows (again): a generated one leaves the left set, anyone else becomes (or
    /// stays) an explicit follower; either way with this subscription.
    pub(crate) fn subscribe(&mut self, openid: &str, subscription: Subscription) {
        if openid.is_empty() {
            return;
        }
        if let Some(i) = generated_index(openid).filter(|i| *i < self.generated) {
            self.left.remove(&i);
            self.resubscribed.insert(i, subscription);
            return;
        }
        if let Some(&p) = self.explicit_ids.get(openid) {
            let user = &mut self.explicit[p as usize];
            if !user.following {
                user.following = true;
                self.explicit_following += 1;
            }
            user.subscription = subscription;
            return;
        }
        let Ok(p) = u32::try_from(self.explicit.len()) else {
            return;
        };
        self.explicit.push(Explicit {
            openid: openid.to_owned(),
            subscription,
            following: true,
        });
        self.explicit_ids.insert(openid.to_owned(), p);
        self.explicit_following += 1;
        if let Some(i) = generated_index(openid) {
            self.generated_like.insert(i);
        }
    }

    /// `openid` leaves: it loses its tags and blacklist entry (the remark stays). False when it
    /// was not a follower.
    pub(crate) fn unsubscribe(&mut self, openid: &str) -> bool {
        let Ok(uid) = self.follower(openid) else {
            return false;
        };
        match uid {
            Uid::Generated(i) => {
                self.left.insert(i);
                self.resubscribed.remove(&i);
            }
            Uid::Explicit(p) => {
                self.explicit[p as usize].following = false;
                self.explicit_following -= 1;
            }
        }
        for id in self.user_tags.remove(&uid).unwrap_or_default() {
            if let Some(tag) = self.tags.get_mut(&id) {
                tag.members.remove(&uid);
            }
        }
        self.blacklist.remove(&uid);
        true
    }

    /// Up to [`PAGE`] current followers after the cursor, in listing order.
    pub(crate) fn list(&self, next_openid: &str) -> Result<Page, SimError> {
        let after = self.cursor(next_openid)?;
        let mut page = Vec::new();
        let start = match after {
            None => 0,
            Some(Uid::Generated(i)) => i + 1,
            Some(Uid::Explicit(_)) => self.generated,
        };
        let mut left = self.left.range(start..).peekable();
        let mut i = start;
        while i < self.generated && page.len() < PAGE {
            if left.peek() == Some(&&i) {
                left.next();
            } else {
                page.push(generated_openid(i));
            }
            i += 1;
        }
        let first = match after {
            Some(Uid::Explicit(p)) => p as usize + 1,
            _ => 0,
        };
        let rest = PAGE - page.len();
        page.extend(
            self.explicit
                .iter()
                .skip(first)
                .filter(|u| u.following)
                .take(rest)
                .map(|u| u.openid.clone()),
        );
        Ok(to_page(page))
    }

    /// `user/info` of one user: the full profile of a follower, `{subscribe: 0, openid,
    /// unionid}` of one who left, 40003 for an unknown openid.
    pub(crate) fn info(&self, openid: &str) -> Result<Value, SimError> {
        let uid = self.resolve(openid).ok_or_else(|| SimError::api(40003))?;
        let unionid = self.unionid_of(uid);
        if !self.is_following(uid) {
            return Ok(json!({ "subscribe": 0, "openid": openid, "unionid": unionid }));
        }
        let subscription = match uid {
            Uid::Generated(i) => self
                .resubscribed
                .get(&i)
                .cloned()
                .unwrap_or_else(|| Subscription::generated(i)),
            Uid::Explicit(p) => self.explicit[p as usize].subscription.clone(),
        };
        let tags = self.user_tags.get(&uid).cloned().unwrap_or_default();
        Ok(json!({
            "subscribe": 1,
            "openid": openid,
            "language": LANGUAGE,
            "subscribe_time": subscription.time,
            "unionid": unionid,
            "remark": self.remarks.get(&uid).map_or("", String::as_str),
            "groupid": 0,
            "tagid_list": tags,
            "subscribe_scene": subscription.scene,
            "qr_scene": subscription.qr_scene,
            "qr_scene_str": subscription.qr_scene_str,
        }))
    }

    /// `user/info/batchget`: 1..=100 users (else 40032), any unknown one fails the call.
    pub(crate) fn batch_info(&self, openids: &[String]) -> Result<Vec<Value>, SimError> {
        if openids.is_empty() || openids.len() > MAX_BATCHGET {
            return api(40032);
        }
        openids.iter().map(|o| self.info(o)).collect()
    }

    /// `user/info/updateremark`: at most 30 characters (else 40097), followers only (40003).
    pub(crate) fn set_remark(&mut self, openid: &str, remark: &str) -> Result<(), SimError> {
        if remark.chars().count() > MAX_REMARK {
            return api(40097);
        }
        let uid = self.follower(openid)?;
        if remark.is_empty() {
            self.remarks.remove(&uid);
        } else {
            self.remarks.insert(uid, remark.to_owned());
        }
        Ok(())
    }

    fn check_tag_name(&self, name: &str, except: Option<u32>) -> Result<(), SimError> {
        let chars = name.chars().count();
        if chars == 0 || chars > MAX_TAG_NAME {
            return api(45158);
        }
        if self
            .tags
            .iter()
            .any(|(id, t)| Some(*id) != except && t.name == name)
        {
            return api(45157);
        }
        Ok(())
    }

    /// `tags/create`: name 1..=30 characters (45158), unique (45157), at most 100 created tags
    /// (45056); ids from 100 upwards, never reused.
    pub(crate) fn create_tag(&mut self, name: &str) -> Result<u32, SimError> {
        self.check_tag_name(name, None)?;
        let created = self
            .tags
            .keys()
            .filter(|id| **id > LAST_SYSTEM_TAG_ID)
            .count();
        if created >= MAX_TAGS {
            return api(45056);
        }
        let id = self.next_tag_id;
        self.next_tag_id += 1;
        self.tags.insert(
            id,
            Tag {
                name: name.to_owned(),
                members: BTreeSet::new(),
            },
        );
        Ok(id)
    }

    /// `tags/get`: `[{id, name, count}]` by id, the system tag 2 first.
    pub(crate) fn tags_json(&self) -> Vec<Value> {
        self.tags
            .iter()
            .map(|(id, t)| json!({ "id": id, "name": t.name, "count": t.members.len() }))
            .collect()
    }

    /// A created tag to change: 45058 for a system tag, 45159 for an unknown one.
    fn changeable_tag(&self, id: i64) -> Result<u32, SimError> {
        if (0..=i64::from(LAST_SYSTEM_TAG_ID)).contains(&id) {
            return api(45058);
        }
        self.existing_tag(id)
    }

    /// An existing tag (created, or the system tag 2), else 45159.
    fn existing_tag(&self, id: i64) -> Result<u32, SimError> {
        u32::try_from(id)
            .ok()
            .filter(|id| self.tags.contains_key(id))
            .ok_or_else(|| SimError::api(45159))
    }

    /// `tags/update`.
    pub(crate) fn update_tag(&mut self, id: i64, name: &str) -> Result<(), SimError> {
        let id = self.changeable_tag(id)?;
        self.check_tag_name(name, Some(id))?;
        if let Some(tag) = self.tags.get_mut(&id) {
            tag.name = name.to_owned();
        }
        Ok(())
    }

    /// `tags/delete`: removes the tag from its users; 45057 above 100 000 members.
    pub(crate) fn delete_tag(&mut self, id: i64) -> Result<(), SimError> {
        let id = self.changeable_tag(id)?;
        if self.tags[&id].members.len() > MAX_DELETABLE_TAG_FANS {
            return api(45057);
        }
        let Some(tag) = self.tags.remove(&id) else {
            return api(45159);
        };
        for uid in tag.members {
            if let Some(ids) = self.user_tags.get_mut(&uid) {
                ids.retain(|t| *t != id);
                if ids.is_empty() {
                    self.user_tags.remove(&uid);
                }
            }
        }
        Ok(())
    }

    /// `user/tag/get`: a page of the tag's members after the cursor.
    pub(crate) fn tag_members(&self, id: i64, next_openid: &str) -> Result<Page, SimError> {
        let id = self.existing_tag(id)?;
        let after = self.cursor(next_openid)?;
        Ok(page_of(&self.tags[&id].members, after, |u| {
            self.openid_of(u)
        }))
    }

    /// 1..=`max` openids (else 40032), every one a follower (else 40003).
    fn followers_of(&self, openids: &[String], max: usize) -> Result<Vec<Uid>, SimError> {
        if openids.is_empty() || openids.len() > max {
            return api(40032);
        }
        openids.iter().map(|o| self.follower(o)).collect()
    }

    /// `batchtagging` (`add`) / `batchuntagging`: all or nothing; 45059 when a user would have
    /// more than 20 tags.
    pub(crate) fn tag_users(
        &mut self,
        openids: &[String],
        id: i64,
        add: bool,
    ) -> Result<(), SimError> {
        if openids.is_empty() || openids.len() > MAX_TAGGING {
            return api(40032);
        }
        let id = self.existing_tag(id)?;
        let uids = self.followers_of(openids, MAX_TAGGING)?;
        if add {
            let too_many = uids.iter().any(|u| {
                self.user_tags
                    .get(u)
                    .is_some_and(|ids| !ids.contains(&id) && ids.len() >= MAX_TAGS_PER_USER)
            });
            if too_many {
                return api(45059);
            }
        }
        for uid in uids {
            let ids = self.user_tags.entry(uid).or_default();
            let members = &mut self.tags.get_mut(&id).expect("checked above").members;
            if add {
                if !ids.contains(&id) {
                    ids.push(id);
                }
                members.insert(uid);
            } else {
                ids.retain(|t| *t != id);
                if ids.is_empty() {
                    self.user_tags.remove(&uid);
                }
                members.remove(&uid);
            }
        }
        Ok(())
    }

    /// `tags/getidlist`: a follower's tags.
    pub(crate) fn tag_ids(&self, openid: &str) -> Result<Vec<u32>, SimError> {
        let uid = self.follower(openid)?;
        Ok(self.user_tags.get(&uid).cloned().unwrap_or_default())
    }

    /// Blacklisted users.
    pub(crate) fn blacklist_total(&self) -> usize {
        self.blacklist.len()
    }

    /// `getblacklist`: a page after the cursor.
    pub(crate) fn blacklist_page(&self, begin_openid: &str) -> Result<Page, SimError> {
        let after = self.cursor(begin_openid)?;
        Ok(page_of(&self.blacklist, after, |u| self.openid_of(u)))
    }

    /// `batchblacklist` (`add`) / `batchunblacklist`: 1..=20 followers, all or nothing.
    pub(crate) fn blacklist_users(
        &mut self,
        openids: &[String],
        add: bool,
    ) -> Result<(), SimError> {
        let uids = self.followers_of(openids, MAX_BLACKLISTING)?;
        for uid in uids {
            if add {
                self.blacklist.insert(uid);
            } else {
                self.blacklist.remove(&uid);
            }
        }
        Ok(())
    }

    /// The generated range whose hashes the digest cache lacks (compute it with
    /// [`generated_xor`] without the lock, then [`Followers::store_digest_prefix`]).
    pub(crate) fn digest_todo(&self) -> Range<u64> {
        self.digest_prefix.0..self.generated
    }

    /// Extends the digest cache by `generated_xor(range)` when it still fits.
    pub(crate) fn store_digest_prefix(&mut self, range: Range<u64>, xor: u64) {
        if range.start == self.digest_prefix.0 && range.end <= self.generated {
            self.digest_prefix = (range.end, self.digest_prefix.1 ^ xor);
        }
    }

    /// The digest of the current followers (see [`follower_digest`]).
    pub(crate) fn digest(&mut self) -> String {
        let todo = self.digest_todo();
        if !todo.is_empty() {
            let xor = generated_xor(todo.clone());
            self.store_digest_prefix(todo, xor);
        }
        let mut xor = self.digest_prefix.1;
        for i in &self.left {
            xor ^= fnv1a64(generated_openid(*i).as_bytes());
        }
        for user in self.explicit.iter().filter(|u| u.following) {
            xor ^= fnv1a64(user.openid.as_bytes());
        }
        format!("{xor:016x}")
    }
}

fn to_page(openids: Vec<String>) -> Page {
    let next_openid = openids.last().cloned().unwrap_or_default();
    Page {
        openids,
        next_openid,
    }
}

fn page_of(set: &BTreeSet<Uid>, after: Option<Uid>, openid: impl Fn(Uid) -> String) -> Page {
    let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
    let openids = set
        .range((lower, Bound::Unbounded))
        .take(PAGE)
        .map(|u| openid(*u))
        .collect();
    to_page(openids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_openids_round_trip() {
        let openid = generated_openid(42);
        assert_eq!(openid, "oGEN000000000000000000000042");
        assert_eq!(openid.len(), 28);
        assert_eq!(generated_index(&openid), Some(42));
        assert_eq!(generated_index("oGEN42"), None);
        assert_eq!(generated_index("oGEN00000000000000000000004x"), None);
        assert_eq!(generated_index("o_user"), None);
    }

    #[test]
    fn generated_xor_matches_the_plain_digest() {
        for range in [0..0, 0..1000, 99_999_990..100_000_010, 5..17] {
            let plain = follower_digest(range.clone().map(generated_openid));
            assert_eq!(
                format!("{:016x}", generated_xor(range.clone())),
                plain,
                "{range:?}"
            );
        }
        assert_eq!(follower_digest(Vec::<String>::new()), "0000000000000000");
        // FNV-1a 64 test vector.
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn digest_follows_changes() {
        let mut f = Followers::default();
        f.generate(10).unwrap();
        f.subscribe("o_x", Subscription::from_event(1, None));
        assert!(f.unsubscribe(&generated_openid(3)));
        let expected = follower_digest(
            (0..10)
                .filter(|i| *i != 3)
                .map(generated_openid)
                .chain(["o_x".to_owned()]),
        );
        assert_eq!(f.digest(), expected);
        assert_eq!(f.total(), 10);
        f.generate(5).unwrap();
        let expected = follower_digest(
            (0..15)
                .filter(|i| *i != 3)
                .map(generated_openid)
                .chain(["o_x".to_owned()]),
        );
        assert_eq!(f.digest(), expected);
    }

    #[test]
    fn generate_refuses_to_swallow_an_explicit_follower() {
        let mut f = Followers::default();
        f.subscribe(&generated_openid(5), Subscription::from_event(1, None));
        assert_eq!(f.generate(5).unwrap(), 6);
        assert!(matches!(f.generate(1), Err(SimError::BadRequest(_))));
        assert!(matches!(
            f.generate(MAX_GENERATED),
            Err(SimError::BadRequest(_))
        ));
        let page = f.list("").unwrap();
        assert_eq!(page.openids.len(), 6);
    }

    #[test]
    fn a_tag_with_too_many_fans_cannot_be_deleted() {
        let mut f = Followers::default();
        let n = MAX_DELETABLE_TAG_FANS as u64 + 1;
        f.generate(n).unwrap();
        let id = i64::from(f.create_tag("big").unwrap());
        let openids: Vec<String> = (0..n).map(generated_openid).collect();
        for chunk in openids.chunks(MAX_TAGGING) {
            f.tag_users(chunk, id, true).unwrap();
        }
        assert!(matches!(
            f.delete_tag(id),
            Err(SimError::Api { errcode: 45057, .. })
        ));
        f.tag_users(&openids[..1], id, false).unwrap();
        f.delete_tag(id).unwrap();
        assert!(f.user_tags.is_empty());
    }

    #[test]
    fn subscription_from_event_keys() {
        let s = Subscription::from_event(7, Some("qrscene_123"));
        assert_eq!(
            (s.scene, s.qr_scene, s.qr_scene_str.as_str()),
            ("ADD_SCENE_QR_CODE", 123, "")
        );
        let s = Subscription::from_event(7, Some("qrscene_promo"));
        assert_eq!(
            (s.scene, s.qr_scene, s.qr_scene_str.as_str()),
            ("ADD_SCENE_QR_CODE", 0, "promo")
        );
        let s = Subscription::from_event(7, None);
        assert_eq!((s.scene, s.time), ("ADD_SCENE_SEARCH", 7));
    }
}
