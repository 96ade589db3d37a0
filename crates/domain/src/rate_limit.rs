//! Keyed rate limits (GCRA, via governor) on the service's own clock, so
//! that tests can move time instead of sleeping. Used per caller by the
//! transport and per session by Refresh.
use std::hash::Hash;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock as GovernorClock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::clock::SharedClock;

/// `count` requests per `per`, with bursts of up to `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub per: Duration,
}

#[derive(Clone)]
struct ServiceClock(SharedClock);

impl GovernorClock for ServiceClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        let millis = u64::try_from(self.0.now_millis()).unwrap_or(0);
        Nanos::from(millis.saturating_mul(1_000_000))
    }
}

pub struct KeyedLimiter<K: Hash + Eq + Clone> {
    limiter: RateLimiter<K, DashMapStateStore<K>, ServiceClock, NoOpMiddleware<Nanos>>,
    clock: ServiceClock,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// `rate.count` per `rate.per`, in bursts of up to `rate.count`.
    pub fn new(rate: Rate, clock: SharedClock) -> Self {
        let clock = ServiceClock(clock);
        let quota = Quota::with_period(rate.per / rate.count.get())
            .unwrap_or_else(|| Quota::per_second(rate.count))
            .allow_burst(rate.count);
        Self {
            limiter: RateLimiter::dashmap_with_clock(quota, clock.clone()),
            clock,
        }
    }

    /// Counts one request of `key`: `Err` tells how long until one would pass.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets keys whose state is back to "never seen", to bound memory.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;

    #[test]
    fn bursts_then_waits_on_the_service_clock() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let limiter = KeyedLimiter::new(
            Rate {
                count: NonZeroU32::new(3).unwrap(),
                per: Duration::from_secs(60),
            },
            clock.clone(),
        );
        for _ in 0..3 {
            limiter.check(&"a").unwrap();
        }
        let wait = limiter.check(&"a").unwrap_err();
        assert!(
            wait > Duration::from_secs(19) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        limiter.check(&"b").expect("keys are independent");
        clock.advance(Duration::from_secs(20));
        limiter
            .check(&"a")
            .expect("one more after a third of a minute");
        clock.advance(Duration::from_secs(3600));
        limiter.forget_idle();
        assert_eq!(limiter.len(), 0);
    }
}
