//! Verifies Stripe's `Stripe-Signature` header over the raw request body (Stripe's scheme `v1`:
//! HMAC-SHA256 keyed with the whole `whsec_…` string over `"{t}.{body}"`). Pure: the caller
//! passes the current time, so tests can use Stripe's official vectors.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing Stripe-Signature header")]
    Missing,
    #[error("garbled Stripe-Signature header: {0}")]
    Garbled(&'static str),
    #[error("Stripe-Signature header has no v1 signature (64 hex digits)")]
    NoV1,
    #[error("Stripe-Signature does not match the webhook signing secret of this integration")]
    Mismatch,
    #[error("Stripe-Signature timestamp is {age_secs} s old, beyond the {tolerance_secs} s tolerance (replayed request or wrong clock)")]
    Stale { age_secs: i64, tolerance_secs: u64 },
    #[error("Stripe-Signature timestamp is {ahead_secs} s in the future, beyond the {tolerance_secs} s tolerance (check this server's clock)")]
    Future {
        ahead_secs: i64,
        tolerance_secs: u64,
    },
}

impl SignatureError {
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Missing => "signature_missing",
            SignatureError::Garbled(_) => "signature_garbled",
            SignatureError::NoV1 => "signature_no_v1",
            SignatureError::Mismatch => "signature_mismatch",
            SignatureError::Stale { .. } => "signature_stale",
            SignatureError::Future { .. } => "signature_future",
        }
    }
}

/// Checks `header` against `payload` with any of `secrets` (several while a secret is being
/// rolled; empty ones are skipped). Returns the signed timestamp. A `tolerance_secs` of 0 disables the time check, as in
/// Stripe's libraries; unlike them, a timestamp too far in the future is refused as well.
pub fn verify(
    header: Option<&str>,
    payload: &[u8],
    secrets: &[&str],
    now: i64,
    tolerance_secs: u64,
) -> Result<i64, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let (timestamp, signatures) = parse_header(header)?;

    let mut matched = false;
    // An empty secret is no secret (anyone can compute that HMAC): an integration without one
    // (a Connect one, whose events come signed with the platform's secret) verifies nothing.
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(payload);
        // `verify_slice` compares in constant time; every candidate is checked so the time taken
        // does not depend on which one matched.
        for signature in &signatures {
            matched |= mac.clone().verify_slice(signature).is_ok();
        }
    }
    if !matched {
        return Err(SignatureError::Mismatch);
    }

    if tolerance_secs > 0 {
        // In i128 neither the difference nor the tolerance can overflow or saturate, so a
        // timestamp is never let through by a difference clamped to the tolerance.
        let age = i128::from(now) - i128::from(timestamp);
        let tolerance = i128::from(tolerance_secs);
        let secs = |d: i128| i64::try_from(d).unwrap_or(i64::MAX);
        if age > tolerance {
            return Err(SignatureError::Stale {
                age_secs: secs(age),
                tolerance_secs,
            });
        }
        if -age > tolerance {
            return Err(SignatureError::Future {
                ahead_secs: secs(-age),
                tolerance_secs,
            });
        }
    }
    Ok(timestamp)
}

/// Splits `t=…,v1=…,v1=…,v0=…` into the timestamp and the decoded `v1` signatures; other schemes
/// are ignored, as Stripe's libraries do.
fn parse_header(header: &str) -> Result<(i64, Vec<Vec<u8>>), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        let Some((key, value)) = item.trim().split_once('=') else {
            return Err(SignatureError::Garbled("an element is not key=value"));
        };
        match key {
            "t" => {
                let t = value
                    .parse::<i64>()
                    .map_err(|_| SignatureError::Garbled("timestamp t is not an integer"))?;
                timestamp.get_or_insert(t);
            }
            // A v1 that is not 64 hex digits can never match; it is skipped rather than refused
            // so that one odd entry does not hide a valid one beside it.
            "v1" => {
                if let Ok(bytes) = hex::decode(value) {
                    if bytes.len() == 32 {
                        signatures.push(bytes);
                    }
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Garbled("no timestamp t"))?;
    if signatures.is_empty() {
        return Err(SignatureError::NoV1);
    }
    Ok((timestamp, signatures))
}

/// Builds a `Stripe-Signature` header for `payload`, as Stripe does. Used by the tests, the
/// benchmarks and `preview` tooling to produce validly signed requests.
pub fn sign(payload: &[u8], secret: &str, timestamp: i64) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/stripe");

    struct Vector {
        payload: Vec<u8>,
        secrets: Vec<String>,
        timestamp: i64,
        header: String,
    }

    fn official_vectors() -> Vec<Vector> {
        let text = std::fs::read_to_string(format!("{FIXTURES}/signatures.json")).unwrap();
        let list: serde_json::Value = serde_json::from_str(&text).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .map(|v| Vector {
                payload: std::fs::read(format!(
                    "{FIXTURES}/{}",
                    v["payload_file"].as_str().unwrap()
                ))
                .unwrap(),
                secrets: v["secrets"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap().to_owned())
                    .collect(),
                timestamp: v["timestamp"].as_i64().unwrap(),
                header: v["stripe_signature"].as_str().unwrap().to_owned(),
            })
            .collect()
    }

    #[test]
    fn official_vectors_verify_with_each_secret_alone() {
        let vectors = official_vectors();
        assert_eq!(vectors.len(), 3);
        for v in &vectors {
            for secret in &v.secrets {
                assert_eq!(
                    verify(Some(&v.header), &v.payload, &[secret], v.timestamp, 300),
                    Ok(v.timestamp),
                    "{}",
                    v.header
                );
            }
        }
    }

    /// Issue 12: a Connect integration keeps an empty signing secret; a body signed with the
    /// empty key must not pass for it.
    #[test]
    fn an_empty_secret_verifies_nothing() {
        let payload = br#"{"id":"evt_1"}"#;
        let header = sign(payload, "", 1_700_000_000);
        assert_eq!(
            verify(Some(&header), payload, &[""], 1_700_000_000, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn our_signer_reproduces_the_official_headers() {
        for v in official_vectors().iter().filter(|v| v.secrets.len() == 1) {
            assert_eq!(sign(&v.payload, &v.secrets[0], v.timestamp), v.header);
        }
    }

    #[test]
    fn official_vectors_fail_when_anything_changes() {
        for v in official_vectors() {
            let secret = v.secrets[0].as_str();
            let mut body = v.payload.clone();
            body[10] ^= 1;
            assert_eq!(
                verify(Some(&v.header), &body, &[secret], v.timestamp, 300),
                Err(SignatureError::Mismatch)
            );
            assert_eq!(
                verify(
                    Some(&v.header),
                    &v.payload,
                    &["whsec_other"],
                    v.timestamp,
                    300
                ),
                Err(SignatureError::Mismatch)
            );
            // The timestamp is part of what is signed: moving it breaks the signature.
            let moved = v.header.replacen(
                &format!("t={}", v.timestamp),
                &format!("t={}", v.timestamp + 1),
                1,
            );
            assert_eq!(
                verify(Some(&moved), &v.payload, &[secret], v.timestamp, 300),
                Err(SignatureError::Mismatch)
            );
        }
    }

    #[test]
    fn timestamp_tolerance_both_ways_and_zero_disables_it() {
        let body = b"{}";
        let header = sign(body, "whsec_x", 1_000_000);
        assert_eq!(
            verify(Some(&header), body, &["whsec_x"], 1_000_300, 300),
            Ok(1_000_000)
        );
        assert_eq!(
            verify(Some(&header), body, &["whsec_x"], 1_000_301, 300),
            Err(SignatureError::Stale {
                age_secs: 301,
                tolerance_secs: 300
            })
        );
        assert_eq!(
            verify(Some(&header), body, &["whsec_x"], 999_699, 300),
            Err(SignatureError::Future {
                ahead_secs: 301,
                tolerance_secs: 300
            })
        );
        assert_eq!(
            verify(Some(&header), body, &["whsec_x"], 9_999_999, 0),
            Ok(1_000_000)
        );
    }

    #[test]
    fn extreme_timestamps_are_refused_without_overflow() {
        // Found by the `signature` fuzz target: the age saturated at i64::MIN, then was negated.
        let header = sign(b"{}", "whsec_x", i64::MAX);
        assert_eq!(
            verify(Some(&header), b"{}", &["whsec_x"], -2, 5),
            Err(SignatureError::Future {
                ahead_secs: i64::MAX,
                tolerance_secs: 5
            })
        );
        // Then the fuzzer found a tolerance beyond i64::MAX that let any timestamp through,
        // once both differences had saturated to it.
        let header = sign(b"{}", "whsec_x", 1_000_000);
        assert_eq!(
            verify(Some(&header), b"{}", &["whsec_x"], i64::MIN, 1 << 63),
            Err(SignatureError::Future {
                ahead_secs: i64::MAX,
                tolerance_secs: 1 << 63
            })
        );
        let header = sign(b"{}", "whsec_x", i64::MIN);
        assert_eq!(
            verify(Some(&header), b"{}", &["whsec_x"], 1, 5),
            Err(SignatureError::Stale {
                age_secs: i64::MAX,
                tolerance_secs: 5
            })
        );
    }

    #[test]
    fn header_shapes() {
        let body = b"{}";
        let good = sign(body, "whsec_x", 50);
        let v1 = good.split_once(",v1=").unwrap().1;
        let check = |h: &str| verify(Some(h), body, &["whsec_x"], 50, 300);

        assert_eq!(
            verify(None, body, &["whsec_x"], 50, 300),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            check(""),
            Err(SignatureError::Garbled("an element is not key=value"))
        );
        assert_eq!(
            check("garbage"),
            Err(SignatureError::Garbled("an element is not key=value"))
        );
        assert_eq!(
            check("t=abc,v1=00"),
            Err(SignatureError::Garbled("timestamp t is not an integer"))
        );
        assert_eq!(
            check(&format!("v1={v1}")),
            Err(SignatureError::Garbled("no timestamp t"))
        );
        assert_eq!(check("t=50"), Err(SignatureError::NoV1));
        assert_eq!(check(&format!("t=50,v0={v1}")), Err(SignatureError::NoV1));
        // Other schemes, odd v1 entries and spaces around elements do not hide a valid v1.
        assert_eq!(check(&format!("t=50, v0=abc, v1=zz, v1={v1}")), Ok(50));
        assert_eq!(
            check(&format!("t=50,v1={},v1={v1}", "0".repeat(64))),
            Ok(50)
        );
        assert_eq!(
            check(&format!("t=50,v1={}", "0".repeat(64))),
            Err(SignatureError::Mismatch)
        );
        // Upper-case hex is still the same signature.
        assert_eq!(check(&format!("t=50,v1={}", v1.to_uppercase())), Ok(50));
    }

    #[test]
    fn any_of_several_secrets_may_match() {
        let body = b"{\"id\":\"evt_1\"}";
        let header = sign(body, "whsec_new", 7);
        assert_eq!(
            verify(Some(&header), body, &["whsec_old", "whsec_new"], 7, 300),
            Ok(7)
        );
        assert_eq!(
            verify(Some(&header), body, &["whsec_old"], 7, 300),
            Err(SignatureError::Mismatch)
        );
    }
}
