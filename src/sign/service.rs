//! Which AWS service and region an endpoint name stands for: the signing name
//! and signing region `--sign` uses when the client did not say (a client's
//! SigV4 credential scope wins over anything derived here). Pure, no I/O.
//!
//! Forms understood (`…` = `.amazonaws.com`, `.amazonaws.com.cn`, `.api.aws`,
//! `.on.aws`, `.api.amazonwebservices.com.cn`):
//! - `service.region…`, `service-fips.region…`, `service.dualstack.region…`,
//!   `prefix.service.region…` (`streams.dynamodb`, `runtime.sagemaker`);
//! - `x.region.service…` for the few services named after the region
//!   (OpenSearch `es`/`aoss`, CloudSearch, legacy SQS `queue`);
//! - global `service…` (`sts`, `iam`, `route53`, …: the partition's signing
//!   region);
//! - S3 in all its shapes: `s3…` (us-east-1), `s3.region…`, `s3-region…`,
//!   `s3-external-1…`, `bucket.s3[.dualstack].region…`, `s3-fips`, access
//!   points, Object Lambda, Outposts, S3 Control, PrivateLink `…vpce…`;
//! - endpoint prefixes whose signing name differs (`email` → `ses`,
//!   `bedrock-runtime` → `bedrock`, `data-ats.iot` → `iotdata`, …).

use crate::scope::is_region;

/// An endpoint's signing name and region, as derived from its host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// SigV4 signing name (`s3`, `dynamodb`, `ses`, …).
    pub service: String,
    /// Signing region; `None` when the name does not tell (S3 Transfer
    /// Acceleration: the bucket's region).
    pub region: Option<String>,
    /// The endpoint speaks the S3 protocol for object data (S3, access points,
    /// Object Lambda, Outposts, Express): payloads may go unsigned.
    pub is_s3_data: bool,
}

/// Domain suffixes of AWS endpoints, longest first, with the partition's
/// default signing region for global endpoints.
const SUFFIXES: [(&str, &str); 5] = [
    (".api.amazonwebservices.com.cn", "cn-north-1"),
    (".amazonaws.com.cn", "cn-north-1"),
    (".amazonaws.com", "us-east-1"),
    (".api.aws", "us-east-1"),
    (".on.aws", "us-east-1"),
];

/// Endpoint prefixes (the label before the region) whose signing name differs.
const SIGNING_NAMES: [(&str, &str); 24] = [
    ("email", "ses"),
    ("lambda-url", "lambda"),
    ("appsync-api", "appsync"),
    ("appsync-realtime-api", "appsync"),
    ("bedrock-runtime", "bedrock"),
    ("bedrock-agent", "bedrock"),
    ("bedrock-agent-runtime", "bedrock"),
    ("bedrock-data-automation", "bedrock"),
    ("bedrock-data-automation-runtime", "bedrock"),
    ("marketplace", "aws-marketplace"),
    ("aps-workspaces", "aps"),
    ("oidc", "sso-oauth"),
    ("data-servicediscovery", "servicediscovery"),
    ("pinpoint", "mobiletargeting"),
    ("transcribestreaming", "transcribe"),
    ("appconfigdata", "appconfig"),
    ("cloudhsmv2", "cloudhsm"),
    ("appstream2", "appstream"),
    ("queue", "sqs"),
    ("runtime-v2-lex", "lex"),
    ("models-v2-lex", "lex"),
    ("contact-lens", "connect"),
    ("sync-states", "states"),
    ("personalize-events", "personalize"),
];

/// `(label before the service label, service label)` pairs with their own
/// signing name: `data-ats.iot.us-east-1…` is IoT Data, not IoT.
const PREFIXED_SIGNING_NAMES: [(&str, &str, &str); 8] = [
    ("data", "iot", "iotdata"),
    ("data-ats", "iot", "iotdata"),
    ("jobs", "iot", "iot-jobs-data"),
    ("tunneling", "iot", "IoTSecuredTunneling"),
    ("data", "iotevents", "ioteventsdata"),
    ("portal", "sso", "awsssoportal"),
    ("sms-voice", "pinpoint", "sms-voice"),
    ("participant", "connect", "execute-api"),
];

/// Services whose endpoints put the region before the service label.
const REGION_FIRST: [(&str, &str); 4] = [
    ("es", "es"),
    ("aoss", "aoss"),
    ("cloudsearch", "cloudsearch"),
    ("queue", "sqs"),
];

/// Global endpoints whose signing region is not the partition's default.
const GLOBAL_REGIONS: [(&str, &str); 2] = [
    ("globalaccelerator", "us-west-2"),
    ("networkmanager", "us-west-2"),
];

impl Endpoint {
    /// Derives the signing name and region from an endpoint host (no port).
    /// `None` when the name is not an AWS endpoint this module understands.
    pub fn from_host(host: &str) -> Option<Self> {
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        let (prefix, default_region) = SUFFIXES
            .iter()
            .find_map(|(suffix, region)| host.strip_suffix(suffix).map(|p| (p, *region)))?;
        let mut labels: Vec<&str> = prefix.split('.').collect();
        if labels.iter().any(|l| l.is_empty()) {
            return None;
        }
        // PrivateLink: `bucket.vpce-1a2b.s3.us-east-1.vpce.amazonaws.com`.
        if labels.len() > 1 && labels.last() == Some(&"vpce") {
            labels.pop();
        }
        if let Some(endpoint) = Self::s3(&labels, default_region) {
            return Some(endpoint);
        }
        Self::regional(&labels).or_else(|| Self::global(&labels, default_region))
    }

    /// S3 and its relatives; `None` when no label is an S3 endpoint label.
    fn s3(labels: &[&str], default_region: &str) -> Option<Self> {
        let at = labels.iter().rposition(|l| is_s3_label(l))?;
        let label = labels[at];
        let rest: Vec<&str> = labels[at + 1..]
            .iter()
            .copied()
            .filter(|l| *l != "dualstack")
            .collect();
        let region_after = match rest.as_slice() {
            [] => None,
            [region] if is_region(region) => Some(region.to_string()),
            _ => return None,
        };
        let (service, is_s3_data, region_in_label) = match label {
            "s3" | "s3-fips" | "s3-accesspoint" | "s3-accesspoint-fips" => ("s3", true, None),
            "s3-external-1" => ("s3", true, Some("us-east-1".to_owned())),
            "s3-control" | "s3-control-fips" => ("s3", false, None),
            "s3-object-lambda" | "s3-object-lambda-fips" => ("s3-object-lambda", true, None),
            "s3-outposts" | "s3-outposts-fips" => ("s3-outposts", true, None),
            "s3-accelerate" => {
                // Accelerated requests are signed for the bucket's region,
                // which only the client knows.
                return Some(Endpoint {
                    service: "s3".into(),
                    region: None,
                    is_s3_data: true,
                });
            }
            "s3express-control" => ("s3express", false, None),
            l if l.starts_with("s3express-") => ("s3express", true, None),
            l => {
                // Legacy dash forms: `s3-us-west-2`, `s3-fips-us-gov-west-1`.
                let region = l
                    .strip_prefix("s3-fips-")
                    .or_else(|| l.strip_prefix("s3-"))?;
                ("s3", true, Some(region.to_owned()))
            }
        };
        let region = match (region_in_label, region_after) {
            (Some(_), Some(_)) => return None,
            (Some(r), None) | (None, Some(r)) => r,
            // `s3.amazonaws.com` and `bucket.s3.amazonaws.com` are us-east-1.
            (None, None) if label == "s3" || label == "s3-fips" => default_region.to_owned(),
            (None, None) => return None,
        };
        Some(Endpoint {
            service: service.to_owned(),
            region: Some(region),
            is_s3_data,
        })
    }

    /// `[prefix.]service.region` and `x.region.service`.
    fn regional(labels: &[&str]) -> Option<Self> {
        let at = labels
            .iter()
            .rposition(|l| is_region(l) || *l == "us-gov")?;
        let region = if labels[at] == "us-gov" {
            "us-gov-west-1"
        } else {
            labels[at]
        };
        let after = &labels[at + 1..];
        let name = match after {
            [] => {
                let mut before = labels[..at].iter().copied().filter(|l| *l != "dualstack");
                let service = before.next_back()?;
                let service = service.strip_suffix("-fips").unwrap_or(service);
                let prefix = before.next_back();
                signing_name(prefix, service)
            }
            [service] => {
                let (_, name) = REGION_FIRST.iter().find(|(label, _)| label == service)?;
                (*name).to_owned()
            }
            _ => return None,
        };
        Some(Endpoint {
            service: name,
            region: Some(region.to_owned()),
            is_s3_data: false,
        })
    }

    /// `service…` and `service-fips…` without a region.
    fn global(labels: &[&str], default_region: &str) -> Option<Self> {
        let [service] = labels else { return None };
        let service = service.strip_suffix("-fips").unwrap_or(service);
        let region = GLOBAL_REGIONS
            .iter()
            .find(|(s, _)| *s == service)
            .map_or(default_region, |(_, r)| *r);
        Some(Endpoint {
            service: signing_name(None, service),
            region: Some(region.to_owned()),
            is_s3_data: false,
        })
    }
}

/// The signing name of endpoint label `service`, preceded by `prefix`.
fn signing_name(prefix: Option<&str>, service: &str) -> String {
    if let Some(prefix) = prefix
        && let Some((_, _, name)) = PREFIXED_SIGNING_NAMES
            .iter()
            .find(|(p, s, _)| *p == prefix && *s == service)
    {
        return (*name).to_owned();
    }
    SIGNING_NAMES
        .iter()
        .find(|(label, _)| *label == service)
        .map_or(service, |(_, name)| *name)
        .to_owned()
}

/// True for the labels that make a name an S3 endpoint.
fn is_s3_label(label: &str) -> bool {
    label == "s3"
        || label.starts_with("s3express-")
        || matches!(
            label,
            "s3-fips"
                | "s3-external-1"
                | "s3-accesspoint"
                | "s3-accesspoint-fips"
                | "s3-control"
                | "s3-control-fips"
                | "s3-object-lambda"
                | "s3-object-lambda-fips"
                | "s3-outposts"
                | "s3-outposts-fips"
                | "s3-accelerate"
        )
        || label
            .strip_prefix("s3-fips-")
            .or_else(|| label.strip_prefix("s3-"))
            .is_some_and(is_region)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (signing name, region, is S3 object data) expected for a host.
    type Want = Option<(&'static str, Option<&'static str>, bool)>;

    #[test]
    fn endpoints_give_signing_name_and_region() {
        let cases: &[(&str, Want)] = &[
            // S3, every shape.
            ("s3.amazonaws.com", Some(("s3", Some("us-east-1"), true))),
            ("S3.AmazonAWS.com.", Some(("s3", Some("us-east-1"), true))),
            (
                "my-bucket.s3.amazonaws.com",
                Some(("s3", Some("us-east-1"), true)),
            ),
            (
                "my.dotted.bucket.s3.amazonaws.com",
                Some(("s3", Some("us-east-1"), true)),
            ),
            (
                "s3.us-west-2.amazonaws.com",
                Some(("s3", Some("us-west-2"), true)),
            ),
            (
                "bucket-1.s3.eu-west-1.amazonaws.com",
                Some(("s3", Some("eu-west-1"), true)),
            ),
            (
                "s3-us-west-2.amazonaws.com",
                Some(("s3", Some("us-west-2"), true)),
            ),
            (
                "bucket.s3-ap-northeast-1.amazonaws.com",
                Some(("s3", Some("ap-northeast-1"), true)),
            ),
            (
                "s3-external-1.amazonaws.com",
                Some(("s3", Some("us-east-1"), true)),
            ),
            (
                "s3.dualstack.us-east-2.amazonaws.com",
                Some(("s3", Some("us-east-2"), true)),
            ),
            (
                "bucket.s3.dualstack.us-east-2.amazonaws.com",
                Some(("s3", Some("us-east-2"), true)),
            ),
            (
                "s3-fips.us-gov-west-1.amazonaws.com",
                Some(("s3", Some("us-gov-west-1"), true)),
            ),
            (
                "s3-fips.dualstack.us-east-1.amazonaws.com",
                Some(("s3", Some("us-east-1"), true)),
            ),
            (
                "s3-fips-us-gov-west-1.amazonaws.com",
                Some(("s3", Some("us-gov-west-1"), true)),
            ),
            (
                "s3.cn-north-1.amazonaws.com.cn",
                Some(("s3", Some("cn-north-1"), true)),
            ),
            (
                "b.s3.cn-northwest-1.amazonaws.com.cn",
                Some(("s3", Some("cn-northwest-1"), true)),
            ),
            (
                "s3.dualstack.cn-north-1.amazonaws.com.cn",
                Some(("s3", Some("cn-north-1"), true)),
            ),
            (
                "ap-123456789012.s3-accesspoint.us-west-2.amazonaws.com",
                Some(("s3", Some("us-west-2"), true)),
            ),
            (
                "ol-123456789012.s3-object-lambda.us-west-2.amazonaws.com",
                Some(("s3-object-lambda", Some("us-west-2"), true)),
            ),
            (
                "ap-1.op-01ac5d28a6a232904.s3-outposts.us-west-2.amazonaws.com",
                Some(("s3-outposts", Some("us-west-2"), true)),
            ),
            (
                "123456789012.s3-control.us-west-2.amazonaws.com",
                Some(("s3", Some("us-west-2"), false)),
            ),
            (
                "s3-control.dualstack.eu-west-1.amazonaws.com",
                Some(("s3", Some("eu-west-1"), false)),
            ),
            (
                "bucket.vpce-1a2b3c4d-5e6f.s3.us-east-1.vpce.amazonaws.com",
                Some(("s3", Some("us-east-1"), true)),
            ),
            (
                "b--usw2-az1--x-s3.s3express-usw2-az1.us-west-2.amazonaws.com",
                Some(("s3express", Some("us-west-2"), true)),
            ),
            (
                "s3express-control.us-west-2.amazonaws.com",
                Some(("s3express", Some("us-west-2"), false)),
            ),
            (
                "bucket.s3-accelerate.amazonaws.com",
                Some(("s3", None, true)),
            ),
            (
                "bucket.s3-accelerate.dualstack.amazonaws.com",
                Some(("s3", None, true)),
            ),
            (
                "s3.us-east-1.api.aws",
                Some(("s3", Some("us-east-1"), true)),
            ),
            // Regional services.
            (
                "dynamodb.us-east-1.amazonaws.com",
                Some(("dynamodb", Some("us-east-1"), false)),
            ),
            (
                "dynamodb.us-east-1.api.aws",
                Some(("dynamodb", Some("us-east-1"), false)),
            ),
            (
                "dynamodb-fips.us-west-2.amazonaws.com",
                Some(("dynamodb", Some("us-west-2"), false)),
            ),
            (
                "streams.dynamodb.eu-central-1.amazonaws.com",
                Some(("dynamodb", Some("eu-central-1"), false)),
            ),
            (
                "sts.us-west-2.amazonaws.com",
                Some(("sts", Some("us-west-2"), false)),
            ),
            (
                "sts-fips.us-east-2.amazonaws.com",
                Some(("sts", Some("us-east-2"), false)),
            ),
            (
                "monitoring.ap-southeast-2.amazonaws.com",
                Some(("monitoring", Some("ap-southeast-2"), false)),
            ),
            (
                "email.us-east-1.amazonaws.com",
                Some(("ses", Some("us-east-1"), false)),
            ),
            (
                "a1b2c3.execute-api.eu-west-3.amazonaws.com",
                Some(("execute-api", Some("eu-west-3"), false)),
            ),
            (
                "bedrock-runtime.us-east-1.amazonaws.com",
                Some(("bedrock", Some("us-east-1"), false)),
            ),
            (
                "runtime.sagemaker.us-east-1.amazonaws.com",
                Some(("sagemaker", Some("us-east-1"), false)),
            ),
            (
                "api.ecr.us-east-1.amazonaws.com",
                Some(("ecr", Some("us-east-1"), false)),
            ),
            (
                "a3qj.iot.us-east-1.amazonaws.com",
                Some(("iot", Some("us-east-1"), false)),
            ),
            (
                "data-ats.iot.us-east-1.amazonaws.com",
                Some(("iotdata", Some("us-east-1"), false)),
            ),
            (
                "data.jobs.iot.us-east-1.amazonaws.com",
                Some(("iot-jobs-data", Some("us-east-1"), false)),
            ),
            (
                "entitlement.marketplace.us-east-1.amazonaws.com",
                Some(("aws-marketplace", Some("us-east-1"), false)),
            ),
            (
                "portal.sso.eu-west-1.amazonaws.com",
                Some(("awsssoportal", Some("eu-west-1"), false)),
            ),
            (
                "abc123.lambda-url.us-east-1.on.aws",
                Some(("lambda", Some("us-east-1"), false)),
            ),
            (
                "xyz.appsync-api.us-east-2.amazonaws.com",
                Some(("appsync", Some("us-east-2"), false)),
            ),
            (
                "ec2.us-east-1.api.aws",
                Some(("ec2", Some("us-east-1"), false)),
            ),
            (
                "lambda.cn-north-1.amazonaws.com.cn",
                Some(("lambda", Some("cn-north-1"), false)),
            ),
            (
                "dynamodb.cn-north-1.api.amazonwebservices.com.cn",
                Some(("dynamodb", Some("cn-north-1"), false)),
            ),
            (
                "iam.us-gov.amazonaws.com",
                Some(("iam", Some("us-gov-west-1"), false)),
            ),
            (
                "kms.us-isob-east-1.amazonaws.com",
                Some(("kms", Some("us-isob-east-1"), false)),
            ),
            (
                "ec2.dualstack.us-east-1.amazonaws.com",
                Some(("ec2", Some("us-east-1"), false)),
            ),
            (
                "vpce-0a1b-2c3d.dynamodb.us-east-1.vpce.amazonaws.com",
                Some(("dynamodb", Some("us-east-1"), false)),
            ),
            // Region before the service.
            (
                "search-dom-abc123.us-east-1.es.amazonaws.com",
                Some(("es", Some("us-east-1"), false)),
            ),
            (
                "abc123.eu-west-1.aoss.amazonaws.com",
                Some(("aoss", Some("eu-west-1"), false)),
            ),
            (
                "us-west-2.queue.amazonaws.com",
                Some(("sqs", Some("us-west-2"), false)),
            ),
            // Global endpoints.
            ("sts.amazonaws.com", Some(("sts", Some("us-east-1"), false))),
            ("iam.amazonaws.com", Some(("iam", Some("us-east-1"), false))),
            (
                "route53.amazonaws.com",
                Some(("route53", Some("us-east-1"), false)),
            ),
            (
                "cloudfront.amazonaws.com",
                Some(("cloudfront", Some("us-east-1"), false)),
            ),
            (
                "queue.amazonaws.com",
                Some(("sqs", Some("us-east-1"), false)),
            ),
            (
                "globalaccelerator.amazonaws.com",
                Some(("globalaccelerator", Some("us-west-2"), false)),
            ),
            (
                "iam.amazonaws.com.cn",
                Some(("iam", Some("cn-north-1"), false)),
            ),
            // Not AWS, or not understood.
            ("amazonaws.com", None),
            ("example.com", None),
            ("s3.amazonaws.com.evil.test", None),
            ("evilamazonaws.com", None),
            ("a..b.amazonaws.com", None),
            ("ec2-1-2-3-4.compute-1.amazonaws.com", None),
            ("foo.bar.amazonaws.com", None),
            ("s3.us-east-1.foo.amazonaws.com", None),
            ("", None),
        ];
        for (host, want) in cases {
            let got = Endpoint::from_host(host);
            let got = got
                .as_ref()
                .map(|e| (e.service.as_str(), e.region.as_deref(), e.is_s3_data));
            assert_eq!(got, *want, "host {host:?}");
        }
    }

    #[test]
    fn regions_are_recognised() {
        for good in [
            "us-east-1",
            "us-gov-west-1",
            "cn-northwest-1",
            "ap-southeast-5",
            "us-isob-east-1",
            "eusc-de-east-1",
            "il-central-1",
        ] {
            assert!(is_region(good), "{good}");
        }
        for bad in [
            "us-east",
            "east-1",
            "us--1",
            "us-east-1a",
            "US-EAST-1",
            "dualstack",
            "s3",
            "compute-1",
            "us-east-123",
            "a-b-1",
        ] {
            assert!(!is_region(bad), "{bad}");
        }
    }
}
