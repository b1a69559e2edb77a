//! DPoP (RFC 9449): proof verification, nonces, the replay cache, and (`http.rs`) the wiring
//! into `/auth/*`, the token service and the verification layer (`--dpop off|optional|required`).
//!
//! A DPoP proof is a compact JWS the client signs with its own key pair for every request; its
//! header carries the public key (`jwk`), its payload the request it was made for (`htm`,
//! `htu`), when (`iat`), a unique id (`jti`), the hash of the access token it accompanies
//! (`ath`) and, when the server asks for one, a server nonce. A token bound to the key's
//! RFC 7638 thumbprint (`jkt`) is then useless without the private key.
//!
//! # Layout
//!
//! ```text
//! mod.rs      this map; DpopError (one variant per rule, its RFC 9449 code, the challenge)
//! proof.rs    verify_proof: strict parsing (D6), signature, claims; Expect, VerifiedProof,
//!             Htu (htu normalization), RFC 7638 thumbprints
//! nonce.rs    stateless nonces: HMAC of a time step under a server secret (D5)
//! replay.rs   the jti replay cache: trait, bounded in-memory, Redis `SET NX PX` (D5)
//! http.rs     DpopMode/DpopConfig; DpopCheck: the per-request check, the resource check the
//!             verification layer runs for `Authorization: DPoP`, the 401 answers
//! fuzzing.rs  (tests and feature `fuzzing`) the `dpop_proof` fuzz target's entry point, seeds
//! ```
//!
//! # How a request is checked
//!
//! The single `DPoP` header ([`proof_header`]) → [`verify_proof`] against an [`Expect`] built
//! from the request (method, the URL the server is reached at, the access token if any, the
//! clock, the nonce policy) → [`ReplayCache::first_use`] on the [`VerifiedProof`] → the caller
//! compares [`VerifiedProof::jkt`] with the family's or the token's `cnf.jkt`. A rejection
//! answers 401 with [`DpopError::www_authenticate`] (and, for [`DpopError::UseNonce`], a
//! `DPoP-Nonce` header with [`Nonces::current`]).

pub mod http;
mod nonce;
mod proof;
mod replay;

#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;

pub use nonce::{NonceError, Nonces, DEFAULT_NONCE_STEP, MIN_NONCE_SECRET_BYTES};
pub use proof::{
    ath, proof_header, thumbprint_of_members, verify_proof, Expect, Htu, HtuError, VerifiedProof,
    DEFAULT_IAT_WINDOW, MAX_JTI_BYTES, MAX_PROOF_BYTES,
};
pub use replay::{
    MemoryReplayCache, RedisReplayCache, ReplayCache, ReplayError, DEFAULT_REPLAY_CAPACITY,
};

use crate::jwt::Alg;

/// The request header that carries a proof (RFC 9449 §4.1).
pub const DPOP_HEADER: &str = "dpop";
/// The response header that carries a fresh server nonce (RFC 9449 §8, §9).
pub const DPOP_NONCE_HEADER: &str = "dpop-nonce";
/// The authorization scheme of a bound token (`Authorization: DPoP <token>`, RFC 9449 §7.1).
pub const DPOP_SCHEME: &str = "DPoP";
/// RFC 9449 error code: the proof is missing or invalid (spelled in the shared wire types).
pub use authfetch_protocol::INVALID_DPOP_PROOF;
/// RFC 9449 error code: the proof lacks the server's current nonce.
pub const USE_DPOP_NONCE: &str = "use_dpop_nonce";
/// The `typ` of a proof (RFC 9449 §4.2).
pub const PROOF_TYP: &str = "dpop+jwt";

/// Why a proof was refused: one variant per rule. Only the [`DpopError::code`] reaches the
/// client (as in the access-token verifier, the reason is for logs and tests: a precise answer
/// would help whoever probes the parser).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    /// More than one `DPoP` header (RFC 9449 §4.3, check 1).
    #[error("more than one DPoP header")]
    MultipleProofs,
    /// Empty, or larger than [`MAX_PROOF_BYTES`].
    #[error("proof empty or larger than {MAX_PROOF_BYTES} bytes")]
    Size,
    /// Not a compact JWS: not three non-empty parts of unpadded base64url, or a part is not a
    /// JSON object.
    #[error("malformed proof: {0}")]
    Malformed(&'static str),
    /// A JSON object with the same member twice, at any depth (a parser-differential defence).
    #[error("duplicate JSON member")]
    DuplicateMember,
    /// `typ` is not `dpop+jwt`.
    #[error("typ is not dpop+jwt")]
    Type,
    /// `alg` missing, not a string, or not allowed (`none`, `HS*`, `RS*`, anything but ES256,
    /// or EdDSA where enabled).
    #[error("algorithm not accepted")]
    Algorithm,
    /// A `crit` header member: no critical extension is implemented.
    #[error("crit header present")]
    Crit,
    /// A header member that points at another key (`jku`, `x5u`, `x5c`, `x5t`, `x5t#S256`):
    /// the proof key is the `jwk` member and nothing else.
    #[error("forbidden header member {0}")]
    ForbiddenHeader(&'static str),
    /// No `jwk` header member, or not a JSON object.
    #[error("jwk missing")]
    MissingJwk,
    /// The `jwk` has a private or secret member (`d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`, `k`).
    #[error("jwk has the private member {0}")]
    PrivateJwk(&'static str),
    /// The `jwk` is not a valid public key for `alg`.
    #[error("jwk invalid: {0}")]
    BadJwk(&'static str),
    /// The signature does not verify under the `jwk` (or is not 64 raw bytes, J4).
    #[error("bad signature")]
    Signature,
    /// A required claim is missing or has the wrong JSON type (`jti`, `htm`, `htu`, `iat`, `ath`).
    #[error("claim {0} missing or not of its type")]
    MissingClaim(&'static str),
    /// `jti` empty or longer than [`MAX_JTI_BYTES`].
    #[error("jti empty or longer than {MAX_JTI_BYTES} bytes")]
    Jti,
    /// `htm` is not the request's method.
    #[error("htm does not match the request")]
    Htm,
    /// `htu` is not the request's URL (after normalization), or not a usable http(s) URL.
    #[error("htu does not match the request")]
    Htu,
    /// `iat` is outside the window around the server's clock.
    #[error("iat outside the accepted window")]
    Iat,
    /// `ath` is not the hash of the access token the request carries.
    #[error("ath does not match the access token")]
    Ath,
    /// `ath` in a proof for a request that carries no access token.
    #[error("ath without an access token")]
    UnexpectedAth,
    /// The server demands a nonce and the proof has none, a stale one, or a forged one.
    #[error("nonce missing or not current")]
    UseNonce,
    /// The proof (its key and `jti`) was already used within the `iat` window.
    #[error("proof replayed")]
    Replayed,
    /// No proof where one is required (a bound family, a `DPoP` token, `--dpop required`).
    #[error("proof missing")]
    Missing,
    /// A valid proof by another key than the one the family or the token is bound to.
    #[error("proof key is not the bound key")]
    KeyMismatch,
}

impl DpopError {
    /// The RFC 9449 error code for the client: `use_dpop_nonce` for [`DpopError::UseNonce`],
    /// `invalid_dpop_proof` for every other rule. The only place the codes are chosen.
    pub const fn code(&self) -> &'static str {
        match self {
            DpopError::UseNonce => USE_DPOP_NONCE,
            DpopError::MultipleProofs
            | DpopError::Size
            | DpopError::Malformed(_)
            | DpopError::DuplicateMember
            | DpopError::Type
            | DpopError::Algorithm
            | DpopError::Crit
            | DpopError::ForbiddenHeader(_)
            | DpopError::MissingJwk
            | DpopError::PrivateJwk(_)
            | DpopError::BadJwk(_)
            | DpopError::Signature
            | DpopError::MissingClaim(_)
            | DpopError::Jti
            | DpopError::Htm
            | DpopError::Htu
            | DpopError::Iat
            | DpopError::Ath
            | DpopError::UnexpectedAth
            | DpopError::Replayed
            | DpopError::Missing
            | DpopError::KeyMismatch => INVALID_DPOP_PROOF,
        }
    }

    /// A stable name of the rule that failed, for logs and audit events (never sent).
    pub const fn reason(&self) -> &'static str {
        match self {
            DpopError::MultipleProofs => "multiple_proofs",
            DpopError::Size => "size",
            DpopError::Malformed(_) => "malformed",
            DpopError::DuplicateMember => "duplicate_member",
            DpopError::Type => "typ",
            DpopError::Algorithm => "alg",
            DpopError::Crit => "crit",
            DpopError::ForbiddenHeader(_) => "forbidden_header",
            DpopError::MissingJwk => "missing_jwk",
            DpopError::PrivateJwk(_) => "private_jwk",
            DpopError::BadJwk(_) => "bad_jwk",
            DpopError::Signature => "signature",
            DpopError::MissingClaim(_) => "missing_claim",
            DpopError::Jti => "jti",
            DpopError::Htm => "htm",
            DpopError::Htu => "htu",
            DpopError::Iat => "iat",
            DpopError::Ath => "ath",
            DpopError::UnexpectedAth => "unexpected_ath",
            DpopError::UseNonce => "use_nonce",
            DpopError::Replayed => "replayed",
            DpopError::Missing => "missing",
            DpopError::KeyMismatch => "key_mismatch",
        }
    }

    /// The `WWW-Authenticate` value for this rejection (RFC 9449 §7.1): see [`challenge`].
    pub fn www_authenticate(&self, algs: &[Alg]) -> String {
        challenge(self.code(), algs)
    }
}

/// A `WWW-Authenticate: DPoP` challenge: `DPoP error="<code>", algs="ES256"` (RFC 9449 §7.1;
/// `algs` lists the accepted proof algorithms, space-separated). No `error_description`: the
/// reason stays in the server's log. `code` is one of our constant codes (`invalid_dpop_proof`,
/// `use_dpop_nonce`, `invalid_token`), never client input, so it needs no quoting.
pub fn challenge(code: &str, algs: &[Alg]) -> String {
    let algs: Vec<&str> = algs.iter().map(|a| a.as_str()).collect();
    format!(
        "{DPOP_SCHEME} error=\"{code}\", algs=\"{}\"",
        algs.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_variant() -> Vec<DpopError> {
        vec![
            DpopError::MultipleProofs,
            DpopError::Size,
            DpopError::Malformed("x"),
            DpopError::DuplicateMember,
            DpopError::Type,
            DpopError::Algorithm,
            DpopError::Crit,
            DpopError::ForbiddenHeader("x5u"),
            DpopError::MissingJwk,
            DpopError::PrivateJwk("d"),
            DpopError::BadJwk("x"),
            DpopError::Signature,
            DpopError::MissingClaim("jti"),
            DpopError::Jti,
            DpopError::Htm,
            DpopError::Htu,
            DpopError::Iat,
            DpopError::Ath,
            DpopError::UnexpectedAth,
            DpopError::UseNonce,
            DpopError::Replayed,
            DpopError::Missing,
            DpopError::KeyMismatch,
        ]
    }

    #[test]
    fn every_rule_has_its_own_reason_and_an_rfc_9449_code() {
        let all = every_variant();
        let mut reasons: Vec<&str> = all.iter().map(DpopError::reason).collect();
        reasons.sort_unstable();
        reasons.dedup();
        assert_eq!(reasons.len(), all.len(), "reasons are unique");
        for e in &all {
            let want = if *e == DpopError::UseNonce {
                USE_DPOP_NONCE
            } else {
                INVALID_DPOP_PROOF
            };
            assert_eq!(e.code(), want, "{e:?}");
        }
    }

    #[test]
    fn challenge_is_rfc_9449_section_7_1_shaped() {
        assert_eq!(
            DpopError::Signature.www_authenticate(&[Alg::Es256]),
            r#"DPoP error="invalid_dpop_proof", algs="ES256""#
        );
        assert_eq!(
            DpopError::UseNonce.www_authenticate(&[Alg::Es256, Alg::EdDsa]),
            r#"DPoP error="use_dpop_nonce", algs="ES256 EdDSA""#
        );
        assert_eq!(
            challenge("invalid_token", &[Alg::Es256]),
            r#"DPoP error="invalid_token", algs="ES256""#
        );
    }
}
