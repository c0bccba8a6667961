//! The client's address. A request's peer is the client, unless the peer is one of the
//! trusted proxies (`RUSHES_TRUSTED_PROXIES`): then `X-Forwarded-For` is read from the
//! right, past every trusted hop, and the first address that is not trusted is the
//! client. Nobody else's `X-Forwarded-For` is believed, so a client cannot pick the
//! address its login attempts are counted against.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The proxies whose `X-Forwarded-For` is believed: addresses and CIDR ranges.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses `10.0.0.1`, `10.0.0.0/8`, `::1`, `fd00::/8` …; blank entries are skipped.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut nets = Vec::new();
        for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            let net = match entry.parse::<IpNet>() {
                Ok(net) => net.trunc(),
                Err(_) => entry
                    .parse::<IpAddr>()
                    .map(IpNet::from)
                    .map_err(|_| format!("trusted proxies: `{entry}` is neither an IP address nor a CIDR range"))?,
            };
            nets.push(net);
        }
        Ok(Self(nets))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a request from `peer` with these headers.
    pub fn client(&self, headers: &HeaderMap, peer: IpAddr) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else {
                // Past a hop we cannot read nothing is known: the last proxy is the client.
                break;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, maybe with a port (`[::1]:80`, `1.2.3.4:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            if let Ok(value) = value.parse() {
                map.append("x-forwarded-for", value);
            }
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client(&headers(&["203.0.113.9"]), ip("127.0.0.1")),
            ip("127.0.0.1")
        );

        let trusted = TrustedProxies::parse(&["10.0.0.0/8".into(), " ".into(), "127.0.0.1".into()]);
        let Ok(trusted) = trusted else {
            panic!("valid list refused: {trusted:?}");
        };
        // A client behind two of our proxies.
        let h = headers(&["203.0.113.9, 10.1.2.3"]);
        assert_eq!(trusted.client(&h, ip("127.0.0.1")), ip("203.0.113.9"));
        // A forged first entry is ignored: the rightmost untrusted hop is the client.
        let h = headers(&["1.1.1.1", "198.51.100.4"]);
        assert_eq!(trusted.client(&h, ip("10.0.0.1")), ip("198.51.100.4"));
        // A peer outside the list is the client whatever it says.
        assert_eq!(trusted.client(&h, ip("192.0.2.1")), ip("192.0.2.1"));
        // No header, or an unreadable one: the proxy itself.
        assert_eq!(trusted.client(&HeaderMap::new(), ip("127.0.0.1")), ip("127.0.0.1"));
        assert_eq!(trusted.client(&headers(&["junk"]), ip("127.0.0.1")), ip("127.0.0.1"));
        // Ports and IPv4-mapped peers.
        assert_eq!(
            trusted.client(&headers(&["198.51.100.4:4711"]), ip("::ffff:127.0.0.1")),
            ip("198.51.100.4")
        );
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["proxy.local".into()]).is_err());
    }
}
