//! Pure decisions: how long a token lives in Redis, when to refresh, whether a forced refresh
//! fits the budget.

/// The most a Redis key's life is kept shorter than WeChat's `expires_in`.
pub const MAX_MARGIN_SECS: u64 = 300;

/// The Redis TTL (ms) of a credential WeChat issued with `expires_in` seconds: shorter by a
/// margin of `min(300 s, expires_in / 10)`, so nobody is handed a token in its last moments;
/// at least 1 s.
pub fn key_ttl_ms(expires_in: u64) -> u64 {
    let margin = MAX_MARGIN_SECS.min(expires_in / 10);
    expires_in.saturating_sub(margin).max(1) * 1000
}

/// True when a key with this PTTL (Redis: -2 missing, -1 no expiry) must be refreshed now.
pub fn needs_refresh(pttl_ms: i64, refresh_ahead_ms: u64) -> bool {
    pttl_ms < 0 || (pttl_ms as u64) < refresh_ahead_ms
}

/// Whether one more `stable_token` `force_refresh` fits the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForceDecision {
    /// Go ahead.
    Allow,
    /// `used` of `limit` forced refreshes are spent today (UTC).
    DailyLimit {
        /// Spent today.
        used: u64,
        /// Allowed per day.
        limit: u64,
    },
    /// The last forced refresh was too recent; `wait_ms` more to go.
    TooSoon {
        /// How long until one is allowed.
        wait_ms: u64,
    },
}

impl ForceDecision {
    /// Why a refresh is refused, for the `throttled` answer; `None` for [`ForceDecision::Allow`].
    pub fn refusal(self) -> Option<String> {
        match self {
            ForceDecision::Allow => None,
            ForceDecision::DailyLimit { used, limit } => Some(format!(
                "force_refresh daily limit reached ({used}/{limit} used today)"
            )),
            ForceDecision::TooSoon { wait_ms } => Some(format!(
                "force_refresh too soon after the last one (retry in {wait_ms} ms)"
            )),
        }
    }
}

/// Decides a forced refresh from today's count, the last one's time (unix ms) and the config.
pub fn force_decision(
    used_today: u64,
    daily_limit: u64,
    last_ms: Option<i64>,
    now_ms: i64,
    min_interval_ms: u64,
) -> ForceDecision {
    if used_today >= daily_limit {
        return ForceDecision::DailyLimit {
            used: used_today,
            limit: daily_limit,
        };
    }
    if let Some(last) = last_ms {
        let elapsed = now_ms.saturating_sub(last).max(0) as u64;
        if elapsed < min_interval_ms {
            return ForceDecision::TooSoon {
                wait_ms: min_interval_ms - elapsed,
            };
        }
    }
    ForceDecision::Allow
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_keeps_a_margin() {
        assert_eq!(key_ttl_ms(7200), 6900 * 1000);
        assert_eq!(key_ttl_ms(1000), 900 * 1000);
        assert_eq!(key_ttl_ms(300), 270 * 1000);
        assert_eq!(key_ttl_ms(5), 5 * 1000);
        assert_eq!(key_ttl_ms(0), 1000);
        for expires_in in [1, 10, 299, 3000, 7200, 86_400] {
            let ttl = key_ttl_ms(expires_in);
            assert!(ttl <= expires_in * 1000 && ttl > 0, "{expires_in}");
        }
    }

    #[test]
    fn refresh_when_missing_unbounded_or_near_expiry() {
        assert!(needs_refresh(-2, 600_000));
        assert!(needs_refresh(-1, 600_000));
        assert!(needs_refresh(599_999, 600_000));
        assert!(!needs_refresh(600_000, 600_000));
        assert!(!needs_refresh(6_900_000, 600_000));
    }

    #[test]
    fn force_budget() {
        let min = 30_000;
        assert_eq!(
            force_decision(0, 20, None, 1_000, min),
            ForceDecision::Allow
        );
        assert_eq!(
            force_decision(19, 20, Some(0), 30_000, min),
            ForceDecision::Allow
        );
        assert_eq!(
            force_decision(20, 20, None, 0, min),
            ForceDecision::DailyLimit {
                used: 20,
                limit: 20
            }
        );
        assert_eq!(
            force_decision(3, 20, Some(10_000), 25_000, min),
            ForceDecision::TooSoon { wait_ms: 15_000 }
        );
        assert_eq!(
            force_decision(0, 0, None, 0, min),
            ForceDecision::DailyLimit { used: 0, limit: 0 }
        );
        // A clock step backwards counts as "just now", never as a free pass.
        assert_eq!(
            force_decision(1, 20, Some(50_000), 40_000, min),
            ForceDecision::TooSoon { wait_ms: 30_000 }
        );
        assert!(ForceDecision::Allow.refusal().is_none());
        assert!(
            ForceDecision::TooSoon { wait_ms: 1 }
                .refusal()
                .unwrap()
                .contains("too soon")
        );
    }
}
