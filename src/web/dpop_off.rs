//! DPoP compiled out (the default build, without the `dpop` feature): the same surface as
//! `dpop.rs`, doing nothing, so `web.rs` has one code path and the shipped package keeps its
//! size. Every request goes as before: no key, no proof, `Bearer`.

use wasm_bindgen::JsValue;

/// Never constructed: there is no key.
pub enum Key {}

/// No DPoP state.
#[derive(Default)]
pub struct Dpop;

impl Dpop {
    /// Never bound.
    pub fn bound(&self) -> bool {
        false
    }
    /// No key.
    pub fn has_key(&self) -> bool {
        false
    }
    /// Nothing to record.
    pub fn set_bound(&self, _bound: bool) {}
    /// Never on: against a server that demands DPoP (`--dpop required`) this build's logins are
    /// refused like any 401 login.
    pub fn on(&self) -> bool {
        false
    }
    /// No key to load.
    pub async fn load(&self) -> Result<Option<Key>, JsValue> {
        Ok(None)
    }
    /// No key can be made.
    pub async fn new_key(&self) -> Result<Key, JsValue> {
        Err(JsValue::UNDEFINED)
    }
    /// Nothing to forget.
    pub async fn forget(&self) {}
    /// Nonces are not kept.
    pub fn remember_nonce(&self, _url: &str, _nonce: Option<String>) {}
    /// No proof.
    pub async fn proof(
        &self,
        _htm: &str,
        _url: &str,
        _token: Option<&str>,
    ) -> Result<Option<String>, JsValue> {
        Ok(None)
    }
}
