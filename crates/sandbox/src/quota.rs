//! Request quotas of the sandbox: sliding windows (Lark OpenAPI and Lark
//! custom bots) and a token bucket (Slack incoming webhooks).
//!
//! This module only counts and answers "allowed or not, and when to retry";
//! it never builds an HTTP response and never reads the clock itself (the
//! caller passes `now`, so tests and the sandbox's virtual clock drive it).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaExceeded {
    /// The limit of the window that was breached (requests per window).
    pub limit: u32,
    /// Length of the breached window.
    pub window: Duration,
    /// Whole seconds (at least 1) until a request would be accepted again.
    pub reset_secs: u64,
}

/// One limit: at most `limit` accepted requests in any span of `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub limit: u32,
    pub window: Duration,
}

impl Window {
    pub fn per_second(limit: u32) -> Self {
        Self {
            limit,
            window: Duration::from_secs(1),
        }
    }

    pub fn per_minute(limit: u32) -> Self {
        Self {
            limit,
            window: Duration::from_secs(60),
        }
    }
}

/// Sliding-window limiter keyed by a string (e.g. `app_id + path`). A request
/// is accepted only if every window still has room; refused requests are not
/// counted, so a client that backs off gets its quota back on time.
#[derive(Debug)]
pub struct SlidingWindows {
    windows: Vec<Window>,
    longest: Duration,
    accepted: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// Keys idle for longer than this are dropped when the map grows large, so
/// arbitrary keys (e.g. random hook paths) cannot grow memory without bound.
const MAX_KEYS: usize = 4096;

impl SlidingWindows {
    pub fn new(windows: Vec<Window>) -> Self {
        let longest = windows
            .iter()
            .map(|w| w.window)
            .max()
            .unwrap_or(Duration::ZERO);
        Self {
            windows,
            longest,
            accepted: Mutex::new(HashMap::new()),
        }
    }

    /// Count one request for `key` at `now`, or say which window is full.
    pub fn try_acquire(&self, key: &str, now: Instant) -> Result<(), QuotaExceeded> {
        let mut map = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_KEYS && !map.contains_key(key) {
            let longest = self.longest;
            map.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < longest));
        }
        let queue = map.entry(key.to_owned()).or_default();
        while let Some(front) = queue.front() {
            if now.duration_since(*front) >= self.longest {
                queue.pop_front();
            } else {
                break;
            }
        }
        for w in &self.windows {
            if w.limit == 0 {
                return Err(QuotaExceeded {
                    limit: 0,
                    window: w.window,
                    reset_secs: w.window.as_secs().max(1),
                });
            }
            // Entries inside this window are a suffix of the queue.
            let in_window = queue
                .iter()
                .rev()
                .take_while(|t| now.duration_since(**t) < w.window)
                .count();
            if in_window >= w.limit as usize {
                // The request fits once the L-th most recent entry leaves the window.
                let pivot = queue[queue.len() - w.limit as usize];
                let free_at = pivot + w.window;
                let wait = free_at.saturating_duration_since(now);
                return Err(QuotaExceeded {
                    limit: w.limit,
                    window: w.window,
                    reset_secs: ceil_secs(wait),
                });
            }
        }
        queue.push_back(now);
        Ok(())
    }
}

/// Token bucket keyed by a string: `burst` requests at once, refilled at
/// `per_sec` tokens per second (Slack: "1 per second, short bursts allowed").
#[derive(Debug)]
pub struct TokenBucket {
    burst: f64,
    per_sec: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl TokenBucket {
    pub fn new(per_sec: f64, burst: u32) -> Self {
        Self {
            burst: f64::from(burst.max(1)),
            per_sec,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one token, or return the whole seconds to wait for the next one.
    pub fn try_acquire(&self, key: &str, now: Instant) -> Result<(), u64> {
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_KEYS && !map.contains_key(key) {
            let full_after = Duration::from_secs_f64(self.burst / self.per_sec.max(1e-9));
            map.retain(|_, (_, t)| now.duration_since(*t) < full_after);
        }
        let (tokens, last) = map.entry(key.to_owned()).or_insert((self.burst, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * self.per_sec).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else if self.per_sec <= 0.0 {
            Err(60)
        } else {
            let wait = (1.0 - *tokens) / self.per_sec;
            Err(ceil_secs(Duration::from_secs_f64(wait)))
        }
    }
}

fn ceil_secs(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_window_enforces_both_windows() {
        let q = SlidingWindows::new(vec![Window::per_second(5), Window::per_minute(8)]);
        let t0 = Instant::now();
        for _ in 0..5 {
            q.try_acquire("a", t0).unwrap();
        }
        let err = q.try_acquire("a", t0).unwrap_err();
        assert_eq!((err.limit, err.reset_secs), (5, 1));
        // Another key has its own quota.
        q.try_acquire("b", t0).unwrap();
        // One second later the per-second window is free again, but the minute
        // window only has 3 more.
        let t1 = t0 + Duration::from_millis(1000);
        for _ in 0..3 {
            q.try_acquire("a", t1).unwrap();
        }
        let err = q.try_acquire("a", t1).unwrap_err();
        assert_eq!(err.limit, 8);
        assert_eq!(err.reset_secs, 59);
        // After the minute the oldest entries have left.
        q.try_acquire("a", t0 + Duration::from_secs(60)).unwrap();
    }

    #[test]
    fn sliding_window_is_sliding_not_fixed() {
        let q = SlidingWindows::new(vec![Window::per_second(2)]);
        let t0 = Instant::now();
        q.try_acquire("k", t0).unwrap();
        q.try_acquire("k", t0 + Duration::from_millis(900)).unwrap();
        // 1.1 s: the first has left, the second is still inside.
        q.try_acquire("k", t0 + Duration::from_millis(1100))
            .unwrap();
        assert!(
            q.try_acquire("k", t0 + Duration::from_millis(1200))
                .is_err()
        );
    }

    #[test]
    fn token_bucket_allows_burst_then_refills() {
        let b = TokenBucket::new(1.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            b.try_acquire("p", t0).unwrap();
        }
        assert_eq!(b.try_acquire("p", t0), Err(1));
        b.try_acquire("p", t0 + Duration::from_millis(1000))
            .unwrap();
        assert!(
            b.try_acquire("p", t0 + Duration::from_millis(1100))
                .is_err()
        );
    }
}
