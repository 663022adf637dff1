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

    /// True when every name this pattern matches is also matched by
    /// `other` (`*.us-east-1.elb.amazonaws.com` is within
    /// `*.elb.amazonaws.com`; `*.amazonaws.com` is not).
    pub fn is_within(&self, other: &HostPattern) -> bool {
        match (self, other) {
            (_, Self::Any) => true,
            (Self::Any, _) => false,
            (Self::Below(s), Self::Below(o)) => s.ends_with(o.as_str()),
            (Self::Exact(n), Self::Below(_)) => other.matches(n),
            (Self::Exact(n), Self::Exact(m)) => n == m,
            (Self::Below(_), Self::Exact(_)) => false,
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Below(suffix) => write!(f, "*{suffix}"),
            Self::Exact(name) => f.write_str(name),
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

    /// The first pattern that matches `host`.
    pub fn first_match(&self, host: &str) -> Option<&HostPattern> {
        self.0.iter().find(|p| p.matches(host))
    }

    /// The patterns, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = &HostPattern> {
        self.0.iter()
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
    fn suffix_patterns_cover_deeper_names() {
        let cases = [
            (
                "*.compute.amazonaws.com",
                "ec2-1-2-3-4.us-west-2.compute.amazonaws.com",
                true,
            ),
            (
                "*.compute-1.amazonaws.com",
                "ec2-54-1-2-3.compute-1.amazonaws.com",
                true,
            ),
            ("*.elb.amazonaws.com", "x.us-east-1.elb.amazonaws.com", true),
            (
                "*.elb.amazonaws.com",
                "dualstack.x-1.eu-west-1.elb.amazonaws.com",
                true,
            ),
            (
                "*.elb.amazonaws.com.cn",
                "x.cn-north-1.elb.amazonaws.com.cn",
                true,
            ),
            ("*.elb.amazonaws.com", "elb.amazonaws.com", false),
            ("*.elb.amazonaws.com", "xelb.amazonaws.com", false),
        ];
        for (pattern, host, want) in cases {
            let p = HostPattern::parse(pattern).expect("valid pattern");
            assert_eq!(p.matches(host), want, "{pattern} vs {host}");
        }
    }

    #[test]
    fn within_compares_what_patterns_match() {
        let cases = [
            ("*.us-east-1.elb.amazonaws.com", "*.elb.amazonaws.com", true),
            ("*.elb.amazonaws.com", "*.elb.amazonaws.com", true),
            ("a.elb.amazonaws.com", "*.elb.amazonaws.com", true),
            ("elb.amazonaws.com", "*.elb.amazonaws.com", false),
            ("*.amazonaws.com", "*.elb.amazonaws.com", false),
            ("*", "*.elb.amazonaws.com", false),
            ("*.xelb.amazonaws.com", "*.elb.amazonaws.com", false),
            ("*.elb.amazonaws.com", "*", true),
        ];
        for (inner, outer, want) in cases {
            let i = HostPattern::parse(inner).expect("valid pattern");
            let o = HostPattern::parse(outer).expect("valid pattern");
            assert_eq!(i.is_within(&o), want, "{inner} within {outer}");
            assert_eq!(i.to_string(), inner);
        }
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in ["", "*.", "a.*.com", "**.com", "*foo.com"] {
            assert_eq!(HostPattern::parse(bad), None, "{bad:?}");
        }
    }
}
