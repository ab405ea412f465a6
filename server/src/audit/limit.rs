//! Rate limits for audited failures from unauthenticated clients (bad API tokens, refused
//! enrollments): at most one event per client address, scope and minute, carrying the count
//! of attempts since the last one, so a flood cannot flood the log; and first-success
//! tracking for sign-ins.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

/// Interval between audited failures of one client address.
const FAILURE_EVERY_MS: i64 = 60_000;
/// Addresses remembered at most (oldest failures are forgotten first).
const MAX_TRACKED: usize = 4096;

/// Audited sign-ins and failures per scope and client address.
#[derive(Debug, Default)]
pub struct Limiter {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Addresses whose successful sign-in was audited.
    ok: HashMap<(&'static str, Option<IpAddr>), ()>,
    /// Per address: when the last failure was audited, attempts since.
    failed: HashMap<(&'static str, Option<IpAddr>), (i64, u64)>,
}

impl Limiter {
    /// Whether this success is the address's first since start.
    pub fn first_success(&self, scope: &'static str, ip: Option<IpAddr>) -> bool {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if g.ok.len() >= MAX_TRACKED {
            g.ok.clear();
        }
        g.ok.insert((scope, ip), ()).is_none()
    }

    /// Whether to audit this failure now; `Some(n)`: yes, with `n` attempts since the last.
    pub fn failure(&self, scope: &'static str, ip: Option<IpAddr>, now_ms: i64) -> Option<u64> {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if g.failed.len() >= MAX_TRACKED {
            g.failed
                .retain(|_, (at, _)| now_ms - *at < FAILURE_EVERY_MS);
        }
        match g.failed.get_mut(&(scope, ip)) {
            Some((at, n)) if now_ms - *at < FAILURE_EVERY_MS => {
                *n += 1;
                None
            }
            Some((at, n)) => {
                let attempts = *n + 1;
                (*at, *n) = (now_ms, 0);
                Some(attempts)
            }
            None => {
                g.failed.insert((scope, ip), (now_ms, 0));
                Some(1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_audited_once_a_minute_per_address_with_a_count() {
        let l = Limiter::default();
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        assert_eq!(l.failure("api", a, 0), Some(1));
        assert_eq!(l.failure("api", a, 1_000), None);
        assert_eq!(l.failure("api", a, 2_000), None);
        assert_eq!(l.failure("api", b, 2_000), Some(1));
        assert_eq!(l.failure("api", a, 60_000), Some(3));
        assert_eq!(l.failure("api", a, 60_001), None);
        assert!(l.first_success("api", a));
        assert!(!l.first_success("api", a));
        assert!(l.first_success("api", None));
        assert!(l.first_success("enroll", a));
        assert_eq!(l.failure("enroll", a, 1_000), Some(1));
    }
}
