//! DPoP compiled out (the default build, without the `dpop` feature): the same surface as
//! `dpop.rs`, doing nothing, so `web.rs` has one code path and the shipped package keeps its
//! size. Every request goes as before: no key, no proof, `Bearer`. Against a server that
//! demands DPoP (`--dpop required`) this build's logins are refused like any 401 login.

use std::rc::Rc;
use wasm_bindgen::JsValue;

/// What `Dpop::key` would do with the key (nothing here).
#[derive(Clone, Copy)]
pub enum KeyOp {
    /// Load the shared key.
    Load,
    /// Make a key.
    New,
    /// Delete the key.
    Forget,
}

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
    /// No key to load, make or delete.
    pub async fn key(self: &Rc<Self>, _op: KeyOp) -> Result<(), JsValue> {
        Ok(())
    }
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
