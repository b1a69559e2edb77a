//! Reading the access token's payload for display (`claims()`).
//!
//! The client never *trusts* these claims: it does not verify the signature (it has no reason
//! to; the server does that on every request) and it does not schedule refreshes from `exp`
//! (K8: the schedule comes from `expires_in` and a monotonic clock). The payload is decoded
//! only so the app can show who is signed in.
//!
//! base64url is decoded by the `base64` crate's strict unpadded URL-safe engine: no padding,
//! no standard-alphabet characters, no non-zero trailing bits, so every input has one decoding.

use alloc::vec::Vec;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Largest token the client accepts (RFC 8725 style bound; the server issues ~600 bytes).
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Decodes unpadded base64url (RFC 4648 §5). `None` on any other character, on padding, on a
/// length of 1 mod 4, or on non-zero trailing bits.
pub fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

/// The decoded JSON text of a compact JWT's payload, or `None` if the token is not three
/// non-empty base64url parts within [`MAX_TOKEN_LEN`] whose payload is UTF-8. Byte scanning
/// only: no searcher, no panic path.
pub fn payload_json(token: &str) -> Option<alloc::string::String> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    // The two dots by a byte loop (`str::split` brings a searcher into the `.wasm`).
    let b = token.as_bytes();
    let mut dots = b
        .iter()
        .enumerate()
        .filter(|(_, c)| **c == b'.')
        .map(|(i, _)| i);
    let (first, second) = (dots.next()?, dots.next()?);
    if dots.next().is_some() || first == 0 || second + 1 >= b.len() {
        return None;
    }
    let payload = token.get(first + 1..second).filter(|p| !p.is_empty())?;
    alloc::string::String::from_utf8(base64url_decode(payload)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_rfc4648_vectors_in_url_alphabet() {
        let cases: [(&str, &[u8]); 7] = [
            ("", b""),
            ("Zg", b"f"),
            ("Zm8", b"fo"),
            ("Zm9v", b"foo"),
            ("Zm9vYg", b"foob"),
            ("Zm9vYmE", b"fooba"),
            ("Zm9vYmFy", b"foobar"),
        ];
        for (enc, dec) in cases {
            assert_eq!(base64url_decode(enc).as_deref(), Some(dec), "{enc}");
        }
        assert_eq!(base64url_decode("-_8").as_deref(), Some(&[0xfb, 0xff][..]));
    }

    #[test]
    fn rejects_padding_std_alphabet_bad_length_and_trailing_bits() {
        for bad in ["Zg==", "+/8", "Z", "Zh", "Zm9", "Zm9vY", "Zm 9v"] {
            assert_eq!(base64url_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn payload_json_needs_exactly_three_parts() {
        // {"sub":"alice"}
        let p = "eyJzdWIiOiJhbGljZSJ9";
        assert_eq!(
            payload_json(&["h.", p, ".s"].concat()).as_deref(),
            Some("{\"sub\":\"alice\"}")
        );
        assert_eq!(payload_json(&["h.", p].concat()), None);
        assert_eq!(payload_json(&["h.", p, ".s.x"].concat()), None);
        assert_eq!(payload_json("h.!!!.s"), None);
        assert_eq!(payload_json(&[".", p, ".s"].concat()), None, "empty header");
        assert_eq!(
            payload_json(&["h.", p, "."].concat()),
            None,
            "empty signature"
        );
        assert_eq!(payload_json("h..s"), None, "empty payload");
        assert_eq!(payload_json("h.a=b.s"), None);
        let huge = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(payload_json(&huge), None);
    }
}
