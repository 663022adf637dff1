//! Where a request goes upstream: `Scheme`, `Origin` (the key of a pool) and
//! the host-name check they share. A leaf: it imports nothing of the proxy,
//! so configuration, routing, signing and the pool can all name an origin.

use std::fmt;
use std::sync::Arc;

use http::Uri;

/// A host or origin URL that cannot name an upstream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    /// Not a DNS name or IP literal.
    #[error("invalid host {0:?}")]
    BadHost(String),
    /// A configured URL is not `http(s)://host[:port]`.
    #[error("invalid origin URL {0:?} (want http://host[:port] or https://host[:port])")]
    BadUrl(String),
}

/// Upstream scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// The scheme's default port.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }

    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

/// An upstream origin: scheme, host, port. The key of a pool.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// Scheme.
    pub scheme: Scheme,
    /// Lowercase host name or IP literal (IPv6 without brackets).
    pub host: Arc<str>,
    /// Port.
    pub port: u16,
}

impl Origin {
    /// Builds an origin from parts; `host` must already be validated.
    pub fn new(scheme: Scheme, host: &str, port: u16) -> Self {
        Origin {
            scheme,
            host: host.to_ascii_lowercase().into(),
            port,
        }
    }

    /// Parses `http://host[:port]` or `https://host[:port]` (a path, if
    /// any, must be `/`).
    pub fn from_url(url: &str) -> Result<Self, OriginError> {
        let uri: Uri = url
            .parse()
            .map_err(|_| OriginError::BadUrl(url.to_owned()))?;
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::Http,
            Some("https") => Scheme::Https,
            _ => return Err(OriginError::BadUrl(url.to_owned())),
        };
        let auth = uri
            .authority()
            .ok_or_else(|| OriginError::BadUrl(url.to_owned()))?;
        if auth.as_str().contains('@') || !matches!(uri.path(), "" | "/") {
            return Err(OriginError::BadUrl(url.to_owned()));
        }
        let host = validate_host(auth.host())?;
        Ok(Origin::new(
            scheme,
            &host,
            auth.port_u16().unwrap_or(scheme.default_port()),
        ))
    }

    /// The `Host` value for this origin: the port is left out when it is the
    /// scheme's default.
    pub fn authority(&self) -> String {
        let host: &str = &self.host;
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        if self.port == self.scheme.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl fmt::Display for Origin {
    // Pieces rather than `write!`: this runs for every request (the access
    // record and the metrics labels), and the formatting machinery costs
    // several times more (callgrind, docs/bench.md).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bracket = self.host.contains(':');
        f.write_str(self.scheme.as_str())?;
        f.write_str(if bracket { "://[" } else { "://" })?;
        f.write_str(&self.host)?;
        f.write_str(if bracket { "]:" } else { ":" })?;
        f.write_str(itoa::Buffer::new().format(self.port))
    }
}

/// Checks a target host: a DNS name (letters, digits, `-`, `_`, dots; labels
/// of 1–63 bytes; 253 bytes at most), an IPv4 literal, or an IPv6 literal.
/// Returns it lowercase without a trailing dot.
pub fn validate_host(host: &str) -> Result<String, OriginError> {
    let bad = || OriginError::BadHost(host.to_owned());
    let h = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if h.contains(':') {
        return h
            .parse::<std::net::Ipv6Addr>()
            .map(|ip| ip.to_string())
            .map_err(|_| bad());
    }
    let h = h.strip_suffix('.').unwrap_or(h);
    if h.is_empty() || h.len() > 253 {
        return Err(bad());
    }
    for label in h.split('.') {
        let ok_chars = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if label.is_empty() || label.len() > 63 || !ok_chars {
            return Err(bad());
        }
    }
    Ok(h.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_host_rejects_junk() {
        for bad in [
            "",
            "a..b",
            "a b",
            "a/b",
            "a@b",
            &"x".repeat(64),
            "[::1",
            "::zz",
        ] {
            assert!(validate_host(bad).is_err(), "{bad:?}");
        }
        assert_eq!(validate_host("[::1]").as_deref(), Ok("::1"));
        assert_eq!(validate_host("Example.COM.").as_deref(), Ok("example.com"));
    }

    #[test]
    fn authority_leaves_out_default_ports() {
        let origin = Origin::from_url("https://S3.Example.com").expect("valid url");
        assert_eq!(origin.authority(), "s3.example.com");
        assert_eq!(origin.to_string(), "https://s3.example.com:443");
        let v6 = Origin::from_url("http://[::1]:8080/").expect("valid url");
        assert_eq!(v6.authority(), "[::1]:8080");
        assert_eq!(v6.to_string(), "http://[::1]:8080");
        assert!(matches!(
            Origin::from_url("ftp://x"),
            Err(OriginError::BadUrl(_))
        ));
    }
}
