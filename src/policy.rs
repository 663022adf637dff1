//! Policy, checked before any connection: host allow/deny patterns, the
//! customer-host rule (names customers run under the AWS domains, see
//! `customer_host`, are refused unless an `--allow-host` pattern names them
//! specifically), allowed ports (requests 443 and 80, CONNECT 443, widened by
//! `--allow-port`), the address guard (no loopback, private, link-local, metadata, unspecified or
//! multicast origin unless `--allow-cidr` covers it) and the loop check.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::config::{PolicyConfig, PortRange};
use crate::customer_host::CustomerHosts;
use crate::pattern::HostPatterns;

/// Why policy refused a request (403, or 508 for a loop).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The target name matches no `--allow-host` pattern.
    #[error("host {0:?} is not allowed; add --allow-host to reach it")]
    HostNotAllowed(String),
    /// The target name matches a `--deny-host` pattern.
    #[error("host {0:?} is refused by --deny-host")]
    HostDenied(String),
    /// The target is a name a customer runs (an EC2 instance, a load
    /// balancer, an API Gateway API, …), not an AWS API.
    #[error(
        "host {host:?} is run by an AWS customer (EC2 instance, load balancer, API Gateway, \
         Lambda URL, …), not an AWS API; add --allow-host {pattern} to reach it"
    )]
    CustomerHost {
        /// The name asked for.
        host: String,
        /// The `--allow-host` pattern that would admit it.
        pattern: String,
    },
    /// The target port is not among the allowed ones.
    #[error(
        "port {port} is not allowed for {kind} (allowed: {allowed}); add --allow-port {port} to reach it"
    )]
    PortNotAllowed {
        /// The port asked for.
        port: u16,
        /// What kind of request (`CONNECT` or a forwarded request).
        kind: &'static str,
        /// The ports allowed for that kind, as a list to show.
        allowed: String,
    },
    /// The origin resolved to a non-public address.
    #[error("{host:?} resolves to non-public address {addr}; add --allow-cidr to reach it")]
    AddressRefused {
        /// The name that resolved to it.
        host: String,
        /// The refused address.
        addr: IpAddr,
    },
    /// The request already went through a ccnproxy.
    #[error("request already passed through ccnproxy (X-Chocon-Ver present): loop")]
    Loop,
}

/// Compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    allow: HostPatterns,
    /// `--allow-host` entries that are addresses or CIDRs: the IP-literal
    /// targets allowed (besides `*`).
    allow_addrs: Vec<IpNet>,
    deny: HostPatterns,
    customer: CustomerHosts,
    request_ports: Vec<PortRange>,
    connect_ports: Vec<PortRange>,
    allow_cidr: Vec<IpNet>,
}

impl Policy {
    /// Compiles `config`; patterns were validated when flags were parsed.
    pub fn new(config: &PolicyConfig) -> Result<Self, String> {
        let (addrs, names): (Vec<&String>, Vec<&String>) = config
            .allow_host
            .iter()
            .partition(|entry| parse_net(entry).is_some());
        Ok(Policy {
            allow: HostPatterns::parse(&names)?,
            allow_addrs: addrs.iter().filter_map(|entry| parse_net(entry)).collect(),
            deny: HostPatterns::parse(&config.deny_host)?,
            customer: CustomerHosts::new(&config.customer_hosts)?,
            request_ports: config.request_ports.clone(),
            connect_ports: config.connect_ports.clone(),
            allow_cidr: config.allow_cidr.clone(),
        })
    }

    /// Checks the target of a proxied request: its name, then its port.
    pub fn check_origin(&self, host: &str, port: u16) -> Result<(), PolicyError> {
        self.check_host(host)?;
        check_port(&self.request_ports, port, "requests")
    }

    /// Checks the target of a CONNECT tunnel: its name, then its port.
    pub fn check_connect(&self, host: &str, port: u16) -> Result<(), PolicyError> {
        self.check_host(host)?;
        check_port(&self.connect_ports, port, "CONNECT")
    }

    /// Checks a target name (no port).
    pub fn check_host(&self, host: &str) -> Result<(), PolicyError> {
        if self.deny.matches(host) {
            return Err(PolicyError::HostDenied(host.to_owned()));
        }
        // An IP literal needs `--allow-host` like any name (`*`, the address
        // or a CIDR covering it); `--allow-cidr` only opens what it may
        // resolve to, so opening a range does not open every host in it.
        let literal_allowed = host.parse::<IpAddr>().is_ok_and(|ip| {
            self.allow_addrs
                .iter()
                .any(|net| net.contains(&canonical(ip)))
        });
        if !literal_allowed && !self.allow.matches(host) {
            return Err(PolicyError::HostNotAllowed(host.to_owned()));
        }
        // `*.amazonaws.com` matches customers' hosts too; only a pattern at or
        // below the customer pattern (or `*`, chocon's "any host") opens them.
        self.customer
            .check_named(host, &self.allow, true)
            .map_err(|customer| PolicyError::CustomerHost {
                host: host.to_owned(),
                pattern: customer.to_string(),
            })
    }

    /// The address guard for one resolved address of `host`.
    pub fn check_addr(&self, host: &str, addr: IpAddr) -> Result<(), PolicyError> {
        let ip = canonical(addr);
        if is_public(ip) || self.allow_cidr.iter().any(|net| net.contains(&ip)) {
            return Ok(());
        }
        Err(PolicyError::AddressRefused {
            host: host.to_owned(),
            addr,
        })
    }
}

/// An `--allow-host` entry that is an address (`10.1.2.3`, `::1`) or a
/// CIDR (`10.0.0.0/8`).
fn parse_net(entry: &str) -> Option<IpNet> {
    let entry = entry.trim();
    let entry = entry
        .strip_prefix('[')
        .and_then(|e| e.strip_suffix(']'))
        .unwrap_or(entry);
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(IpNet::from(canonical(ip)));
    }
    let net = entry.parse::<IpNet>().ok()?;
    Some(match net {
        IpNet::V6(v6) if v6.addr().to_ipv4_mapped().is_some() && v6.prefix_len() >= 96 => {
            let v4 = v6.addr().to_ipv4_mapped()?;
            IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).ok()?
        }
        other => other,
    })
}

fn check_port(allowed: &[PortRange], port: u16, kind: &'static str) -> Result<(), PolicyError> {
    if allowed.iter().any(|r| r.contains(port)) {
        return Ok(());
    }
    let allowed = allowed
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    Err(PolicyError::PortNotAllowed {
        port,
        kind,
        allowed,
    })
}

/// IPv4-mapped and IPv4-compatible/NAT64 IPv6 forms judged as the IPv4 they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            // NAT64 well-known prefix 64:ff9b::/96 and the local-use prefix
            // 64:ff9b:1::/48 (RFC 8215, as a /96) embed an IPv4 address in
            // the last 32 bits.
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || s[..3] == [0x64, 0xff9b, 1] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return IpAddr::V4(Ipv4Addr::new(a, b, c, d));
            }
            // 6to4 (2002::/16, RFC 3056): the IPv4 address follows the prefix.
            if s[0] == 0x2002 {
                let [a, b] = s[1].to_be_bytes();
                let [c, d] = s[2].to_be_bytes();
                return IpAddr::V4(Ipv4Addr::new(a, b, c, d));
            }
            IpAddr::V6(v6)
        }
        v4 => v4,
    }
}

/// True for globally routable unicast addresses.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // 100.64.0.0/10 shared address space
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // 192.0.0.0/24 protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // 198.18.0.0/15 benchmarking
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // fc00::/7 unique local (incl. fd00:ec2::254)
        || (first & 0xffc0) == 0xfe80 // fe80::/10 link-local
        || (first & 0xffc0) == 0xfec0 // fec0::/10 site-local (deprecated)
        || first == 0x2001 && ip.segments()[1] == 0xdb8 // documentation
        || ip.segments()[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible ::a.b.c.d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], cidr: &[&str]) -> Policy {
        let mut config = crate::config::Config::default().policy;
        config.allow_host = allow.iter().map(|s| s.to_string()).collect();
        config.deny_host = vec!["*.internal.test".into()];
        config.allow_cidr = cidr.iter().map(|c| c.parse().expect("cidr")).collect();
        Policy::new(&config).expect("valid policy")
    }

    fn default_policy() -> Policy {
        Policy::new(&crate::config::Config::default().policy).expect("valid policy")
    }

    #[test]
    fn default_policy_refuses_customer_hosts() {
        let p = default_policy();
        let refused = [
            (
                "ec2-54-1-2-3.compute-1.amazonaws.com",
                "*.compute-1.amazonaws.com",
            ),
            (
                "EC2-54-1-2-3.Compute-1.AmazonAWS.com.",
                "*.compute-1.amazonaws.com",
            ),
            (
                "ec2-1-2-3-4.us-west-2.compute.amazonaws.com",
                "*.compute.amazonaws.com",
            ),
            (
                "my-lb-123.us-east-1.elb.amazonaws.com",
                "*.elb.amazonaws.com",
            ),
            (
                "dualstack.my-lb-123.us-east-1.elb.amazonaws.com",
                "*.elb.amazonaws.com",
            ),
            (
                "ec2-1-2-3-4.cn-north-1.compute.amazonaws.com.cn",
                "*.compute.amazonaws.com.cn",
            ),
            (
                "ec2-1-2-3-4.compute-1.amazonaws.com.cn",
                "*.compute-1.amazonaws.com.cn",
            ),
            (
                "my-lb.cn-north-1.elb.amazonaws.com.cn",
                "*.elb.amazonaws.com.cn",
            ),
        ];
        for (host, pattern) in refused {
            let err = p.check_host(host).expect_err(host);
            assert_eq!(
                err,
                PolicyError::CustomerHost {
                    host: host.into(),
                    pattern: pattern.into()
                },
                "{host}"
            );
            assert!(
                err.to_string().contains(&format!("--allow-host {pattern}")),
                "{err}"
            );
        }
        for host in [
            "s3.amazonaws.com",
            "ec2.us-east-1.amazonaws.com",
            "elasticloadbalancing.us-east-1.amazonaws.com",
            "bucket.s3.us-west-2.amazonaws.com",
            "ec2.cn-north-1.amazonaws.com.cn",
            "compute-1.amazonaws.com",
        ] {
            assert_eq!(p.check_host(host), Ok(()), "{host}");
        }
    }

    #[test]
    fn customer_hosts_open_only_when_named() {
        let host = "x.us-east-1.elb.amazonaws.com";
        for (allow, open) in [
            (&["*.amazonaws.com"][..], false),
            (&["*.amazonaws.com", "*.example.com"], false),
            (&["*.elb.amazonaws.com"], true),
            (&["*.us-east-1.elb.amazonaws.com"], true),
            (&["x.us-east-1.elb.amazonaws.com"], true),
            (&["*.eu-west-1.elb.amazonaws.com"], false),
            (&["*"], true),
        ] {
            assert_eq!(
                policy(allow, &[]).check_host(host).is_ok(),
                open,
                "{allow:?}"
            );
        }
    }

    #[test]
    fn ports_requests_443_80_connect_443() {
        let p = default_policy();
        assert_eq!(p.check_origin("s3.amazonaws.com", 443), Ok(()));
        assert_eq!(p.check_origin("s3.amazonaws.com", 80), Ok(()));
        assert_eq!(p.check_connect("s3.amazonaws.com", 443), Ok(()));
        for (port, connect) in [
            (25, false),
            (8443, false),
            (0, false),
            (80, true),
            (25, true),
        ] {
            let got = if connect {
                p.check_connect("s3.amazonaws.com", port)
            } else {
                p.check_origin("s3.amazonaws.com", port)
            };
            let err = got.expect_err("port refused");
            assert!(matches!(err, PolicyError::PortNotAllowed { .. }), "{err}");
            assert!(
                err.to_string().contains(&format!("--allow-port {port}")),
                "{err}"
            );
        }
        // The host is judged before the port.
        assert!(matches!(
            p.check_connect("ec2-54-1-2-3.compute-1.amazonaws.com", 25),
            Err(PolicyError::CustomerHost { .. })
        ));
    }

    #[test]
    fn address_guard_refuses_every_non_public_class() {
        let p = policy(&["*"], &[]);
        let refused = [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "fc00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::a9fe:a9fe",
            "64:ff9b:1:2:3:4:7f00:1",
            "2002:a9fe:a9fe::1",
            "2002:7f00:1::",
            "2002:a00:1::1",
            "::127.0.0.1",
        ];
        for addr in refused {
            let ip: IpAddr = addr.parse().expect("ip");
            assert!(p.check_addr("h", ip).is_err(), "{addr} must be refused");
        }
        for addr in [
            "52.216.1.1",
            "2600:1f18::1",
            "::ffff:52.216.1.1",
            "64:ff9b:1::34d8:101",
            "2002:34d8:101::1",
        ] {
            let ip: IpAddr = addr.parse().expect("ip");
            assert!(p.check_addr("h", ip).is_ok(), "{addr} must be allowed");
        }
    }

    #[test]
    fn allow_cidr_opens_a_range_only() {
        let p = policy(&["*"], &["127.0.0.0/8"]);
        assert!(p.check_addr("h", "127.0.0.2".parse().expect("ip")).is_ok());
        assert!(
            p.check_addr("h", "::ffff:127.0.0.2".parse().expect("ip"))
                .is_ok()
        );
        assert!(p.check_addr("h", "10.0.0.1".parse().expect("ip")).is_err());
    }

    #[test]
    fn ip_literals_need_allow_host_whatever_allow_cidr_says() {
        // `--allow-cidr` alone: the literal is not an allowed host.
        let p = policy(&["*.amazonaws.com"], &["10.0.0.0/8"]);
        assert_eq!(
            p.check_host("10.1.2.3"),
            Err(PolicyError::HostNotAllowed("10.1.2.3".into()))
        );
        // Addresses and CIDRs in `--allow-host` allow literals (the address
        // guard still judges them when connecting).
        let p = policy(
            &[
                "*.amazonaws.com",
                "10.1.2.3",
                "192.168.0.0/16",
                "2001:db8::/32",
            ],
            &[],
        );
        for ok in [
            "10.1.2.3",
            "192.168.7.7",
            "2001:db8::5",
            "::ffff:192.168.1.1",
        ] {
            assert_eq!(p.check_host(ok), Ok(()), "{ok}");
        }
        for refused in ["10.1.2.4", "172.16.0.1", "2001:db9::1"] {
            assert!(p.check_host(refused).is_err(), "{refused}");
        }
        assert_eq!(policy(&["*"], &[]).check_host("10.9.9.9"), Ok(()));
    }

    #[test]
    fn host_patterns_allow_and_deny() {
        let p = policy(&["*.amazonaws.com", "*.test"], &[]);
        assert!(p.check_host("s3.amazonaws.com").is_ok());
        assert!(p.check_host("example.com").is_err());
        assert_eq!(
            p.check_host("a.internal.test"),
            Err(PolicyError::HostDenied("a.internal.test".into()))
        );
        assert!(p.check_host("169.254.169.254").is_err());
    }
}
