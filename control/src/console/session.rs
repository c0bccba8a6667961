//! A browser's session: the same session token `POST /api/v1/auth/login` issues, kept
//! in an `HttpOnly; SameSite=Strict` cookie (`Secure` when the public URL is https), and
//! the CSRF token every state-changing form carries — derived from the session token,
//! so it needs no storage and changes with every sign-in.

use axum::http::{HeaderMap, HeaderValue, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The session cookie.
pub const COOKIE: &str = "rushes_session";
/// While impersonating: the admin's own session, restored by "stop impersonating".
pub const PRIOR_COOKIE: &str = "rushes_prior_session";
/// The form field (and `X-CSRF-Token` header) that carries the CSRF token.
pub const CSRF_FIELD: &str = "_csrf";

/// The value of cookie `name`, when the request carries it.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
        .filter(|value| !value.is_empty() && value.chars().all(|c| c.is_ascii_graphic()))
}

/// The CSRF token of a session.
pub fn csrf_for(session: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"rushes console csrf\0");
    hasher.update(session.as_bytes());
    format!("{:x}", hasher.finalize())
}

/// Whether `presented` is the CSRF token of `session`.
pub fn csrf_matches(session: &str, presented: &str) -> bool {
    bool::from(csrf_for(session).as_bytes().ct_eq(presented.as_bytes()))
}

/// `Set-Cookie` for `name` holding `value` (`None`: removes it).
pub fn set_cookie(name: &str, value: Option<&str>, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = match value {
        Some(value) => format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict{secure}"),
        None => format!("{name}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    };
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("rushes_session=; Max-Age=0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; rushes_session=abc; b=2"));
        assert_eq!(cookie(&headers, COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, PRIOR_COOKIE), None);
    }

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let token = csrf_for("session one");
        assert!(csrf_matches("session one", &token));
        assert!(!csrf_matches("session two", &token));
        assert!(!csrf_matches("session one", ""));
    }

    #[test]
    fn cookies_are_http_only_and_strict() {
        let set = set_cookie(COOKIE, Some("t"), true);
        let text = set.to_str().unwrap_or_default();
        assert!(text.contains("HttpOnly") && text.contains("SameSite=Strict") && text.contains("Secure"));
        let cleared = set_cookie(COOKIE, None, false);
        assert!(cleared.to_str().unwrap_or_default().contains("Max-Age=0"));
    }
}
