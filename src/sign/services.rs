//! `--sign-services`: the AWS services (signing names) the proxy signs for.
//! A request the signer would sign for another service gets 403, never an
//! unsigned forward. The default (`config::SIGN_SERVICES`) is the data plane
//! people put behind an accelerator; identity and account control (iam,
//! sts, sso, organizations, …) are left out, so a client cannot create keys
//! or assume roles as the proxy.

/// The services signed for; `*` in the list allows every service.
#[derive(Debug, Clone, Default)]
pub(super) struct ServiceList {
    any: bool,
    names: Vec<String>,
}

impl ServiceList {
    /// From `--sign-services` values (signing names, case-insensitive).
    pub(super) fn new<S: AsRef<str>>(names: &[S]) -> Self {
        let names: Vec<String> = names
            .iter()
            .map(|n| n.as_ref().trim().to_ascii_lowercase())
            .filter(|n| !n.is_empty())
            .collect();
        ServiceList {
            any: names.iter().any(|n| n == "*"),
            names,
        }
    }

    /// True when requests for `service` (a signing name) may be signed.
    pub(super) fn allows(&self, service: &str) -> bool {
        self.any || self.names.iter().any(|n| n.eq_ignore_ascii_case(service))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_leaves_out_identity_and_account_control() {
        let list = ServiceList::new(&crate::config::SIGN_SERVICES);
        for signed in [
            "s3",
            "dynamodb",
            "sqs",
            "lambda",
            "kms",
            "logs",
            "s3express",
        ] {
            assert!(list.allows(signed), "{signed}");
        }
        for refused in [
            "iam",
            "sts",
            "sso",
            "sso-oauth",
            "awsssoportal",
            "organizations",
            "account",
            "identitystore",
            "execute-api",
            "ec2",
        ] {
            assert!(!list.allows(refused), "{refused}");
        }
        assert!(ServiceList::new(&["*"]).allows("iam"));
        assert!(ServiceList::new(&["IAM"]).allows("iam"));
    }
}
