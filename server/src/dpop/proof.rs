//! Proof parsing and verification (RFC 9449 §4.3), as strict as the access-token parser (D6):
//! compact form with a size cap (J10), `typ`, an allowlisted `alg` (J1–J3), no `crit` (J6), no
//! key reference but the embedded `jwk` (J5), duplicate members refused at every depth, ES256
//! signatures as 64 raw bytes in range (J4, through `jwk::PublicKey::verify`).
//!
//! The checks run in this order: size and form → header (`typ`, `alg`, `crit`, key references,
//! `jwk`) → payload JSON → signature → claims (`jti`, `htm`, `htu`, `iat`, `ath`) → nonce. The
//! nonce comes last on purpose: a `use_dpop_nonce` answer then means the proof was right in
//! every other respect, so the client's one retry with the nonce succeeds.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::{Error as _, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use std::fmt;
use std::time::Duration;
use subtle::ConstantTimeEq as _;

use super::nonce::Nonces;
use super::{DpopError, DPOP_HEADER, PROOF_TYP};
use crate::jwk::{PublicKey, P256_POINT_BYTES};
use crate::jwt::Alg;

/// Largest proof accepted, in bytes. A proof is a header of fixed size (about 300 bytes of
/// base64url for a P-256 `jwk`), a 64-byte signature (86 characters) and a payload whose only
/// open-ended members are `htu`, `jti` and `nonce`; 4 KiB leaves the `htu` more than 2 KiB of
/// path, beyond what the endpoints we protect use, while keeping the base64 and JSON work done
/// before the signature check small. Half the access-token cap (J10): the proof and the token
/// travel together in one request's headers, which proxies commonly limit to 8 KiB per line.
pub const MAX_PROOF_BYTES: usize = 4096;
/// Longest `jti` accepted, in bytes: ample for a UUID (36) or 256 random bits in base64url
/// (43), and a bound on what a replay cache stores per proof (it stores a hash, but the hash is
/// computed over this).
pub const MAX_JTI_BYTES: usize = 128;
/// How far `iat` may be from the server's clock, either way (RFC 9449 §11.1 leaves it to the
/// server; 60 s is the skew the access tokens tolerate, J8).
pub const DEFAULT_IAT_WINDOW: Duration = Duration::from_secs(60);

/// Header members that name a key other than the embedded `jwk` (J5): a proof is verified with
/// its own `jwk` and nothing else, so any of these is a confused or hostile proof.
const KEY_REFERENCES: [&str; 5] = ["jku", "x5u", "x5c", "x5t", "x5t#S256"];
/// JWK members that hold private or secret key material (RFC 7518 §6.2.2, §6.3.2, §6.4.1).
const PRIVATE_JWK_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The message of the duplicate-member error, recognised again in [`decode_object`].
const DUPLICATE: &str = "authfetch: duplicate member";

/// A normalized `htu`: an absolute http(s) URL, scheme and host lower-case, default port
/// dropped, dot segments removed, no query and no fragment (RFC 9449 §4.2, §4.3: syntax- and
/// scheme-based normalization of RFC 3986 §6.2.2–6.2.3, as WHATWG URL parsing does it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Htu(String);

/// Why a URL is not usable as an `htu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HtuError {
    /// Not an absolute URL.
    #[error("not an absolute URL")]
    Parse,
    /// Not `http` or `https`.
    #[error("scheme is not http or https")]
    Scheme,
    /// A user name or password in the URL: never part of a request target.
    #[error("URL with credentials")]
    Credentials,
}

impl Htu {
    /// Normalizes `url` (the URL a request reached the server at, or a proof's `htu` claim).
    ///
    /// # Errors
    /// See [`HtuError`].
    pub fn parse(url: &str) -> Result<Htu, HtuError> {
        let mut u = url::Url::parse(url).map_err(|_| HtuError::Parse)?;
        // `url` lower-cases the scheme and (for these special schemes) the host, drops the
        // default port and resolves `.`/`..`; special schemes always have a host.
        if !matches!(u.scheme(), "http" | "https") {
            return Err(HtuError::Scheme);
        }
        if !u.username().is_empty() || u.password().is_some() {
            return Err(HtuError::Credentials);
        }
        u.set_query(None);
        u.set_fragment(None);
        Ok(Htu(u.into()))
    }

    /// The normalized URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Htu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the request a proof came with looks like, and what the server demands of it.
#[derive(Clone)]
pub struct Expect<'a> {
    htm: &'a str,
    htu: &'a Htu,
    access_token: Option<&'a str>,
    now_s: i64,
    iat_window: Duration,
    nonces: Option<&'a Nonces>,
    algs: &'a [Alg],
}

impl fmt::Debug for Expect<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Expect")
            .field("htm", &self.htm)
            .field("htu", &self.htu)
            // The access token is a credential: only whether there is one.
            .field("access_token", &self.access_token.map(|_| "[redacted]"))
            .field("now_s", &self.now_s)
            .field("iat_window", &self.iat_window)
            .field("nonce_required", &self.nonces.is_some())
            .field("algs", &self.algs)
            .finish()
    }
}

impl<'a> Expect<'a> {
    /// A request with method `htm` (compared case-sensitively, as HTTP methods are) to `htu`,
    /// checked at `now_s` (Unix seconds): no access token (so no `ath` allowed), no nonce
    /// demanded, `iat` within [`DEFAULT_IAT_WINDOW`], ES256 only.
    pub fn new(htm: &'a str, htu: &'a Htu, now_s: i64) -> Self {
        Self {
            htm,
            htu,
            access_token: None,
            now_s,
            iat_window: DEFAULT_IAT_WINDOW,
            nonces: None,
            algs: &[Alg::Es256],
        }
    }

    /// The request carries this access token: `ath` is required and must be its hash.
    #[must_use]
    pub fn access_token(mut self, token: &'a str) -> Self {
        self.access_token = Some(token);
        self
    }

    /// How far `iat` may be from `now_s`, either way (whole seconds count).
    #[must_use]
    pub fn iat_window(mut self, window: Duration) -> Self {
        self.iat_window = window;
        self
    }

    /// The server demands a nonce: the proof's `nonce` must be current under `nonces`.
    #[must_use]
    pub fn require_nonce(mut self, nonces: &'a Nonces) -> Self {
        self.nonces = Some(nonces);
        self
    }

    /// The accepted proof algorithms (default ES256 only; add [`Alg::EdDsa`] to accept Ed25519
    /// keys). An empty list accepts nothing.
    #[must_use]
    pub fn algs(mut self, algs: &'a [Alg]) -> Self {
        self.algs = algs;
        self
    }

    fn window_s(&self) -> u64 {
        self.iat_window.as_secs()
    }
}

/// A proof that passed every check of [`verify_proof`] (the replay check is separate:
/// [`super::ReplayCache::first_use`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedProof {
    /// RFC 7638 thumbprint of the proof's key (SHA-256, base64url): what `cnf.jkt` and a bound
    /// family are compared with.
    pub jkt: String,
    /// The proof's `jti`.
    pub jti: String,
    /// The proof's `iat` (Unix seconds).
    pub iat: i64,
    /// The proof's algorithm.
    pub alg: Alg,
    /// The last second (Unix) at which this proof would still pass the `iat` check: how long a
    /// replay cache must remember it.
    pub acceptable_until_s: i64,
}

impl VerifiedProof {
    /// The replay-cache key: SHA-256 over a label, the key thumbprint and the `jti`
    /// (length-prefixed, so no two pairs collide). Per key, because a `jti` is only unique
    /// among one client's proofs: keying by `jti` alone would let one client burn another's.
    pub(crate) fn replay_key(&self) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"authfetch/dpop-jti/v1\0");
        ctx.update(&(self.jkt.len() as u64).to_be_bytes());
        ctx.update(self.jkt.as_bytes());
        ctx.update(self.jti.as_bytes());
        let mut k = [0u8; 32];
        k.copy_from_slice(ctx.finish().as_ref());
        k
    }

    /// Until when (Unix milliseconds) a replay cache must remember this proof: the end of the
    /// last second it would be accepted in.
    pub(crate) fn remember_until_ms(&self) -> i64 {
        self.acceptable_until_s
            .saturating_add(1)
            .saturating_mul(1000)
    }
}

/// `ath` for an access token: base64url(SHA-256(token)) (RFC 9449 §4.2).
pub fn ath(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        access_token.as_bytes(),
    ))
}

/// The proof of a request: `None` without a `DPoP` header.
///
/// # Errors
/// [`DpopError::MultipleProofs`] for more than one `DPoP` header (RFC 9449 §4.3, check 1),
/// [`DpopError::Malformed`] for a value that is not visible ASCII.
pub fn proof_header(headers: &axum::http::HeaderMap) -> Result<Option<&str>, DpopError> {
    let mut all = headers.get_all(DPOP_HEADER).iter();
    let Some(first) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(DpopError::MultipleProofs);
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| DpopError::Malformed("header value is not visible ASCII"))
}

/// RFC 7638 thumbprint over the required members of a JWK, given as `(name, value)` string
/// pairs: SHA-256 of the members sorted by name (UTF-8 byte order is code-point order), as a
/// JSON object without whitespace, base64url. [`VerifiedProof::jkt`] is this over
/// `crv kty x y` (EC) or `crv kty x` (OKP), as `jwk::PublicKey::thumbprint` computes it.
pub fn thumbprint_of_members(members: &[(&str, &str)]) -> String {
    let sorted: std::collections::BTreeMap<&str, &str> = members.iter().copied().collect();
    // serde_json writes no whitespace and escapes as JSON requires.
    let json = serde_json::to_string(&sorted).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, json.as_bytes()))
}

/// Verifies a DPoP proof against the request it came with (RFC 9449 §4.3, checks 2–12; check 1,
/// a single header, is [`proof_header`]'s; the replay check is the cache's).
///
/// # Errors
/// The first rule the proof breaks, in the order of the module docs.
pub fn verify_proof(proof: &str, expect: &Expect<'_>) -> Result<VerifiedProof, DpopError> {
    if proof.is_empty() || proof.len() > MAX_PROOF_BYTES {
        return Err(DpopError::Size);
    }
    let mut parts = proof.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(DpopError::Malformed("not three parts"));
    };
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(DpopError::Malformed("empty part"));
    }
    let header = decode_object(h, "header")?;
    match header.get("typ") {
        // Media types compare case-insensitively; `application/` may be spelled out (RFC 7515
        // §4.1.9), as `jwt.rs` allows for `at+jwt`.
        Some(Value::String(t))
            if t.eq_ignore_ascii_case(PROOF_TYP)
                || t.eq_ignore_ascii_case("application/dpop+jwt") => {}
        _ => return Err(DpopError::Type),
    }
    let (alg, alg_name) = match header.get("alg") {
        Some(Value::String(a)) => (
            proof_alg(a)
                .filter(|a| expect.algs.contains(a))
                .ok_or(DpopError::Algorithm)?,
            a.as_str(),
        ),
        _ => return Err(DpopError::Algorithm),
    };
    if header.contains_key("crit") {
        return Err(DpopError::Crit);
    }
    if let Some(m) = KEY_REFERENCES.iter().find(|m| header.contains_key(**m)) {
        return Err(DpopError::ForbiddenHeader(m));
    }
    let Some(Value::Object(jwk)) = header.get("jwk") else {
        return Err(DpopError::MissingJwk);
    };
    let key = public_key(jwk, alg, alg_name)?;
    let claims = decode_object(p, "payload")?;
    let signature = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| DpopError::Malformed("signature is not unpadded base64url"))?;
    let signing_input = &proof[..h.len() + 1 + p.len()];
    if !key.verify(signing_input.as_bytes(), &signature) {
        return Err(DpopError::Signature);
    }

    let jti = string_claim(&claims, "jti")?;
    if jti.is_empty() || jti.len() > MAX_JTI_BYTES {
        return Err(DpopError::Jti);
    }
    if string_claim(&claims, "htm")? != expect.htm {
        return Err(DpopError::Htm);
    }
    match Htu::parse(string_claim(&claims, "htu")?) {
        Ok(htu) if htu == *expect.htu => {}
        _ => return Err(DpopError::Htu),
    }
    // NumericDate as a JSON integer: every DPoP client we know sends whole seconds, and a
    // fraction would only widen the window.
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or(DpopError::MissingClaim("iat"))?;
    let window = expect.window_s();
    if expect.now_s.abs_diff(iat) > window {
        return Err(DpopError::Iat);
    }
    match (expect.access_token, claims.get("ath")) {
        (Some(token), Some(Value::String(a))) => {
            // Constant time: `ath` is compared with a value derived from a credential.
            if !bool::from(a.as_bytes().ct_eq(ath(token).as_bytes())) {
                return Err(DpopError::Ath);
            }
        }
        (Some(_), _) => return Err(DpopError::MissingClaim("ath")),
        // A proof made for a resource request, presented where no token travels: it was not
        // made for this request.
        (None, Some(_)) => return Err(DpopError::UnexpectedAth),
        (None, None) => {}
    }
    if let Some(nonces) = expect.nonces {
        match claims.get("nonce") {
            Some(Value::String(n)) if nonces.is_valid(n, expect.now_s) => {}
            _ => return Err(DpopError::UseNonce),
        }
    }
    Ok(VerifiedProof {
        jkt: key.thumbprint(),
        jti: jti.to_owned(),
        iat,
        alg,
        acceptable_until_s: iat.saturating_add(i64::try_from(window).unwrap_or(i64::MAX)),
    })
}

fn string_claim<'m>(
    claims: &'m Map<String, Value>,
    name: &'static str,
) -> Result<&'m str, DpopError> {
    match claims.get(name) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(DpopError::MissingClaim(name)),
    }
}

fn string_member<'m>(jwk: &'m Map<String, Value>, name: &str) -> Option<&'m str> {
    jwk.get(name).and_then(Value::as_str)
}

/// The algorithm a proof's `alg` names: the access-token allowlist (`ES256`, `EdDSA`), plus
/// `Ed25519`, the fully-specified name of EdDSA with Ed25519 (RFC 9864) that newer DPoP clients
/// send (panva/dpop does). It names exactly what `EdDSA` with an `OKP`/`Ed25519` key does, so it
/// is accepted wherever EdDSA is enabled, and nowhere else.
fn proof_alg(name: &str) -> Option<Alg> {
    match name {
        "Ed25519" => Some(Alg::EdDsa),
        other => Alg::parse(other),
    }
}

/// The proof key from the `jwk` header member, for `alg` (its `kty`/`crv` must be `alg`'s; a
/// `jwk` `alg` member, if any, must be the header's `alg_name`).
fn public_key(jwk: &Map<String, Value>, alg: Alg, alg_name: &str) -> Result<PublicKey, DpopError> {
    if let Some(m) = PRIVATE_JWK_MEMBERS.iter().find(|m| jwk.contains_key(**m)) {
        return Err(DpopError::PrivateJwk(m));
    }
    if let Some(u) = jwk.get("use") {
        if u.as_str() != Some("sig") {
            return Err(DpopError::BadJwk("use is not sig"));
        }
    }
    if let Some(a) = jwk.get("alg") {
        if a.as_str() != Some(alg_name) {
            return Err(DpopError::BadJwk("jwk alg is not the header alg"));
        }
    }
    let coordinate = |name: &str| -> Result<[u8; 32], DpopError> {
        let s = string_member(jwk, name).ok_or(DpopError::BadJwk("coordinate missing"))?;
        URL_SAFE_NO_PAD
            .decode(s)
            .ok()
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
            .ok_or(DpopError::BadJwk("coordinate is not 32 bytes of base64url"))
    };
    match (alg, string_member(jwk, "kty"), string_member(jwk, "crv")) {
        (Alg::Es256, Some("EC"), Some("P-256")) => {
            let mut point = [0u8; P256_POINT_BYTES];
            point[0] = 0x04;
            point[1..33].copy_from_slice(&coordinate("x")?);
            point[33..].copy_from_slice(&coordinate("y")?);
            PublicKey::es256_from_sec1(&point).map_err(|_| DpopError::BadJwk("not a P-256 point"))
        }
        (Alg::EdDsa, Some("OKP"), Some("Ed25519")) => {
            if jwk.contains_key("y") {
                return Err(DpopError::BadJwk("OKP key with y"));
            }
            PublicKey::ed25519_from_bytes(&coordinate("x")?)
                .map_err(|_| DpopError::BadJwk("weak Ed25519 key"))
        }
        _ => Err(DpopError::BadJwk("kty/crv not those of alg")),
    }
}

/// Decodes one base64url part into a JSON object, refusing duplicate members at any depth.
fn decode_object(part: &str, what: &'static str) -> Result<Map<String, Value>, DpopError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| {
        DpopError::Malformed(if what == "header" {
            "header is not unpadded base64url"
        } else {
            "payload is not unpadded base64url"
        })
    })?;
    match serde_json::from_slice::<Strict>(&bytes) {
        Ok(Strict(Value::Object(m))) => Ok(m),
        Ok(_) => Err(DpopError::Malformed("not a JSON object")),
        Err(e) if e.to_string().starts_with(DUPLICATE) => Err(DpopError::DuplicateMember),
        Err(_) => Err(DpopError::Malformed("not JSON")),
    }
}

/// Any JSON value, refusing an object with the same member twice at any depth.
///
/// `jwt::StrictObject` does this for the top level only, which is all an access token needs
/// (its members are flat). A proof nests its key in `jwk`, and two `x` members there are the
/// same parser differential as two `alg` members in the header: one library verifies with the
/// first, another computes the thumbprint from the last.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
        Ok(Strict(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
        Ok(Strict(Value::String(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Strict, E> {
        Ok(Strict(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }
    fn visit_none<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut v = Vec::new();
        while let Some(Strict(x)) = seq.next_element()? {
            v.push(x);
        }
        Ok(Strict(Value::Array(v)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Strict, A::Error> {
        let mut map = Map::new();
        while let Some((k, Strict(v))) = m.next_entry::<String, Strict>()? {
            if map.contains_key(&k) {
                return Err(A::Error::custom(DUPLICATE));
            }
            map.insert(k, v);
        }
        Ok(Strict(Value::Object(map)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict(json: &str) -> Result<Map<String, Value>, DpopError> {
        decode_object(&URL_SAFE_NO_PAD.encode(json), "header")
    }

    #[test]
    fn duplicates_are_refused_at_every_depth_and_nothing_else_is() {
        assert_eq!(strict(r#"{"a":1,"a":1}"#), Err(DpopError::DuplicateMember));
        assert_eq!(
            strict(r#"{"jwk":{"x":"1","x":"2"}}"#),
            Err(DpopError::DuplicateMember)
        );
        assert_eq!(
            strict(r#"{"a":[{"b":{"c":1,"c":2}}]}"#),
            Err(DpopError::DuplicateMember)
        );
        let ok =
            strict(r#"{"a":{"a":1},"b":[1,2.5,"s",null,true,{"a":-1}],"c":18446744073709551615}"#)
                .unwrap();
        assert_eq!(ok["b"][1], Value::from(2.5));
        assert_eq!(ok["c"], Value::from(u64::MAX));
        // Escapes decode before the comparison: "a" and "\u0061" are the same member.
        assert_eq!(
            strict(r#"{"a":1,"\u0061":2}"#),
            Err(DpopError::DuplicateMember)
        );
        assert!(matches!(strict("[1]"), Err(DpopError::Malformed(_))));
        assert!(matches!(strict("{"), Err(DpopError::Malformed(_))));
        assert!(matches!(
            strict(r#"{"a":1} x"#),
            Err(DpopError::Malformed(_))
        ));
        // Deep nesting stops at serde_json's recursion limit: an error, not a stack overflow.
        let deep = format!(r#"{{"a":{}1{}}}"#, "[".repeat(10_000), "]".repeat(10_000));
        assert!(matches!(strict(&deep), Err(DpopError::Malformed(_))));
    }

    #[test]
    fn htu_normalization() {
        let n = |s: &str| Htu::parse(s).map(|h| h.0);
        assert_eq!(
            n("HTTPS://API.Example.COM:443/a/./b/../c?q=1#frag").as_deref(),
            Ok("https://api.example.com/a/c")
        );
        assert_eq!(n("http://h:80").as_deref(), Ok("http://h/"));
        assert_eq!(n("http://h:8080/x?").as_deref(), Ok("http://h:8080/x"));
        assert_eq!(n("https://h:80/").as_deref(), Ok("https://h:80/"));
        assert_eq!(n("/relative"), Err(HtuError::Parse));
        assert_eq!(n("ftp://h/"), Err(HtuError::Scheme));
        assert_eq!(n("https://u:p@h/"), Err(HtuError::Credentials));
        assert_eq!(n("https://u@h/"), Err(HtuError::Credentials));
        // The path keeps its case: only scheme and host are case-insensitive.
        assert_ne!(n("https://h/A"), n("https://h/a"));
    }

    #[test]
    fn expect_debug_never_prints_the_access_token() {
        let htu = Htu::parse("https://h/").unwrap();
        let e = Expect::new("GET", &htu, 0).access_token("secret-token-value");
        let d = format!("{e:?}");
        assert!(!d.contains("secret-token-value"), "{d}");
        assert!(d.contains("[redacted]"), "{d}");
    }

    /// RFC 7638 §3.1: the RSA example key and its thumbprint.
    #[test]
    fn rfc_7638_thumbprint_test_vector() {
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        assert_eq!(
            thumbprint_of_members(&[("kty", "RSA"), ("n", n), ("e", "AQAB")]),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    /// Our general thumbprint and `jwk::PublicKey::thumbprint` agree on EC and OKP keys.
    #[test]
    fn thumbprint_of_members_matches_the_key_thumbprint() {
        use ring::signature::KeyPair as _;
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .unwrap();
        let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .unwrap();
        let key = PublicKey::es256_from_sec1(pair.public_key().as_ref()).unwrap();
        let jwk = key.to_jwk("");
        let y = jwk.y.clone().unwrap();
        assert_eq!(
            thumbprint_of_members(&[("kty", "EC"), ("crv", "P-256"), ("x", &jwk.x), ("y", &y)]),
            key.thumbprint()
        );
        let ed = PublicKey::ed25519_from_bytes(&[9u8; 32]).unwrap();
        let jwk = ed.to_jwk("");
        assert_eq!(
            thumbprint_of_members(&[("kty", "OKP"), ("crv", "Ed25519"), ("x", &jwk.x)]),
            ed.thumbprint()
        );
    }
}
