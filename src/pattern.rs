//! Host-name patterns used by `--allow-host`, `--deny-host`,
//! `--https-upgrade` and `--sign-hosts`: `*` (any name), `*.example.com` (any
//! name below example.com, not example.com itself) or an exact name.
//! Matching is ASCII case-insensitive and ignores a trailing dot.

/// One compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Matches every name.
    Any,
    /// `*.suffix`: stored as `.suffix`, lowercase.
    Below(String),
    /// Exactly this name, lowercase.
    Exact(String),
}

impl HostPattern {
    /// Compiles a pattern; `None` for an empty or malformed one (a `*` that is
    /// not the whole first label).
    pub fn parse(pattern: &str) -> Option<Self> {
        let raw = pattern.trim();
        if raw.ends_with("*.") {
            return None;
        }
        let p = raw.trim_end_matches('.').to_ascii_lowercase();
        if p == "*" {
            return Some(Self::Any);
        }
        if let Some(rest) = p.strip_prefix("*.") {
            if rest.is_empty() || rest.contains('*') {
                return None;
            }
            return Some(Self::Below(format!(".{rest}")));
        }
        if p.is_empty() || p.contains('*') {
            return None;
        }
        Some(Self::Exact(p))
    }

    /// True when `host` (a bare name, no port) matches.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        match self {
            Self::Any => true,
            Self::Below(suffix) => {
                host.len() > suffix.len()
                    && host.as_bytes()[host.len() - suffix.len()..]
                        .eq_ignore_ascii_case(suffix.as_bytes())
            }
            Self::Exact(name) => host.eq_ignore_ascii_case(name),
        }
    }
}

/// A list of patterns; matches when any one does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPatterns(Vec<HostPattern>);

impl HostPatterns {
    /// Compiles every pattern, naming the first bad one.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Self, String> {
        patterns
            .iter()
            .map(|p| {
                HostPattern::parse(p.as_ref())
                    .ok_or_else(|| format!("bad host pattern {:?}", p.as_ref()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// True when any pattern matches `host`.
    pub fn matches(&self, host: &str) -> bool {
        self.0.iter().any(|p| p.matches(host))
    }

    /// True when there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_names() {
        let cases = [
            ("*.amazonaws.com", "s3.amazonaws.com", true),
            ("*.amazonaws.com", "S3.AmazonAWS.com.", true),
            ("*.amazonaws.com", "amazonaws.com", false),
            ("*.amazonaws.com", "evilamazonaws.com", false),
            ("*.amazonaws.com", "s3.amazonaws.com.evil.test", false),
            ("*", "anything", true),
            ("example.com", "example.com", true),
            ("example.com", "www.example.com", false),
        ];
        for (pattern, host, want) in cases {
            let p = HostPattern::parse(pattern).expect("valid pattern");
            assert_eq!(p.matches(host), want, "{pattern} vs {host}");
        }
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in ["", "*.", "a.*.com", "**.com", "*foo.com"] {
            assert_eq!(HostPattern::parse(bad), None, "{bad:?}");
        }
    }
}
