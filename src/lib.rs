//! authfetch: the wasm client (placeholder; built out in issue 4).
use wasm_bindgen::prelude::*;

/// Returns the crate version; proves the module loads and can be called.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").into()
}
