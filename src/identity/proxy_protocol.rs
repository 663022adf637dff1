//! PROXY protocol headers (HAProxy's `proxy-protocol.txt`, v1 text and v2
//! binary), parsed from the first bytes of a client connection. Pure: no I/O;
//! `super::read_header` feeds it bytes until it says the header is complete.
//!
//! What is kept: the source address (none for v1 `UNKNOWN`, v2 `LOCAL`, and
//! the v2 `UNSPEC` and `UNIX` families: the connection's own peer is used
//! then) and AWS's VPC endpoint id (v2 TLV `0xEA`, subtype `0x01`). Other
//! TLVs are skipped after their bounds are checked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::Vpce;

/// The 12 bytes that open a v2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// What opens a v1 header.
pub const V1_PREFIX: &[u8] = b"PROXY ";
/// A v1 header is at most this long, `\r\n` included.
pub const V1_MAX_BYTES: usize = 107;
/// Largest v2 address-and-TLV block accepted (the protocol allows 65535;
/// balancers send well under 1 KiB, and this bounds what a connection buffers).
pub const V2_MAX_PAYLOAD: usize = 4096;
/// Fixed part of a v2 header: signature, version/command, family, length.
const V2_FIXED: usize = 16;
/// AWS's TLV type, and its subtype for the VPC endpoint id.
const PP2_TYPE_AWS: u8 = 0xEA;
const PP2_SUBTYPE_AWS_VPCE_ID: u8 = 0x01;

/// A complete header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// 1 or 2.
    pub version: u8,
    /// The client the balancer speaks for; `None`: use the connection's peer
    /// (v1 `UNKNOWN`, v2 `LOCAL` such as a balancer's health check, or an
    /// address family that is not IP).
    pub source: Option<SocketAddr>,
    /// AWS PrivateLink: the VPC endpoint the client came through.
    pub vpce: Option<Vpce>,
}

/// Why bytes are not a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The connection does not open with a PROXY header at all.
    #[error("no PROXY protocol header")]
    Missing,
    /// It opens like one but breaks the grammar.
    #[error("malformed PROXY protocol v{version} header: {reason}")]
    Malformed {
        /// 1 or 2.
        version: u8,
        /// What is wrong, in a few words.
        reason: &'static str,
    },
    /// A v2 header announcing more than `V2_MAX_PAYLOAD` bytes.
    #[error("PROXY protocol v2 header of {0} bytes is larger than {V2_MAX_PAYLOAD}")]
    TooLarge(usize),
}

/// What the first bytes of a connection look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// `PROXY ` (v1).
    V1,
    /// The v2 signature.
    V2,
    /// Anything else (an HTTP request, say).
    Other,
    /// Too few bytes to tell.
    Undecided,
}

/// Tells a PROXY header from other traffic with as few bytes as possible:
/// the first byte that differs from both openings decides.
pub fn opening(buf: &[u8]) -> Opening {
    let is_prefix = |want: &[u8]| {
        let n = buf.len().min(want.len());
        buf[..n] == want[..n]
    };
    match (is_prefix(V1_PREFIX), is_prefix(&V2_SIGNATURE)) {
        (false, false) => Opening::Other,
        (true, _) if buf.len() >= V1_PREFIX.len() => Opening::V1,
        (_, true) if buf.len() >= V2_SIGNATURE.len() => Opening::V2,
        _ => Opening::Undecided,
    }
}

/// Parses the header at the start of `buf`: `Ok(None)` when more bytes are
/// needed, else the header and how many bytes it took (what follows belongs
/// to HTTP).
pub fn parse(buf: &[u8]) -> Result<Option<(Header, usize)>, HeaderError> {
    match opening(buf) {
        Opening::Other => Err(HeaderError::Missing),
        Opening::Undecided => Ok(None),
        Opening::V1 => parse_v1(buf),
        Opening::V2 => parse_v2(buf),
    }
}

fn v1_err(reason: &'static str) -> HeaderError {
    HeaderError::Malformed { version: 1, reason }
}

fn v2_err(reason: &'static str) -> HeaderError {
    HeaderError::Malformed { version: 2, reason }
}

/// `PROXY TCP4 SRC DST SPORT DPORT\r\n`, `TCP6` alike, or `PROXY UNKNOWN…\r\n`.
fn parse_v1(buf: &[u8]) -> Result<Option<(Header, usize)>, HeaderError> {
    let window = &buf[..buf.len().min(V1_MAX_BYTES)];
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        // Fail early on bytes no header holds rather than waiting for more.
        if let Some(&b) = window.iter().find(|&&b| !(b' '..=b'~').contains(&b)) {
            return Err(v1_err(if b == b'\n' {
                "line ends without \\r"
            } else {
                "byte outside printable ASCII"
            }));
        }
        return if buf.len() >= V1_MAX_BYTES {
            Err(v1_err("no \\r\\n within 107 bytes"))
        } else {
            Ok(None)
        };
    };
    let line = &window[..cr];
    if line.iter().any(|b| !(b' '..=b'~').contains(b)) {
        return Err(v1_err("byte outside printable ASCII"));
    }
    match window.get(cr + 1) {
        None if buf.len() > cr + 1 => return Err(v1_err("no \\r\\n within 107 bytes")),
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err(v1_err("\\r not followed by \\n")),
    }
    let len = cr + 2;
    let Ok(text) = std::str::from_utf8(&line[V1_PREFIX.len()..]) else {
        return Err(v1_err("not printable ASCII"));
    };
    let mut fields = text.split(' ');
    let family = fields.next().unwrap_or_default();
    if !matches!(family, "TCP4" | "TCP6" | "UNKNOWN") {
        return Err(v1_err("protocol is not TCP4, TCP6 or UNKNOWN"));
    }
    if family == "UNKNOWN" {
        // The receiver must ignore whatever follows UNKNOWN.
        let header = Header {
            version: 1,
            source: None,
            vpce: None,
        };
        return Ok(Some((header, len)));
    }
    let parse_ip = |s: Option<&str>| -> Result<IpAddr, HeaderError> {
        let s = s.ok_or(v1_err("missing field"))?;
        match family {
            "TCP4" => s.parse::<Ipv4Addr>().map(IpAddr::V4),
            _ => s.parse::<Ipv6Addr>().map(IpAddr::V6),
        }
        .map_err(|_| v1_err("bad address"))
    };
    let src = parse_ip(fields.next())?;
    parse_ip(fields.next())?;
    let sport = port(fields.next())?;
    port(fields.next())?;
    if fields.next().is_some() {
        return Err(v1_err("extra field"));
    }
    let header = Header {
        version: 1,
        source: Some(SocketAddr::new(src, sport)),
        vpce: None,
    };
    Ok(Some((header, len)))
}

/// A decimal port, 0–65535, without sign or leading zeros.
fn port(field: Option<&str>) -> Result<u16, HeaderError> {
    let s = field.ok_or(v1_err("missing field"))?;
    let plain = !s.is_empty()
        && s.len() <= 5
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    if !plain {
        return Err(v1_err("bad port"));
    }
    s.parse().map_err(|_| v1_err("bad port"))
}

/// Signature, version 2 + command, family + transport, length, addresses, TLVs.
fn parse_v2(buf: &[u8]) -> Result<Option<(Header, usize)>, HeaderError> {
    if buf.len() < V2_FIXED {
        return Ok(None);
    }
    let (version, command) = (buf[12] >> 4, buf[12] & 0x0F);
    if version != 2 {
        return Err(v2_err("version is not 2"));
    }
    let (family, transport) = (buf[13] >> 4, buf[13] & 0x0F);
    let payload_len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if payload_len > V2_MAX_PAYLOAD {
        return Err(HeaderError::TooLarge(V2_FIXED + payload_len));
    }
    let local = match command {
        0x0 => true,
        0x1 => false,
        _ => return Err(v2_err("command is neither LOCAL nor PROXY")),
    };
    let address_len = match family {
        0x0 => 0,
        0x1 => 12,
        0x2 => 36,
        0x3 => 216,
        _ => return Err(v2_err("unknown address family")),
    };
    if transport > 0x2 {
        return Err(v2_err("unknown transport protocol"));
    }
    // A LOCAL header may carry anything; only PROXY promises the block.
    if !local && payload_len < address_len {
        return Err(v2_err("address block shorter than its family needs"));
    }
    let total = V2_FIXED + payload_len;
    if buf.len() < total {
        return Ok(None);
    }
    let payload = &buf[V2_FIXED..total];
    if local {
        let header = Header {
            version: 2,
            source: None,
            vpce: None,
        };
        return Ok(Some((header, total)));
    }
    let a = &payload[..address_len];
    let source = match family {
        0x1 => Some(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
            u16::from_be_bytes([a[8], a[9]]),
        )),
        0x2 => Some(SocketAddr::new(
            IpAddr::V6(Ipv6Addr::from(std::array::from_fn::<u8, 16, _>(|i| a[i]))),
            u16::from_be_bytes([a[32], a[33]]),
        )),
        _ => None,
    };
    let vpce = vpce_tlv(&payload[address_len..])?;
    let header = Header {
        version: 2,
        source,
        vpce,
    };
    Ok(Some((header, total)))
}

/// Walks the TLVs; each must fit. Returns AWS's VPC endpoint id if present
/// and plausible (an id that is not short visible ASCII is ignored).
fn vpce_tlv(mut tlvs: &[u8]) -> Result<Option<Vpce>, HeaderError> {
    let mut vpce = None;
    while !tlvs.is_empty() {
        if tlvs.len() < 3 {
            return Err(v2_err("TLV shorter than its own head"));
        }
        let kind = tlvs[0];
        let len = usize::from(u16::from_be_bytes([tlvs[1], tlvs[2]]));
        let value = tlvs
            .get(3..3 + len)
            .ok_or(v2_err("TLV runs past the header"))?;
        if kind == PP2_TYPE_AWS && value.first() == Some(&PP2_SUBTYPE_AWS_VPCE_ID) {
            vpce = Vpce::new(&value[1..]);
        }
        tlvs = &tlvs[3 + len..];
    }
    Ok(vpce)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v2 header: command, family/transport byte, address block, TLVs.
    fn v2(command: u8, fam: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(fam);
        let len = u16::try_from(addresses.len() + tlvs.len()).unwrap();
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(addresses);
        out.extend_from_slice(tlvs);
        out
    }

    fn ipv4_block() -> Vec<u8> {
        // 192.0.2.1:54321 → 10.0.0.5:3000
        let mut a = vec![192, 0, 2, 1, 10, 0, 0, 5];
        a.extend_from_slice(&54321u16.to_be_bytes());
        a.extend_from_slice(&3000u16.to_be_bytes());
        a
    }

    fn ipv6_block() -> Vec<u8> {
        let src: Ipv6Addr = "2001:db8::7".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let mut a = src.octets().to_vec();
        a.extend_from_slice(&dst.octets());
        a.extend_from_slice(&443u16.to_be_bytes());
        a.extend_from_slice(&3000u16.to_be_bytes());
        a
    }

    fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![kind];
        out.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
        out.extend_from_slice(value);
        out
    }

    fn aws_vpce(id: &str) -> Vec<u8> {
        let mut value = vec![PP2_SUBTYPE_AWS_VPCE_ID];
        value.extend_from_slice(id.as_bytes());
        tlv(PP2_TYPE_AWS, &value)
    }

    type Want = Result<Option<(Option<&'static str>, Option<&'static str>, usize)>, HeaderError>;

    fn check(input: &[u8], want: Want, what: &str) {
        let got = parse(input).map(|o| {
            o.map(|(h, n)| {
                (
                    h.source.map(|s| s.to_string()),
                    h.vpce.map(|v| v.as_str().to_owned()),
                    n,
                )
            })
        });
        let want = want.map(|o| o.map(|(s, v, n)| (s.map(str::to_owned), v.map(str::to_owned), n)));
        assert_eq!(got, want, "{what}: {:?}", String::from_utf8_lossy(input));
    }

    #[test]
    fn v1_cases() {
        let m = |reason| Err(HeaderError::Malformed { version: 1, reason });
        let long_unknown = format!("PROXY UNKNOWN {}\r\n", "x".repeat(100));
        let cases: Vec<(&[u8], Want)> = vec![
            (
                b"PROXY TCP4 192.0.2.1 10.0.0.5 54321 3000\r\nGET / HTTP/1.1\r\n",
                Ok(Some((Some("192.0.2.1:54321"), None, 42))),
            ),
            (
                b"PROXY TCP6 2001:db8::7 2001:db8::1 443 3000\r\n",
                Ok(Some((Some("[2001:db8::7]:443"), None, 45))),
            ),
            (
                b"PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n",
                Ok(Some((Some("[::ffff:192.0.2.1]:1"), None, 37))),
            ),
            (b"PROXY UNKNOWN\r\n", Ok(Some((None, None, 15)))),
            (
                b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nGET",
                Ok(Some((None, None, 35))),
            ),
            (
                b"PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n",
                Ok(Some((Some("0.0.0.0:0"), None, 32))),
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 65535 1\r\n",
                Ok(Some((Some("1.2.3.4:65535"), None, 36))),
            ),
            // Truncated: more bytes could complete it.
            (b"PROX", Ok(None)),
            (b"PROXY", Ok(None)),
            (b"PROXY TCP4 192.0.2.1 10.0.0.5 54321 3000", Ok(None)),
            (b"PROXY TCP4 192.0.2.1 10.0.0.5 54321 3000\r", Ok(None)),
            // Malformed.
            (
                b"PROXY TCP4 192.0.2.1 10.0.0.5 54321 3000\n",
                m("line ends without \\r"),
            ),
            (
                b"PROXY TCP4 192.0.2.1 10.0.0.5 54321 3000\rX",
                m("\\r not followed by \\n"),
            ),
            (
                b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
                m("protocol is not TCP4, TCP6 or UNKNOWN"),
            ),
            (
                b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
                m("protocol is not TCP4, TCP6 or UNKNOWN"),
            ),
            (b"PROXY \r\n", m("protocol is not TCP4, TCP6 or UNKNOWN")),
            (b"PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n", m("bad address")),
            (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", m("bad address")),
            (b"PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n", m("bad address")),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", m("bad port")),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", m("bad port")),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", m("bad port")),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n", m("bad port")),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", m("missing field")),
            (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", m("bad address")),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", m("extra field")),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\0\r\n",
                m("byte outside printable ASCII"),
            ),
            (
                b"PROXY TCP4 \xc3\xa9 5.6.7.8 1 2\r\n",
                m("byte outside printable ASCII"),
            ),
            (long_unknown.as_bytes(), m("no \\r\\n within 107 bytes")),
            // Not a PROXY header at all.
            (b"GET / HTTP/1.1\r\n", Err(HeaderError::Missing)),
            (b"PROXY\r\n", Err(HeaderError::Missing)),
            (b"proxy TCP4", Err(HeaderError::Missing)),
            (b"", Ok(None)),
        ];
        for (input, want) in cases {
            check(input, want, "v1");
        }
    }

    #[test]
    fn v2_cases() {
        let m = |reason| Err(HeaderError::Malformed { version: 2, reason });
        let id = "vpce-0123456789abcdef0";
        let with_vpce = v2(1, 0x11, &ipv4_block(), &aws_vpce(id));
        let noop_then_vpce = v2(
            1,
            0x11,
            &ipv4_block(),
            &[tlv(0x04, b"pad"), aws_vpce(id)].concat(),
        );
        let mut trailing = v2(1, 0x11, &ipv4_block(), &[]);
        trailing.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let local_with_junk = v2(0, 0x11, b"whatever a health check sends", &[]);
        let bad_vpce = v2(1, 0x11, &ipv4_block(), &aws_vpce("vpce id\nwith newline"));
        let other_aws_subtype = v2(1, 0x11, &ipv4_block(), &tlv(PP2_TYPE_AWS, b"\x02x"));
        let empty_aws = v2(1, 0x11, &ipv4_block(), &tlv(PP2_TYPE_AWS, b""));
        let mut too_large = v2(1, 0x11, &[], &[]);
        too_large[14..16].copy_from_slice(&5000u16.to_be_bytes());
        let mut ver3 = v2(1, 0x11, &ipv4_block(), &[]);
        ver3[12] = 0x31;
        let cmd2 = v2(2, 0x11, &ipv4_block(), &[]);
        let fam4 = v2(1, 0x41, &ipv4_block(), &[]);
        let proto3 = v2(1, 0x13, &ipv4_block(), &[]);
        let short_ipv6 = v2(1, 0x21, &ipv4_block(), &[]);
        let tlv_overrun = v2(1, 0x11, &ipv4_block(), &[0x04, 0x00, 0x09, 1, 2]);
        let tlv_stub = v2(1, 0x11, &ipv4_block(), &[0x04, 0x00]);
        let unix = v2(1, 0x31, &[0u8; 216], &[]);
        let unspec = v2(1, 0x00, &[], &[]);
        let full = v2(1, 0x11, &ipv4_block(), &[]);
        let ipv6 = v2(1, 0x21, &ipv6_block(), &[]);
        let bare_local = v2(0, 0x00, &[], &[]);
        let cases: Vec<(&[u8], Want)> = vec![
            (&full, Ok(Some((Some("192.0.2.1:54321"), None, 28)))),
            (&trailing, Ok(Some((Some("192.0.2.1:54321"), None, 28)))),
            (&ipv6, Ok(Some((Some("[2001:db8::7]:443"), None, 52)))),
            (
                &with_vpce,
                Ok(Some((Some("192.0.2.1:54321"), Some(id), with_vpce.len()))),
            ),
            (
                &noop_then_vpce,
                Ok(Some((
                    Some("192.0.2.1:54321"),
                    Some(id),
                    noop_then_vpce.len(),
                ))),
            ),
            (
                &local_with_junk,
                Ok(Some((None, None, local_with_junk.len()))),
            ),
            (&bare_local, Ok(Some((None, None, 16)))),
            (&unix, Ok(Some((None, None, 232)))),
            (&unspec, Ok(Some((None, None, 16)))),
            (
                &bad_vpce,
                Ok(Some((Some("192.0.2.1:54321"), None, bad_vpce.len()))),
            ),
            (
                &other_aws_subtype,
                Ok(Some((
                    Some("192.0.2.1:54321"),
                    None,
                    other_aws_subtype.len(),
                ))),
            ),
            (
                &empty_aws,
                Ok(Some((Some("192.0.2.1:54321"), None, empty_aws.len()))),
            ),
            // Truncated anywhere: more bytes could complete it.
            (&full[..11], Ok(None)),
            (&full[..12], Ok(None)),
            (&full[..15], Ok(None)),
            (&full[..16], Ok(None)),
            (&full[..27], Ok(None)),
            (&with_vpce[..with_vpce.len() - 1], Ok(None)),
            // Malformed.
            (&too_large, Err(HeaderError::TooLarge(5016))),
            (&ver3, m("version is not 2")),
            (&cmd2, m("command is neither LOCAL nor PROXY")),
            (&fam4, m("unknown address family")),
            (&proto3, m("unknown transport protocol")),
            (
                &short_ipv6,
                m("address block shorter than its family needs"),
            ),
            (&tlv_overrun, m("TLV runs past the header")),
            (&tlv_stub, m("TLV shorter than its own head")),
            (b"\r\n\r\n\0\r\nQUIT\r", Err(HeaderError::Missing)),
            (b"\r\n\r\nGET", Err(HeaderError::Missing)),
        ];
        for (input, want) in cases {
            check(input, want, "v2");
        }
    }

    #[test]
    fn opening_decides_on_the_first_differing_byte() {
        let cases: [(&[u8], Opening); 8] = [
            (b"", Opening::Undecided),
            (b"P", Opening::Undecided),
            (b"PROXY", Opening::Undecided),
            (b"PROXY ", Opening::V1),
            (b"G", Opening::Other),
            (b"\r\n\r\n\0\r\nQUI", Opening::Undecided),
            (b"\r\n\r\n\0\r\nQUIT\n", Opening::V2),
            (b"\r\nGET", Opening::Other),
        ];
        for (input, want) in cases {
            assert_eq!(opening(input), want, "{input:?}");
        }
    }

    #[test]
    fn every_prefix_of_a_valid_header_asks_for_more() {
        let headers = [
            b"PROXY TCP6 2001:db8::7 2001:db8::1 443 3000\r\n".to_vec(),
            v2(1, 0x21, &ipv6_block(), &aws_vpce("vpce-1")),
        ];
        for h in headers {
            for n in 0..h.len() {
                assert_eq!(parse(&h[..n]), Ok(None), "prefix of {n} bytes");
            }
            assert!(matches!(parse(&h), Ok(Some((_, len))) if len == h.len()));
        }
    }
}
