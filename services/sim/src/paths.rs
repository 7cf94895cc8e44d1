//! Every route the simulator serves, defined once. The REST paths double as the `api` names
//! of the call counters and fault rules.

/// `GET /cgi-bin/token?grant_type=client_credential&appid=&secret=`.
pub const TOKEN: &str = "/cgi-bin/token";
/// `POST /cgi-bin/stable_token` with `{grant_type, appid, secret, force_refresh}`.
pub const STABLE_TOKEN: &str = "/cgi-bin/stable_token";
/// Appended to [`STABLE_TOKEN`] in counters and fault rules for calls with `force_refresh: true`.
pub const FORCE_SUFFIX: &str = "#force";
/// `GET /cgi-bin/ticket/getticket?access_token=&type=jsapi|wx_card`.
pub const TICKET: &str = "/cgi-bin/ticket/getticket";
/// `GET /cgi-bin/getcallbackip?access_token=`.
pub const CALLBACK_IP: &str = "/cgi-bin/getcallbackip";
/// `GET /cgi-bin/get_api_domain_ip?access_token=`.
pub const API_DOMAIN_IP: &str = "/cgi-bin/get_api_domain_ip";
/// `POST /cgi-bin/message/custom/send?access_token=` with `{touser, msgtype, <type object>}`.
pub const CUSTOM_SEND: &str = "/cgi-bin/message/custom/send";
/// `POST /cgi-bin/message/custom/typing?access_token=` with `{touser, command}`.
pub const CUSTOM_TYPING: &str = "/cgi-bin/message/custom/typing";
/// `GET /cgi-bin/user/get?access_token=&next_openid=`: followers, 10 000 a page.
pub const USER_GET: &str = "/cgi-bin/user/get";
/// `GET /cgi-bin/user/info?access_token=&openid=&lang=zh_CN`.
pub const USER_INFO: &str = "/cgi-bin/user/info";
/// `POST /cgi-bin/user/info/batchget?access_token=` with `{user_list: [{openid, lang}]}`.
pub const USER_INFO_BATCHGET: &str = "/cgi-bin/user/info/batchget";
/// `POST /cgi-bin/user/info/updateremark?access_token=` with `{openid, remark}`.
pub const USER_REMARK: &str = "/cgi-bin/user/info/updateremark";
/// `POST /cgi-bin/tags/create?access_token=` with `{tag: {name}}`.
pub const TAGS_CREATE: &str = "/cgi-bin/tags/create";
/// `GET /cgi-bin/tags/get?access_token=`.
pub const TAGS_GET: &str = "/cgi-bin/tags/get";
/// `POST /cgi-bin/tags/update?access_token=` with `{tag: {id, name}}`.
pub const TAGS_UPDATE: &str = "/cgi-bin/tags/update";
/// `POST /cgi-bin/tags/delete?access_token=` with `{tag: {id}}`.
pub const TAGS_DELETE: &str = "/cgi-bin/tags/delete";
/// `POST /cgi-bin/user/tag/get?access_token=` with `{tagid, next_openid}`: a tag's members.
pub const TAG_USERS: &str = "/cgi-bin/user/tag/get";
/// `POST /cgi-bin/tags/members/batchtagging?access_token=` with `{openid_list, tagid}`.
pub const TAGS_BATCH_TAG: &str = "/cgi-bin/tags/members/batchtagging";
/// `POST /cgi-bin/tags/members/batchuntagging?access_token=` with `{openid_list, tagid}`.
pub const TAGS_BATCH_UNTAG: &str = "/cgi-bin/tags/members/batchuntagging";
/// `POST /cgi-bin/tags/getidlist?access_token=` with `{openid}`: a user's tags.
pub const TAGS_ID_LIST: &str = "/cgi-bin/tags/getidlist";
/// `POST /cgi-bin/tags/members/getblacklist?access_token=` with `{begin_openid}`.
pub const BLACKLIST_GET: &str = "/cgi-bin/tags/members/getblacklist";
/// `POST /cgi-bin/tags/members/batchblacklist?access_token=` with `{openid_list}`.
pub const BLACKLIST_ADD: &str = "/cgi-bin/tags/members/batchblacklist";
/// `POST /cgi-bin/tags/members/batchunblacklist?access_token=` with `{openid_list}`.
pub const BLACKLIST_REMOVE: &str = "/cgi-bin/tags/members/batchunblacklist";
/// `POST /cgi-bin/media/uploadnews?access_token=` with `{articles: [...]}`: news for `mpnews`.
pub const UPLOAD_NEWS: &str = "/cgi-bin/media/uploadnews";
/// `POST /cgi-bin/message/mass/sendall?access_token=` with `{filter, msgtype, <object>, ...}`.
pub const MASS_SENDALL: &str = "/cgi-bin/message/mass/sendall";
/// `POST /cgi-bin/message/mass/send?access_token=` with `{touser: [...], msgtype, <object>}`.
pub const MASS_SEND: &str = "/cgi-bin/message/mass/send";
/// `POST /cgi-bin/message/mass/preview?access_token=` with `{touser, msgtype, <object>}`.
pub const MASS_PREVIEW: &str = "/cgi-bin/message/mass/preview";
/// `POST /cgi-bin/message/mass/delete?access_token=` with `{msg_id, article_idx?}`.
pub const MASS_DELETE: &str = "/cgi-bin/message/mass/delete";
/// `POST /cgi-bin/message/mass/get?access_token=` with `{msg_id}`.
pub const MASS_GET: &str = "/cgi-bin/message/mass/get";
/// `POST /cgi-bin/message/mass/speed/get?access_token=` with `{}`.
pub const MASS_SPEED_GET: &str = "/cgi-bin/message/mass/speed/get";
/// `POST /cgi-bin/message/mass/speed/set?access_token=` with `{speed}`.
pub const MASS_SPEED_SET: &str = "/cgi-bin/message/mass/speed/set";
/// `POST /cgi-bin/template/api_set_industry?access_token=` with `{industry_id1, industry_id2}`.
pub const TEMPLATE_SET_INDUSTRY: &str = "/cgi-bin/template/api_set_industry";
/// `GET /cgi-bin/template/get_industry?access_token=`.
pub const TEMPLATE_GET_INDUSTRY: &str = "/cgi-bin/template/get_industry";
/// `POST /cgi-bin/template/api_add_template?access_token=` with `{template_id_short, ...}`.
pub const TEMPLATE_ADD: &str = "/cgi-bin/template/api_add_template";
/// `GET /cgi-bin/template/get_all_private_template?access_token=`.
pub const TEMPLATE_LIST: &str = "/cgi-bin/template/get_all_private_template";
/// `POST /cgi-bin/template/del_private_template?access_token=` with `{template_id}`.
pub const TEMPLATE_DELETE: &str = "/cgi-bin/template/del_private_template";
/// `POST /cgi-bin/message/template/send?access_token=` with `{touser, template_id, data, ...}`.
pub const TEMPLATE_SEND: &str = "/cgi-bin/message/template/send";
/// `POST /cgi-bin/menu/create?access_token=` with `{button: [...]}`: the default menu.
pub const MENU_CREATE: &str = "/cgi-bin/menu/create";
/// `GET /cgi-bin/menu/get?access_token=`: the default and conditional menus.
pub const MENU_GET: &str = "/cgi-bin/menu/get";
/// `GET /cgi-bin/menu/delete?access_token=`: removes the default and conditional menus.
pub const MENU_DELETE: &str = "/cgi-bin/menu/delete";
/// `GET /cgi-bin/get_current_selfmenu_info?access_token=`.
pub const MENU_SELFMENU_INFO: &str = "/cgi-bin/get_current_selfmenu_info";
/// `POST /cgi-bin/menu/addconditional?access_token=` with `{button, matchrule}`.
pub const MENU_ADD_CONDITIONAL: &str = "/cgi-bin/menu/addconditional";
/// `POST /cgi-bin/menu/delconditional?access_token=` with `{menuid}`.
pub const MENU_DEL_CONDITIONAL: &str = "/cgi-bin/menu/delconditional";
/// `POST /cgi-bin/menu/trymatch?access_token=` with `{user_id}`.
pub const MENU_TRYMATCH: &str = "/cgi-bin/menu/trymatch";
/// `POST /cgi-bin/qrcode/create?access_token=` with `{expire_seconds?, action_name, action_info}`.
pub const QRCODE_CREATE: &str = "/cgi-bin/qrcode/create";
/// `GET /cgi-bin/showqrcode?ticket=` (no access_token; `mp.weixin.qq.com` at WeChat): the image.
pub const SHOW_QRCODE: &str = "/cgi-bin/showqrcode";
/// `POST /cgi-bin/openapi/quota/get?access_token=` with `{cgi_path}`.
pub const QUOTA_GET: &str = "/cgi-bin/openapi/quota/get";
/// `POST /cgi-bin/clear_quota?access_token=` with `{appid}`.
pub const CLEAR_QUOTA: &str = "/cgi-bin/clear_quota";
/// `POST /cgi-bin/media/upload?access_token=&type=image|voice|video|thumb`, multipart `media`:
/// temporary material (3 days).
pub const MEDIA_UPLOAD: &str = "/cgi-bin/media/upload";
/// `GET /cgi-bin/media/get?access_token=&media_id=`: a temporary material's bytes (a video:
/// `{"video_url"}`).
pub const MEDIA_GET: &str = "/cgi-bin/media/get";
/// `POST /cgi-bin/media/uploadimg?access_token=`, multipart `media`: an image for article
/// content, `{"url"}`.
pub const MEDIA_UPLOAD_IMG: &str = "/cgi-bin/media/uploadimg";
/// `POST /cgi-bin/material/add_material?access_token=&type=image|voice|video|thumb`, multipart
/// `media` (and `description` for a video): permanent material.
pub const MATERIAL_ADD: &str = "/cgi-bin/material/add_material";
/// `POST /cgi-bin/material/get_material?access_token=` with `{media_id}`.
pub const MATERIAL_GET: &str = "/cgi-bin/material/get_material";
/// `POST /cgi-bin/material/del_material?access_token=` with `{media_id}`.
pub const MATERIAL_DELETE: &str = "/cgi-bin/material/del_material";
/// `GET /cgi-bin/material/get_materialcount?access_token=`.
pub const MATERIAL_COUNT: &str = "/cgi-bin/material/get_materialcount";
/// `POST /cgi-bin/material/batchget_material?access_token=` with `{type, offset, count}`.
pub const MATERIAL_BATCHGET: &str = "/cgi-bin/material/batchget_material";
/// `POST /cgi-bin/draft/add?access_token=` with `{articles: [...]}`.
pub const DRAFT_ADD: &str = "/cgi-bin/draft/add";
/// `POST /cgi-bin/draft/get?access_token=` with `{media_id}`.
pub const DRAFT_GET: &str = "/cgi-bin/draft/get";
/// `POST /cgi-bin/draft/delete?access_token=` with `{media_id}`.
pub const DRAFT_DELETE: &str = "/cgi-bin/draft/delete";
/// `POST /cgi-bin/draft/update?access_token=` with `{media_id, index, articles: {...}}`.
pub const DRAFT_UPDATE: &str = "/cgi-bin/draft/update";
/// `GET /cgi-bin/draft/count?access_token=`.
pub const DRAFT_COUNT: &str = "/cgi-bin/draft/count";
/// `POST /cgi-bin/draft/batchget?access_token=` with `{offset, count, no_content?}`.
pub const DRAFT_BATCHGET: &str = "/cgi-bin/draft/batchget";
/// `POST /cgi-bin/freepublish/submit?access_token=` with `{media_id}`: publish a draft.
pub const FREEPUBLISH_SUBMIT: &str = "/cgi-bin/freepublish/submit";
/// `POST /cgi-bin/freepublish/get?access_token=` with `{publish_id}`: a job's status.
pub const FREEPUBLISH_GET: &str = "/cgi-bin/freepublish/get";
/// `POST /cgi-bin/freepublish/getarticle?access_token=` with `{article_id}`.
pub const FREEPUBLISH_GETARTICLE: &str = "/cgi-bin/freepublish/getarticle";
/// `POST /cgi-bin/freepublish/delete?access_token=` with `{article_id, index?}`.
pub const FREEPUBLISH_DELETE: &str = "/cgi-bin/freepublish/delete";
/// `POST /cgi-bin/freepublish/batchget?access_token=` with `{offset, count, no_content?}`.
pub const FREEPUBLISH_BATCHGET: &str = "/cgi-bin/freepublish/batchget";
/// `POST /cgi-bin/comment/open?access_token=` with `{msg_data_id, index}`.
pub const COMMENT_OPEN: &str = "/cgi-bin/comment/open";
/// `POST /cgi-bin/comment/close?access_token=` with `{msg_data_id, index}`.
pub const COMMENT_CLOSE: &str = "/cgi-bin/comment/close";
/// `POST /cgi-bin/comment/list?access_token=` with `{msg_data_id, index, begin, count, type}`.
pub const COMMENT_LIST: &str = "/cgi-bin/comment/list";
/// `POST /cgi-bin/comment/markelect?access_token=` with `{msg_data_id, index, user_comment_id}`.
pub const COMMENT_MARKELECT: &str = "/cgi-bin/comment/markelect";
/// `POST /cgi-bin/comment/unmarkelect?access_token=` with `{msg_data_id, index,
/// user_comment_id}`.
pub const COMMENT_UNMARKELECT: &str = "/cgi-bin/comment/unmarkelect";
/// `POST /cgi-bin/comment/delete?access_token=` with `{msg_data_id, index, user_comment_id}`.
pub const COMMENT_DELETE: &str = "/cgi-bin/comment/delete";
/// `POST /cgi-bin/comment/reply/add?access_token=` with `{msg_data_id, index, user_comment_id,
/// content}`.
pub const COMMENT_REPLY_ADD: &str = "/cgi-bin/comment/reply/add";
/// `POST /cgi-bin/comment/reply/delete?access_token=` with `{msg_data_id, index,
/// user_comment_id}`.
pub const COMMENT_REPLY_DELETE: &str = "/cgi-bin/comment/reply/delete";
/// `GET /connect/oauth2/authorize?appid&redirect_uri&response_type=code&scope&state` (the host
/// is `open.weixin.qq.com` at WeChat): `snsapi_base` redirects with a code, `snsapi_userinfo`
/// shows the consent page.
pub const OAUTH_AUTHORIZE: &str = "/connect/oauth2/authorize";
/// `GET` (or `POST` urlencoded) the consent form: `appid, redirect_uri, scope, state, openid,
/// decision=allow|deny`.
pub const OAUTH_CONFIRM: &str = "/connect/oauth2/authorize/confirm";
/// `GET /sns/oauth2/access_token?appid&secret&code&grant_type=authorization_code`.
pub const SNS_ACCESS_TOKEN: &str = "/sns/oauth2/access_token";
/// `GET /sns/oauth2/refresh_token?appid&grant_type=refresh_token&refresh_token`.
pub const SNS_REFRESH_TOKEN: &str = "/sns/oauth2/refresh_token";
/// `GET /sns/userinfo?access_token&openid&lang` (a web access token of `snsapi_userinfo`).
pub const SNS_USERINFO: &str = "/sns/userinfo";
/// `GET /sns/auth?access_token&openid`: is the web access token valid.
pub const SNS_AUTH: &str = "/sns/auth";

/// `GET` the call counters, `DELETE` to reset them.
pub const STATS: &str = "/_sim/stats";
/// `POST {"appid"}`: every current access token of the app becomes invalid (40001).
pub const REVOKE: &str = "/_sim/revoke";
/// `GET` lists, `POST` adds, `DELETE` clears fault rules.
pub const FAULTS: &str = "/_sim/faults";
/// `POST` a [`crate::callback::CallbackRequest`]: send it to the gateway, answer the outcome.
pub const SEND: &str = "/_sim/send";
/// `GET` the appids the simulator knows.
pub const APPS: &str = "/_sim/apps";
/// `GET` the simulated clock, `POST {"advance_secs"}` to move it forward.
pub const CLOCK: &str = "/_sim/clock";
/// `POST {"appid","openid","kind":"message"|"event"}`: record a user interaction (opens the
/// customer-service window) without sending a callback.
pub const INTERACTIONS: &str = "/_sim/interactions";
/// `GET ?appid=&openid=` what users received (customer-service sends and passive replies),
/// `DELETE` to forget it.
pub const MESSAGES: &str = "/_sim/messages";
/// `GET ?appid=`: `{appid, followers, digest}`.
pub const USERS: &str = "/_sim/users";
/// `POST {"appid","count"}`: add `count` generated followers.
pub const USERS_GENERATE: &str = "/_sim/users/generate";
/// `POST {"appid","openid"}`: the follower leaves (no callback).
pub const USERS_UNSUBSCRIBE: &str = "/_sim/users/unsubscribe";
/// `GET ?appid=`: the app's mass jobs.
pub const MASS_JOBS: &str = "/_sim/mass";
/// `POST {"finish_delay_ms"?, "finish_events"?}`: mass-send settings.
pub const MASS_SETTINGS: &str = "/_sim/mass/settings";
/// `GET ?appid=&summary=true`: template sends (a summary or the records), `DELETE ?appid=` to
/// clear them.
pub const TEMPLATE_SENDS: &str = "/_sim/templates";
/// `POST {"finish_events"?, "finish_delay_ms"?, "daily_quota"?}`: template-send settings.
pub const TEMPLATE_SETTINGS: &str = "/_sim/template/settings";
/// `POST {"appid","url","timestamp","noncestr"|"nonceStr","signature"}`: check a JS-SDK
/// `wx.config` signature against the app's current jsapi_ticket.
pub const JSSDK_VERIFY: &str = "/_sim/jssdk/verify";
/// `GET ?appid=`: web-authorization counters `{codes_issued, codes_used, tokens}`.
pub const OAUTH: &str = "/_sim/oauth";
/// `POST {"base_openid"?}`: who logs in with `snsapi_base`.
pub const OAUTH_SETTINGS: &str = "/_sim/oauth/settings";
/// `GET ?appid=`: the QR codes issued to the app.
pub const QRCODES: &str = "/_sim/qrcodes";
/// `GET ?appid=` today's API calls and limits; `POST {"api","daily_limit"}` sets (a number) or
/// removes (`null`) the daily limit of one API.
pub const QUOTA: &str = "/_sim/quota";
/// `POST {"api","daily_limit"}`: the same as `POST` [`QUOTA`].
pub const QUOTA_SETTINGS: &str = "/_sim/quota/settings";
/// `GET ?appid=`: the app's stored files (temporary and permanent material, article images).
pub const MATERIAL: &str = "/_sim/material";
/// `GET` a stored file by the key of its URL (`url`, `video_url`, `down_url`): the bytes
/// (`mmbiz.qpic.cn` at WeChat; no access_token); 404 when unknown, deleted or expired.
pub const MMBIZ: &str = "/_sim/mmbiz/{key}";
/// `POST {"appid","msg_data_id"?,"index"?,"comments":[{"openid","content"}]}`: create an
/// article (comments open) if needed and add user comments; `GET ?appid=` the articles.
pub const COMMENTS: &str = "/_sim/comments";
/// `POST {"appid","fail":2|3|4}`: the app's next publish job submitted fails so; `GET ?appid=` the
/// publish jobs.
pub const PUBLISH: &str = "/_sim/publish";

/// The gateway's callback route for one app: `/wechat/<appid>`.
pub fn callback(appid: &str) -> String {
    format!("/wechat/{appid}")
}

/// The path of a stored file: [`MMBIZ`] with its key.
pub fn mmbiz(key: &str) -> String {
    MMBIZ.replace("{key}", key)
}
