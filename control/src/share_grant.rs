//! Share-link grants: once someone gives a link's password, they get a short-lived
//! grant, `<link id>.<expiry, Unix seconds>.<HMAC-SHA256>`, that stands in for the
//! password on that link until it expires or the password changes (the MAC covers the
//! stored password hash) (a player's range requests then cost no
//! Argon2 check each). The key is `RUSHES_SHARE_SECRET` when set (the same on every
//! replica), else random per process (a restart, or another replica, asks again).

use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use rushes_common::config::Secret;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// How long a grant stands in for the password.
pub const GRANT_LIFETIME: Duration = Duration::hours(1);

/// The cookie a grant travels in (scoped to its link's path).
pub const COOKIE: &str = "rushes_share_grant";

/// The header a grant may travel in instead.
pub const HEADER: &str = "x-share-grant";

/// The signing key (HMAC-SHA256).
#[derive(Clone)]
pub struct GrantKey(Hmac<Sha256>);

impl std::fmt::Debug for GrantKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GrantKey(****)")
    }
}

impl GrantKey {
    /// From the configured secret, or random when there is none.
    pub fn new(secret: Option<&Secret>) -> Result<Self, hmac::digest::InvalidLength> {
        let key: [u8; 32] = match secret.map(Secret::expose).filter(|s| !s.trim().is_empty()) {
            Some(secret) => {
                let mut digest = Sha256::new();
                digest.update(b"rushes share grant key\0");
                digest.update(secret.as_bytes());
                digest.finalize().into()
            }
            None => rand::random(),
        };
        Ok(Self(<Hmac<Sha256> as Mac>::new_from_slice(&key)?))
    }

    fn mac(&self, link: Uuid, password_hash: &str, expires: i64) -> Hmac<Sha256> {
        let mut mac = self.0.clone();
        mac.update(link.as_bytes());
        mac.update(&expires.to_be_bytes());
        mac.update(password_hash.as_bytes());
        mac
    }

    /// A grant for `link`, whose password's stored hash is `password_hash`, that
    /// expires at `expires`.
    pub fn sign(&self, link: Uuid, password_hash: &str, expires: DateTime<Utc>) -> String {
        let expires = expires.timestamp();
        let tag = self.mac(link, password_hash, expires).finalize().into_bytes();
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}.{expires}.{hex}", link.simple())
    }

    /// Whether `grant` is this key's, for `link` with the password whose stored hash is
    /// `password_hash` now, and unexpired at `now`.
    pub fn check(&self, grant: &str, link: Uuid, password_hash: &str, now: DateTime<Utc>) -> bool {
        let mut parts = grant.trim().split('.');
        let (Some(id), Some(expires), Some(tag), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let (Ok(id), Ok(expires)) = (id.parse::<Uuid>(), expires.parse::<i64>()) else {
            return false;
        };
        if id != link || expires <= now.timestamp() {
            return false;
        }
        let Some(tag) = decode_hex(tag) else {
            return false;
        };
        self.mac(link, password_hash, expires).verify_slice(&tag).is_ok()
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 128 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| text.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
        .collect()
}

/// The grants a request carries: the header, then every cookie of that name.
pub fn presented(headers: &axum::http::HeaderMap) -> Vec<String> {
    let mut grants: Vec<String> = headers
        .get_all(HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect();
    for cookies in headers.get_all(axum::http::header::COOKIE).iter() {
        let Ok(cookies) = cookies.to_str() else {
            continue;
        };
        for cookie in cookies.split(';') {
            if let Some((name, value)) = cookie.trim().split_once('=')
                && name == COOKIE
            {
                grants.push(value.trim_matches('"').to_owned());
            }
        }
    }
    grants
}

/// The `Set-Cookie` value carrying `grant` for the link at `path`.
pub fn cookie(grant: &str, path: &str, secure: bool, max_age: Duration) -> String {
    format!(
        "{COOKIE}={grant}; Path={path}; Max-Age={}; HttpOnly; SameSite=Lax{}",
        max_age.num_seconds().max(0),
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + Duration::seconds(1_800_000_000 + seconds)
    }

    #[test]
    fn a_grant_opens_its_own_link_until_it_expires() {
        let (Ok(key), Ok(replica), Ok(other)) = (
            GrantKey::new(Some(&Secret::new("configured"))),
            GrantKey::new(Some(&Secret::new("configured"))),
            GrantKey::new(None),
        ) else {
            panic!("HMAC takes any key");
        };
        let link = Uuid::now_v7();
        let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";
        let grant = key.sign(link, hash, at(3600));
        assert!(key.check(&grant, link, hash, at(0)));
        assert!(key.check(&grant, link, hash, at(3599)));
        assert!(!key.check(&grant, link, hash, at(3600)), "expired");
        assert!(!key.check(&grant, Uuid::now_v7(), hash, at(0)), "another link");
        assert!(
            !key.check(&grant, link, "$argon2id$another", at(0)),
            "the password changed"
        );
        assert!(replica.check(&grant, link, hash, at(0)), "same secret, same key");
        assert!(!other.check(&grant, link, hash, at(0)), "another key");
        // Tampering with the expiry or the tag breaks it.
        let later = grant.replacen(
            &at(3600).timestamp().to_string(),
            &at(99_999).timestamp().to_string(),
            1,
        );
        assert!(!key.check(&later, link, hash, at(0)));
        let mut bad_tag = grant.clone();
        let last = if bad_tag.ends_with('0') { '1' } else { '0' };
        bad_tag.pop();
        bad_tag.push(last);
        assert!(!key.check(&bad_tag, link, hash, at(0)));
        for junk in ["", "x", "a.b.c", &format!("{grant}.more")] {
            assert!(!key.check(junk, link, hash, at(0)), "{junk}");
        }
    }

    #[test]
    fn grants_are_read_from_the_header_and_cookies() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(HEADER, axum::http::HeaderValue::from_static("from-header"));
        headers.insert(
            axum::http::header::COOKIE,
            axum::http::HeaderValue::from_static("a=1; rushes_share_grant=from-cookie; b=2"),
        );
        assert_eq!(presented(&headers), ["from-header", "from-cookie"]);
        let set = cookie("g", "/share/t", true, Duration::minutes(60));
        assert_eq!(
            set,
            "rushes_share_grant=g; Path=/share/t; Max-Age=3600; HttpOnly; SameSite=Lax; Secure"
        );
    }
}
