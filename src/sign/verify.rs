//! `--sign-client-credentials`: before the proxy signs with its role, the
//! client's own SigV4 signature must check out against a key the proxy
//! holds. The expected signature is computed with aws-sigv4 over the
//! client's canonical request as it arrived (its `Host`, path, query and the
//! headers it signed, for the scope it claimed); a missing, wrong, expired
//! (`X-Amz-Date` more than 15 minutes off, or a pre-signed URL past
//! `X-Amz-Expires`) or unknown-key signature is refused and never forwarded.
//!
//! Payload: the client's `x-amz-content-sha256` when it sent one (S3,
//! `UNSIGNED-PAYLOAD`, the `STREAMING-*` kinds: for `aws-chunked` bodies the
//! seed signature is checked, not each chunk's); otherwise the body is read
//! (bounded like the signer's hashing) and hashed, and the hash is handed to
//! the signer so the body is not read twice. The client that passed becomes
//! a `VerifiedClient` in the request's extensions.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation,
    SigningSettings, UriPathNormalizationMode,
};
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http::header::{AUTHORIZATION, HOST};
use http::{Request, request};
use http_body::Body;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};

use super::{SignError, Signer};
use crate::body::{self, BoxError, ProxyBody};
use crate::identity::verified::VerifiedClient;
use crate::scope::CredentialScope;

/// How far a client's `X-Amz-Date` may be from the proxy's clock.
pub(super) const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// The SHA-256 of a body already read and checked, for the signer.
#[derive(Debug, Clone)]
pub(super) struct HashedBody(pub(super) String);

/// Query parameters of a pre-signed URL that carry its signature.
const PRESIGN_PARAMS: [&str; 7] = [
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-date",
    "x-amz-expires",
    "x-amz-signedheaders",
    "x-amz-signature",
    "x-amz-security-token",
];

/// What a client's signature says, parsed.
struct Claim {
    scope: CredentialScope,
    signed_headers: Vec<String>,
    signature: String,
    time: SystemTime,
    /// `X-Amz-Expires` of a pre-signed URL; `None` for `Authorization`.
    expires: Option<Duration>,
}

fn refuse(why: impl Into<String>) -> SignError {
    SignError::ClientUnverified(why.into())
}

impl Signer {
    /// True when clients must prove who they are (`--sign-client-credentials`).
    pub fn verifies_clients(&self) -> bool {
        self.client_keys.is_some()
    }

    /// Checks the client's signature of `req`; on success the request (its
    /// body read if it had to be hashed) carries a `VerifiedClient`.
    /// `body_timeout` bounds the wait between reads of that body.
    pub async fn verify_client<B>(
        &self,
        req: Request<B>,
        body_timeout: Duration,
    ) -> Result<Request<ProxyBody>, SignError>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let Some(keys) = &self.client_keys else {
            return Ok(req.map(|b| b.map_err(Into::into).boxed_unsync()));
        };
        let (mut parts, body) = req.into_parts();
        let body: ProxyBody = body.map_err(Into::into).boxed_unsync();
        let claim = parse_claim(&parts)?;
        let key = keys.get(&claim.scope.access_key).ok_or_else(|| {
            refuse(format!(
                "access key id {} is not in --sign-client-credentials",
                claim.scope.access_key
            ))
        })?;
        check_time(&claim, SystemTime::now())?;

        let declared = parts
            .headers
            .get("x-amz-content-sha256")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let s3 = claim.scope.service.starts_with("s3");
        let (payload, body) = match declared {
            Some(hash) => (SignableBody::Precomputed(hash), body),
            None if claim.expires.is_some() && s3 => (SignableBody::UnsignedPayload, body),
            None => {
                let held = self.reserve(&parts.headers, &body)?;
                let read = tokio::time::timeout(body_timeout, self.read_body(body, held)).await;
                let (bytes, held) = read.map_err(|_| SignError::BodyTimeout(body_timeout))??;
                let hash = hex(&Sha256::digest(&bytes));
                parts.extensions.insert(HashedBody(hash.clone()));
                let body = body::full(bytes)
                    .map_frame(move |frame| {
                        let _ = &held;
                        frame
                    })
                    .boxed_unsync();
                (SignableBody::Precomputed(hash), body)
            }
        };

        let expected = expected_signature(&parts, &claim, &key.secret, payload)?;
        if !same(expected.as_bytes(), claim.signature.as_bytes()) {
            return Err(refuse(
                "the signature does not match (wrong secret, or the request changed after signing)",
            ));
        }
        if claim.expires.is_some() {
            // The proxy signs it again with its role, in the header form.
            parts.uri = without_presign_params(&parts.uri)?;
        }
        parts.extensions.insert(VerifiedClient {
            access_key_id: claim.scope.access_key.clone(),
            name: key.name.clone(),
        });
        Ok(Request::from_parts(parts, body))
    }
}

/// The claim of an `Authorization: AWS4-HMAC-SHA256 …` header or of a
/// pre-signed URL's query.
fn parse_claim(parts: &request::Parts) -> Result<Claim, SignError> {
    if let Some(auth) = parts.headers.get(AUTHORIZATION) {
        let auth = auth
            .to_str()
            .map_err(|_| refuse("the Authorization header is not ASCII"))?;
        let scope = CredentialScope::from_authorization(auth.as_bytes())
            .ok_or_else(|| refuse("the Authorization header is not a SigV4 signature"))?;
        let field = |name: &str| {
            let start = auth.find(name)? + name.len();
            auth[start..].split([',', ' ']).next()
        };
        let signed = field("SignedHeaders=").ok_or_else(|| refuse("no SignedHeaders"))?;
        let signature = field("Signature=").ok_or_else(|| refuse("no Signature"))?;
        let date = parts
            .headers
            .get("x-amz-date")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| refuse("no X-Amz-Date header"))?;
        return Ok(Claim {
            time: parse_time(date, &scope)?,
            scope,
            signed_headers: split_list(signed),
            signature: signature.to_ascii_lowercase(),
            expires: None,
        });
    }
    let query = parts.uri.query().unwrap_or("");
    let param = |name: &str| {
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            k.eq_ignore_ascii_case(name).then(|| percent_decode(v))
        })
    };
    let Some(signature) = param("X-Amz-Signature") else {
        return Err(refuse(
            "the request carries no SigV4 signature; sign it with a key from \
             --sign-client-credentials",
        ));
    };
    let credential = param("X-Amz-Credential").ok_or_else(|| refuse("no X-Amz-Credential"))?;
    let scope = CredentialScope::from_credential(&credential)
        .ok_or_else(|| refuse("X-Amz-Credential is not a SigV4 scope"))?;
    let date = param("X-Amz-Date").ok_or_else(|| refuse("no X-Amz-Date"))?;
    let expires = param("X-Amz-Expires")
        .and_then(|e| e.parse::<u64>().ok())
        .filter(|e| *e <= 7 * 24 * 3600)
        .ok_or_else(|| refuse("X-Amz-Expires missing or over 7 days"))?;
    let signed = param("X-Amz-SignedHeaders").unwrap_or_else(|| "host".to_owned());
    Ok(Claim {
        time: parse_time(&date, &scope)?,
        scope,
        signed_headers: split_list(&signed),
        signature: signature.to_ascii_lowercase(),
        expires: Some(Duration::from_secs(expires)),
    })
}

fn split_list(list: &str) -> Vec<String> {
    list.split(';')
        .filter(|s| !s.is_empty())
        .map(|s| s.to_ascii_lowercase())
        .collect()
}

/// `20240101T000000Z`, which must agree with the scope's date.
fn parse_time(date: &str, scope: &CredentialScope) -> Result<SystemTime, SignError> {
    let parsed = chrono::NaiveDateTime::parse_from_str(date, "%Y%m%dT%H%M%SZ")
        .map_err(|_| refuse(format!("X-Amz-Date {date:?} is not YYYYMMDDTHHMMSSZ")))?;
    if !date.starts_with(&scope.date) {
        return Err(refuse("X-Amz-Date and the credential scope's date differ"));
    }
    Ok(SystemTime::from(parsed.and_utc()))
}

/// Refuses a signature from too far in the past or future, or a pre-signed
/// URL past its expiry.
fn check_time(claim: &Claim, now: SystemTime) -> Result<(), SignError> {
    let ahead = claim.time.duration_since(now).unwrap_or_default();
    let behind = now.duration_since(claim.time).unwrap_or_default();
    if ahead > MAX_SKEW {
        return Err(refuse(
            "X-Amz-Date is more than 15 minutes ahead of the proxy's clock",
        ));
    }
    let valid_for = claim.expires.unwrap_or(MAX_SKEW);
    if behind > valid_for {
        return Err(refuse(match claim.expires {
            Some(_) => "the pre-signed URL has expired (X-Amz-Expires)",
            None => "the signature has expired: X-Amz-Date is more than 15 minutes old",
        }));
    }
    Ok(())
}

/// The signature the client should have made, as aws-sigv4 computes it.
fn expected_signature(
    parts: &request::Parts,
    claim: &Claim,
    secret: &str,
    payload: SignableBody<'_>,
) -> Result<String, SignError> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for name in &claim.signed_headers {
        let mut found = false;
        for value in parts.headers.get_all(name.as_str()) {
            let value = value
                .to_str()
                .map_err(|_| refuse(format!("signed header {name} is not ASCII")))?;
            headers.push((name.clone(), value.to_owned()));
            found = true;
        }
        if !found
            && name == HOST.as_str()
            && let Some(authority) = parts.uri.authority()
        {
            headers.push((name.clone(), authority.to_string()));
            found = true;
        }
        if !found {
            return Err(refuse(format!("signed header {name} is missing")));
        }
    }
    if !claim.signed_headers.iter().any(|h| h == HOST.as_str()) {
        return Err(refuse("the signature does not cover Host"));
    }

    let mut settings = SigningSettings::default();
    settings.excluded_headers = None;
    settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
    if claim.scope.service.starts_with("s3") {
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    }
    let uri = match claim.expires {
        Some(expires) => {
            settings.signature_location = SignatureLocation::QueryParams;
            settings.expires_in = Some(expires);
            without_presign_params(&parts.uri)?.to_string()
        }
        None => parts
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned(),
    };
    let credentials = Credentials::new(
        claim.scope.access_key.clone(),
        secret.to_owned(),
        None,
        None,
        "sign-client-credentials",
    );
    let identity = Identity::from(credentials);
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(&claim.scope.region)
        .name(&claim.scope.service)
        .time(claim.time)
        .settings(settings)
        .build()
        .map_err(|e| SignError::Signing(e.into()))?
        .into();
    let signable = SignableRequest::new(
        parts.method.as_str(),
        Cow::Owned(uri),
        headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        payload,
    )
    .map_err(|e| refuse(format!("the request cannot be canonicalised: {e}")))?;
    let (_, signature) = aws_sigv4::http_request::sign(signable, &params)
        .map_err(|e| SignError::Signing(e.into()))?
        .into_parts();
    Ok(signature)
}

/// `uri` (origin form) without the pre-signed URL's signature parameters.
fn without_presign_params(uri: &http::Uri) -> Result<http::Uri, SignError> {
    let kept: Vec<&str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or("");
            !pair.is_empty() && !PRESIGN_PARAMS.iter().any(|p| name.eq_ignore_ascii_case(p))
        })
        .collect();
    let path = uri.path();
    let text = if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    text.parse()
        .map_err(|_| refuse("the request target cannot be rebuilt without its signature"))
}

/// `%2F` and friends decoded; malformed escapes are kept as they are.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time equality (the comparison must not tell how much matched).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use aws_credential_types::provider::SharedCredentialsProvider;

    use super::*;
    use crate::config::SignConfig;

    const KEY: &str = "AKIDCLIENT";
    const SECRET: &str = "client-secret";

    fn signer(dir: &tempfile::TempDir) -> Signer {
        let file = dir.path().join("keys");
        std::fs::write(&file, format!("{KEY} {SECRET} team\n")).unwrap();
        let mut config: SignConfig = crate::config::Config::default().sign;
        config.enabled = true;
        config.client_credentials = Some(file);
        let proxy = Credentials::new("AKIDPROXY", "proxy", None, None, "test");
        Signer::with_provider(&config, SharedCredentialsProvider::new(proxy)).unwrap()
    }

    /// A pre-signed S3 GET as a client makes it (aws-sigv4, query form).
    fn presigned(secret: &str, time: SystemTime) -> String {
        let identity = Identity::from(Credentials::new(KEY, secret, None, None, "test"));
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(Duration::from_secs(300));
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("s3")
            .time(time)
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let signable = SignableRequest::new(
            "GET",
            "/bucket/key?versionId=1",
            [("host", "s3.amazonaws.com")].into_iter(),
            SignableBody::UnsignedPayload,
        )
        .unwrap();
        let (instructions, _) = aws_sigv4::http_request::sign(signable, &params)
            .unwrap()
            .into_parts();
        let mut req = http::Request::get("/bucket/key?versionId=1")
            .body(())
            .unwrap();
        instructions.apply_to_request_http1x(&mut req);
        req.uri().to_string()
    }

    fn request(uri: &str) -> Request<ProxyBody> {
        Request::get(uri)
            .header("host", "s3.amazonaws.com")
            .body(body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn presigned_urls_are_verified_and_lose_their_signature() {
        let dir = tempfile::tempdir().unwrap();
        let signer = signer(&dir);
        let timeout = Duration::from_secs(5);
        let uri = presigned(SECRET, SystemTime::now());
        let verified = signer.verify_client(request(&uri), timeout).await.unwrap();
        assert_eq!(verified.uri().to_string(), "/bucket/key?versionId=1");
        let client = verified.extensions().get::<VerifiedClient>().unwrap();
        assert_eq!(client.access_key_id, KEY);
        assert_eq!(client.name.as_deref(), Some("team"));

        let wrong = presigned("other", SystemTime::now());
        let tampered = uri.replace("versionId=1", "versionId=2");
        let old = presigned(SECRET, SystemTime::now() - Duration::from_secs(600));
        for (what, uri) in [
            ("wrong secret", wrong),
            ("tampered", tampered),
            ("expired", old),
        ] {
            let got = signer.verify_client(request(&uri), timeout).await;
            assert!(
                matches!(got, Err(SignError::ClientUnverified(_))),
                "{what}: {got:?}"
            );
        }
    }

    #[test]
    fn times_out_of_bounds_are_refused() {
        let scope =
            CredentialScope::from_credential("AK/20240101/us-east-1/s3/aws4_request").unwrap();
        let time = parse_time("20240101T120000Z", &scope).unwrap();
        assert!(
            parse_time("20240102T120000Z", &scope).is_err(),
            "date differs from scope"
        );
        assert!(parse_time("2024-01-01", &scope).is_err());
        let claim = |expires| Claim {
            scope: scope.clone(),
            signed_headers: vec!["host".into()],
            signature: String::new(),
            time,
            expires,
        };
        let at = |secs: i64| {
            if secs >= 0 {
                time + Duration::from_secs(secs as u64)
            } else {
                time - Duration::from_secs((-secs) as u64)
            }
        };
        assert!(check_time(&claim(None), at(14 * 60)).is_ok());
        assert!(check_time(&claim(None), at(-14 * 60)).is_ok());
        assert!(check_time(&claim(None), at(16 * 60)).is_err());
        assert!(check_time(&claim(None), at(-16 * 60)).is_err());
        let hour = Some(Duration::from_secs(3600));
        assert!(check_time(&claim(hour), at(50 * 60)).is_ok());
        assert!(check_time(&claim(hour), at(61 * 60)).is_err());
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"ab", b"abc"));
    }
}
