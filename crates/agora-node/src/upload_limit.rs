//! Per-caller rate limit on blob uploads: a GCRA bucket (governor) per caller IP address,
//! counted in KiB, so one caller cannot fill the node's disk budget or its blocking pool while
//! others wait.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

/// Callers remembered at most; past it, callers whose buckets are full again are forgotten.
const MAX_CALLERS: usize = 4096;

/// Why an upload was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Over the caller's rate: try again after this long.
    RetryAfter(Duration),
    /// Larger than the burst: it can never pass.
    TooLarge { burst_bytes: u64 },
}

/// The limiter of `POST /v1/blobs`.
pub struct UploadLimit {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
    burst_kib: u32,
}

impl UploadLimit {
    /// `mib_per_s` sustained and `burst_mib` at once, per caller (both at least 1).
    pub fn new(mib_per_s: u32, burst_mib: u32) -> UploadLimit {
        let kib = |mib: u32| NonZeroU32::new(mib.max(1).saturating_mul(1024)).expect("non-zero");
        let quota = Quota::per_second(kib(mib_per_s)).allow_burst(kib(burst_mib));
        UploadLimit {
            limiter: DefaultKeyedRateLimiter::keyed(quota),
            clock: DefaultClock::default(),
            burst_kib: kib(burst_mib).get(),
        }
    }

    /// Take `bytes` from `caller`'s bucket, or say when it may try again.
    pub fn check(&self, caller: IpAddr, bytes: usize) -> Result<(), Refusal> {
        if self.limiter.len() > MAX_CALLERS {
            self.limiter.retain_recent();
        }
        let kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .max(1);
        let n = NonZeroU32::new(kib).expect("at least 1");
        match self.limiter.check_key_n(&caller, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(Refusal::RetryAfter(
                not_until.wait_time_from(self.clock.now()),
            )),
            Err(_) => Err(Refusal::TooLarge {
                burst_bytes: u64::from(self.burst_kib) * 1024,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_caller_is_held_to_its_rate_and_others_are_not() {
        let limit = UploadLimit::new(1, 4);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        // The burst passes at once, then the caller waits about a second per MiB.
        for _ in 0..4 {
            limit.check(a, 1 << 20).unwrap();
        }
        match limit.check(a, 1 << 20) {
            Err(Refusal::RetryAfter(d)) => {
                assert!(
                    d > Duration::from_millis(500) && d <= Duration::from_secs(1),
                    "{d:?}"
                )
            }
            other => panic!("expected a retry, got {other:?}"),
        }
        // Another caller has its own bucket.
        limit.check(b, 4 << 20).unwrap();
        // More than the burst can never pass.
        assert_eq!(
            limit.check(b, 5 << 20),
            Err(Refusal::TooLarge {
                burst_bytes: 4 << 20
            })
        );
        // An empty upload still costs a little.
        assert!(matches!(limit.check(a, 0), Err(Refusal::RetryAfter(_))));
    }
}
