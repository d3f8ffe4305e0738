//! Per-address rate limits: one keyed GCRA limiter (the `governor` crate) per protected
//! endpoint family. IPv6 clients are keyed by their /64, since one host usually holds the whole
//! prefix and could otherwise step around its limit.

use crate::config::{FileRateLimits, RateLimit};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::net::IpAddr;
use std::num::NonZeroU32;

/// A refusal: try again after this many seconds (at least 1, for `Retry-After`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after_secs: u64,
}

/// One limit; `None` inside when it is turned off (`per_minute = 0`).
#[derive(Debug)]
pub struct Limiter {
    name: &'static str,
    inner: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl Limiter {
    pub fn new(name: &'static str, limit: RateLimit) -> Self {
        let inner = NonZeroU32::new(limit.per_minute).map(|rate| {
            let burst = NonZeroU32::new(limit.burst).unwrap_or(rate);
            DefaultKeyedRateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst))
        });
        Limiter { name, inner }
    }

    /// The label this limit has in metrics and logs.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Takes one request's worth from `ip`'s allowance.
    pub fn check(&self, ip: IpAddr) -> Result<(), Throttled> {
        let Some(limiter) = &self.inner else { return Ok(()) };
        limiter.check_key(&key(ip)).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Throttled { retry_after_secs: (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1) }
        })
    }

    /// Forgets addresses whose allowance is full again, so the table stays bounded.
    pub fn purge(&self) {
        if let Some(l) = &self.inner {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut seg = v6.segments();
            seg[4..].fill(0);
            IpAddr::from(seg)
        }
        v4 => v4,
    }
}

/// The limits of one broker instance (in memory: a limit per instance, not per cluster).
#[derive(Debug)]
pub struct RateLimits {
    pub token: Limiter,
    pub acs: Limiter,
    /// For the admin sign-in form (see `web::rate_limited`).
    pub admin_login: Limiter,
}

impl RateLimits {
    pub fn new(cfg: &FileRateLimits) -> Self {
        RateLimits {
            token: Limiter::new("token", cfg.token),
            acs: Limiter::new("acs", cfg.acs),
            admin_login: Limiter::new("admin_login", cfg.admin_login),
        }
    }

    pub fn purge(&self) {
        self.token.purge();
        self.acs.purge();
        self.admin_login.purge();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refused_per_address() {
        let l = Limiter::new("t", RateLimit { per_minute: 1, burst: 2 });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(l.check(a).is_ok());
        assert!(l.check(a).is_ok());
        let t = l.check(a).unwrap_err();
        assert!(t.retry_after_secs >= 1 && t.retry_after_secs <= 60, "{t:?}");
        assert!(l.check(b).is_ok(), "another address has its own allowance");
    }

    #[test]
    fn ipv6_keyed_by_prefix_and_off_means_off() {
        let l = Limiter::new("t", RateLimit { per_minute: 1, burst: 1 });
        assert!(l.check("2001:db8:1:2::1".parse().unwrap()).is_ok());
        assert!(l.check("2001:db8:1:2::ffff".parse().unwrap()).is_err());
        assert!(l.check("2001:db8:1:3::1".parse().unwrap()).is_ok());
        let off = Limiter::new("t", RateLimit { per_minute: 0, burst: 0 });
        for _ in 0..100 {
            assert!(off.check("192.0.2.1".parse().unwrap()).is_ok());
        }
    }
}
