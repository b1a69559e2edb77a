//! DPoP in the browser (RFC 9449; D1, D2): the client's key pair and its proofs.
//!
//! * The key is an ECDSA P-256 pair from WebCrypto (`SubtleCrypto.generateKey`) with
//!   `extractable: false`: the private key can sign but can never be exported, by this code or
//!   by any script in the page. It is kept only as the `CryptoKeyPair` object itself in
//!   IndexedDB (structured clone keeps the non-extractable flag), so a reload keeps the session;
//!   a new login makes a new key, logout deletes it.
//! * The key is read from IndexedDB before every refresh and login answer is used: tabs share
//!   it (they share the cookie's family), and a login in another tab replaces it.
//! * Every login makes a key and sends a proof: an app that imports this build (the package's
//!   `authfetch/dpop` entry) has chosen DPoP. A server that does not bind (`--dpop off`, or a
//!   server without DPoP) answers with a `Bearer` token, and the client then sends bearer
//!   requests as the default build does.
//!
//! Size (BENCHMARKS.md §0c): everything here is reached through two boxed futures,
//! [`Dpop::key`] and [`Dpop::proof`]. Boxed, their state machines are compiled once and called
//! through a pointer; as plain `async fn`s they were inlined into every auth call and request
//! that awaits them. IndexedDB requests settle into a `Promise` whose `resolve`/`reject` are
//! the request's own handlers (no Rust closure per request), and base64url comes from the
//! platform's `btoa` (the `base64` crate's encoder is 2.8 KB of `.wasm`; its decoder, which
//! `claims()` needs, stays).

use js_sys::{Array, Promise, Reflect, Uint8Array};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    CryptoKey, EcKeyGenParams, EcdsaParams, IdbDatabase, IdbRequest, IdbTransactionMode,
};

const DB: &str = "authfetch-dpop";
const STORE: &str = "keys";
const SLOT: &str = "current";

/// A boxed future: one compiled state machine whatever awaits it.
type Boxed<T> = Pin<Box<dyn Future<Output = Result<T, JsValue>>>>;

/// One loaded key: the private `CryptoKey` (non-extractable), its public JWK in RFC 7638's
/// canonical form (what its thumbprint hashes), and the proof header it signs under (with that
/// `jwk`), already base64url.
#[derive(Clone)]
pub struct Key {
    private: CryptoKey,
    jwk: String,
    header_b64: String,
}

/// What [`Dpop::key`] does with the key before an auth call.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum KeyOp {
    /// Load the key the tabs share (before a refresh or logout; `None` without one).
    Load,
    /// Make a new key (before a login).
    New,
    /// Delete the key (after a logout): the next session starts with a new one.
    Forget,
}

/// The page's DPoP state.
#[derive(Default)]
pub struct Dpop {
    /// The key the held token is bound to (loaded or made by the last login/refresh).
    key: RefCell<Option<Key>>,
    /// The held token was issued as `token_type: DPoP`.
    bound: Cell<bool>,
    /// The last `DPoP-Nonce` per origin.
    nonces: RefCell<Vec<(String, String)>>,
}

fn subtle() -> Result<web_sys::SubtleCrypto, JsValue> {
    Ok(super::global().crypto()?.subtle())
}

/// `scheme://host[:port]` of an absolute URL: up to the first `/` after the `//`. (Bytes and
/// `get`, not `find("://")` and `&url[..i]`: substring search and a panicking slice would
/// bring kilobytes of `core::fmt` and string-search code into the `.wasm`.)
fn origin_of(url: &str) -> &str {
    let b = url.as_bytes();
    let host = b.windows(2).position(|w| w == b"//").map_or(0, |i| i + 2);
    let end = b
        .iter()
        .skip(host)
        .position(|&c| c == b'/')
        .map_or(b.len(), |i| host + i);
    url.get(..end).unwrap_or(url)
}

/// An `htu`: the request URL without query and fragment (the platform's URL serialization has
/// already lower-cased scheme and host and dropped a default port).
fn htu_of(url: &str) -> &str {
    let end = url
        .bytes()
        .position(|c| c == b'?' || c == b'#')
        .unwrap_or(url.len());
    url.get(..end).unwrap_or(url)
}

/// Whether `s` may go into a JSON string as it is: a nonce is a server's base64url value, and
/// anything else is not sent.
fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

/// base64url without padding (RFC 4648 §5) of a Latin-1 "binary string" (every char below
/// U+0100), by the platform's `btoa`: standard base64, then `+/` → `-_` and `=` dropped.
fn b64(binary: &str) -> Result<String, JsValue> {
    Ok(super::global()
        .btoa(binary)?
        .chars()
        .filter(|&c| c != '=')
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect())
}

/// base64url of bytes (a signature, a digest): each byte as the char of that code point.
fn b64_bytes(bytes: &[u8]) -> Result<String, JsValue> {
    b64(&bytes.iter().map(|&b| char::from(b)).collect::<String>())
}

/// Settles when an `IDBRequest` succeeds (with its result) or fails. The promise's `resolve`
/// and `reject` are the request's handlers themselves.
async fn idb(req: &IdbRequest) -> Result<JsValue, JsValue> {
    JsFuture::from(Promise::new(&mut |resolve, reject| {
        req.set_onsuccess(Some(&resolve));
        req.set_onerror(Some(&reject));
    }))
    .await?;
    req.result()
}

impl Dpop {
    /// Whether the held token must go as `Authorization: DPoP` with a proof.
    pub fn bound(&self) -> bool {
        self.bound.get() && self.key.borrow().is_some()
    }

    /// Whether a key is loaded.
    pub fn has_key(&self) -> bool {
        self.key.borrow().is_some()
    }

    /// Records how the token just installed was issued.
    pub fn set_bound(&self, bound: bool) {
        self.bound.set(bound);
    }

    /// Remembers a `DPoP-Nonce` a response from `url` carried.
    pub fn remember_nonce(&self, url: &str, nonce: Option<String>) {
        let Some(n) = nonce.filter(|n| plain(n)) else {
            return;
        };
        let origin = origin_of(url);
        let mut all = self.nonces.borrow_mut();
        match all.iter_mut().find(|(o, _)| o == origin) {
            Some(slot) => slot.1 = n,
            None => all.push((origin.into(), n)),
        }
    }

    /// Loads, makes or deletes the key (see [`KeyOp`]). One IndexedDB round trip: open, one
    /// request, close.
    ///
    /// # Errors
    /// IndexedDB or WebCrypto failed.
    pub fn key(self: &Rc<Self>, op: KeyOp) -> Boxed<()> {
        let this = Rc::clone(self);
        Box::pin(async move { this.key_op(op).await })
    }

    async fn key_op(&self, op: KeyOp) -> Result<(), JsValue> {
        if op == KeyOp::Forget {
            *self.key.borrow_mut() = None;
            self.bound.set(false);
        }
        let slot = JsValue::from_str(SLOT);
        let made = if op == KeyOp::New {
            let params = EcKeyGenParams::new("ECDSA", "P-256");
            let usages = Array::of2(&JsValue::from_str("sign"), &JsValue::from_str("verify"));
            // `extractable: false` applies to the private key; the public one always exports.
            JsFuture::from(subtle()?.generate_key_with_object(&params, false, &usages)?).await?
        } else {
            JsValue::UNDEFINED
        };
        let open = super::global()
            .indexed_db()?
            .ok_or_else(|| JsValue::from_str("no IndexedDB"))?
            .open_with_u32(DB, 1)?;
        let upgrade = Closure::once_into_js({
            let open = open.clone();
            move || {
                if let Ok(db) = open.result() {
                    let _ = db
                        .unchecked_into::<IdbDatabase>()
                        .create_object_store(STORE);
                }
            }
        });
        open.set_onupgradeneeded(Some(upgrade.unchecked_ref()));
        let db: IdbDatabase = idb(&open).await?.unchecked_into();
        let mode = if op == KeyOp::Load {
            IdbTransactionMode::Readonly
        } else {
            IdbTransactionMode::Readwrite
        };
        let store = db
            .transaction_with_str_and_mode(STORE, mode)?
            .object_store(STORE)?;
        let req = match op {
            KeyOp::Load => store.get(&slot),
            KeyOp::Forget => store.delete(&slot),
            _ => store.put_with_key(&made, &slot),
        };
        let got = match req {
            Ok(req) => idb(&req).await,
            Err(e) => Err(e),
        };
        db.close();
        let pair = match op {
            KeyOp::Load => got?,
            KeyOp::Forget => return Ok(()),
            _ => got.map(|_| made)?,
        };
        if !pair.is_object() {
            *self.key.borrow_mut() = None;
            return Ok(());
        }
        let key = key_from_pair(&pair).await?;
        if op == KeyOp::New {
            self.nonces.borrow_mut().clear();
        }
        *self.key.borrow_mut() = Some(key);
        Ok(())
    }

    /// A proof by the current key for `htm url`, with `ath` of `token` and the origin's nonce.
    /// `None` without a key.
    ///
    /// # Errors
    /// WebCrypto failed, or the URL cannot go into a proof.
    pub fn proof(&self, htm: &str, url: &str, token: Option<&str>) -> Boxed<Option<String>> {
        let Some(key) = self.key.borrow().clone() else {
            return Box::pin(std::future::ready(Ok(None)));
        };
        let origin = origin_of(url);
        let nonce = self
            .nonces
            .borrow()
            .iter()
            .find(|(o, _)| o == origin)
            .map(|(_, n)| n.clone());
        let (htm, url, token) = (
            String::from(htm),
            String::from(url),
            token.map(String::from),
        );
        Box::pin(async move { sign(&key, &htm, &url, token, nonce).await.map(Some) })
    }
}

/// The proof header for a pair: `{"typ":"dpop+jwt","alg":"ES256","jwk":{crv,kty,x,y}}`, the
/// public key exported as a JWK (the public half is always exportable; the private is not).
async fn key_from_pair(pair: &JsValue) -> Result<Key, JsValue> {
    let get = |o: &JsValue, name: &str| Reflect::get(o, &JsValue::from_str(name));
    let private: CryptoKey = get(pair, "privateKey")?.dyn_into()?;
    let public: CryptoKey = get(pair, "publicKey")?.dyn_into()?;
    let jwk: JsValue = JsFuture::from(subtle()?.export_key("jwk", &public)?).await?;
    let mut coords = [String::new(), String::new()];
    for (slot, name) in coords.iter_mut().zip(["x", "y"]) {
        *slot = get(&jwk, name)?
            .as_string()
            .filter(|v| plain(v))
            .ok_or_else(|| JsValue::from_str("bad jwk"))?;
    }
    // Concatenation, not `format!`: `core::fmt` would cost the package kilobytes. The members
    // in RFC 7638's order, so the same text is the header's `jwk` and the thumbprint's input.
    let jwk = concat(&[
        r#"{"crv":"P-256","kty":"EC","x":""#,
        &coords[0],
        r#"","y":""#,
        &coords[1],
        r#""}"#,
    ]);
    let header = concat(&[r#"{"typ":"dpop+jwt","alg":"ES256","jwk":"#, &jwk, "}"]);
    Ok(Key {
        private,
        header_b64: b64(&header)?,
        jwk,
    })
}

/// Signs a proof (D2): `jti` a random UUID (122 random bits), `iat` now in whole seconds, `htu`
/// without query and fragment, `ath` the base64url SHA-256 of the token. Every string spliced
/// into the JSON is a URL serialized by the platform or base64url, so none needs escaping (a
/// `"` or `\\` in a serialized URL's path is percent-encoded).
async fn sign(
    key: &Key,
    htm: &str,
    url: &str,
    token: Option<String>,
    nonce: Option<String>,
) -> Result<String, JsValue> {
    let htu = htu_of(url);
    if htu.bytes().any(|c| c == b'"' || c == b'\\' || c >= 0x80) || !plain(htm) {
        return Err(JsValue::from_str("unusable URL for a DPoP proof"));
    }
    let ath = match token {
        Some(t) => Some(sha256_b64(&t).await?),
        None => None,
    };
    let jti = super::global().crypto()?.random_uuid();
    let iat = decimal((js_sys::Date::now() / 1000.0) as u64);
    let mut payload = concat(&[
        r#"{"jti":""#,
        &jti,
        r#"","htm":""#,
        htm,
        r#"","htu":""#,
        htu,
        r#"","iat":"#,
        &iat,
    ]);
    for (name, v) in [(r#","ath":""#, ath), (r#","nonce":""#, nonce)] {
        if let Some(v) = v {
            payload.push_str(name);
            payload.push_str(&v);
            payload.push('"');
        }
    }
    payload.push('}');
    let input = concat(&[&key.header_b64, ".", &b64(&payload)?]);
    let params = EcdsaParams::new("ECDSA", &JsValue::from_str("SHA-256"));
    // WebCrypto's ECDSA signature is already the JWS form: r ‖ s, 64 bytes.
    let sig = JsFuture::from(subtle()?.sign_with_object_and_u8_array(
        &params,
        &key.private,
        input.as_bytes(),
    )?)
    .await?;
    let sig = b64_bytes(&Uint8Array::new(&sig).to_vec())?;
    Ok(concat(&[&input, ".", &sig]))
}

/// base64url(SHA-256(`text`)): a proof's `ath`, a key's thumbprint (RFC 7638).
async fn sha256_b64(text: &str) -> Result<String, JsValue> {
    let d = subtle()?.digest_with_str_and_u8_array("SHA-256", text.as_bytes())?;
    b64_bytes(&Uint8Array::new(&JsFuture::from(d).await?).to_vec())
}

/// `dpopNewKey()` (the `authfetch/dpop` entry's `loginWithProvider`): makes and stores a new
/// key, as a login does, and resolves its RFC 7638 thumbprint. A provider's redirect cannot
/// carry a proof, so the sign-in names the key (`dpop_jkt`, RFC 9449 §10) and the session it
/// starts is bound to it; the first refresh proves it.
#[wasm_bindgen(js_name = dpopNewKey)]
pub fn dpop_new_key() -> Promise {
    super::promise(async {
        let d = Rc::new(Dpop::default());
        d.key(KeyOp::New).await?;
        let jwk = d.key.borrow().as_ref().map(|k| k.jwk.clone());
        let jwk = jwk.ok_or_else(|| JsValue::from_str("no key"))?;
        Ok(JsValue::from_str(&sha256_b64(&jwk).await?))
    })
}

fn concat(parts: &[&str]) -> String {
    let mut s = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        s.push_str(p);
    }
    s
}

/// `n` in decimal, without `core::fmt`.
fn decimal(mut n: u64) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(char::from(b'0' + (n % 10) as u8));
        n /= 10;
        if n == 0 {
            break;
        }
    }
    digits.iter().rev().collect()
}

/// For the browser test: a proof by the stored key and that key's `CryptoKeyPair` (to check the
/// signature with WebCrypto and that the private key is not extractable).
#[doc(hidden)]
pub async fn test_proof(htm: &str, url: &str, token: Option<String>) -> Result<Array, JsValue> {
    let d = Rc::new(Dpop::default());
    d.key(KeyOp::New).await?;
    let p = d
        .proof(htm, url, token.as_deref())
        .await?
        .unwrap_or_default();
    // The pair as stored: read it back the way a reload does, then from IndexedDB itself.
    let loaded = Rc::new(Dpop::default());
    loaded.key(KeyOp::Load).await?;
    let same = loaded.key.borrow().as_ref().map(|k| k.header_b64.clone())
        == d.key.borrow().as_ref().map(|k| k.header_b64.clone());
    let open = super::global()
        .indexed_db()?
        .ok_or_else(|| JsValue::from_str("no IndexedDB"))?
        .open_with_u32(DB, 1)?;
    let db: IdbDatabase = idb(&open).await?.unchecked_into();
    let pair = idb(&db
        .transaction_with_str(STORE)?
        .object_store(STORE)?
        .get(&JsValue::from_str(SLOT))?)
    .await?;
    db.close();
    d.key(KeyOp::Forget).await?;
    Ok(Array::of3(
        &JsValue::from_str(&p),
        &pair,
        &JsValue::from_bool(same),
    ))
}
