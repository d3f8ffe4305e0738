//! The client's address: the TCP peer, unless the peer is a configured reverse proxy; then the
//! nearest address in `X-Forwarded-For` that is not itself a trusted proxy. Reading the header
//! from anyone else would let every client pick its own address (and rate-limit key).

use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        TrustedProxies(nets)
    }

    /// One `trusted_proxies` entry: an address (`10.0.0.7`, `::1`) or a range (`10.0.0.0/8`).
    pub fn parse_entry(s: &str) -> Result<IpNet, String> {
        let s = s.trim();
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(IpNet::from(ip));
        }
        s.parse::<IpNet>()
            .map(|n| n.trunc())
            .map_err(|_| format!("{s:?}: expected an IP address or CIDR range"))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// `forwarded_for`: every `X-Forwarded-For` header value, in the order received. Each proxy
    /// appends the address it saw, so the list is read from the right; the first hop that is not
    /// a trusted proxy is the client. An unreadable entry stops the walk at the last trusted hop
    /// (everything left of it was written by the client).
    pub fn client_ip<'a>(&self, peer: IpAddr, forwarded_for: impl IntoIterator<Item = &'a str>) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let hops: Vec<&str> = forwarded_for.into_iter().flat_map(|h| h.split(',')).map(str::trim).collect();
        let mut current = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else { return current };
            current = ip;
            if !self.contains(ip) {
                return ip;
            }
        }
        current
    }
}

/// `203.0.113.7`, `203.0.113.7:4711`, `2001:db8::1` or `[2001:db8::1]:4711`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().map(|s| TrustedProxies::parse_entry(s).unwrap()).collect())
    }

    #[test]
    fn untrusted_peer_ignores_header() {
        let t = proxies(&["10.0.0.0/8"]);
        assert_eq!(t.client_ip(ip("198.51.100.9"), ["1.2.3.4"]), ip("198.51.100.9"));
        assert_eq!(TrustedProxies::default().client_ip(ip("127.0.0.1"), ["1.2.3.4"]), ip("127.0.0.1"));
    }

    #[test]
    fn rightmost_untrusted_hop_wins() {
        let t = proxies(&["10.0.0.0/8", "192.0.2.1"]);
        // The client put a fake address first; the proxies appended what they saw.
        let h = ["6.6.6.6, 203.0.113.7", "192.0.2.1"];
        assert_eq!(t.client_ip(ip("10.1.2.3"), h), ip("203.0.113.7"));
        assert_eq!(t.client_ip(ip("10.1.2.3"), ["[2001:db8::1]:443"]), ip("2001:db8::1"));
        assert_eq!(t.client_ip(ip("10.1.2.3"), ["203.0.113.7:5555"]), ip("203.0.113.7"));
        // No header, or only proxies: the leftmost proxy is as far as we can see.
        assert_eq!(t.client_ip(ip("10.1.2.3"), []), ip("10.1.2.3"));
        assert_eq!(t.client_ip(ip("10.1.2.3"), ["10.9.9.9"]), ip("10.9.9.9"));
        // Garbage stops the walk at the last trusted hop.
        assert_eq!(t.client_ip(ip("10.1.2.3"), ["203.0.113.7, nonsense"]), ip("10.1.2.3"));
        // An IPv4 peer seen through an IPv6 socket.
        assert_eq!(t.client_ip(ip("::ffff:10.1.2.3"), ["203.0.113.8"]), ip("203.0.113.8"));
    }

    #[test]
    fn entries() {
        assert!(TrustedProxies::parse_entry("10.0.0.1").is_ok());
        assert!(TrustedProxies::parse_entry("fd00::/8").is_ok());
        assert!(TrustedProxies::parse_entry("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse_entry("proxy.local").is_err());
    }
}
