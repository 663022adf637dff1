//! Which headers the proxy's signature covers, and what the client's
//! signature said about them.

use std::collections::HashSet;

use http::{HeaderMap, HeaderName};

use super::SignError;

/// Headers never signed: changed on the way by proxies or clients, or
/// produced by the signing itself.
const NEVER_SIGNED: [&str; 16] = [
    "authorization",
    "user-agent",
    "x-amzn-trace-id",
    "expect",
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "via",
    "x-forwarded-for",
    "x-forwarded-proto",
    "forwarded",
];

/// The `(name, value)` pairs to sign.
pub(super) fn signable_headers<'a>(
    headers: &'a HeaderMap,
    client_signed: &HashSet<String>,
) -> Result<Vec<(&'a str, &'a str)>, SignError> {
    let mut out = Vec::new();
    for (name, value) in headers {
        if !is_signed(name, client_signed) {
            continue;
        }
        let value = value.to_str().map_err(|_| {
            SignError::Unsupported(format!(
                "header {name} has a value that is not visible ASCII and cannot be signed"
            ))
        })?;
        out.push((name.as_str(), value));
    }
    Ok(out)
}

fn is_signed(name: &HeaderName, client_signed: &HashSet<String>) -> bool {
    let name = name.as_str();
    if NEVER_SIGNED.contains(&name) || name.starts_with("x-chocon-") {
        return false;
    }
    name == "host"
        || name.starts_with("x-amz-")
        || name == "content-type"
        || name == "content-md5"
        || client_signed.contains(name)
}

/// The `SignedHeaders=a;b;c` list of a SigV4 `Authorization` value, as a
/// set: each header is looked up once, so a long list costs no more than
/// its length.
pub(super) fn signed_headers(authorization: &[u8]) -> HashSet<String> {
    let Ok(value) = std::str::from_utf8(authorization) else {
        return HashSet::new();
    };
    let Some(start) = value.find("SignedHeaders=") else {
        return HashSet::new();
    };
    let list = value[start + "SignedHeaders=".len()..]
        .split([',', ' '])
        .next()
        .unwrap_or("");
    list.split(';')
        .filter(|s| !s.is_empty())
        .map(|s| s.to_ascii_lowercase())
        .collect()
}

/// True for pre-signed URLs: SigV4 `X-Amz-Signature` or SigV2 `Signature`
/// with `AWSAccessKeyId` in the query.
pub(super) fn is_presigned(uri: &http::Uri) -> bool {
    let Some(query) = uri.query() else {
        return false;
    };
    let has = |param: &str| {
        query.split('&').any(|pair| {
            let name = pair.split('=').next().unwrap_or("");
            name.eq_ignore_ascii_case(param)
        })
    };
    has("X-Amz-Signature") || (has("Signature") && has("AWSAccessKeyId"))
}
