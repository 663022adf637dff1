//! `X-Forwarded-For` from trusted balancers (`--trust-forwarded`): the
//! client is the right-most address that is not itself trusted, as ALB and
//! nginx's `real_ip_recursive` read it. Pure.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

/// The header ALB, nginx and most balancers append to.
pub const X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");

/// Whether `ip` is in one of `nets` (an IPv4-mapped IPv6 address counts as IPv4).
pub fn is_trusted(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    nets.iter().any(|n| n.contains(&ip))
}

/// The client address a request stands for: `peer` itself unless `peer` is
/// trusted; then walk `X-Forwarded-For` (all its lines, in order) from the
/// right, skipping trusted hops. Stops at the first untrusted address, or at
/// an entry that is not an address (then the hop to its right is the
/// client: nothing left of garbage is believed). When every hop is trusted,
/// the left-most one. Entries may carry a port (`192.0.2.1:5000`,
/// `[2001:db8::1]:5000`); it is kept.
pub fn client(trusted: &[IpNet], peer: SocketAddr, headers: &HeaderMap) -> SocketAddr {
    if trusted.is_empty() || !is_trusted(trusted, peer.ip()) {
        return peer;
    }
    let lines: Vec<&[u8]> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    let mut client = peer;
    for entry in lines
        .iter()
        .rev()
        .flat_map(|line| line.rsplit(|&b| b == b','))
    {
        let Some(addr) = parse_entry(entry) else {
            break;
        };
        client = addr;
        if !is_trusted(trusted, addr.ip()) {
            break;
        }
    }
    client
}

/// One list entry: an address, optionally with a port, spaces around.
fn parse_entry(entry: &[u8]) -> Option<SocketAddr> {
    let text = std::str::from_utf8(entry).ok()?.trim_matches([' ', '\t']);
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 0));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr);
    }
    // `[2001:db8::1]` without a port.
    let inner = text.strip_prefix('[')?.strip_suffix(']')?;
    inner
        .parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, 0))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn right_most_untrusted_address_wins() {
        let nets: Vec<IpNet> = vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8:ffff::/48".parse().unwrap(),
        ];
        let cases: [(&str, &[&[u8]], &str); 20] = [
            // The balancer appended the client.
            ("10.0.0.1:1", &[b"203.0.113.9"], "203.0.113.9:0"),
            // A client-supplied entry left of the real one is not believed.
            ("10.0.0.1:1", &[b"1.1.1.1, 203.0.113.9"], "203.0.113.9:0"),
            // Two trusted hops (a CDN in front of the balancer, both inside).
            ("10.0.0.1:1", &[b"198.51.100.7, 10.2.3.4"], "198.51.100.7:0"),
            // Several header lines read as one list, in order.
            (
                "10.0.0.1:1",
                &[b"6.6.6.6", b"198.51.100.7, 10.9.9.9"],
                "198.51.100.7:0",
            ),
            (
                "10.0.0.1:1",
                &[b"198.51.100.7", b"10.9.9.9"],
                "198.51.100.7:0",
            ),
            // Every hop trusted: the left-most.
            ("10.0.0.1:1", &[b"10.1.1.1, 10.2.2.2"], "10.1.1.1:0"),
            // Ports and brackets.
            ("10.0.0.1:1", &[b"203.0.113.9:5000"], "203.0.113.9:5000"),
            ("10.0.0.1:1", &[b"[2001:db8::9]:443"], "[2001:db8::9]:443"),
            ("10.0.0.1:1", &[b"[2001:db8::9]"], "[2001:db8::9]:0"),
            (
                "10.0.0.1:1",
                &[b" 2001:db8::9 ,\t10.0.0.2 "],
                "[2001:db8::9]:0",
            ),
            // IPv6 balancer, IPv4-mapped entries count as IPv4.
            (
                "[2001:db8:ffff::1]:1",
                &[b"::ffff:10.1.1.1, 203.0.113.9"],
                "203.0.113.9:0",
            ),
            ("[::ffff:10.0.0.1]:1", &[b"203.0.113.9"], "203.0.113.9:0"),
            // Garbage stops the walk; the hop to its right is the client.
            ("10.0.0.1:1", &[b"unknown"], "10.0.0.1:1"),
            (
                "10.0.0.1:1",
                &[b"203.0.113.9, garbage, 10.1.1.1"],
                "10.1.1.1:0",
            ),
            ("10.0.0.1:1", &[b""], "10.0.0.1:1"),
            ("10.0.0.1:1", &[b"203.0.113.9,"], "10.0.0.1:1"),
            ("10.0.0.1:1", &[b"caf\xc3\xa9"], "10.0.0.1:1"),
            ("10.0.0.1:1", &[], "10.0.0.1:1"),
            // An untrusted peer's header is never believed.
            ("192.0.2.50:1", &[b"203.0.113.9"], "192.0.2.50:1"),
            ("[2001:db8::50]:1", &[b"10.0.0.1"], "[2001:db8::50]:1"),
        ];
        for (peer, lines, want) in cases {
            let mut headers = HeaderMap::new();
            for line in lines {
                headers.append(&X_FORWARDED_FOR, HeaderValue::from_bytes(line).unwrap());
            }
            let got = client(&nets, peer.parse().unwrap(), &headers);
            assert_eq!(got.to_string(), want, "peer {peer} xff {lines:?}");
        }
    }

    #[test]
    fn nothing_trusted_means_the_peer() {
        let mut headers = HeaderMap::new();
        headers.insert(&X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.9"));
        let peer: SocketAddr = "10.0.0.1:1".parse().unwrap();
        assert_eq!(client(&[], peer, &headers), peer);
    }
}
