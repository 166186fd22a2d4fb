//! What stands between a stranger and the login form: per-account and per-address
//! throttles with growing delays, and the login form's CSRF tokens, signed with a key
//! that every web server on the database shares (so a token only this server could
//! have issued is accepted, never a pair an attacker made up).

use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use nightshift_store::{Store, StoreError};
use sha2::Sha256;
use tokio::sync::OnceCell;

use crate::auth::{new_secret, same_secret};
use crate::throttle::{Throttle, ThrottlePolicy, Verdict};

/// How sign-ins are throttled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginThrottleSettings {
    /// Per user name (whether or not the user exists).
    pub account: ThrottlePolicy,
    /// Per client address.
    pub address: ThrottlePolicy,
}

impl Default for LoginThrottleSettings {
    fn default() -> Self {
        LoginThrottleSettings {
            account: ThrottlePolicy::ACCOUNT,
            address: ThrottlePolicy::ADDRESS,
        }
    }
}

/// How long a login form's CSRF token stays valid.
pub const LOGIN_CSRF_TTL: Duration = Duration::from_secs(3600);

/// The name of the shared key in the store's `web_keys`.
const LOGIN_CSRF_KEY: &str = "login-csrf";

/// The login throttles and the CSRF key of one web server; clones share them.
#[derive(Debug, Clone, Default)]
pub struct LoginGuard(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    accounts: Mutex<Throttle>,
    addresses: Mutex<Throttle>,
    csrf_key: OnceCell<String>,
}

/// A sign-in attempt let through (and counted as a failure): report its outcome with
/// [`LoginGuard::succeeded`] or [`LoginGuard::failed`].
#[derive(Debug)]
#[must_use]
pub struct Pass {
    account: String,
    address: Option<String>,
}

/// Why a sign-in attempt was refused before its password was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub retry_after: Duration,
    /// `"account"` or `"address"`: which throttle refused.
    pub by: &'static str,
    /// The first refusal of this wait (record it; later ones repeat it).
    pub first: bool,
}

/// The throttle key of a client address: the address, or its /64 for IPv6 (one host
/// usually holds a whole /64).
fn address_key(ip: &str) -> String {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Ok(IpAddr::V6(v6)) => v6.to_canonical().to_string(),
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Err(_) => ip.to_owned(),
    }
}

/// The throttle key of a user name: at most 256 bytes of it, so that long made-up names
/// cost no more memory than real ones.
fn account_key(username: &str) -> String {
    let mut end = username.len().min(256);
    while !username.is_char_boundary(end) {
        end -= 1;
    }
    username[..end].to_owned()
}

fn lock(throttle: &Mutex<Throttle>) -> std::sync::MutexGuard<'_, Throttle> {
    throttle.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LoginGuard {
    /// Lets a sign-in attempt through or refuses it; an attempt let through counts as a
    /// failure for its account and address until [`LoginGuard::succeeded`] says otherwise.
    pub fn admit(
        &self,
        settings: &LoginThrottleSettings,
        username: &str,
        ip: Option<&str>,
        now: Instant,
    ) -> Result<Pass, Refusal> {
        let address = ip.map(address_key);
        if let Some(address) = &address {
            let verdict = lock(&self.0.addresses).attempt(&settings.address, address, now);
            if let Verdict::Blocked { retry_after, first } = verdict {
                return Err(Refusal {
                    retry_after,
                    by: "address",
                    first,
                });
            }
        }
        let account = account_key(username);
        let verdict = lock(&self.0.accounts).attempt(&settings.account, &account, now);
        if let Verdict::Blocked { retry_after, first } = verdict {
            if let Some(address) = &address {
                lock(&self.0.addresses).forgive(&settings.address, address);
            }
            return Err(Refusal {
                retry_after,
                by: "account",
                first,
            });
        }
        Ok(Pass { account, address })
    }

    /// The password was wrong: the waits this failure earned run from now.
    pub fn failed(&self, settings: &LoginThrottleSettings, pass: Pass, now: Instant) {
        lock(&self.0.accounts).failed(&settings.account, &pass.account, now);
        if let Some(address) = &pass.address {
            lock(&self.0.addresses).failed(&settings.address, address, now);
        }
    }

    /// The password was right: the account's failures are forgotten, and the address's
    /// count is back to what it was before this attempt.
    pub fn succeeded(&self, settings: &LoginThrottleSettings, pass: Pass) {
        lock(&self.0.accounts).reset(&pass.account);
        if let Some(address) = &pass.address {
            lock(&self.0.addresses).forgive(&settings.address, address);
        }
    }

    /// The key signing login CSRF tokens: read from the store once (created by the first
    /// web server that needs it).
    async fn csrf_key(&self, store: &Store) -> Result<&str, StoreError> {
        self.0
            .csrf_key
            .get_or_try_init(|| async {
                store
                    .web_key(LOGIN_CSRF_KEY, &new_secret(), Utc::now())
                    .await
            })
            .await
            .map(String::as_str)
    }

    /// A new login CSRF token: `<issued unix seconds>.<nonce>.<HMAC-SHA256 of both>`.
    pub async fn issue_csrf(
        &self,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let key = self.csrf_key(store).await?;
        let payload = format!("{}.{}", now.timestamp(), new_secret());
        let mac = sign(key, &payload);
        Ok(format!("{payload}.{mac}"))
    }

    /// Whether the login form's field and cookie carry the same token, issued by a web
    /// server of this database within [`LOGIN_CSRF_TTL`].
    pub async fn check_csrf(
        &self,
        store: &Store,
        cookie: &str,
        field: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        if cookie.is_empty() || !same_secret(cookie, field) {
            return Ok(false);
        }
        let key = self.csrf_key(store).await?;
        Ok(verify(key, field, now))
    }
}

fn mac(key: &str) -> Hmac<Sha256> {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"))
}

fn sign(key: &str, payload: &str) -> String {
    let mut mac = mac(key);
    mac.update(payload.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn verify(key: &str, token: &str, now: DateTime<Utc>) -> bool {
    let Some((payload, tag)) = token.rsplit_once('.') else {
        return false;
    };
    let Some(issued) = payload
        .split_once('.')
        .and_then(|(secs, _)| secs.parse::<i64>().ok())
    else {
        return false;
    };
    let age = now.timestamp().saturating_sub(issued);
    let ttl = i64::try_from(LOGIN_CSRF_TTL.as_secs()).unwrap_or(i64::MAX);
    // A little leeway for clocks of several web servers.
    if !(-60..=ttl).contains(&age) {
        return false;
    }
    same_secret(&sign(key, payload), tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_with_their_key_unchanged_and_fresh() {
        let now = Utc::now();
        let payload = format!("{}.{}", now.timestamp(), "nonce");
        let token = format!("{payload}.{}", sign("key", &payload));
        assert!(verify("key", &token, now));
        assert!(!verify("other key", &token, now));
        assert!(!verify("key", &token.replace("nonce", "nonc3"), now));
        let late = now + chrono::TimeDelta::seconds(LOGIN_CSRF_TTL.as_secs() as i64 + 1);
        assert!(!verify("key", &token, late));
        for forged in ["", "x", "a.b", "a.b.c", "12.nonce.", &new_secret()] {
            assert!(!verify("key", forged, now), "{forged:?}");
        }
    }

    #[test]
    fn addresses_are_keyed_by_host_or_ipv6_prefix() {
        let check = |ip: &str, key: &str| assert_eq!(address_key(ip), key, "{ip}");
        check("192.0.2.7", "192.0.2.7");
        check("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64");
        check("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64");
        check("::ffff:192.0.2.7", "192.0.2.7");
        check("not an address", "not an address");
        assert_eq!(account_key(&"é".repeat(200)).len(), 256);
    }

    #[test]
    fn an_address_or_an_account_over_its_budget_is_refused() {
        let settings = LoginThrottleSettings {
            account: ThrottlePolicy {
                free_failures: 2,
                ..ThrottlePolicy::ACCOUNT
            },
            address: ThrottlePolicy {
                free_failures: 4,
                ..ThrottlePolicy::ADDRESS
            },
        };
        let guard = LoginGuard::default();
        let now = Instant::now();
        let ip = Some("192.0.2.7");
        // Three failures of one account: the third earns a wait.
        for _ in 0..3 {
            let _failed = guard.admit(&settings, "ada", ip, now).expect("admitted");
        }
        let refusal = guard.admit(&settings, "ada", ip, now).expect_err("refused");
        assert_eq!((refusal.by, refusal.first), ("account", true));
        // The refusal did not count against the address: two more names are free…
        let ok = guard.admit(&settings, "otto", ip, now).expect("admitted");
        guard.succeeded(&settings, ok);
        let _failed = guard.admit(&settings, "vera", ip, now).expect("admitted");
        // …a success took its own attempt back, so the fifth failure from the address
        // earns it a wait.
        let _failed = guard.admit(&settings, "zed", ip, now).expect("admitted");
        let refusal = guard
            .admit(&settings, "other", ip, now)
            .expect_err("refused");
        assert_eq!(refusal.by, "address");
        // Another address is fine, and a success resets the account.
        let ok = guard
            .admit(&settings, "vera", Some("198.51.100.1"), now)
            .expect("admitted");
        guard.succeeded(&settings, ok);
    }
}
