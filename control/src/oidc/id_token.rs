//! The checks of an ID token (OpenID Connect Core §3.1.3.7): a JWS in compact form,
//! signed with one of the provider's published keys by an asymmetric algorithm, issued
//! by the configured issuer for this client, not expired, and carrying this sign-in's
//! nonce. `none` and the HMAC algorithms are refused: a client secret must never be
//! able to mint identities.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Seconds of clock difference forgiven between the provider and this host.
pub const LEEWAY_S: i64 = 60;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the ID token is not a signed JWT ({0})")]
    Malformed(&'static str),
    #[error("the ID token is signed with {0:?}, which is not accepted (an asymmetric algorithm is required)")]
    Algorithm(String),
    #[error("the ID token names a critical extension ({0}) this client does not know")]
    Critical(String),
    #[error("none of the provider's published keys can check the ID token (key id {0:?})")]
    NoKey(Option<String>),
    #[error("the ID token's signature does not verify")]
    Signature,
    #[error("the ID token was issued by {0:?}, not by the configured issuer")]
    Issuer(String),
    #[error("the ID token is not meant for this client (audience {0})")]
    Audience(String),
    #[error("the ID token has expired")]
    Expired,
    #[error("the ID token is not valid yet")]
    NotYet,
    #[error("the ID token's nonce is not this sign-in's")]
    Nonce,
    #[error("the ID token has no subject")]
    Subject,
}

/// A provider's published keys (`jwks_uri`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct KeySet {
    pub keys: Vec<Jwk>,
}

/// One published key (RFC 7517); fields of other key types are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub alg: Option<String>,
    #[serde(default, rename = "use")]
    pub usage: Option<String>,
    #[serde(default)]
    pub n: Option<String>,
    #[serde(default)]
    pub e: Option<String>,
    #[serde(default)]
    pub crv: Option<String>,
    #[serde(default)]
    pub x: Option<String>,
    #[serde(default)]
    pub y: Option<String>,
}

impl KeySet {
    /// Whether a key has this id (a token naming another one asks for a fresh key set).
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|key| key.kid.as_deref() == Some(kid))
    }
}

/// What the token must say.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
    /// Now, in seconds since the Unix epoch.
    pub now: i64,
}

/// The verified token's claims.
#[derive(Debug, Clone)]
pub struct Claims {
    pub subject: String,
    pub all: Map<String, Value>,
}

impl Claims {
    pub fn text(&self, name: &str) -> Option<&str> {
        self.all
            .get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.trim().is_empty())
    }
}

/// The signature algorithms accepted, by their JOSE names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    EdDsa,
}

impl Algorithm {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "RS256" => Self::Rs256,
            "RS384" => Self::Rs384,
            "RS512" => Self::Rs512,
            "PS256" => Self::Ps256,
            "PS384" => Self::Ps384,
            "PS512" => Self::Ps512,
            "ES256" => Self::Es256,
            "ES384" => Self::Es384,
            "EdDSA" => Self::EdDsa,
            _ => return None,
        })
    }

    fn key_type(self) -> &'static str {
        match self {
            Self::Rs256 | Self::Rs384 | Self::Rs512 | Self::Ps256 | Self::Ps384 | Self::Ps512 => "RSA",
            Self::Es256 | Self::Es384 => "EC",
            Self::EdDsa => "OKP",
        }
    }

    /// Checks `signature` of `message` with `key`; `None` when the key cannot be used
    /// with this algorithm (wrong curve, missing or malformed parameters).
    fn verify(self, key: &Jwk, message: &[u8], sig: &[u8]) -> Option<bool> {
        let part = |value: &Option<String>| value.as_deref().and_then(|v| URL_SAFE_NO_PAD.decode(v).ok());
        match self.key_type() {
            "RSA" => {
                let (n, e) = (part(&key.n)?, part(&key.e)?);
                let params: &signature::RsaParameters = match self {
                    Self::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Self::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    Self::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    Self::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
                    Self::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
                    _ => &signature::RSA_PSS_2048_8192_SHA512,
                };
                Some(
                    signature::RsaPublicKeyComponents { n, e }
                        .verify(params, message, sig)
                        .is_ok(),
                )
            }
            "EC" => {
                let (curve, size, alg): (&str, usize, &'static dyn VerificationAlgorithm) = match self {
                    Self::Es256 => ("P-256", 32, &signature::ECDSA_P256_SHA256_FIXED),
                    _ => ("P-384", 48, &signature::ECDSA_P384_SHA384_FIXED),
                };
                let (x, y) = (part(&key.x)?, part(&key.y)?);
                if key.crv.as_deref() != Some(curve) || x.len() != size || y.len() != size {
                    return None;
                }
                let point: Vec<u8> = [&[4u8][..], &x, &y].concat();
                Some(UnparsedPublicKey::new(alg, point).verify(message, sig).is_ok())
            }
            _ => {
                let x = part(&key.x)?;
                if key.crv.as_deref() != Some("Ed25519") {
                    return None;
                }
                Some(
                    UnparsedPublicKey::new(&signature::ED25519, x)
                        .verify(message, sig)
                        .is_ok(),
                )
            }
        }
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Vec<String>>,
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str, what: &'static str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| TokenError::Malformed(what))?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed(what))
}

/// The key id a token names, if any, without checking anything else (to decide whether
/// the key set must be fetched again).
pub fn key_id(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    decode_json::<Header>(header, "header").ok()?.kid
}

/// Checks `token` against the provider's `keys` and what it must say.
pub fn verify(token: &str, keys: &KeySet, expected: &Expected<'_>) -> Result<Claims, TokenError> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header_part, payload_part, signature_part] = parts[..] else {
        return Err(TokenError::Malformed("not three dot-separated parts"));
    };
    let header: Header = decode_json(header_part, "header")?;
    if let Some(critical) = header.crit.filter(|c| !c.is_empty()) {
        return Err(TokenError::Critical(critical.join(", ")));
    }
    let algorithm = Algorithm::parse(&header.alg).ok_or_else(|| TokenError::Algorithm(header.alg.clone()))?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature_part)
        .map_err(|_| TokenError::Malformed("signature"))?;
    let message = &token.as_bytes()[..header_part.len() + 1 + payload_part.len()];
    let candidates = keys.keys.iter().filter(|key| {
        key.kty == algorithm.key_type()
            && key.usage.as_deref().is_none_or(|u| u == "sig")
            && key.alg.as_deref().is_none_or(|a| a == header.alg)
            && header.kid.as_ref().is_none_or(|kid| key.kid.as_ref() == Some(kid))
    });
    let mut usable = false;
    let mut verified = false;
    for key in candidates {
        match algorithm.verify(key, message, &signature) {
            Some(true) => {
                verified = true;
                break;
            }
            Some(false) => usable = true,
            None => {}
        }
    }
    if !verified {
        return Err(if usable {
            TokenError::Signature
        } else {
            TokenError::NoKey(header.kid)
        });
    }
    let all: Map<String, Value> = decode_json(payload_part, "claims")?;
    check_claims(all, expected)
}

fn check_claims(all: Map<String, Value>, expected: &Expected<'_>) -> Result<Claims, TokenError> {
    let issuer = all.get("iss").and_then(Value::as_str).unwrap_or_default();
    if issuer != expected.issuer {
        return Err(TokenError::Issuer(issuer.to_owned()));
    }
    let audiences: Vec<&str> = match all.get("aud") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let authorized = all.get("azp").and_then(Value::as_str);
    if !audiences.contains(&expected.client_id)
        || (audiences.len() > 1 && authorized.is_none())
        || authorized.is_some_and(|azp| azp != expected.client_id)
    {
        return Err(TokenError::Audience(format!("{audiences:?}")));
    }
    let seconds = |name: &str| all.get(name).and_then(Value::as_f64).map(|v| v as i64);
    match seconds("exp") {
        Some(exp) if expected.now <= exp + LEEWAY_S => {}
        _ => return Err(TokenError::Expired),
    }
    if seconds("iat").is_some_and(|iat| iat > expected.now + LEEWAY_S)
        || seconds("nbf").is_some_and(|nbf| nbf > expected.now + LEEWAY_S)
    {
        return Err(TokenError::NotYet);
    }
    if all.get("nonce").and_then(Value::as_str) != Some(expected.nonce) {
        return Err(TokenError::Nonce);
    }
    let subject = all
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(TokenError::Subject)?
        .to_owned();
    Ok(Claims { subject, all })
}

#[cfg(test)]
mod tests {
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
    use serde_json::json;
    use std::error::Error;

    use super::*;

    type R = Result<(), Box<dyn Error>>;

    const NOW: i64 = 1_800_000_000;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A P-256 key pair and its JWK.
    fn ec_key(kid: &str) -> Result<(EcdsaKeyPair, Jwk), Box<dyn Error>> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)?;
        let point = pair.public_key().as_ref();
        let jwk = Jwk {
            kty: "EC".into(),
            kid: Some(kid.into()),
            alg: None,
            usage: Some("sig".into()),
            n: None,
            e: None,
            crv: Some("P-256".into()),
            x: Some(b64(&point[1..33])),
            y: Some(b64(&point[33..65])),
        };
        Ok((pair, jwk))
    }

    fn claims() -> Value {
        json!({"iss": "https://idp.example", "aud": "rushes", "sub": "alice", "nonce": "n-1",
               "iat": NOW - 5, "exp": NOW + 300, "email": "alice@example.com"})
    }

    fn sign_es256(pair: &EcdsaKeyPair, header: Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        // A failed signature leaves the token unsigned: every check below then fails loudly.
        let sig = pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .map(|s| b64(s.as_ref()))
            .unwrap_or_default();
        format!("{input}.{sig}")
    }

    fn expected() -> Expected<'static> {
        Expected {
            issuer: "https://idp.example",
            client_id: "rushes",
            nonce: "n-1",
            now: NOW,
        }
    }

    #[test]
    fn a_good_token_gives_its_claims() -> R {
        let (pair, jwk) = ec_key("k1")?;
        let token = sign_es256(&pair, json!({"alg": "ES256", "kid": "k1"}), &claims());
        let got = verify(&token, &KeySet { keys: vec![jwk] }, &expected())?;
        assert_eq!(got.subject, "alice");
        assert_eq!(got.text("email"), Some("alice@example.com"));
        Ok(())
    }

    #[test]
    fn a_token_without_a_key_id_is_checked_with_the_keys_of_its_type() -> R {
        let (_other, other_jwk) = ec_key("other")?;
        let (pair, jwk) = ec_key("k1")?;
        let token = sign_es256(&pair, json!({"alg": "ES256"}), &claims());
        assert!(
            verify(
                &token,
                &KeySet {
                    keys: vec![other_jwk, jwk]
                },
                &expected()
            )
            .is_ok()
        );
        Ok(())
    }

    #[test]
    fn a_signature_by_another_key_is_refused() -> R {
        let (_, jwk) = ec_key("k1")?;
        let (forger, _) = ec_key("k1")?;
        let token = sign_es256(&forger, json!({"alg": "ES256", "kid": "k1"}), &claims());
        assert_eq!(
            verify(&token, &KeySet { keys: vec![jwk] }, &expected()).err(),
            Some(TokenError::Signature)
        );
        Ok(())
    }

    #[test]
    fn changed_claims_break_the_signature() -> R {
        let (pair, jwk) = ec_key("k1")?;
        let token = sign_es256(&pair, json!({"alg": "ES256", "kid": "k1"}), &claims());
        let parts: Vec<&str> = token.split('.').collect();
        let mut evil = claims();
        evil["sub"] = json!("admin");
        let forged = format!("{}.{}.{}", parts[0], b64(evil.to_string().as_bytes()), parts[2]);
        assert_eq!(
            verify(&forged, &KeySet { keys: vec![jwk] }, &expected()).err(),
            Some(TokenError::Signature)
        );
        Ok(())
    }

    #[test]
    fn unsigned_and_hmac_tokens_are_refused() -> R {
        let (_, jwk) = ec_key("k1")?;
        let keys = KeySet { keys: vec![jwk] };
        let body = b64(claims().to_string().as_bytes());
        for alg in ["none", "HS256", "hs256", ""] {
            let token = format!("{}.{body}.", b64(json!({"alg": alg}).to_string().as_bytes()));
            assert_eq!(
                verify(&token, &keys, &expected()).err(),
                Some(TokenError::Algorithm(alg.into()))
            );
        }
        for junk in ["", "a.b", "a.b.c.d", "!!.??.**"] {
            assert!(
                matches!(verify(junk, &keys, &expected()), Err(TokenError::Malformed(_))),
                "{junk}"
            );
        }
        Ok(())
    }

    #[test]
    fn an_unknown_key_id_or_critical_extension_is_refused() -> R {
        let (pair, jwk) = ec_key("k1")?;
        let keys = KeySet { keys: vec![jwk] };
        let token = sign_es256(&pair, json!({"alg": "ES256", "kid": "k2"}), &claims());
        assert_eq!(
            verify(&token, &keys, &expected()).err(),
            Some(TokenError::NoKey(Some("k2".into())))
        );
        let token = sign_es256(&pair, json!({"alg": "ES256", "kid": "k1", "crit": ["b64"]}), &claims());
        assert_eq!(
            verify(&token, &keys, &expected()).err(),
            Some(TokenError::Critical("b64".into()))
        );
        // An RS256 header cannot be checked with an EC key.
        let token = sign_es256(&pair, json!({"alg": "RS256", "kid": "k1"}), &claims());
        assert_eq!(
            verify(&token, &keys, &expected()).err(),
            Some(TokenError::NoKey(Some("k1".into())))
        );
        Ok(())
    }

    #[test]
    fn issuer_audience_time_and_nonce_are_checked() -> R {
        let (pair, jwk) = ec_key("k1")?;
        let keys = KeySet { keys: vec![jwk] };
        let with = |name: &str, value: Value| {
            let mut c = claims();
            if value.is_null() {
                if let Some(all) = c.as_object_mut() {
                    all.remove(name);
                }
            } else {
                c[name] = value;
            }
            verify(
                &sign_es256(&pair, json!({"alg": "ES256", "kid": "k1"}), &c),
                &keys,
                &expected(),
            )
        };
        assert!(matches!(
            with("iss", json!("https://evil.example")),
            Err(TokenError::Issuer(_))
        ));
        assert!(matches!(
            with("aud", json!("someone-else")),
            Err(TokenError::Audience(_))
        ));
        assert!(matches!(
            with("aud", json!(["rushes", "other"])),
            Err(TokenError::Audience(_))
        ));
        assert!(with("aud", json!(["other", "rushes"])).is_err());
        assert!(matches!(with("azp", json!("other")), Err(TokenError::Audience(_))));
        assert!(with("aud", json!(["rushes"])).is_ok());
        assert_eq!(with("exp", json!(NOW - LEEWAY_S - 1)).err(), Some(TokenError::Expired));
        assert!(with("exp", json!(NOW - LEEWAY_S + 1)).is_ok(), "within the leeway");
        assert_eq!(with("exp", Value::Null).err(), Some(TokenError::Expired));
        assert_eq!(with("iat", json!(NOW + 3600)).err(), Some(TokenError::NotYet));
        assert_eq!(with("nbf", json!(NOW + 3600)).err(), Some(TokenError::NotYet));
        assert_eq!(with("nonce", json!("n-2")).err(), Some(TokenError::Nonce));
        assert_eq!(with("nonce", Value::Null).err(), Some(TokenError::Nonce));
        assert_eq!(with("sub", json!("")).err(), Some(TokenError::Subject));
        Ok(())
    }

    #[test]
    fn ed25519_tokens_verify() -> R {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())?;
        let jwk = Jwk {
            kty: "OKP".into(),
            kid: None,
            alg: Some("EdDSA".into()),
            usage: None,
            n: None,
            e: None,
            crv: Some("Ed25519".into()),
            x: Some(b64(pair.public_key().as_ref())),
            y: None,
        };
        let input = format!(
            "{}.{}",
            b64(json!({"alg": "EdDSA"}).to_string().as_bytes()),
            b64(claims().to_string().as_bytes())
        );
        let token = format!("{input}.{}", b64(pair.sign(input.as_bytes()).as_ref()));
        assert!(verify(&token, &KeySet { keys: vec![jwk] }, &expected()).is_ok());
        Ok(())
    }
}
