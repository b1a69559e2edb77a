//! Reading the access token's payload for display (`claims()`).
//!
//! The client never *trusts* these claims: it does not verify the signature (it has no reason
//! to; the server does that on every request) and it does not schedule refreshes from `exp`
//! (K8: the schedule comes from `expires_in` and a monotonic clock). The payload is decoded
//! only so the app can show who is signed in.
//!
//! base64url is decoded by hand (about forty lines) rather than with the `base64` crate, whose
//! engine and error `Display` impls cost more than this whole module in the `.wasm` (measured
//! in `BENCHMARKS.md`).

use alloc::vec::Vec;

/// Largest token the client accepts (RFC 8725 style bound; the server issues ~600 bytes).
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

fn sextet(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => return None,
    } as u32)
}

/// Decodes unpadded base64url (RFC 4648 §5). `None` on any other character, on padding, on a
/// length of 1 mod 4, or on non-zero trailing bits (so every input has one decoding).
pub fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if b.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(b.len() * 3 / 4);
    for chunk in b.chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            acc = (acc << 6) | sextet(c)?;
        }
        match chunk.len() {
            4 => out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]),
            3 => {
                if acc & 0b11 != 0 {
                    return None;
                }
                out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]);
            }
            _ => {
                if acc & 0b1111 != 0 {
                    return None;
                }
                out.push((acc >> 4) as u8);
            }
        }
    }
    Some(out)
}

/// The payload segment (base64url text) of a compact JWT: three non-empty dot-separated parts
/// within [`MAX_TOKEN_LEN`], the middle one in the base64url alphabet. The browser build hands
/// this to `js/index.js`, which decodes it with the platform's `atob` and `JSON.parse` (the
/// claims are public; the signature, the part that makes a token usable, never leaves the
/// `.wasm`). Byte scanning only: no searcher, no panic path.
pub fn payload_segment(token: &str) -> Option<&str> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    // One pass: the positions of the two dots, every payload byte checked on the way.
    let (mut first, mut second) = (0, 0);
    for (i, c) in token.bytes().enumerate() {
        if c == b'.' {
            // A third dot, or one at 0 (an empty header).
            if second != 0 || i == 0 {
                return None;
            }
            if first == 0 {
                first = i;
            } else {
                second = i;
            }
        } else if first != 0 && second == 0 && sextet(c).is_none() {
            return None;
        }
    }
    // Two dots, a non-empty payload and a non-empty signature.
    if first == 0 || second <= first + 1 || second + 1 >= token.len() {
        return None;
    }
    token.get(first + 1..second)
}

/// The decoded JSON text of a compact JWT's payload, or `None` if the token is not three
/// base64url parts within [`MAX_TOKEN_LEN`] whose payload is UTF-8.
pub fn payload_json(token: &str) -> Option<alloc::string::String> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let mut parts = token.split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    alloc::string::String::from_utf8(base64url_decode(payload)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

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
    fn payload_segment_is_the_middle_of_exactly_three_parts() {
        let p = "eyJzdWIiOiJhbGljZSJ9";
        assert_eq!(payload_segment(&["h.", p, ".s"].concat()), Some(p));
        assert_eq!(payload_segment(&["h.", p].concat()), None, "two parts");
        assert_eq!(payload_segment(&["h.", p, ".s.x"].concat()), None);
        assert_eq!(payload_segment(&[".", p, ".s"].concat()), None);
        assert_eq!(payload_segment(&[".", p, ".s.x"].concat()), None);
        assert_eq!(payload_segment(&[".h.", p, ".s"].concat()), None);
        assert_eq!(payload_segment(&["h.", p, "!.s"].concat()), None);
        assert_eq!(
            payload_segment("h.p.s!"),
            Some("p"),
            "the signature is not the payload"
        );
        assert_eq!(payload_segment(&["h.", p, "."].concat()), None);
        assert_eq!(payload_segment("h..s"), None);
        assert_eq!(payload_segment("h.!!!.s"), None);
        assert_eq!(payload_segment("h.a=b.s"), None);
        assert_eq!(payload_segment(""), None);
        assert_eq!(payload_segment("..."), None);
        let huge = ["h.", &"a".repeat(MAX_TOKEN_LEN), ".s"].concat();
        assert_eq!(payload_segment(&huge), None);
        // Whatever the segment, it decodes the same way as `payload_json` does.
        let t = ["h.", p, ".s"].concat();
        let decoded = base64url_decode(payload_segment(&t).unwrap()).unwrap();
        assert_eq!(String::from_utf8(decoded).ok(), payload_json(&t));
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
        let huge = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(payload_json(&huge), None);
    }
}
