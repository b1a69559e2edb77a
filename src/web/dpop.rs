//! DPoP in the browser (RFC 9449; D1, D2): the client's key pair and its proofs.
//!
//! * The key is an ECDSA P-256 pair from WebCrypto (`SubtleCrypto.generateKey`) with
//!   `extractable: false`: the private key can sign but can never be exported, by this code or
//!   by any script in the page. It is kept only as the `CryptoKeyPair` object itself in
//!   IndexedDB (structured clone keeps the non-extractable flag), so a reload keeps the session;
//!   a new login makes a new key, logout deletes it.
//! * The key is read from IndexedDB before every refresh and login answer is used: tabs share
//!   it (they share the cookie's family), and a login in another tab replaces it.
//! * DPoP is on once a key exists or the server asks for it (a login refused with a `DPoP`
//!   challenge is made again, once, with a new key). Against a server that ignores DPoP no key
//!   is ever made and nothing changes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use js_sys::{Array, Object, Promise, Reflect, Uint8Array};
use std::cell::{Cell, RefCell};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    CryptoKey, EcKeyGenParams, EcdsaParams, IdbDatabase, IdbRequest, IdbTransactionMode,
};

const DB: &str = "authfetch-dpop";
const STORE: &str = "keys";
const SLOT: &str = "current";

/// One loaded key: the private `CryptoKey` (non-extractable) and the proof header it signs
/// under (with the public `jwk`).
#[derive(Clone)]
pub struct Key {
    private: CryptoKey,
    header_b64: String,
}

/// The page's DPoP state.
#[derive(Default)]
pub struct Dpop {
    /// The key the held token is bound to (loaded or made by the last login/refresh).
    key: RefCell<Option<Key>>,
    /// The server has asked for DPoP, or a key was found: logins make keys.
    on: Cell<bool>,
    /// The held token was issued as `token_type: DPoP`.
    bound: Cell<bool>,
    /// The last `DPoP-Nonce` per origin.
    nonces: RefCell<Vec<(String, String)>>,
}

fn crypto() -> Result<web_sys::Crypto, JsValue> {
    super::global().crypto()
}

fn subtle() -> Result<web_sys::SubtleCrypto, JsValue> {
    Ok(crypto()?.subtle())
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

/// Waits for an `IDBRequest` to succeed (its result) or fail.
async fn idb(req: &IdbRequest) -> Result<JsValue, JsValue> {
    let p = Promise::new(&mut |resolve, reject| {
        let r = req.clone();
        let ok = Closure::once_into_js(move || {
            let _ = resolve.call1(&JsValue::NULL, &r.result().unwrap_or(JsValue::UNDEFINED));
        });
        let err = Closure::once_into_js(move || {
            let _ = reject.call0(&JsValue::NULL);
        });
        req.set_onsuccess(Some(ok.unchecked_ref()));
        req.set_onerror(Some(err.unchecked_ref()));
    });
    JsFuture::from(p).await
}

async fn open_db() -> Result<IdbDatabase, JsValue> {
    let factory = super::global()
        .indexed_db()?
        .ok_or_else(|| JsValue::from_str("no IndexedDB"))?;
    let req = factory.open_with_u32(DB, 1)?;
    let up = Closure::once_into_js({
        let req = req.clone();
        move || {
            if let Ok(db) = req.result() {
                let _ = db
                    .unchecked_into::<IdbDatabase>()
                    .create_object_store(STORE);
            }
        }
    });
    req.set_onupgradeneeded(Some(up.unchecked_ref()));
    Ok(idb(&req).await?.unchecked_into())
}

async fn store_op(
    mode: IdbTransactionMode,
    op: impl FnOnce(&web_sys::IdbObjectStore) -> Result<IdbRequest, JsValue>,
) -> Result<JsValue, JsValue> {
    let db = open_db().await?;
    let tx = db.transaction_with_str_and_mode(STORE, mode)?;
    let r = idb(&op(&tx.object_store(STORE)?)?).await;
    db.close();
    r
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

    /// Whether logins make keys (a key exists, or the server asked).
    pub fn on(&self) -> bool {
        self.on.get()
    }

    /// The server asked for DPoP.
    pub fn turn_on(&self) {
        self.on.set(true);
    }

    /// Loads the shared key from IndexedDB (`None` without one).
    ///
    /// # Errors
    /// IndexedDB or WebCrypto failed.
    pub async fn load(&self) -> Result<Option<Key>, JsValue> {
        let pair = store_op(IdbTransactionMode::Readonly, |s| {
            s.get(&JsValue::from_str(SLOT))
        })
        .await?;
        if !pair.is_object() {
            *self.key.borrow_mut() = None;
            return Ok(None);
        }
        let key = key_from_pair(&pair).await?;
        self.on.set(true);
        *self.key.borrow_mut() = Some(key.clone());
        Ok(Some(key))
    }

    /// Makes a new non-extractable key pair, stores it (replacing any) and forgets the nonces.
    ///
    /// # Errors
    /// WebCrypto or IndexedDB failed.
    pub async fn new_key(&self) -> Result<Key, JsValue> {
        let params = EcKeyGenParams::new("ECDSA", "P-256");
        let usages = Array::of2(&JsValue::from_str("sign"), &JsValue::from_str("verify"));
        let pair =
            JsFuture::from(subtle()?.generate_key_with_object(&params, false, &usages)?).await?;
        store_op(IdbTransactionMode::Readwrite, |s| {
            s.put_with_key(&pair, &JsValue::from_str(SLOT))
        })
        .await?;
        let key = key_from_pair(&pair).await?;
        self.on.set(true);
        self.nonces.borrow_mut().clear();
        *self.key.borrow_mut() = Some(key.clone());
        Ok(key)
    }

    /// Deletes the key (logout): the next session starts with a new one.
    pub async fn forget(&self) {
        *self.key.borrow_mut() = None;
        self.bound.set(false);
        let _ = store_op(IdbTransactionMode::Readwrite, |s| {
            s.delete(&JsValue::from_str(SLOT))
        })
        .await;
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

    /// A proof by the current key for `htm url`, with `ath` of `token` and the origin's nonce.
    /// `None` without a key.
    ///
    /// # Errors
    /// WebCrypto failed.
    pub async fn proof(
        &self,
        htm: &str,
        url: &str,
        token: Option<&str>,
    ) -> Result<Option<String>, JsValue> {
        let Some(key) = self.key.borrow().clone() else {
            return Ok(None);
        };
        let nonce = {
            let origin = origin_of(url);
            self.nonces
                .borrow()
                .iter()
                .find(|(o, _)| o == origin)
                .map(|(_, n)| n.clone())
        };
        let ath = match token {
            Some(t) => Some(URL_SAFE_NO_PAD.encode(digest(t.as_bytes()).await?)),
            None => None,
        };
        proof(&key, htm, url, ath.as_deref(), nonce.as_deref())
            .await
            .map(Some)
    }
}

async fn digest(data: &[u8]) -> Result<Vec<u8>, JsValue> {
    let buf = JsFuture::from(subtle()?.digest_with_str_and_u8_array("SHA-256", data)?).await?;
    Ok(Uint8Array::new(&buf).to_vec())
}

/// The proof header for a pair: `{"typ":"dpop+jwt","alg":"ES256","jwk":{crv,kty,x,y}}`, the
/// public key exported as a JWK (the public half is always exportable; the private is not).
async fn key_from_pair(pair: &JsValue) -> Result<Key, JsValue> {
    let private: CryptoKey = Reflect::get(pair, &"privateKey".into())?.dyn_into()?;
    let public: CryptoKey = Reflect::get(pair, &"publicKey".into())?.dyn_into()?;
    let jwk: Object = JsFuture::from(subtle()?.export_key("jwk", &public)?)
        .await?
        .unchecked_into();
    let coord = |name: &str| -> Result<String, JsValue> {
        Reflect::get(&jwk, &name.into())?
            .as_string()
            .filter(|v| plain(v))
            .ok_or_else(|| JsValue::from_str("bad jwk"))
    };
    let (x, y) = (coord("x")?, coord("y")?);
    // Concatenation, not `format!`: `core::fmt` would cost the package kilobytes.
    let header = concat(&[
        r#"{"typ":"dpop+jwt","alg":"ES256","jwk":{"crv":"P-256","kty":"EC","x":""#,
        &x,
        r#"","y":""#,
        &y,
        r#""}}"#,
    ]);
    Ok(Key {
        private,
        header_b64: URL_SAFE_NO_PAD.encode(header),
    })
}

/// Signs a proof (D2): random 128-bit `jti`, `iat` now in whole seconds, `htu` without query
/// and fragment. Every string spliced into the JSON is a URL serialized by the platform or
/// base64url, so none needs escaping (a `"` or `\\` in a serialized URL's path is
/// percent-encoded).
async fn proof(
    key: &Key,
    htm: &str,
    url: &str,
    ath: Option<&str>,
    nonce: Option<&str>,
) -> Result<String, JsValue> {
    let mut jti = [0u8; 16];
    crypto()?.get_random_values_with_u8_array(&mut jti)?;
    let iat = decimal((js_sys::Date::now() / 1000.0) as u64);
    let htu = htu_of(url);
    if htu.bytes().any(|c| c == b'"' || c == b'\\') || !plain(htm) {
        return Err(JsValue::from_str("unusable URL for a DPoP proof"));
    }
    let jti = URL_SAFE_NO_PAD.encode(jti);
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
            payload.push_str(v);
            payload.push('"');
        }
    }
    payload.push('}');
    let input = concat(&[&key.header_b64, ".", &URL_SAFE_NO_PAD.encode(payload)]);
    let params = EcdsaParams::new("ECDSA", &JsValue::from_str("SHA-256"));
    // WebCrypto's ECDSA signature is already the JWS form: r ‖ s, 64 bytes.
    let sig = JsFuture::from(subtle()?.sign_with_object_and_u8_array(
        &params,
        &key.private,
        input.as_bytes(),
    )?)
    .await?;
    let sig = URL_SAFE_NO_PAD.encode(Uint8Array::new(&sig).to_vec());
    Ok(concat(&[&input, ".", &sig]))
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
        digits.push(b'0' + (n % 10) as u8);
        n /= 10;
        if n == 0 {
            break;
        }
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

/// For the browser test: a proof by the stored key and that key's `CryptoKeyPair` (to check the
/// signature with WebCrypto and that the private key is not extractable).
#[doc(hidden)]
pub async fn test_proof(htm: &str, url: &str, token: Option<String>) -> Result<Array, JsValue> {
    let d = Dpop::default();
    d.new_key().await?;
    let p = d
        .proof(htm, url, token.as_deref())
        .await?
        .unwrap_or_default();
    let pair = store_op(IdbTransactionMode::Readonly, |s| {
        s.get(&JsValue::from_str(SLOT))
    })
    .await?;
    d.forget().await;
    Ok(Array::of2(&JsValue::from_str(&p), &pair))
}
