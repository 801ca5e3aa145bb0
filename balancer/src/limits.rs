//! Per-address rate limits, in front of everything: signups, logins, and requests of
//! any kind. Each is a token bucket per client address (an IPv6 client by its /64, which
//! one holder has whole); over the limit, the answer is 429 with how long to wait.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Signup,
    Login,
    Any,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Signup => "signup",
            Class::Login => "login",
            Class::Any => "request",
        }
    }
}

/// `per_period` requests per `period`, as a burst of that many refilled evenly.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub per_period: u32,
    pub period: Duration,
}

impl Rate {
    fn refill_per_sec(self) -> f64 {
        f64::from(self.per_period) / self.period.as_secs_f64()
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

pub struct RateLimits {
    signup: Option<Rate>,
    login: Option<Rate>,
    any: Option<Rate>,
    buckets: Mutex<HashMap<(Class, IpAddr), Bucket>>,
}

/// The key a client address is limited by.
fn limited_as(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

impl RateLimits {
    /// `None` for a class means no limit.
    pub fn new(signup: Option<Rate>, login: Option<Rate>, any: Option<Rate>) -> Self {
        Self {
            signup,
            login,
            any,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn rate(&self, class: Class) -> Option<Rate> {
        match class {
            Class::Signup => self.signup,
            Class::Login => self.login,
            Class::Any => self.any,
        }
    }

    /// Takes one request of `class` from `ip`'s bucket; `Err` says how long until it
    /// may come.
    pub fn take(&self, class: Class, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let Some(rate) = self.rate(class) else {
            return Ok(());
        };
        let capacity = f64::from(rate.per_period);
        let refill = rate.refill_per_sec();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry((class, limited_as(ip))).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * refill).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / refill))
        }
    }

    /// Forgets buckets that have filled up again (clients that went quiet): the map
    /// holds only addresses active lately.
    pub fn prune(&self, now: Instant) -> usize {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let before = buckets.len();
        buckets.retain(|(class, _), bucket| {
            self.rate(*class).is_some_and(|rate| {
                let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
                bucket.tokens + elapsed * rate.refill_per_sec() < f64::from(rate.per_period)
            })
        });
        before - buckets.len()
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn a_burst_then_the_rate_and_each_address_on_its_own() {
        let limits = RateLimits::new(
            Some(Rate {
                per_period: 3,
                period: Duration::from_secs(60),
            }),
            None,
            None,
        );
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limits.take(Class::Signup, ip("192.0.2.1"), t0).is_ok());
        }
        let wait = limits
            .take(Class::Signup, ip("192.0.2.1"), t0)
            .expect_err("over the burst");
        assert!((19..=20).contains(&wait.as_secs()), "{wait:?}");
        assert!(
            limits.take(Class::Signup, ip("192.0.2.2"), t0).is_ok(),
            "another address"
        );
        assert!(
            limits.take(Class::Login, ip("192.0.2.1"), t0).is_ok(),
            "no login limit"
        );
        let later = t0 + Duration::from_secs(20);
        assert!(
            limits.take(Class::Signup, ip("192.0.2.1"), later).is_ok(),
            "refilled"
        );
        assert!(limits.take(Class::Signup, ip("192.0.2.1"), later).is_err());
    }

    #[test]
    fn an_ipv6_client_is_limited_by_its_64_and_quiet_clients_are_forgotten() {
        let limits = RateLimits::new(
            None,
            None,
            Some(Rate {
                per_period: 1,
                period: Duration::from_secs(1),
            }),
        );
        let t0 = Instant::now();
        assert!(limits.take(Class::Any, ip("2001:db8:1:2::1"), t0).is_ok());
        assert!(
            limits
                .take(Class::Any, ip("2001:db8:1:2:ffff::9"), t0)
                .is_err(),
            "the same /64"
        );
        assert!(limits.take(Class::Any, ip("2001:db8:1:3::1"), t0).is_ok());
        assert!(limits.take(Class::Any, ip("::ffff:192.0.2.7"), t0).is_ok());
        assert!(
            limits.take(Class::Any, ip("192.0.2.7"), t0).is_err(),
            "mapped v4 is v4"
        );
        assert_eq!(limits.tracked(), 3);
        assert_eq!(limits.prune(t0 + Duration::from_secs(5)), 3);
        assert_eq!(limits.tracked(), 0);
    }
}
