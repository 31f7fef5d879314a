//! Optional client binding: what a session is tied to (a hash of the user agent, the client IP),
//! how the client IP is found through trusted proxies, and the check on load.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use http::header::USER_AGENT;
use http::{HeaderMap, HeaderName, Request};
use ipnet::IpNet;
use sha2::{Digest as _, Sha256};

use crate::config::SessionConfig;
use crate::record::Record;
use crate::token::hex;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// More hops than any real proxy chain: past this the header is junk, not a route.
const MAX_HOPS: usize = 32;

/// The binding settings of a layer.
#[derive(Clone, Debug, Default)]
pub(crate) struct Binding {
    user_agent: bool,
    client_ip: bool,
    trusted: Vec<IpNet>,
}

/// What the enabled bindings saw in one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Client {
    user_agent: Option<String>,
    ip: Option<IpAddr>,
}

impl Binding {
    pub(crate) fn new(cfg: &SessionConfig) -> Self {
        Self {
            user_agent: cfg.bind_user_agent,
            client_ip: cfg.bind_client_ip,
            trusted: cfg.trusted_proxies.clone(),
        }
    }

    /// Reads what the enabled bindings need; nothing at all when binding is off.
    pub(crate) fn client<B>(&self, req: &Request<B>) -> Client {
        let mut client = Client::default();
        if self.user_agent {
            let ua = req
                .headers()
                .get(USER_AGENT)
                .map_or(&[][..], |v| v.as_bytes());
            client.user_agent = Some(hex(&Sha256::digest(ua)));
        }
        if self.client_ip {
            match req.extensions().get::<ConnectInfo<SocketAddr>>() {
                Some(ConnectInfo(peer)) => {
                    client.ip = client_ip(peer.ip(), req.headers(), &self.trusted);
                }
                None => tracing::warn!(
                    "bind_client_ip is on but the request has no ConnectInfo<SocketAddr>: serve \
                     with into_make_service_with_connect_info; refusing sessions"
                ),
            }
        }
        client
    }

    /// Records what a new session is tied to.
    pub(crate) fn stamp(&self, record: &mut Record, client: &Client) {
        record.set_binding(client.user_agent.clone(), client.ip);
    }

    /// Why `record` does not belong to `client`, if it does not.
    pub(crate) fn mismatch(&self, record: &Record, client: &Client) -> Option<&'static str> {
        if self.user_agent && record.bound_user_agent() != client.user_agent.as_deref() {
            return Some("user_agent_changed");
        }
        if self.client_ip {
            match (record.bound_ip(), client.ip) {
                (_, None) => return Some("client_ip_unknown"),
                (bound, now) if bound != now => return Some("client_ip_changed"),
                _ => {}
            }
        }
        None
    }
}

/// The client address: `peer` unless it is a trusted proxy, in which case `X-Forwarded-For`
/// is walked from the right past trusted hops. `None` when a hop that a trusted proxy vouches
/// for is not an address, or the chain is absurdly long.
fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer.to_canonical();
    if !is_trusted(&client) {
        return Some(client);
    }
    // Walked lazily from the right, so a header of a million commas costs at most
    // `MAX_HOPS` steps, not a million-entry list.
    let hops = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .rev()
        .flat_map(|line| line.as_bytes().rsplit(|&b| b == b','));
    for (walked, hop) in hops.enumerate() {
        if !is_trusted(&client) {
            break;
        }
        if walked == MAX_HOPS {
            return None;
        }
        client = parse_hop(hop)?.to_canonical();
    }
    Some(client)
}

/// One `X-Forwarded-For` entry: an address, optionally with a port (`1.2.3.4:80`, `[::1]:80`).
fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(hop.trim_ascii()).ok()?;
    text.parse::<IpAddr>()
        .or_else(|_| text.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn client_ip_walks_forwarded_for_only_through_trusted_proxies() {
        struct Case {
            name: &'static str,
            peer: &'static str,
            xff: &'static [&'static str],
            expect: Option<&'static str>,
        }
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        let cases = [
            Case {
                name: "direct client, no header",
                peer: "203.0.113.5",
                xff: &[],
                expect: Some("203.0.113.5"),
            },
            Case {
                name: "spoofed header from an untrusted peer is ignored",
                peer: "203.0.113.5",
                xff: &["198.51.100.7"],
                expect: Some("203.0.113.5"),
            },
            Case {
                name: "trusted proxy",
                peer: "10.0.0.1",
                xff: &["198.51.100.7"],
                expect: Some("198.51.100.7"),
            },
            Case {
                name: "spoofed prefix before the proxy's entry is ignored",
                peer: "10.0.0.1",
                xff: &["1.1.1.1, 198.51.100.7"],
                expect: Some("198.51.100.7"),
            },
            Case {
                name: "two trusted hops",
                peer: "10.0.0.1",
                xff: &["198.51.100.7, 10.0.0.2"],
                expect: Some("198.51.100.7"),
            },
            Case {
                name: "several header lines join in order",
                peer: "10.0.0.1",
                xff: &["1.1.1.1", "198.51.100.7", "10.0.0.2"],
                expect: Some("198.51.100.7"),
            },
            Case {
                name: "ports and spaces",
                peer: "10.0.0.1",
                xff: &["  198.51.100.7:4711 ,[::1]:80"],
                expect: Some("198.51.100.7"),
            },
            Case {
                name: "all hops trusted: the leftmost",
                peer: "10.0.0.1",
                xff: &["10.0.0.3, 10.0.0.2"],
                expect: Some("10.0.0.3"),
            },
            Case {
                name: "trusted proxy without a header is the client",
                peer: "10.0.0.1",
                xff: &[],
                expect: Some("10.0.0.1"),
            },
            Case {
                name: "junk vouched for by a trusted proxy",
                peer: "10.0.0.1",
                xff: &["unknown"],
                expect: None,
            },
            Case {
                name: "junk left of the client is never read",
                peer: "10.0.0.1",
                xff: &["not an ip, 198.51.100.7"],
                expect: Some("198.51.100.7"),
            },
            Case {
                name: "IPv4-mapped peer",
                peer: "::ffff:10.0.0.1",
                xff: &["198.51.100.7"],
                expect: Some("198.51.100.7"),
            },
        ];
        for case in cases {
            let mut headers = HeaderMap::new();
            for line in case.xff {
                headers.append(X_FORWARDED_FOR, HeaderValue::from_static(line));
            }
            let got = client_ip(case.peer.parse().unwrap(), &headers, &trusted);
            assert_eq!(
                got,
                case.expect.map(|s| s.parse().unwrap()),
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn overlong_trusted_chain_is_refused() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut headers = HeaderMap::new();
        let chain = vec!["10.0.0.9"; MAX_HOPS + 1].join(",");
        headers.append(X_FORWARDED_FOR, HeaderValue::from_str(&chain).unwrap());
        assert_eq!(
            client_ip("10.0.0.1".parse().unwrap(), &headers, &trusted),
            None
        );
    }
}
