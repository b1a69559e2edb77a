//! The client's address behind reverse proxies (`--trusted-proxy`, `--forwarded-header`).
//!
//! Rate limits (R9) and audit logs key on the client's IP. Behind a proxy every TCP peer is
//! the proxy, so all users would share one budget. The forwarding header fixes that, but only
//! a proxy we trust may be believed: anyone can send `X-Forwarded-For: 203.0.113.7`.
//!
//! The rule: if the TCP peer is not a trusted proxy, the peer is the client and no header is
//! read. Otherwise the hops of the configured header are walked from the right (each proxy
//! appends the address it received the request from); trusted proxies are skipped and the
//! first address that is not a trusted proxy is the client. What a client wrote itself is to
//! the left of what our proxies appended, so it is never reached unless every hop to its right
//! is a proxy we trust. A malformed hop, a non-UTF-8 header or an obfuscated identifier
//! (`for=unknown`, `for=_hidden`) reached in this walk stops it: the peer address is used.
//!
//! Only one header is read, the one chosen with `--forwarded-header`: if the proxy appends to
//! `X-Forwarded-For` but passes a client's own `Forwarded` through untouched, reading
//! `Forwarded` would hand the client its choice of address.

use axum::extract::{ConnectInfo, Request};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The forwarding header the trusted proxies write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, HAProxy, most load balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for="[2001:db8::1]:4711"`.
    Forwarded,
}

impl ForwardedHeader {
    fn name(self) -> &'static str {
        match self {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        }
    }
}

/// The client address of a request, inserted as an extension by [`middleware`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// Parses one `--trusted-proxy` value: a CIDR (`10.0.0.0/8`, `fd00::/8`) or a single address.
///
/// # Errors
/// Anything else, and prefixes of length 0 (trusting every address would let every client
/// choose its own).
pub fn parse_trusted_proxy(raw: &str) -> Result<IpNet, String> {
    let s = raw.trim();
    let net = s
        .parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| {
            format!("--trusted-proxy {raw:?} is not an IP address or CIDR (e.g. 10.0.0.0/8)")
        })?;
    if net.prefix_len() == 0 {
        return Err(format!(
            "--trusted-proxy {raw:?} trusts every address, so every client could choose its \
             own; name the proxies' networks"
        ));
    }
    Ok(net.trunc())
}

/// IPv4-mapped IPv6 (`::ffff:10.0.0.1`, what a socket bound to `[::]` reports for an IPv4
/// peer) compared as IPv4, so `10.0.0.0/8` matches it.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

fn trusted(nets: &[IpNet], ip: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(&ip))
}

/// One `X-Forwarded-For` entry: an address, possibly `[v6]` or with a port (some proxies add
/// one).
fn parse_hop(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, tail) = rest.split_once(']')?;
        if !(tail.is_empty() || tail.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return ip.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let (ip, port) = s.rsplit_once(':')?;
    if !is_port(port) {
        return None;
    }
    ip.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// The `for=` node of one `Forwarded` element (RFC 7239 §4, §6), `None` if it is missing,
/// repeated, obfuscated or malformed.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let mut found = None;
    for pair in element.split(';') {
        let (k, v) = pair.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("for") {
            continue;
        }
        if found.is_some() {
            return None;
        }
        let v = v.trim();
        let v = match v.strip_prefix('"') {
            Some(q) => q.strip_suffix('"')?,
            None => v,
        };
        found = Some(parse_hop(v)?);
    }
    found
}

/// The client address of a request whose TCP peer is `peer` (see the module docs).
pub fn client_addr(
    peer: IpAddr,
    trusted_proxies: &[IpNet],
    header: ForwardedHeader,
    headers: &HeaderMap,
) -> IpAddr {
    let peer = canonical(peer);
    if !trusted(trusted_proxies, peer) {
        return peer;
    }
    // Every line of the header, in order, is one list (RFC 9110 §5.3).
    let mut hops: Vec<&str> = Vec::new();
    for v in headers.get_all(header.name()) {
        let Ok(v) = v.to_str() else {
            return peer;
        };
        hops.extend(v.split(','));
    }
    let mut client = peer;
    for hop in hops.iter().rev() {
        let ip = match header {
            ForwardedHeader::XForwardedFor => parse_hop(hop),
            // Quoted strings may hold `,` in principle; `for=` values never do, and a split
            // inside quotes leaves a fragment that fails to parse, which falls back to the peer.
            ForwardedHeader::Forwarded => forwarded_for(hop),
        };
        let Some(ip) = ip.map(canonical) else {
            return peer;
        };
        client = ip;
        if !trusted(trusted_proxies, ip) {
            break;
        }
    }
    client
}

/// Settings of [`middleware`].
#[derive(Clone, Debug)]
pub struct Trust {
    /// Trusted proxy networks.
    pub proxies: Vec<IpNet>,
    /// The header they write.
    pub header: ForwardedHeader,
}

/// Middleware: inserts [`ClientAddr`] when the connection's peer address is known (always
/// under [`crate::serve`]; `oneshot` tests insert a `ConnectInfo` themselves).
pub async fn middleware(trust: Arc<Trust>, mut req: Request, next: Next) -> Response {
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>() {
        let ip = client_addr(peer.ip(), &trust.proxies, trust.header, req.headers());
        req.extensions_mut().insert(ClientAddr(ip));
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(name: &str, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v.as_bytes()).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hops_parse_with_and_without_ports() {
        assert_eq!(parse_hop(" 203.0.113.7 "), Some(ip("203.0.113.7")));
        assert_eq!(parse_hop("203.0.113.7:4711"), Some(ip("203.0.113.7")));
        assert_eq!(parse_hop("2001:db8::1"), Some(ip("2001:db8::1")));
        assert_eq!(parse_hop("[2001:db8::1]:4711"), Some(ip("2001:db8::1")));
        assert_eq!(parse_hop("[2001:db8::1]"), Some(ip("2001:db8::1")));
        for bad in [
            "",
            "unknown",
            "_hidden",
            "203.0.113.7:",
            "203.0.113.7:x",
            "[2001:db8::1",
            "[1.2.3.4]",
            "1.2.3.4:123456",
            "[2001:db8::1]x",
        ] {
            assert_eq!(parse_hop(bad), None, "{bad}");
        }
        assert_eq!(
            forwarded_for("for=\"[2001:db8::1]:4711\";proto=https"),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(
            forwarded_for("proto=https;For=192.0.2.1"),
            Some(ip("192.0.2.1"))
        );
        assert_eq!(forwarded_for("for=unknown"), None);
        assert_eq!(forwarded_for("for=1.2.3.4;for=5.6.7.8"), None);
        assert_eq!(forwarded_for("by=1.2.3.4"), None);
        assert_eq!(forwarded_for("for=\"1.2.3.4"), None);
    }

    #[test]
    fn trusted_proxies_parse_and_refuse_trusting_everyone() {
        assert_eq!(
            parse_trusted_proxy("10.1.2.3/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_trusted_proxy("127.0.0.1").unwrap().to_string(),
            "127.0.0.1/32"
        );
        for bad in ["0.0.0.0/0", "::/0", "10.0.0.0/33", "proxy.internal", ""] {
            assert!(parse_trusted_proxy(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn no_trusted_proxy_means_headers_are_ignored() {
        let h = headers("x-forwarded-for", &["203.0.113.7"]);
        let peer = ip("127.0.0.1");
        assert_eq!(
            client_addr(peer, &[], ForwardedHeader::XForwardedFor, &h),
            peer
        );
        // A peer that is not one of the trusted proxies is the client, whatever it claims.
        let proxies = [parse_trusted_proxy("10.0.0.0/8").unwrap()];
        assert_eq!(
            client_addr(peer, &proxies, ForwardedHeader::XForwardedFor, &h),
            peer
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let proxies = [
            parse_trusted_proxy("10.0.0.0/8").unwrap(),
            parse_trusted_proxy("::1").unwrap(),
        ];
        let peer = ip("10.0.0.2");
        let xff = ForwardedHeader::XForwardedFor;
        // The client forged a first entry; our proxy appended the real address.
        let h = headers("x-forwarded-for", &["198.51.100.1, 203.0.113.7"]);
        assert_eq!(client_addr(peer, &proxies, xff, &h), ip("203.0.113.7"));
        // Two trusted proxies in a chain, on two header lines.
        let h = headers(
            "x-forwarded-for",
            &["198.51.100.1, 203.0.113.7", "10.0.0.9"],
        );
        assert_eq!(client_addr(peer, &proxies, xff, &h), ip("203.0.113.7"));
        // IPv4-mapped peer from a dual-stack socket.
        assert_eq!(
            client_addr(ip("::ffff:10.0.0.2"), &proxies, xff, &h),
            ip("203.0.113.7")
        );
        // No header: the proxy itself is the client (a health check).
        assert_eq!(client_addr(peer, &proxies, xff, &HeaderMap::new()), peer);
        // Only trusted hops: the leftmost of them.
        let h = headers("x-forwarded-for", &["10.0.0.7, 10.0.0.9"]);
        assert_eq!(client_addr(peer, &proxies, xff, &h), ip("10.0.0.7"));
        // The other header is not read.
        let h = headers("forwarded", &["for=198.51.100.1"]);
        assert_eq!(client_addr(peer, &proxies, xff, &h), peer);
        let fwd = ForwardedHeader::Forwarded;
        let h = headers(
            "forwarded",
            &[
                "for=198.51.100.1",
                "for=\"[2001:db8::7]:1234\";proto=https, for=10.0.0.9",
            ],
        );
        assert_eq!(client_addr(peer, &proxies, fwd, &h), ip("2001:db8::7"));
        let h = headers("x-forwarded-for", &["203.0.113.7"]);
        assert_eq!(client_addr(peer, &proxies, fwd, &h), peer);
    }

    #[test]
    fn random_header_values_never_panic_and_an_untrusted_peer_is_always_the_client() {
        use rand::Rng as _;
        let proxies = [
            parse_trusted_proxy("10.0.0.0/8").unwrap(),
            parse_trusted_proxy("fd00::/8").unwrap(),
        ];
        let alphabet = b"0123456789abcdefABCDEF.:[],;=\" _forFOR\t\xff\x80";
        let mut rng = rand::thread_rng();
        for _ in 0..20_000 {
            let len = rng.gen_range(0..40);
            let v: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            let Ok(v) = HeaderValue::from_bytes(&v) else {
                continue;
            };
            for which in [ForwardedHeader::XForwardedFor, ForwardedHeader::Forwarded] {
                let mut h = HeaderMap::new();
                h.insert(which.name(), v.clone());
                let _ = client_addr(ip("10.0.0.2"), &proxies, which, &h);
                // An untrusted peer is always the answer, whatever the header holds.
                assert_eq!(
                    client_addr(ip("192.0.2.1"), &proxies, which, &h),
                    ip("192.0.2.1")
                );
            }
        }
    }

    #[test]
    fn malformed_headers_fall_back_to_the_peer() {
        let proxies = [parse_trusted_proxy("10.0.0.0/8").unwrap()];
        let peer = ip("10.0.0.2");
        for v in [
            "not-an-ip",
            "203.0.113.7, garbage",
            "203.0.113.7,",
            ",",
            "",
            "203.0.113.7 10.0.0.1",
        ] {
            let h = headers("x-forwarded-for", &[v]);
            assert_eq!(
                client_addr(peer, &proxies, ForwardedHeader::XForwardedFor, &h),
                peer,
                "{v:?}"
            );
        }
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"203.0.113.\xff").unwrap(),
        );
        assert_eq!(
            client_addr(peer, &proxies, ForwardedHeader::XForwardedFor, &h),
            peer
        );
        for v in [
            "for=unknown",
            "for=_hidden",
            "for",
            "for=\"1.2.3.4",
            "proto=https",
        ] {
            let h = headers("forwarded", &[v]);
            assert_eq!(
                client_addr(peer, &proxies, ForwardedHeader::Forwarded, &h),
                peer,
                "{v:?}"
            );
        }
    }
}
