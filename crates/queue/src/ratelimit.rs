//! Rate limits shared by every worker on every host: GCRA in one Lua script
//! that reads the Redis server clock (`TIME`), so worker clocks never matter.
//!
//! A key (`lark.api`) has one or more limits (`50 per 1s`, `1000 per 1m`);
//! a request is admitted only if every limit admits it, and then all are
//! charged at once. A limit of `limit` per `per` with `burst` b admits b at
//! once and then one every `per / limit`: in any window of length T it admits
//! at most `b + T * limit / per`. With `burst = 1` requests are spaced evenly.
//! When denied, the script returns how long until the same request would be
//! admitted, and charges nothing.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use crate::redis_pool::Pool;
use deadpool_redis::redis::Script;

use crate::config::LimitSpec;

#[derive(Debug, thiserror::Error)]
pub enum RateLimitError {
    #[error("no rate limit is configured for key {0:?}")]
    UnknownKey(String),
    #[error("rate limiter unavailable (redis): {0}")]
    Redis(String),
}

/// The limiter's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Denied; the same request would be admitted after this long.
    Wait(Duration),
}

static GCRA: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
-- KEYS[i]: one key per limit. ARGV[1]: cost. ARGV[2i], ARGV[2i+1]:
-- emission interval and burst offset of limit i, in microseconds.
local t = redis.call('TIME')
-- Re-based to 2017-01-01 so microseconds stay exact in a double.
local now = (tonumber(t[1]) - 1483228800) * 1000000 + tonumber(t[2])
local cost = tonumber(ARGV[1])
local wait = 0
local new_tats = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i])
  local burst_offset = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval * cost
  local allow_at = new_tat - burst_offset
  if allow_at > now and allow_at - now > wait then wait = allow_at - now end
  new_tats[i] = new_tat
end
if wait > 0 then return {0, wait} end
for i, key in ipairs(KEYS) do
  local ttl_ms = math.ceil((new_tats[i] - now) / 1000) + 1
  redis.call('SET', key, string.format('%.0f', new_tats[i]), 'PX', ttl_ms)
end
return {1, 0}
"#,
    )
});

/// Checks and charges rate limits in Redis.
#[derive(Clone)]
pub struct RateLimiter {
    pool: Pool,
    namespace: String,
    limits: BTreeMap<String, Vec<LimitSpec>>,
    fail_open: bool,
}

impl RateLimiter {
    pub fn new(
        pool: Pool,
        namespace: &str,
        limits: BTreeMap<String, Vec<LimitSpec>>,
        fail_open: bool,
    ) -> RateLimiter {
        RateLimiter {
            pool,
            namespace: namespace.to_string(),
            limits,
            fail_open,
        }
    }

    pub fn limits(&self, key: &str) -> Option<&[LimitSpec]> {
        self.limits.get(key).map(|v| v.as_slice())
    }

    /// Ask for one unit of `key`.
    pub async fn check(&self, key: &str) -> Result<Decision, RateLimitError> {
        let limits = self
            .limits
            .get(key)
            .ok_or_else(|| RateLimitError::UnknownKey(key.to_string()))?;
        match self.eval(key, limits).await {
            Ok(d) => Ok(d),
            Err(e) if self.fail_open => {
                tracing::warn!(key, error = %e, "rate limiter unavailable; admitting (fail_open)");
                Ok(Decision::Allowed)
            }
            Err(e) => Err(e),
        }
    }

    async fn eval(&self, key: &str, limits: &[LimitSpec]) -> Result<Decision, RateLimitError> {
        let mut inv = GCRA.prepare_invoke();
        for i in 0..limits.len() {
            // The hash tag keeps a key's limits in one Redis Cluster slot.
            inv.key(format!("{}:rl:{{{key}}}:{i}", self.namespace));
        }
        inv.arg(1);
        for l in limits {
            let interval_us = (l.per.0.as_micros() / u128::from(l.limit)).max(1) as u64;
            inv.arg(interval_us).arg(interval_us * u64::from(l.burst));
        }
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(|e| RateLimitError::Redis(e.to_string()))?;
        let (allowed, wait_us): (i64, i64) = inv
            .invoke_async(&mut conn)
            .await
            .map_err(|e| RateLimitError::Redis(e.to_string()))?;
        Ok(if allowed == 1 {
            Decision::Allowed
        } else {
            Decision::Wait(Duration::from_micros(wait_us.max(1) as u64))
        })
    }

    /// Wait until `key` admits one request, sleeping for the returned waits,
    /// for at most `max_wait` in all. When Redis is down (and not
    /// `fail_open`), keeps trying with backoff within the same budget.
    /// Returns the wait still needed if the budget ran out.
    pub async fn acquire(&self, key: &str, max_wait: Duration) -> Result<(), AcquireError> {
        let start = tokio::time::Instant::now();
        let mut redis_backoff = Duration::from_millis(50);
        loop {
            let spent = start.elapsed();
            match self.check(key).await {
                Ok(Decision::Allowed) => return Ok(()),
                Ok(Decision::Wait(w)) => {
                    if spent + w > max_wait {
                        return Err(AcquireError::TooLong(w));
                    }
                    tokio::time::sleep(w).await;
                }
                Err(RateLimitError::UnknownKey(k)) => return Err(AcquireError::UnknownKey(k)),
                Err(RateLimitError::Redis(e)) => {
                    if spent + redis_backoff > max_wait {
                        return Err(AcquireError::Unavailable(e));
                    }
                    tokio::time::sleep(redis_backoff).await;
                    redis_backoff = (redis_backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

/// Why [`RateLimiter::acquire`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    #[error("rate limited: next slot in {0:?}")]
    TooLong(Duration),
    #[error("no rate limit is configured for key {0:?}")]
    UnknownKey(String),
    #[error("rate limiter unavailable (redis): {0}")]
    Unavailable(String),
}
