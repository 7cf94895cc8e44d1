//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// wxoa: a backend platform for WeChat Official Accounts.
#[derive(Debug, Parser)]
#[command(name = "wxoa", version)]
pub(crate) struct Cli {
    /// TOML config file (else $WXOA_CONFIG; env WXOA__SECTION__KEY overrides either).
    #[arg(long, global = true)]
    pub(crate) config: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Everything in one process with the WeChat simulator and a demo app; starts local
    /// nats-server and redis-server when none answer.
    Dev,
    /// The callback gateway.
    Gateway,
    /// The token service.
    Token,
    /// The reply worker: auto-reply rules and customer-service sends.
    Replier,
    /// The user-sync worker: the follower directory, full syncs, user management.
    Usersync,
    /// Followers, tags, remarks and the blacklist of an app, through a running usersync's API.
    Users {
        /// The app (default: the first configured).
        #[arg(long, global = true)]
        app: Option<String>,
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// The public web service: OAuth2 web authorization and JS-SDK configs.
    Web,
    /// The operator HTTP API (menus, QR codes, quotas, token status).
    Admin,
    /// Custom menus of an app, through the operator API.
    Menu {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: MenuCommand,
    },
    /// QR codes, through the operator API.
    Qrcode {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: QrcodeCommand,
    },
    /// API calls today and WeChat's quotas, through the operator API.
    Quota {
        #[command(flatten)]
        api: ApiArgs,
        /// Also ask WeChat for this API's quota (`/cgi-bin/message/custom/send`).
        #[arg(long)]
        cgi_path: Option<String>,
        /// Reset today's WeChat quotas (clear_quota; 10 a month).
        #[arg(long)]
        clear: bool,
    },
    /// Material (media) of an app: uploads with a progress bar, downloads, lists, through the
    /// operator API.
    Material {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: MaterialCommand,
    },
    /// Drafts (news articles) of an app, through the operator API.
    Drafts {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: DraftsCommand,
    },
    /// Published articles of an app and publish jobs, through the operator API.
    Published {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: PublishedCommand,
    },
    /// Comments on an article of an app, through the operator API.
    Comments {
        #[command(flatten)]
        api: ApiArgs,
        /// The article's msg_data_id (from the mass send).
        #[arg(long, global = true)]
        msg_data_id: Option<u64>,
        /// The article's index in its news (0 = the first).
        #[arg(long, global = true, default_value_t = 0)]
        index: u32,
        #[command(subcommand)]
        command: CommentsCommand,
    },
    /// Token status of an app (never the token), through the operator API.
    TokenStatus {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The broadcast worker: mass sends, template and customer-service fan-outs as jobs.
    Broadcast,
    /// Broadcast jobs of an app, through a running broadcast worker's API.
    Broadcasts {
        /// The app (default: the first configured).
        #[arg(long, global = true)]
        app: Option<String>,
        #[command(subcommand)]
        command: BroadcastsCommand,
    },
    /// Auto-reply rules of an app, through a running replier's request API.
    Rules {
        /// The app (default: the first configured).
        #[arg(long, global = true)]
        app: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Send a customer-service message (a `send` command) and wait for its result.
    Send {
        /// The app (default: the first configured).
        #[arg(long)]
        app: Option<String>,
        /// The user's openid.
        #[arg(long)]
        openid: String,
        /// The text to send.
        #[arg(long, conflicts_with = "message")]
        text: Option<String>,
        /// The message as JSON (`{"type":"image","media_id":"..."}`, see docs/send-command.schema.json).
        #[arg(long)]
        message: Option<String>,
        /// Show "typing…" first.
        #[arg(long)]
        typing: bool,
        /// The command id (default: random); a repeated id is not sent again.
        #[arg(long)]
        id: Option<String>,
    },
    /// The WeChat simulator, or a command to a running one.
    Sim {
        #[command(subcommand)]
        command: Option<SimCommand>,
    },
    /// Print the effective configuration (secrets redacted).
    Config,
}

impl Command {
    /// The service name in traces (`wxoa-<name>`).
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Command::Dev => "dev",
            Command::Gateway => "gateway",
            Command::Token => "token",
            Command::Replier => "replier",
            Command::Usersync => "usersync",
            Command::Web => "web",
            Command::Admin => "admin",
            Command::Broadcast => "broadcast",
            Command::Sim { .. } => "sim",
            _ => "cli",
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum RulesCommand {
    /// Every rule in evaluation order, file and run-time.
    List,
    /// One rule.
    Get {
        /// The rule id.
        id: String,
    },
    /// Create or replace the run-time rules of a TOML file (`[[rules]]`, see docs/rules.md);
    /// the whole file is validated first and nothing is stored if any rule is invalid.
    Put {
        /// The TOML file.
        file: PathBuf,
    },
    /// Remove a run-time rule.
    Delete {
        /// The rule id.
        id: String,
    },
    /// Which rule answers a message, and the reply it renders.
    Test {
        /// A text message.
        #[arg(long)]
        text: Option<String>,
        /// An event (subscribe, CLICK, SCAN, ...).
        #[arg(long)]
        event: Option<String>,
        /// The event's EventKey.
        #[arg(long)]
        event_key: Option<String>,
        /// A message type (image, voice, location, ...).
        #[arg(long)]
        msg_type: Option<String>,
        /// Speech recognition text of a voice message.
        #[arg(long)]
        recognition: Option<String>,
    },
    /// Print the run-time rules as a TOML rules file.
    Export,
}

#[derive(Debug, Subcommand)]
pub(crate) enum UsersCommand {
    /// One user from the directory.
    Get {
        /// The openid.
        openid: String,
    },
    /// How many follow the account now.
    Count,
    /// The followers' count and digest (compare with the simulator's `/_sim/users`).
    Digest,
    /// Start a full sync (or join the one running) and show its progress until it ends.
    Sync {
        /// Return at once instead of following the progress.
        #[arg(long)]
        no_wait: bool,
    },
    /// The latest full sync's progress.
    SyncStatus,
    /// The user with a unionid.
    ByUnionid {
        /// The unionid.
        unionid: String,
    },
    /// Openids with a tag.
    ByTag {
        /// The tag id.
        tagid: i64,
    },
    /// The account's tags.
    Tags,
    /// Create a tag.
    TagCreate {
        /// Its name.
        name: String,
    },
    /// Rename a tag.
    TagUpdate {
        /// Its id.
        id: i64,
        /// The new name.
        name: String,
    },
    /// Delete a tag.
    TagDelete {
        /// Its id.
        id: i64,
    },
    /// Tag users.
    Tag {
        /// The tag id.
        tagid: i64,
        /// The openids.
        openids: Vec<String>,
    },
    /// Untag users.
    Untag {
        /// The tag id.
        tagid: i64,
        /// The openids.
        openids: Vec<String>,
    },
    /// Set a user's remark.
    Remark {
        /// The openid.
        openid: String,
        /// The remark (at most 30 characters).
        remark: String,
    },
    /// The blacklist (one page of WeChat's list).
    Blacklist {
        /// Start after this openid.
        #[arg(long, default_value = "")]
        begin: String,
    },
    /// Blacklist users.
    Block {
        /// The openids.
        openids: Vec<String>,
    },
    /// Take users off the blacklist.
    Unblock {
        /// The openids.
        openids: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum BroadcastsCommand {
    /// Start a job from a JSON file (docs/broadcasts.md) and show its progress until it ends.
    Start {
        /// The job (a broadcast command).
        file: PathBuf,
        /// Return at once instead of following the progress.
        #[arg(long)]
        no_wait: bool,
    },
    /// A job's progress.
    Status {
        /// The job id.
        id: String,
    },
    /// The recent jobs.
    List,
    /// Pause a job.
    Pause {
        /// The job id.
        id: String,
    },
    /// Resume a paused job.
    Resume {
        /// The job id.
        id: String,
    },
    /// Cancel a job.
    Cancel {
        /// The job id.
        id: String,
    },
    /// Mass and template management passed to WeChat (`mass_preview`, `speed_get`,
    /// `templates_list`, ...): the body is WeChat's JSON.
    Call {
        /// The verb.
        verb: String,
        /// WeChat's request body.
        #[arg(default_value = "{}")]
        body: String,
    },
}

/// Where the operator API is and how to call it.
#[derive(Debug, clap::Args)]
pub(crate) struct ApiArgs {
    /// The app (default: the first configured).
    #[arg(long, global = true)]
    pub(crate) app: Option<String>,
    /// The operator API's base URL.
    #[arg(
        long,
        global = true,
        env = "WXOA_API_URL",
        default_value = "http://127.0.0.1:8091"
    )]
    pub(crate) api_url: String,
    /// A bearer token of `api.tokens`.
    #[arg(long, global = true, env = "WXOA_API_TOKEN", hide_env_values = true)]
    pub(crate) api_token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum MaterialCommand {
    /// Upload a file: temporary (3 days) by default, `--permanent` for a permanent material.
    Upload {
        /// The file.
        file: PathBuf,
        /// image, voice, video or thumb.
        #[arg(long = "type")]
        kind: String,
        /// A permanent material.
        #[arg(long)]
        permanent: bool,
        /// A permanent video's title.
        #[arg(long)]
        title: Option<String>,
        /// A permanent video's introduction.
        #[arg(long)]
        introduction: Option<String>,
    },
    /// Upload an image for an article's content (jpg or png, 1 MB); prints its URL.
    Image {
        /// The file.
        file: PathBuf,
    },
    /// Download a material (`--temporary` for a temporary media) to a file, or print its JSON.
    Get {
        /// The media_id.
        media_id: String,
        /// A temporary media.
        #[arg(long)]
        temporary: bool,
        /// Where to write the file (default: the name WeChat gives, in the current directory).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Delete a permanent material.
    Delete {
        /// The media_id.
        media_id: String,
    },
    /// Permanent materials per type.
    Count,
    /// List permanent materials of one type.
    List {
        /// image, voice, video or news.
        #[arg(long = "type", default_value = "image")]
        kind: String,
        /// The first item.
        #[arg(long, default_value_t = 0)]
        offset: u32,
        /// How many (1..=20).
        #[arg(long, default_value_t = 20)]
        count: u32,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DraftsCommand {
    /// Add a draft from a JSON file `{"articles": [...]}`.
    Add {
        /// The file.
        file: PathBuf,
    },
    /// Print a draft.
    Get {
        /// The draft's media_id.
        media_id: String,
    },
    /// Delete a draft.
    Delete {
        /// The draft's media_id.
        media_id: String,
    },
    /// How many drafts there are.
    Count,
    /// List drafts.
    List {
        /// The first item.
        #[arg(long, default_value_t = 0)]
        offset: u32,
        /// How many (1..=20).
        #[arg(long, default_value_t = 20)]
        count: u32,
    },
    /// Publish a draft (it leaves the draft box once published).
    Publish {
        /// The draft's media_id.
        media_id: String,
        /// Wait for the job to end and print how it ended.
        #[arg(long)]
        wait: bool,
        /// How long `--wait` waits, in seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum PublishedCommand {
    /// List published messages, newest first.
    List {
        /// The first item.
        #[arg(long, default_value_t = 0)]
        offset: u32,
        /// How many (1..=20).
        #[arg(long, default_value_t = 20)]
        count: u32,
    },
    /// Print a published message's articles.
    Get {
        /// Its article_id.
        article_id: String,
    },
    /// Delete a published message, or one of its articles.
    Delete {
        /// Its article_id.
        article_id: String,
        /// Only this article (1-based); without it, every article.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        index: Option<u32>,
    },
    /// A publish job's status.
    Status {
        /// The publish_id `wxoa drafts publish` printed.
        publish_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum CommentsCommand {
    /// Open comments on the article.
    Open,
    /// Close comments on the article.
    Close,
    /// List comments, one page.
    List {
        /// The first comment.
        #[arg(long, default_value_t = 0)]
        begin: u32,
        /// How many (1..=50).
        #[arg(long, default_value_t = 50)]
        count: u32,
        /// all, normal or elected.
        #[arg(long = "type", default_value = "all")]
        kind: String,
    },
    /// Mark a comment as elected (shown to everyone).
    Elect {
        /// The user_comment_id.
        comment: u64,
    },
    /// Unmark an elected comment.
    Unelect {
        /// The user_comment_id.
        comment: u64,
    },
    /// Delete a comment.
    Delete {
        /// The user_comment_id.
        comment: u64,
    },
    /// Reply to a comment.
    Reply {
        /// The user_comment_id.
        comment: u64,
        /// The reply.
        content: String,
    },
    /// Delete the reply to a comment.
    DeleteReply {
        /// The user_comment_id.
        comment: u64,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum MenuCommand {
    /// Check a menu file (TOML or JSON, `[[button]]` …) against WeChat's rules and create it.
    Apply {
        /// The menu file.
        file: PathBuf,
    },
    /// Print the current menu.
    Get,
    /// Print the menu users see, also one set in WeChat's console.
    Current,
    /// Delete the menu.
    Delete,
}

#[derive(Debug, Subcommand)]
pub(crate) enum QrcodeCommand {
    /// Create a temporary or permanent code: its ticket, URL and image URL.
    Create {
        /// An integer scene.
        #[arg(long, conflicts_with = "scene_str")]
        scene_id: Option<u64>,
        /// A string scene.
        #[arg(long)]
        scene_str: Option<String>,
        /// Permanent instead of temporary.
        #[arg(long)]
        permanent: bool,
        /// A temporary code's life.
        #[arg(long)]
        expire_seconds: Option<u64>,
        /// Also save the code's image (a PNG) to this file.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum SimCommand {
    /// Serve the simulator (the default).
    Serve,
    /// Make the running simulator send a callback to the gateway, as WeChat would.
    Send {
        /// The simulator's base URL.
        #[arg(long, default_value = "http://127.0.0.1:9100")]
        sim: String,
        /// The app (default: the first configured, else the dev demo app).
        #[arg(long)]
        app: Option<String>,
        /// The sender's openid.
        #[arg(long, default_value = "o_demo_user")]
        from: String,
        /// Send a text message with this content.
        #[arg(long, conflicts_with = "event")]
        text: Option<String>,
        /// Send this event instead (subscribe, CLICK, ...).
        #[arg(long)]
        event: Option<String>,
        /// The event's EventKey.
        #[arg(long)]
        event_key: Option<String>,
        /// plain, compat or safe (default: safe when the app has an AES key).
        #[arg(long)]
        mode: Option<String>,
    },
    /// Print the simulator's call counts.
    Stats {
        /// The simulator's base URL.
        #[arg(long, default_value = "http://127.0.0.1:9100")]
        sim: String,
    },
}
