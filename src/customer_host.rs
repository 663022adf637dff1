//! Names under the AWS domains that customers run, not AWS: EC2 instances,
//! load balancers, API Gateway APIs, Lambda function URLs, VPC Lattice
//! services, AppSync APIs, PrivateLink endpoint services, S3 websites,
//! databases and brokers. `*.amazonaws.com` matches them all, so a shared
//! proxy would relay (and with `--sign`, sign) requests to anything any AWS
//! customer runs. Policy refuses them unless `--allow-host` names them at or
//! below their pattern; the signer signs them only if `--sign-hosts` does.
//! Pure, no I/O.

use crate::pattern::{HostPattern, HostPatterns};
use crate::scope::is_region;

/// The AWS domain suffixes customer names sit under.
const SUFFIXES: [&str; 3] = [".amazonaws.com.cn", ".amazonaws.com", ".on.aws"];

/// `NAME.LABEL.REGION<suffix>`: the customer's name in front of a service
/// label and a region (`abc123.execute-api.us-east-1.amazonaws.com`). The
/// service's own API endpoint (`kafka.us-east-1.amazonaws.com`) has nothing
/// in front and is not matched.
const BEFORE_REGION: [&str; 12] = [
    "execute-api",          // API Gateway REST, HTTP and WebSocket APIs
    "lambda-url",           // Lambda function URLs (.on.aws)
    "vpc-lattice-svcs",     // VPC Lattice services (.on.aws)
    "elb",                  // Network Load Balancers
    "appsync-api",          // AppSync GraphQL APIs
    "appsync-realtime-api", // AppSync subscriptions
    "s3-website",           // S3 static websites (dot form)
    "transfer",             // Transfer Family servers (`s-….server.transfer…`)
    "kafka",                // MSK brokers
    "mq",                   // Amazon MQ brokers
    "memorydb",             // MemoryDB clusters
    "dax",                  // DAX clusters
];

/// `NAME.REGION.LABEL<suffix>`: databases named region first
/// (`db.abc.us-east-1.rds.amazonaws.com`).
const AFTER_REGION: [&str; 4] = ["rds", "redshift", "docdb", "neptune"];

/// Customer-name rules: fixed patterns (`*.compute-1.amazonaws.com`) and the
/// regional forms above.
#[derive(Debug, Clone, Default)]
pub struct CustomerHosts {
    fixed: HostPatterns,
}

impl CustomerHosts {
    /// The regional forms plus `fixed` patterns.
    pub fn new<S: AsRef<str>>(fixed: &[S]) -> Result<Self, String> {
        Ok(CustomerHosts {
            fixed: HostPatterns::parse(fixed)?,
        })
    }

    /// The pattern of customer names `host` belongs to, if it is one: the
    /// narrowest pattern an allow list must name to open it.
    pub fn pattern_of(&self, host: &str) -> Option<HostPattern> {
        if let Some(fixed) = self.fixed.first_match(host) {
            return Some(fixed.clone());
        }
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        let (prefix, suffix) = SUFFIXES
            .iter()
            .find_map(|s| host.strip_suffix(s).map(|p| (p, *s)))?;
        let labels: Vec<&str> = prefix.split('.').collect();
        let from = regional_start(&labels)?;
        HostPattern::parse(&format!("*.{}{suffix}", labels[from..].join(".")))
    }

    /// `Err(pattern)` when `host` is a customer name that no pattern of
    /// `patterns` names at or below its pattern (`any_opens`: whether `*`
    /// counts as naming it).
    pub fn check_named(
        &self,
        host: &str,
        patterns: &HostPatterns,
        any_opens: bool,
    ) -> Result<(), HostPattern> {
        let Some(customer) = self.pattern_of(host) else {
            return Ok(());
        };
        let named = |p: &HostPattern| {
            p.matches(host)
                && if *p == HostPattern::Any {
                    any_opens
                } else {
                    p.is_within(&customer)
                }
        };
        if patterns.iter().any(named) {
            Ok(())
        } else {
            Err(customer)
        }
    }
}

/// Where the customer pattern of `labels` (the name without its AWS
/// suffix) starts, if it is a regional customer form.
fn regional_start(labels: &[&str]) -> Option<usize> {
    // PrivateLink to a customer's endpoint service:
    // `vpce-….vpce-svc-….us-east-1.vpce.amazonaws.com`.
    if let Some(at) = labels.iter().position(|l| l.starts_with("vpce-svc-"))
        && at > 0
    {
        return Some(at);
    }
    let labels = match labels.split_last() {
        Some((&"vpce", rest)) => rest,
        _ => labels,
    };
    let n = labels.len();
    if n >= 3 && is_region(labels[n - 1]) && BEFORE_REGION.contains(&labels[n - 2]) {
        return Some(n - 2);
    }
    if n >= 3 && is_region(labels[n - 2]) && AFTER_REGION.contains(&labels[n - 1]) {
        return Some(n - 2);
    }
    // `bucket.s3-website-us-east-1.amazonaws.com` (dash form).
    if n >= 2
        && labels[n - 1]
            .strip_prefix("s3-website-")
            .is_some_and(is_region)
    {
        return Some(n - 1);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> CustomerHosts {
        CustomerHosts::new(&crate::config::CUSTOMER_HOST_PATTERNS).unwrap()
    }

    #[test]
    fn customer_forms_have_their_patterns() {
        let cases = [
            (
                "abc123.execute-api.us-east-1.amazonaws.com",
                "*.execute-api.us-east-1.amazonaws.com",
            ),
            (
                "vpce-1.execute-api.us-east-1.vpce.amazonaws.com",
                "*.execute-api.us-east-1.vpce.amazonaws.com",
            ),
            (
                "abc.execute-api.cn-north-1.amazonaws.com.cn",
                "*.execute-api.cn-north-1.amazonaws.com.cn",
            ),
            (
                "xyz.lambda-url.eu-west-1.on.aws",
                "*.lambda-url.eu-west-1.on.aws",
            ),
            (
                "svc-1.7d67968.vpc-lattice-svcs.us-west-2.on.aws",
                "*.vpc-lattice-svcs.us-west-2.on.aws",
            ),
            (
                "my-nlb-1234.elb.us-east-1.amazonaws.com",
                "*.elb.us-east-1.amazonaws.com",
            ),
            (
                "my-alb-1.us-east-1.elb.amazonaws.com",
                "*.elb.amazonaws.com",
            ),
            (
                "abc.appsync-api.us-east-1.amazonaws.com",
                "*.appsync-api.us-east-1.amazonaws.com",
            ),
            (
                "vpce-0a.vpce-svc-0b.us-east-1.vpce.amazonaws.com",
                "*.vpce-svc-0b.us-east-1.vpce.amazonaws.com",
            ),
            (
                "bucket.s3-website-us-east-1.amazonaws.com",
                "*.s3-website-us-east-1.amazonaws.com",
            ),
            (
                "bucket.s3-website.eu-west-1.amazonaws.com",
                "*.s3-website.eu-west-1.amazonaws.com",
            ),
            (
                "db.abc.us-east-1.rds.amazonaws.com",
                "*.us-east-1.rds.amazonaws.com",
            ),
            (
                "s-1.server.transfer.us-east-1.amazonaws.com",
                "*.transfer.us-east-1.amazonaws.com",
            ),
            (
                "ec2-54-1-2-3.compute-1.amazonaws.com",
                "*.compute-1.amazonaws.com",
            ),
        ];
        for (host, want) in cases {
            let got = rules().pattern_of(host).map(|p| p.to_string());
            assert_eq!(got.as_deref(), Some(want), "{host}");
        }
        for api in [
            "execute-api.us-east-1.amazonaws.com",
            "apigateway.us-east-1.amazonaws.com",
            "lambda.us-east-1.amazonaws.com",
            "rds.us-east-1.amazonaws.com",
            "kafka.us-east-1.amazonaws.com",
            "bucket.s3.us-east-1.amazonaws.com",
            "vpce-1.dynamodb.us-east-1.vpce.amazonaws.com",
            "s3.amazonaws.com",
            "lambda.us-east-1.api.aws",
            "elb.amazonaws.com",
        ] {
            assert_eq!(rules().pattern_of(api), None, "{api}");
        }
    }

    #[test]
    fn only_a_pattern_at_or_below_names_a_customer_host() {
        let host = "abc.execute-api.us-east-1.amazonaws.com";
        let pats = |p: &[&str]| HostPatterns::parse(p).unwrap();
        assert!(
            rules()
                .check_named(host, &pats(&["*.amazonaws.com"]), true)
                .is_err()
        );
        assert!(rules().check_named(host, &pats(&["*"]), true).is_ok());
        assert!(rules().check_named(host, &pats(&["*"]), false).is_err());
        assert!(
            rules()
                .check_named(
                    host,
                    &pats(&["*.execute-api.us-east-1.amazonaws.com"]),
                    false
                )
                .is_ok()
        );
        assert!(rules().check_named(host, &pats(&[host]), false).is_ok());
        assert!(
            rules()
                .check_named("s3.amazonaws.com", &pats(&["*.amazonaws.com"]), false)
                .is_ok()
        );
    }
}
