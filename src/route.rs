//! Routing: a request head → where it goes (`Route`). Pure, no I/O.
//!
//! Rules, first match wins (DESIGN "Routing"): absolute-form target
//! (forward proxy), a Host with a ccnproxy label (host mode), a plain Host
//! matching `--https-upgrade` (transparent), `--upstream`, else the proxy's
//! own endpoints.

use http::{Method, Uri};

use crate::config::RouteConfig;
use crate::origin::{OriginError, validate_host};
use crate::pattern::HostPatterns;

// The origin types lived here first; `upstream` still names them through `route`.
pub use crate::origin::{Origin, Scheme};

/// How the request was addressed; decides what happens to `Host`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `Host: target.ccnproxy-https`: Host is rewritten to the target.
    Host,
    /// Absolute-form target (HTTP_PROXY): Host is kept.
    Forward,
    /// Plain AWS Host pointed at the proxy by DNS: Host is kept.
    Transparent,
    /// `--upstream`: Host is kept.
    Upstream,
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Proxy it to an origin.
    Proxy {
        /// The origin to send it to.
        origin: Origin,
        /// How it was addressed (decides `Host`).
        mode: Mode,
    },
    /// `CONNECT host:port`: tunnel bytes.
    Connect {
        /// Target host (validated, lowercase).
        host: String,
        /// Target port.
        port: u16,
    },
    /// The proxy's own endpoints (`/healthz`, `/metrics`, …).
    Admin,
}

/// Why a request could not be routed (400 to the client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No Host and no absolute target.
    #[error("request has no Host header")]
    NoHost,
    /// Host or authority is not a valid name.
    #[error("invalid host {0:?}")]
    BadHost(String),
    /// A label with nothing in front of it (`ccnproxy-https`).
    #[error("host {0:?} names no target before its ccnproxy label")]
    EmptyTarget(String),
    /// Absolute-form target with user info, or an unknown scheme.
    #[error("unsupported request target {0:?}")]
    BadTarget(String),
    /// Absolute-form authority and Host header disagree.
    #[error("Host {host:?} does not match request target authority {authority:?}")]
    HostMismatch {
        /// Target host (validated, lowercase).
        host: String,
        /// The absolute-form target's authority.
        authority: String,
    },
    /// A configured URL is not `http(s)://host[:port]`.
    #[error("invalid origin URL {0:?} (want http://host[:port] or https://host[:port])")]
    BadUrl(String),
}

impl From<OriginError> for RouteError {
    fn from(err: OriginError) -> Self {
        match err {
            OriginError::BadHost(host) => RouteError::BadHost(host),
            OriginError::BadUrl(url) => RouteError::BadUrl(url),
        }
    }
}

/// The routing table built from `RouteConfig`.
#[derive(Debug, Clone)]
pub struct Router {
    upgrade: HostPatterns,
    upstream: Option<Origin>,
}

/// The ccnproxy labels and the scheme each selects.
const LABELS: [(&str, Scheme); 5] = [
    ("ccnproxy", Scheme::Http),
    ("ccnproxy-http", Scheme::Http),
    ("ccnproxy-https", Scheme::Https),
    ("ccnproxy-ssl", Scheme::Https),
    ("ccnproxy-secure", Scheme::Https),
];

impl Router {
    /// Builds the router; fails on a malformed `--https-upgrade` pattern.
    pub fn new(config: &RouteConfig) -> Result<Self, String> {
        Ok(Router {
            upgrade: HostPatterns::parse(&config.https_upgrade)?,
            upstream: config.upstream.clone(),
        })
    }

    /// Routes one request head. `host` is the raw `Host` header, `local_port`
    /// the port the request arrived on.
    pub fn route(
        &self,
        method: &Method,
        uri: &Uri,
        host: Option<&[u8]>,
        local_port: u16,
    ) -> Result<Route, RouteError> {
        let host = match host {
            Some(h) => Some(
                std::str::from_utf8(h)
                    .map_err(|_| RouteError::BadHost(String::from_utf8_lossy(h).into_owned()))?,
            ),
            None => None,
        };
        if method == Method::CONNECT {
            return self.route_connect(uri);
        }
        if uri.scheme().is_some() {
            return self.route_absolute(uri, host);
        }
        let Some(host) = host.filter(|h| !h.is_empty()) else {
            return match &self.upstream {
                Some(origin) => Ok(Route::Proxy {
                    origin: origin.clone(),
                    mode: Mode::Upstream,
                }),
                None => Err(RouteError::NoHost),
            };
        };
        let (name, port) = split_host_port(host)?;
        if let Some((target, scheme)) = strip_label(&name) {
            if target.is_empty() {
                return Err(RouteError::EmptyTarget(host.to_owned()));
            }
            let target = validate_host(target)?;
            let port = match port {
                Some(p) if p != local_port => p,
                _ => scheme.default_port(),
            };
            return Ok(Route::Proxy {
                origin: Origin::new(scheme, &target, port),
                mode: Mode::Host,
            });
        }
        let name = validate_host(&name)?;
        if self.upgrade.matches(&name) {
            return Ok(Route::Proxy {
                origin: Origin::new(Scheme::Https, &name, 443),
                mode: Mode::Transparent,
            });
        }
        if let Some(origin) = &self.upstream {
            return Ok(Route::Proxy {
                origin: origin.clone(),
                mode: Mode::Upstream,
            });
        }
        Ok(Route::Admin)
    }

    fn route_connect(&self, uri: &Uri) -> Result<Route, RouteError> {
        let auth = uri
            .authority()
            .ok_or_else(|| RouteError::BadTarget(uri.to_string()))?;
        if auth.as_str().contains('@') {
            return Err(RouteError::BadTarget(uri.to_string()));
        }
        let port = auth
            .port_u16()
            .ok_or_else(|| RouteError::BadTarget(uri.to_string()))?;
        Ok(Route::Connect {
            host: validate_host(auth.host())?,
            port,
        })
    }

    fn route_absolute(&self, uri: &Uri, host: Option<&str>) -> Result<Route, RouteError> {
        let scheme = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") => Scheme::Http,
            Some(s) if s.eq_ignore_ascii_case("https") => Scheme::Https,
            _ => return Err(RouteError::BadTarget(uri.to_string())),
        };
        let auth = uri
            .authority()
            .ok_or_else(|| RouteError::BadTarget(uri.to_string()))?;
        if auth.as_str().contains('@') {
            return Err(RouteError::BadTarget(uri.to_string()));
        }
        let name = validate_host(auth.host())?;
        let port = auth.port_u16();
        // RFC 9112 §3.2.2: a proxy ignores Host for absolute-form, but a Host that
        // names another server is a smuggling hint; refuse it instead of guessing.
        if let Some(h) = host.filter(|h| !h.is_empty()) {
            let (hname, hport) = split_host_port(h)?;
            let same_port =
                hport.unwrap_or(scheme.default_port()) == port.unwrap_or(scheme.default_port());
            // Compare canonical forms: `[::ffff:7f00:1]` and `[::ffff:127.0.0.1]` agree.
            let same_name = validate_host(&hname).is_ok_and(|h| h == name);
            if !same_name || !same_port {
                return Err(RouteError::HostMismatch {
                    host: h.to_owned(),
                    authority: auth.to_string(),
                });
            }
        }
        let upgrade = scheme == Scheme::Http
            && matches!(port, None | Some(80))
            && self.upgrade.matches(&name);
        let origin = if upgrade {
            Origin::new(Scheme::Https, &name, 443)
        } else {
            Origin::new(scheme, &name, port.unwrap_or(scheme.default_port()))
        };
        Ok(Route::Proxy {
            origin,
            mode: Mode::Forward,
        })
    }
}

/// Splits `name[:port]` / `[v6][:port]`; the name comes back without brackets.
fn split_host_port(host: &str) -> Result<(String, Option<u16>), RouteError> {
    let bad = || RouteError::BadHost(host.to_owned());
    if let Some(rest) = host.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').and_then(parse_port).ok_or_else(bad)?),
        };
        return Ok((v6.to_owned(), port));
    }
    match host.rsplit_once(':') {
        Some((name, port)) => Ok((name.to_owned(), Some(parse_port(port).ok_or_else(bad)?))),
        None => Ok((host.to_owned(), None)),
    }
}

fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|p| *p != 0)
}

/// Finds the last ccnproxy label; returns the target before it and its scheme.
fn strip_label(name: &str) -> Option<(&str, Scheme)> {
    let mut end = name.len();
    let mut found = None;
    // Walk labels from the right: the last occurrence of a label wins.
    for label in name.rsplit('.') {
        let start = end - label.len();
        if let Some((_, scheme)) = LABELS.iter().find(|(l, _)| label.eq_ignore_ascii_case(l)) {
            found = Some((name[..start].trim_end_matches('.'), *scheme));
            break;
        }
        end = start.saturating_sub(1);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(upstream: Option<&str>) -> Router {
        let config = RouteConfig {
            upstream: upstream.map(|u| Origin::from_url(u).expect("valid url")),
            https_upgrade: crate::config::AWS_PATTERNS
                .iter()
                .map(|p| p.to_string())
                .collect(),
        };
        Router::new(&config).expect("valid patterns")
    }

    fn route_host(r: &Router, host: &str) -> Result<String, RouteError> {
        let uri: Uri = "/".parse().expect("uri");
        r.route(&Method::GET, &uri, Some(host.as_bytes()), 3000)
            .map(|route| match route {
                Route::Proxy { origin, mode } => format!("{origin} {mode:?}"),
                other => format!("{other:?}"),
            })
    }

    #[test]
    fn host_labels_pick_scheme_and_port() {
        let r = router(None);
        let cases = [
            (
                "example.com.ccnproxy:3000",
                Some("http://example.com:80 Host"),
            ),
            ("example.com.ccnproxy", Some("http://example.com:80 Host")),
            (
                "example.com.ccnproxy:8080",
                Some("http://example.com:8080 Host"),
            ),
            (
                "example.com.ccnproxy.local:3000",
                Some("http://example.com:80 Host"),
            ),
            (
                "example.com.ccnproxy-http",
                Some("http://example.com:80 Host"),
            ),
            (
                "example.com.ccnproxy-ssl",
                Some("https://example.com:443 Host"),
            ),
            (
                "example.com.ccnproxy-secure",
                Some("https://example.com:443 Host"),
            ),
            (
                "example.com.ccnproxy-https",
                Some("https://example.com:443 Host"),
            ),
            (
                "Example.COM.CCNPROXY-HTTPS:8443",
                Some("https://example.com:8443 Host"),
            ),
            (
                "s3.amazonaws.com.ccnproxy-https",
                Some("https://s3.amazonaws.com:443 Host"),
            ),
            (
                "a.ccnproxy.b.ccnproxy-https.c",
                Some("https://a.ccnproxy.b:443 Host"),
            ),
            (
                "169.254.169.254.ccnproxy",
                Some("http://169.254.169.254:80 Host"),
            ),
            ("ccnproxy-https", None),
            (".ccnproxy", None),
            ("exa mple.com.ccnproxy", None),
            ("example.com.ccnproxy:99999", None),
            ("example.com.ccnproxy:", None),
            (
                "dynamodb.us-east-1.amazonaws.com",
                Some("https://dynamodb.us-east-1.amazonaws.com:443 Transparent"),
            ),
            ("localhost:3000", Some("Admin")),
        ];
        for (host, want) in cases {
            let got = route_host(&r, host).ok();
            assert_eq!(got.as_deref(), want, "host {host:?}");
        }
    }

    #[test]
    fn upstream_takes_what_no_label_claims() {
        let r = router(Some("https://origin.test:8443"));
        assert_eq!(
            route_host(&r, "anything.test").as_deref(),
            Ok("https://origin.test:8443 Upstream")
        );
        assert_eq!(
            route_host(&r, "x.ccnproxy").as_deref(),
            Ok("http://x:80 Host")
        );
    }

    #[test]
    fn absolute_form_is_forwarded_and_upgraded() {
        let r = router(None);
        let cases = [
            (
                "http://dynamodb.us-east-1.amazonaws.com/",
                None,
                Ok("https://dynamodb.us-east-1.amazonaws.com:443"),
            ),
            (
                "http://example.test:8080/x",
                None,
                Ok("http://example.test:8080"),
            ),
            (
                "http://sts.amazonaws.com:8080/",
                None,
                Ok("http://sts.amazonaws.com:8080"),
            ),
            (
                "http://example.test/",
                Some("example.test"),
                Ok("http://example.test:80"),
            ),
            ("http://example.test/", Some("other.test"), Err(())),
            ("http://user:pw@example.test/", None, Err(())),
            ("ftp://example.test/", None, Err(())),
        ];
        for (target, host, want) in cases {
            let uri: Uri = target.parse().expect("uri");
            let got = r.route(&Method::GET, &uri, host.map(str::as_bytes), 3000);
            let got = got.map(|route| match route {
                Route::Proxy {
                    origin,
                    mode: Mode::Forward,
                } => origin.to_string(),
                other => format!("{other:?}"),
            });
            assert_eq!(got.as_deref().map_err(|_| ()), want, "target {target:?}");
        }
    }

    #[test]
    fn connect_needs_host_and_port() {
        let r = router(None);
        let ok: Uri = "s3.amazonaws.com:443".parse().expect("uri");
        assert_eq!(
            r.route(&Method::CONNECT, &ok, None, 3000),
            Ok(Route::Connect {
                host: "s3.amazonaws.com".into(),
                port: 443
            })
        );
        let no_port: Uri = "s3.amazonaws.com".parse().expect("uri");
        assert!(r.route(&Method::CONNECT, &no_port, None, 3000).is_err());
    }
}
