//! Compact JWS encoding and strict parsing, on `ring` (via `jwk.rs`), so every rule of J1–J10
//! is visible in one place.
//!
//! Why not a JOSE crate: `jsonwebtoken` (12.x) signs and verifies only through `aws-lc-rs` or
//! the RustCrypto crates (`p256`, `ed25519-dalek`), i.e. a second crypto stack next to `ring`;
//! its last `ring`-based line (9.x) is superseded by those. Its validation has one leeway for
//! `exp` and `nbf` alike (we give `exp` none and `iat`/`nbf` 60 s, J8) and does not check `iat`
//! against the clock, `typ` (J7), `crit` (J6), duplicate claims (J10) or key-injection headers
//! (J5), so it would sit behind the very pre-check below and before a post-check of the claims. `josekit` is built on OpenSSL. What is left by hand is small: split, base64url,
//! a duplicate-refusing JSON object, a header allowlist, and `ring`'s verify.
//!
//! Encoding is only ever done by the server with its own keys. Parsing (`parse_compact`)
//! checks the *form* of a token (J10, J2, J5, J6, J7) before any key or signature is looked at;
//! `verify.rs` then does the signature (J1, J3, J4) and the claims (J8, J9, J13, J14).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::{Error as _, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// Largest compact token accepted (J10).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Longest `kid` accepted: it is only a bounded lookup key into our own key set (J5).
pub const MAX_KID_BYTES: usize = 128;

/// A signature algorithm. Each key has exactly one (J1); the token's `alg` must equal it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alg {
    /// ECDSA P-256 with SHA-256, 64-byte raw `r‖s` signatures (the default).
    Es256,
    /// Ed25519.
    EdDsa,
}

impl Alg {
    /// The JOSE name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::EdDsa => "EdDSA",
        }
    }

    /// Parses a JOSE name, case-sensitively. Only the allowlisted algorithms exist here (J1, J2,
    /// J3): `none`, `HS256`, `RS256` and every other spelling are `None`.
    pub fn parse(s: &str) -> Option<Alg> {
        match s {
            "ES256" => Some(Alg::Es256),
            "EdDSA" => Some(Alg::EdDsa),
            _ => None,
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a token was rejected. Only logged (at debug level); the client always sees
/// `invalid_token`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not a well-formed compact JWS (J10).
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// `alg` not allowlisted, or not the key's algorithm (J1–J3).
    #[error("algorithm not accepted")]
    Algorithm,
    /// A header member we refuse: `jwk`, `jku`, `x5u`, `x5c`, `crit`, … (J5, J6).
    #[error("forbidden header member {0}")]
    ForbiddenHeader(&'static str),
    /// `typ` is not `at+jwt` (J7, J9).
    #[error("not an access token (typ)")]
    WrongType,
    /// No key with that `kid`.
    #[error("unknown key id")]
    UnknownKey,
    /// The signature does not verify, or is not 64 raw bytes with 0 < r, s < n (J4).
    #[error("bad signature")]
    Signature,
    /// A claim is missing or wrong (J8).
    #[error("claims rejected: {0}")]
    Claims(&'static str),
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// Denylisted `jti`, or issued before a family/user revocation (J13, J14).
    #[error("token revoked")]
    Revoked,
    /// An opaque token that is unknown, expired or revoked (its store or introspection says
    /// only that it is not active).
    #[error("opaque token not active")]
    Inactive,
}

/// A JSON object that refuses duplicate member names (a parser-differential defence: two
/// `alg` members must not mean different things to different libraries).
pub(crate) struct StrictObject(pub Map<String, Value>);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrictObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<StrictObject, A::Error> {
                let mut map = Map::new();
                while let Some((k, v)) = m.next_entry::<String, Value>()? {
                    if map.contains_key(&k) {
                        return Err(A::Error::custom("duplicate member"));
                    }
                    map.insert(k, v);
                }
                Ok(StrictObject(map))
            }
        }
        d.deserialize_map(V)
    }
}

/// A token whose form has been checked but whose signature and claims have not.
#[derive(Debug)]
pub(crate) struct Parsed<'a> {
    /// Header `alg`, already allowlisted.
    pub alg: Alg,
    /// Header `kid`.
    pub kid: String,
    /// `header.payload`, the bytes that were signed.
    pub signing_input: &'a str,
    /// Decoded payload object.
    pub claims: Map<String, Value>,
    /// Decoded signature bytes (length not yet checked).
    pub signature: Vec<u8>,
}

/// Header members we refuse outright (J5, J6): keys are never taken from the token, and we
/// implement no critical extension.
const FORBIDDEN_HEADER: [&str; 7] = ["jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256", "crit"];

fn b64(part: &str) -> Result<Vec<u8>, JwtError> {
    // URL_SAFE_NO_PAD rejects padding, `+`/`/`, whitespace and non-canonical trailing bits.
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed("not unpadded base64url"))
}

/// Checks the form of a compact JWS (J10), its header (J2, J5, J6, J7) and decodes the claims.
pub(crate) fn parse_compact(token: &str) -> Result<Parsed<'_>, JwtError> {
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::Malformed("empty or oversized"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed("not three parts"));
    };
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(JwtError::Malformed("empty part"));
    }
    let header_bytes = b64(h)?;
    let StrictObject(header) = serde_json::from_slice(&header_bytes)
        .map_err(|_| JwtError::Malformed("header is not a JSON object"))?;
    for f in FORBIDDEN_HEADER {
        if header.contains_key(f) {
            return Err(JwtError::ForbiddenHeader(f));
        }
    }
    let alg = match header.get("alg") {
        Some(Value::String(a)) => Alg::parse(a).ok_or(JwtError::Algorithm)?,
        _ => return Err(JwtError::Algorithm),
    };
    match header.get("typ") {
        // RFC 9068 §4: "at+jwt", or the full media type; media types compare case-insensitively.
        Some(Value::String(t))
            if t.eq_ignore_ascii_case(authfetch_protocol::ACCESS_TOKEN_TYP)
                || t.eq_ignore_ascii_case("application/at+jwt") => {}
        _ => return Err(JwtError::WrongType),
    }
    let kid = match header.get("kid") {
        Some(Value::String(k)) if !k.is_empty() && k.len() <= MAX_KID_BYTES => k.clone(),
        _ => return Err(JwtError::Malformed("kid missing or too long")),
    };
    let payload = b64(p)?;
    let StrictObject(claims) = serde_json::from_slice(&payload)
        .map_err(|_| JwtError::Malformed("payload is not a JSON object"))?;
    let signature = b64(s)?;
    let signing_input = &token[..h.len() + 1 + p.len()];
    Ok(Parsed {
        alg,
        kid,
        signing_input,
        claims,
        signature,
    })
}

/// The claims the server puts in every access token (RFC 9068 plus `sid`, the family id).
/// Nothing secret: a token's payload is readable by anyone who holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedClaims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// User id.
    pub sub: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expiry (Unix seconds).
    pub exp: i64,
    /// Unique token id (the denylist key, J13).
    pub jti: String,
    /// Session (refresh family) id: revoking the family rejects this token (J14).
    pub sid: String,
    /// Confirmation of a DPoP-bound token: `{"jkt": <thumbprint>}` (RFC 9449 §6.1). Absent for
    /// bearer tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Cnf>,
}

/// The `cnf` claim of a DPoP-bound access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cnf {
    /// RFC 7638 thumbprint of the client's DPoP key.
    pub jkt: String,
}

/// Builds `base64url(header).base64url(payload)` for a key `kid` of algorithm `alg`.
pub(crate) fn signing_input(
    alg: Alg,
    kid: &str,
    claims: &IssuedClaims,
) -> Result<String, serde_json::Error> {
    let header = serde_json::json!({ "alg": alg.as_str(), "typ": authfetch_protocol::ACCESS_TOKEN_TYP, "kid": kid });
    let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?);
    let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?);
    Ok(format!("{h}.{p}"))
}

/// Appends the signature.
pub(crate) fn finish(signing_input: String, sig: &[u8]) -> String {
    let mut t = signing_input;
    t.push('.');
    t.push_str(&URL_SAFE_NO_PAD.encode(sig));
    t
}
