//! The SigV4 credential scope a client put in its `Authorization` header:
//! access key id, date, region and service. Used by the access log, the
//! per-client accounting and `--sign`; parsing is pure and never fails loudly
//! (a header that is not SigV4 simply has no scope).

/// `Credential=AKID/20240101/us-east-1/dynamodb/aws4_request`, split up.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CredentialScope {
    /// Access key id (`AKIA…`, `ASIA…`); never the secret.
    pub access_key: String,
    /// `YYYYMMDD` as the client wrote it.
    pub date: String,
    /// Signing region, e.g. `us-east-1`.
    pub region: String,
    /// Signing name, e.g. `s3`, `dynamodb`.
    pub service: String,
}

impl CredentialScope {
    /// Parses an `Authorization` value of the form
    /// `AWS4-HMAC-SHA256 Credential=AK/DATE/REGION/SERVICE/aws4_request, SignedHeaders=…, Signature=…`.
    /// Returns `None` for anything else (SigV2, bearer tokens, garbage).
    pub fn from_authorization(value: &[u8]) -> Option<Self> {
        let value = std::str::from_utf8(value).ok()?;
        let rest = value.strip_prefix("AWS4-HMAC-SHA256")?;
        let start = rest.find("Credential=")? + "Credential=".len();
        let cred = rest[start..].split([',', ' ']).next()?;
        Self::from_credential(cred)
    }

    /// Parses the `X-Amz-Credential` form (pre-signed URLs):
    /// `AK/DATE/REGION/SERVICE/aws4_request`.
    pub fn from_credential(cred: &str) -> Option<Self> {
        let mut parts = cred.split('/');
        let access_key = parts.next()?;
        let date = parts.next()?;
        let region = parts.next()?;
        let service = parts.next()?;
        if parts.next()? != "aws4_request" || parts.next().is_some() {
            return None;
        }
        let plain = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        };
        if !(plain(access_key) && plain(date) && plain(region) && plain(service)) {
            return None;
        }
        Some(Self {
            access_key: access_key.to_owned(),
            date: date.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
        })
    }
}

/// Longest access key id taken from a pre-signed URL.
pub const MAX_KEY_ID_BYTES: usize = 128;

/// The access key id of a pre-signed URL's
/// `X-Amz-Credential=AKID%2F20240101%2Fus-east-1%2Fs3%2Faws4_request`.
pub fn presigned_access_key(query: &str) -> Option<&str> {
    let value = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("X-Amz-Credential="))?;
    let end = value
        .find('/')
        .into_iter()
        .chain(value.find("%2F"))
        .chain(value.find("%2f"))
        .min()?;
    let key = &value[..end];
    let valid = !key.is_empty()
        && key.len() <= MAX_KEY_ID_BYTES
        && key.bytes().all(|b| b.is_ascii_alphanumeric());
    valid.then_some(key)
}

/// True for region names: `us-east-1`, `us-gov-west-1`, `cn-north-1`,
/// `us-isob-east-1`, `eusc-de-east-1`, `ap-southeast-5`.
pub fn is_region(label: &str) -> bool {
    let parts: Vec<&str> = label.split('-').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return false;
    };
    (2..=4).contains(&first.len())
        && first.bytes().all(|b| b.is_ascii_lowercase())
        && !middle.is_empty()
        && middle
            .iter()
            .all(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_lowercase()))
        && !last.is_empty()
        && last.len() <= 2
        && last.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    type Case<'a> = (&'a [u8], Option<(&'a str, &'a str, &'a str)>);

    #[test]
    fn parses_only_sigv4_scopes() {
        let cases: [Case; 7] = [
            (
                b"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc",
                Some(("AKIDEXAMPLE", "us-east-1", "iam")),
            ),
            (
                b"AWS4-HMAC-SHA256 Credential=AK/20240101/eu-west-1/s3/aws4_request,SignedHeaders=host,Signature=00",
                Some(("AK", "eu-west-1", "s3")),
            ),
            (b"AWS AKIDEXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=", None),
            (b"AWS4-HMAC-SHA256 Credential=AK/20240101/us-east-1/s3", None),
            (b"AWS4-HMAC-SHA256 Credential=AK/2024/r/s/aws4_request/extra", None),
            (b"AWS4-HMAC-SHA256 Credential=A\"K/2024/r/s/aws4_request", None),
            (b"\xff\xfe", None),
        ];
        for (input, want) in cases {
            let got = CredentialScope::from_authorization(input);
            let got = got
                .as_ref()
                .map(|s| (s.access_key.as_str(), s.region.as_str(), s.service.as_str()));
            assert_eq!(got, want, "input {:?}", String::from_utf8_lossy(input));
        }
    }
}
