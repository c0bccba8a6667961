//! Secret tokens (sessions, API tokens, reset and invitation links): made from 24 random
//! bytes, shown once, and kept only as their SHA-256 digest.

use sha2::{Digest, Sha256};

/// A new random bearer token (48 hex characters).
pub fn new_token() -> String {
    let bytes: [u8; 24] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a token: what the database keeps.
pub fn token_digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex_and_digests_fixed_size() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 48);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(token_digest(&a).len(), 32);
        assert_eq!(token_digest(&a), token_digest(&a));
    }
}
