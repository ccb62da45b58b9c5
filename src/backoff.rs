//! Exponential backoff with jitter, for retrying events whose lookups failed and emails whose
//! relay was unavailable. Jitter spreads a burst of failures so they do not retry in lockstep.

use std::time::Duration;

/// The delay before retry number `attempt` (1 for the first retry): `base` doubled per attempt,
/// at most `cap`, then scaled by a random factor between 0.5 and 1.
pub fn delay(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let exponential = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = exponential.min(cap);
    let mut byte = [0u8; 1];
    let random = getrandom::fill(&mut byte).map(|_| byte[0]).unwrap_or(255);
    capped.mul_f64(0.5 + f64::from(random) / 510.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_and_stays_within_jitter() {
        let (base, cap) = (Duration::from_secs(30), Duration::from_secs(3600));
        for _ in 0..200 {
            let first = delay(1, base, cap);
            assert!(
                first >= Duration::from_secs(15) && first <= Duration::from_secs(30),
                "{first:?}"
            );
            let third = delay(3, base, cap);
            assert!(
                third >= Duration::from_secs(60) && third <= Duration::from_secs(120),
                "{third:?}"
            );
            let late = delay(40, base, cap);
            assert!(late >= Duration::from_secs(1800) && late <= cap, "{late:?}");
        }
    }
}
