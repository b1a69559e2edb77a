//! Options and the bearer allowlist (K3).
//!
//! The JS entry resolves every configured URL with the platform's own `URL` parser (so
//! `HTTPS://API.example.com:443/v1/` arrives here as `https://api.example.com/v1/`), and
//! request URLs come from `Request.url`, which the browser has already normalised. This module
//! only compares normalised strings, which keeps a URL parser out of the `.wasm`.

use alloc::string::String;
use alloc::vec::Vec;
use authfetch_protocol::AUTH_PREFIX;

/// Client options after normalisation. Built by the facade from the JS options object.
#[derive(Clone, Debug)]
pub struct Config {
    /// Absolute URL of `POST /auth/login`.
    pub login_url: String,
    /// Absolute URL of `POST /auth/refresh`.
    pub refresh_url: String,
    /// Absolute URL of `POST /auth/logout`.
    pub logout_url: String,
    /// Absolute URL of `POST /auth/logout-all`.
    pub logout_all_url: String,
    /// Where the bearer may go: `scheme://host[:port]` (whole origin) or with a path prefix.
    pub allowed: Vec<String>,
    /// Refresh this long before expiry (milliseconds); capped at half the token's lifetime.
    /// Zero turns the refresh-ahead timer off: the token is then refreshed when it is used
    /// after expiry or when the server answers 401.
    pub refresh_ahead_ms: f64,
    /// The CSRF header sent on every auth POST (defaults to `x-authfetch: 1`).
    pub csrf: (String, String),
    /// Coordinate with other tabs (Web Locks + BroadcastChannel) when the platform has them.
    pub cross_tab: bool,
    /// How long to wait for the cross-tab refresh lock before refreshing without it.
    pub lock_timeout_ms: f64,
}

/// Position of the first occurrence of `needle` in `hay`. A byte loop instead of
/// `str::find(&str)`, whose two-way searcher costs ~2 KB of `.wasm`.
pub fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Splits an absolute, normalised URL into its origin and its path (without query/fragment).
///
/// Returns `None` for anything that is not `scheme://authority…`, which denies the bearer.
/// Written with checked indexing only: no input can make it panic.
pub fn split_url(url: &str) -> Option<(&str, &str)> {
    let b = url.as_bytes();
    let start = find_bytes(b, b"://")? + 3;
    let end_of = |from: usize, stops: &[u8]| {
        b.get(from..).map_or(b.len(), |rest| {
            rest.iter()
                .position(|c| stops.iter().any(|s| s == c))
                .map_or(b.len(), |i| from + i)
        })
    };
    let auth_end = end_of(start, b"/?#");
    if auth_end == start {
        return None;
    }
    let path_end = end_of(auth_end, b"?#");
    let origin = url.get(..auth_end)?;
    let path = url.get(auth_end..path_end)?;
    Some((origin, if path.is_empty() { "/" } else { path }))
}

/// Does `path` lie under `prefix`? `/v1` and `/v1/` both admit `/v1` and `/v1/…`, not `/v10`.
fn under(path: &str, prefix: &str) -> bool {
    let p = prefix.trim_end_matches('/');
    p.is_empty()
        || path == p
        || (path.starts_with(p) && path.as_bytes().get(p.len()) == Some(&b'/'))
}

impl Config {
    /// Whether a request to `url` may carry the bearer.
    ///
    /// # Security
    /// Deny by default: the origin must equal an allowlist entry exactly (scheme, host, port;
    /// userinfo makes it differ) and the path must lie under the entry's path prefix. The auth
    /// endpoints never get the bearer, nor does anything under `/auth/` on their origin.
    pub fn allows(&self, url: &str) -> bool {
        let Some((origin, path)) = split_url(url) else {
            return false;
        };
        if origin.bytes().any(|b| b == b'@') || self.is_auth_endpoint(origin, path) {
            return false;
        }
        self.allowed.iter().any(|entry| match split_url(entry) {
            Some((o, p)) => o == origin && under(path, p),
            None => false,
        })
    }

    fn is_auth_endpoint(&self, origin: &str, path: &str) -> bool {
        [
            &self.login_url,
            &self.refresh_url,
            &self.logout_url,
            &self.logout_all_url,
        ]
        .into_iter()
        .filter_map(|u| split_url(u))
        .any(|(o, p)| o == origin && (path == p || path.starts_with(AUTH_PREFIX)))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    pub(crate) fn config(allowed: &[&str]) -> Config {
        let base = "http://127.0.0.1:8080";
        Config {
            login_url: [base, authfetch_protocol::LOGIN_PATH].concat(),
            refresh_url: [base, authfetch_protocol::REFRESH_PATH].concat(),
            logout_url: [base, authfetch_protocol::LOGOUT_PATH].concat(),
            logout_all_url: [base, authfetch_protocol::LOGOUT_ALL_PATH].concat(),
            allowed: allowed.iter().map(|s| s.to_string()).collect(),
            refresh_ahead_ms: 0.0,
            csrf: (
                authfetch_protocol::CSRF_HEADER.to_string(),
                authfetch_protocol::CSRF_HEADER_VALUE.to_string(),
            ),
            cross_tab: false,
            lock_timeout_ms: 5000.0,
        }
    }

    #[test]
    fn split_url_separates_origin_path_query() {
        assert_eq!(
            split_url("https://a.example:8443/x/y?q=1#f"),
            Some(("https://a.example:8443", "/x/y"))
        );
        assert_eq!(
            split_url("https://a.example"),
            Some(("https://a.example", "/"))
        );
        assert_eq!(
            split_url("https://a.example?x"),
            Some(("https://a.example", "/"))
        );
        assert_eq!(split_url("/relative"), None);
        assert_eq!(split_url("https:///x"), None);
    }

    #[test]
    fn find_bytes_matches_str_find() {
        for (hay, needle) in [
            ("abc", "b"),
            ("abc", "abc"),
            ("abc", "abcd"),
            ("", "x"),
            ("x", ""),
            ("error=a error=", "error="),
            ("ééé://", "://"),
        ] {
            assert_eq!(
                find_bytes(hay.as_bytes(), needle.as_bytes()),
                hay.find(needle),
                "{hay:?} {needle:?}"
            );
        }
    }

    /// Bad input gives `None`/`false`, never a panic: every prefix and suffix of tricky URLs,
    /// with multi-byte characters at every position.
    #[test]
    fn split_url_and_allows_never_panic() {
        let c = config(&["http://127.0.0.1:8080", "https://api.example.com/v1/"]);
        let samples = [
            "http://127.0.0.1:8080/api/me?x=1#f",
            "https://api.example.com/v1/ü/ß?é#ö",
            "hé://ü/",
            "://",
            ":///",
            "a://b?c#d/e",
            "https://例え.jp:443/パス",
        ];
        for s in samples {
            for (i, _) in s.char_indices() {
                for part in [&s[..i], &s[i..]] {
                    let _ = split_url(part);
                    let _ = c.allows(part);
                }
            }
        }
        assert_eq!(
            split_url("https://例え.jp:443/パス?q"),
            Some(("https://例え.jp:443", "/パス"))
        );
    }

    #[test]
    fn k3_bearer_only_to_allowed_origins() {
        let c = config(&["http://127.0.0.1:8080"]);
        assert!(c.allows("http://127.0.0.1:8080/api/me"));
        assert!(c.allows("http://127.0.0.1:8080/"));
        // Other port, scheme, host, a suffix trick, userinfo: all denied.
        assert!(!c.allows("http://127.0.0.1:8081/api/me"));
        assert!(!c.allows("https://127.0.0.1:8080/api/me"));
        assert!(!c.allows("http://localhost:8080/api/me"));
        assert!(!c.allows("http://127.0.0.1:8080.evil.test/api/me"));
        assert!(!c.allows("http://127.0.0.1:8080@evil.test/api/me"));
        assert!(!c.allows("http://user@127.0.0.1:8080/api/me"));
        assert!(!c.allows("data:text/plain,hi"));
        assert!(!c.allows("blob:http://127.0.0.1:8080/uuid"));
        // Nothing allowed → nothing gets the bearer.
        assert!(!config(&[]).allows("http://127.0.0.1:8080/api/me"));
    }

    #[test]
    fn k3_bearer_never_sent_to_auth_endpoints() {
        let c = config(&["http://127.0.0.1:8080"]);
        for p in [
            authfetch_protocol::LOGIN_PATH,
            authfetch_protocol::REFRESH_PATH,
            authfetch_protocol::LOGOUT_PATH,
            authfetch_protocol::LOGOUT_ALL_PATH,
            "/auth/anything-else",
        ] {
            assert!(!c.allows(&["http://127.0.0.1:8080", p].concat()), "{p}");
            assert!(
                !c.allows(&["http://127.0.0.1:8080", p, "?x=1"].concat()),
                "{p}"
            );
        }
        assert!(c.allows("http://127.0.0.1:8080/authx"));
    }

    #[test]
    fn k3_path_prefix_entries_match_whole_segments() {
        let c = config(&[
            "https://api.example.com/v1/",
            "https://other.example.com/v2",
        ]);
        assert!(c.allows("https://api.example.com/v1/users"));
        assert!(c.allows("https://api.example.com/v1"));
        assert!(!c.allows("https://api.example.com/v10/users"));
        assert!(!c.allows("https://api.example.com/v2/users"));
        assert!(!c.allows("https://api.example.com/"));
        assert!(c.allows("https://other.example.com/v2/x"));
        assert!(!c.allows("https://other.example.com/v2x"));
        let all = config(&["https://api.example.com"]);
        assert!(all.allows("https://api.example.com/anything"));
        let _ = vec![0u8];
    }
}
