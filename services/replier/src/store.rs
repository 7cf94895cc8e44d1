//! The rules of every app: the rules file (read once at start) overlaid by run-time rules kept
//! in Redis (`keys::rules`, a hash of id → rule JSON, with `keys::rules_version` bumped on every
//! change), compiled into one [`RuleSet`] per app and swapped in whole on reload.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use wxoa_rules::{Rule, RuleSet};
use wxoa_runtime::Config;
use wxoa_runtime::connect::RedisConn;
use wxoa_wire::names::keys;

use crate::ReplierError;

/// Where a rule comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The rules file (`replier.rules_file`), read at start.
    File,
    /// Stored in Redis at run time (CLI, request API).
    Runtime,
}

/// The compiled rules of one app and where each came from.
pub struct AppRules {
    /// The compiled set.
    pub set: RuleSet,
    /// Ids of the run-time rules.
    pub runtime: HashSet<String>,
    /// The `keys::rules_version` it was built from.
    pub version: i64,
}

impl AppRules {
    /// The source of the rule `id`.
    pub fn source(&self, id: &str) -> Source {
        if self.runtime.contains(id) {
            Source::Runtime
        } else {
            Source::File
        }
    }
}

/// Every app's rules, reloadable.
pub struct Store {
    redis: RedisConn,
    key_prefix: String,
    file: Vec<Rule>,
    apps: HashMap<String, RwLock<Arc<AppRules>>>,
}

impl Store {
    /// Reads and checks the rules file (a bad file stops the start: a bad rule never reaches
    /// production) and prepares every configured app with its file rules.
    pub fn new(config: &Config, redis: RedisConn) -> Result<Store, ReplierError> {
        let file = match &config.replier.rules_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ReplierError::RulesFile {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
                wxoa_rules::parse_toml(&text)
                    .map_err(|e| ReplierError::RulesFile {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    })?
                    .rules
            }
            None => Vec::new(),
        };
        let mut apps = HashMap::new();
        for app in &config.apps {
            let set = RuleSet::compile(file_rules(&file, &app.appid))?;
            let rules = AppRules {
                set,
                runtime: HashSet::new(),
                version: 0,
            };
            apps.insert(app.appid.clone(), RwLock::new(Arc::new(rules)));
        }
        Ok(Store {
            redis,
            key_prefix: config.redis.key_prefix.clone(),
            file,
            apps,
        })
    }

    /// The appids served.
    pub fn app_ids(&self) -> impl Iterator<Item = &str> {
        self.apps.keys().map(String::as_str)
    }

    /// True when `app_id` is configured.
    pub fn serves(&self, app_id: &str) -> bool {
        self.apps.contains_key(app_id)
    }

    /// The current rules of `app_id` (`None` for an app this deployment does not serve).
    pub fn get(&self, app_id: &str) -> Option<Arc<AppRules>> {
        self.apps
            .get(app_id)
            .map(|slot| slot.read().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// Re-reads the run-time rules of `app_id` from Redis and swaps in the new set. A stored rule
    /// that no longer compiles is logged and skipped; the rest still apply.
    pub async fn reload(&self, app_id: &str) -> Result<Arc<AppRules>, ReplierError> {
        let slot = self
            .apps
            .get(app_id)
            .ok_or_else(|| ReplierError::NotFound(format!("unknown app {app_id}")))?;
        let (version, runtime) = self.read_runtime(app_id).await?;
        let runtime_ids = runtime.iter().map(|r| r.id.clone()).collect();
        let merged = wxoa_rules::merge(file_rules(&self.file, app_id), runtime);
        let set = match RuleSet::compile(merged.clone()) {
            Ok(set) => set,
            Err(e) => {
                tracing::error!(app_id, error = %e, "stored rules do not compile; skipping the bad ones");
                RuleSet::compile(
                    merged
                        .into_iter()
                        .filter(|r| RuleSet::compile(vec![r.clone()]).is_ok())
                        .collect(),
                )?
            }
        };
        let rules = Arc::new(AppRules {
            set,
            runtime: runtime_ids,
            version,
        });
        *slot.write().unwrap_or_else(|p| p.into_inner()) = rules.clone();
        Ok(rules)
    }

    /// Reloads every app; failures are logged.
    pub async fn reload_all(&self) {
        for app_id in self.apps.keys() {
            if let Err(e) = self.reload(app_id).await {
                tracing::warn!(app_id, error = %e, "reloading rules failed");
            }
        }
    }

    /// Validates `rule` against the app's other rules and stores it as a run-time rule.
    /// Returns whether it is new and the new version.
    pub async fn put(&self, app_id: &str, mut rule: Rule) -> Result<(bool, i64), ReplierError> {
        let current = self
            .get(app_id)
            .ok_or_else(|| ReplierError::NotFound(format!("unknown app {app_id}")))?;
        match rule.app.as_deref() {
            Some(other) if other != app_id => {
                return Err(ReplierError::Invalid(format!(
                    "rule `{}` names app {other}, not {app_id}",
                    rule.id
                )));
            }
            _ => rule.app = None,
        }
        rule.validate()?;
        // The whole set must still compile with it (e.g. no clash the set would refuse).
        let mut others: Vec<Rule> = current
            .set
            .rules()
            .iter()
            .filter(|r| r.id != rule.id)
            .cloned()
            .collect();
        others.push(rule.clone());
        RuleSet::compile(others)?;
        let json = serde_json::to_string(&rule)
            .map_err(|e| ReplierError::Invalid(format!("encoding rule: {e}")))?;
        let mut redis = self.redis.clone();
        let created: i64 = redis
            .hset(keys::rules(&self.key_prefix, app_id), &rule.id, json)
            .await?;
        let version: i64 = redis
            .incr(keys::rules_version(&self.key_prefix, app_id), 1)
            .await?;
        Ok((created == 1, version))
    }

    /// Removes the run-time rule `id`. Returns the new version.
    pub async fn delete(&self, app_id: &str, id: &str) -> Result<i64, ReplierError> {
        let current = self
            .get(app_id)
            .ok_or_else(|| ReplierError::NotFound(format!("unknown app {app_id}")))?;
        let mut redis = self.redis.clone();
        let removed: i64 = redis
            .hdel(keys::rules(&self.key_prefix, app_id), id)
            .await?;
        if removed == 0 {
            return Err(ReplierError::NotFound(
                if current.set.rules().iter().any(|r| r.id == id) {
                    format!(
                        "rule `{id}` comes from the rules file; mask it with a run-time rule of the same id and enabled = false"
                    )
                } else {
                    format!("no rule `{id}` for app {app_id}")
                },
            ));
        }
        Ok(redis
            .incr(keys::rules_version(&self.key_prefix, app_id), 1)
            .await?)
    }

    async fn read_runtime(&self, app_id: &str) -> Result<(i64, Vec<Rule>), ReplierError> {
        let mut redis = self.redis.clone();
        let (version, stored): (Option<i64>, HashMap<String, String>) = redis::pipe()
            .get(keys::rules_version(&self.key_prefix, app_id))
            .hgetall(keys::rules(&self.key_prefix, app_id))
            .query_async(&mut redis)
            .await?;
        let mut rules = Vec::with_capacity(stored.len());
        for (id, json) in stored {
            match serde_json::from_str::<Rule>(&json) {
                Ok(rule) => rules.push(rule),
                Err(e) => {
                    tracing::error!(app_id, id, error = %e, "a stored rule is not valid JSON; skipped")
                }
            }
        }
        rules.sort_by(|a, b| a.id.cmp(&b.id));
        Ok((version.unwrap_or(0), rules))
    }
}

/// The file's rules that apply to `app_id`.
fn file_rules(file: &[Rule], app_id: &str) -> Vec<Rule> {
    file.iter()
        .filter(|r| r.applies_to(app_id))
        .cloned()
        .collect()
}
