//! SigV4 re-signing (`--sign`): the client's signature is replaced by one made
//! with the proxy's own credentials, for the request as it leaves the proxy
//! (final `Host`, origin-form URI, hop-by-hop headers gone).
//!
//! What is signed and how:
//! - Service and region: from the routed host only (`service.rs`); a
//!   client's credential scope is a claim and never chooses them. A host the
//!   table does not know (or S3 Transfer Acceleration, whose region only the
//!   client knows) is refused, and so is a service not in `--sign-services`
//!   (`services.rs`). Names customers run under the AWS domains are signed
//!   only when `--sign-hosts` names them (`customer_host`).
//! - Headers: `host`, every `x-amz-*`, `content-type`, `content-md5`, and any
//!   other header the client itself signed. Headers that proxies or clients
//!   change on the way (`user-agent`, `expect`, `x-chocon-*`, hop-by-hop) are
//!   never signed. The client's `Authorization`, `X-Amz-Date`,
//!   `X-Amz-Security-Token` and `X-Amz-Content-Sha256` are dropped.
//! - Payload, by kind:
//!   - S3 object APIs (S3, access points, Object Lambda, Outposts):
//!     `x-amz-content-sha256: UNSIGNED-PAYLOAD`; the body streams untouched.
//!   - `aws-chunked` with `STREAMING-UNSIGNED-PAYLOAD-TRAILER` (recent CLIs
//!     and SDKs): the value is kept and only the head is re-signed; chunks
//!     and the checksum trailer carry no signature and stream untouched.
//!   - `aws-chunked` with `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`
//!     (per-chunk signatures, e.g. the Java SDK over plain HTTP): the head is
//!     re-signed and every chunk signature is recomputed as the body streams
//!     (`chunked.rs`); one chunk at a time is held, at most
//!     `--sign-max-body` bytes, and lengths do not change.
//!   - `STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD` (SigV4a chunks) and other
//!     unknown streaming kinds: refused with `SignError::Unsupported`; never
//!     forwarded half-understood.
//!   - Everything else: the body is read whole up to `--sign-max-body`
//!     (`SignError::BodyTooLarge` beyond, checked against `Content-Length`
//!     before reading) and its SHA-256 signed. A body held back for
//!     `Expect: 100-continue` is let through first (the proxy accepts it on
//!     the origin's behalf: the head cannot leave before the hash is known).
//! - Pre-signed URLs (`X-Amz-Signature`, or SigV2 `Signature` in the query)
//!   carry their own authority and pass unchanged. With
//!   `--sign-client-credentials` the client's signature (either form) is
//!   checked first (`verify.rs`); a verified pre-signed URL loses its
//!   signature parameters there and is signed here like any request.
//!
//! Credentials come from the standard chain, cached (`credentials.rs`).
//! Nothing here logs a secret or a signature.

mod chunked;
mod client_keys;
mod clients;
mod credentials;
mod errors;
mod headers;
mod service;
mod services;
mod verify;

use std::sync::Arc;
use std::time::SystemTime;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::{Bytes, BytesMut};
use http::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, HOST};
use http::{HeaderMap, HeaderValue, Request};
use http_body::Body as _;
use http_body_util::BodyExt;

pub use chunked::{ChunkSigner, Resigned};
use client_keys::ClientKeys;
use clients::ClientGate;
pub use clients::check_listener;
pub use credentials::CredentialsCache;
pub use errors::SignError;
use headers::{is_presigned, signable_headers, signed_headers};
pub use service::Endpoint;
use services::ServiceList;

use crate::body::{self, ProxyBody};
use crate::buffer_budget::{BufferBudget, Reservation};
use crate::config::{AWS_PATTERNS, CUSTOMER_HOST_PATTERNS, SignConfig};
use crate::customer_host::CustomerHosts;
use crate::origin::Origin;
use crate::pattern::HostPatterns;

/// Re-signs requests with the proxy's own credentials.
#[derive(Debug)]
pub struct Signer {
    enabled: bool,
    hosts: HostPatterns,
    max_body: u64,
    credentials: Option<CredentialsCache>,
    budget: Option<Arc<BufferBudget>>,
    clients: ClientGate,
    services: ServiceList,
    customer: CustomerHosts,
    client_keys: Option<ClientKeys>,
}

impl Signer {
    /// Loads the credential chain for `config` and checks that it yields
    /// credentials, so a proxy that cannot sign fails at start. A disabled
    /// config loads nothing and signs nothing.
    pub async fn new(config: &SignConfig) -> Result<Self, SignError> {
        if !config.enabled {
            return Ok(Signer {
                enabled: false,
                hosts: HostPatterns::default(),
                max_body: config.max_body,
                credentials: None,
                budget: None,
                clients: ClientGate::default(),
                services: ServiceList::default(),
                customer: CustomerHosts::default(),
                client_keys: None,
            });
        }
        let signer = Self::with_cache(config, CredentialsCache::default_chain().await)?;
        if let Some(cache) = &signer.credentials {
            let credentials = cache.credentials().await.map_err(SignError::Credentials)?;
            tracing::info!(expiry = ?credentials.expiry(), "sign.credentials ready");
        }
        Ok(signer)
    }

    /// A signer using `provider` instead of the standard chain (tests,
    /// embedding); nothing is loaded until the first request.
    pub fn with_provider(
        config: &SignConfig,
        provider: SharedCredentialsProvider,
    ) -> Result<Self, SignError> {
        Self::with_cache(config, CredentialsCache::new(provider))
    }

    fn with_cache(config: &SignConfig, cache: CredentialsCache) -> Result<Self, SignError> {
        let hosts = if config.hosts.is_empty() {
            HostPatterns::parse(&AWS_PATTERNS)
        } else {
            HostPatterns::parse(&config.hosts)
        }
        .map_err(SignError::BadHosts)?;
        Ok(Signer {
            enabled: config.enabled,
            hosts,
            max_body: config.max_body,
            credentials: Some(cache),
            budget: None,
            clients: ClientGate::new(config),
            services: ServiceList::new(&config.services),
            customer: CustomerHosts::new(&CUSTOMER_HOST_PATTERNS).map_err(SignError::BadHosts)?,
            client_keys: match &config.client_credentials {
                Some(path) => Some(ClientKeys::load(path).map_err(SignError::ClientCredentials)?),
                None => None,
            },
        })
    }

    /// Counts the bodies read whole for hashing against `budget`
    /// (`--max-buffered-bytes`); without one they are limited only by
    /// `--sign-max-body` each.
    pub fn with_budget(mut self, budget: Arc<BufferBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// True when requests to `origin` are to be re-signed.
    /// A name customers run under the AWS domains is signed only when
    /// `--sign-hosts` names it at or below its pattern (`*` does not).
    pub fn applies_to(&self, origin: &Origin) -> bool {
        self.enabled
            && self.hosts.matches(&origin.host)
            && self
                .customer
                .check_named(&origin.host, &self.hosts, false)
                .is_ok()
    }

    /// Refuses a client whose requests must not be signed
    /// (`--sign-allow-clients`); `client` is its address after PROXY
    /// protocol and `--trust-forwarded`.
    pub fn check_client(&self, client: std::net::IpAddr) -> Result<(), SignError> {
        self.clients.check_addr(client)
    }

    /// Replaces the client's signature with the proxy's. `req` already has its
    /// final `Host` and URI.
    pub async fn sign(
        &self,
        req: Request<ProxyBody>,
        origin: &Origin,
    ) -> Result<Request<ProxyBody>, SignError> {
        self.sign_at(req, origin, SystemTime::now()).await
    }

    /// `sign` with the signing time given.
    async fn sign_at(
        &self,
        req: Request<ProxyBody>,
        origin: &Origin,
        time: SystemTime,
    ) -> Result<Request<ProxyBody>, SignError> {
        if self.credentials.is_none() || is_presigned(req.uri()) {
            return Ok(req);
        }
        // The routed host alone says what is signed; a client's credential
        // scope is a claim and never chooses the service or region.
        let endpoint = Endpoint::from_host(&origin.host);
        let Some(Endpoint {
            service,
            region: Some(region),
            ..
        }) = &endpoint
        else {
            return Err(SignError::UnknownService(origin.host.to_string()));
        };
        if !self.services.allows(service) {
            return Err(SignError::ServiceNotAllowed {
                service: service.clone(),
                host: origin.host.to_string(),
            });
        }
        self.sign_for(req, origin, service, region, endpoint.as_ref(), time)
            .await
    }

    /// Signs `req` for `service` in `region` (the endpoint's, when the host
    /// is a known one).
    async fn sign_for(
        &self,
        req: Request<ProxyBody>,
        origin: &Origin,
        service: &str,
        region: &str,
        endpoint: Option<&Endpoint>,
        time: SystemTime,
    ) -> Result<Request<ProxyBody>, SignError> {
        let Some(cache) = &self.credentials else {
            return Ok(req);
        };
        let (mut parts, body) = req.into_parts();
        let authorization = parts
            .headers
            .get(AUTHORIZATION)
            .map(|v| v.as_bytes().to_vec());
        let client_signed = authorization
            .as_deref()
            .map(signed_headers)
            .unwrap_or_default();
        if !parts.headers.contains_key(HOST) {
            let host = HeaderValue::from_str(&origin.authority())
                .map_err(|e| SignError::Signing(e.into()))?;
            parts.headers.insert(HOST, host);
        }
        let payload = Payload::choose(&parts.headers, service, endpoint)?;

        for name in [
            "authorization",
            "x-amz-date",
            "x-amz-security-token",
            "x-amz-content-sha256",
        ] {
            parts.headers.remove(name);
        }

        let credentials = cache.credentials().await.map_err(SignError::Credentials)?;

        // Hashed already when the client's signature was checked.
        let prehashed = parts
            .extensions
            .get::<verify::HashedBody>()
            .map(|h| h.0.clone());
        let (body, hashed) = match payload {
            Payload::Hashed { .. } if prehashed.is_none() => {
                // Refused before the client is asked for the body.
                let held = self.reserve(&parts.headers, &body)?;
                // `Expect: 100-continue`: the proxy accepts the body on the
                // origin's behalf, as it must read it before sending the head.
                if let Some(signal) = parts.extensions.get::<body::ContinueSignal>() {
                    signal.0.notify_one();
                }
                let bytes = self.read_body(body, held).await?;
                (None, Some(bytes))
            }
            _ => (Some(body), None),
        };
        let signable_body = match (&payload, &hashed) {
            (_, Some((bytes, _))) => SignableBody::Bytes(bytes),
            (Payload::Hashed { .. }, None) if prehashed.is_some() => {
                if let Some(signal) = parts.extensions.get::<body::ContinueSignal>() {
                    signal.0.notify_one();
                }
                SignableBody::Precomputed(prehashed.clone().unwrap_or_default())
            }
            (Payload::Unsigned, _) => SignableBody::UnsignedPayload,
            (Payload::StreamingUnsignedTrailer, _) => SignableBody::StreamingUnsignedPayloadTrailer,
            (Payload::SignedChunks { trailer: true }, _) => {
                SignableBody::StreamingSignedPayloadTrailer
            }
            (Payload::SignedChunks { trailer: false }, _) => {
                SignableBody::Precomputed("STREAMING-AWS4-HMAC-SHA256-PAYLOAD".to_owned())
            }
            (Payload::Hashed { .. }, None) => unreachable!("hashed payloads have their bytes"),
        };

        let mut settings = SigningSettings::default();
        let s3_rules = service.starts_with("s3") || payload.is_streaming();
        if s3_rules {
            // S3 signs the path as sent, without normalisation or re-encoding.
            settings.percent_encoding_mode = PercentEncodingMode::Single;
            settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        }
        settings.payload_checksum_kind = match payload {
            Payload::Hashed {
                content_sha256: false,
            } if !s3_rules => PayloadChecksumKind::NoHeader,
            _ => PayloadChecksumKind::XAmzSha256,
        };

        let identity = Identity::from(credentials.clone());
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(service)
            .time(time)
            .settings(settings)
            .build()
            .map_err(|e| SignError::Signing(e.into()))?
            .into();

        let headers = signable_headers(&parts.headers, &client_signed)?;
        let uri = parts
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        let signable = SignableRequest::new(
            parts.method.as_str(),
            uri,
            headers.into_iter(),
            signable_body,
        )
        .map_err(|e| SignError::Signing(e.into()))?;
        let (instructions, signature) = aws_sigv4::http_request::sign(signable, &params)
            .map_err(|e| SignError::Signing(e.into()))?
            .into_parts();

        let mut head = Request::from_parts(parts, ());
        instructions.apply_to_request_http1x(&mut head);
        let (parts, ()) = head.into_parts();

        let body = match (payload, body, hashed) {
            (_, _, Some((bytes, held))) => {
                // The reservation goes with the body: given back once the
                // body is sent (or the request dropped).
                body::full(bytes)
                    .map_frame(move |frame| {
                        let _ = &held;
                        frame
                    })
                    .boxed_unsync()
            }
            (Payload::SignedChunks { trailer }, Some(body), None) => {
                let signer = ChunkSigner::new(
                    credentials.secret_access_key(),
                    time,
                    region,
                    service,
                    signature,
                );
                let max_chunk = usize::try_from(self.max_body).unwrap_or(usize::MAX);
                let resigned = Resigned::new(body, signer, trailer, max_chunk);
                match &self.budget {
                    Some(budget) => resigned.with_budget(budget).boxed_unsync(),
                    None => resigned.boxed_unsync(),
                }
            }
            (_, Some(body), None) => body,
            (_, None, None) => unreachable!("a body is either hashed or kept"),
        };
        Ok(Request::from_parts(parts, body))
    }

    /// Checks the body's declared size against `--sign-max-body` and takes
    /// it from the buffer budget.
    fn reserve(&self, headers: &HeaderMap, body: &ProxyBody) -> Result<Reserved, SignError> {
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            .max(body.size_hint().lower());
        if declared > self.max_body {
            return Err(SignError::BodyTooLarge {
                limit: self.max_body,
            });
        }
        match &self.budget {
            Some(budget) => budget
                .reserve(declared)
                .map(Some)
                .ok_or(SignError::BufferFull {
                    limit: budget.limit(),
                }),
            None => Ok(None),
        }
    }

    /// Reads a body to be hashed, at most `max_body` bytes, growing `held`
    /// past the declared size as bytes arrive.
    async fn read_body(
        &self,
        body: ProxyBody,
        mut held: Reserved,
    ) -> Result<(Bytes, Reserved), SignError> {
        // A hand-written loop rather than `http_body_util::Limited`: the
        // latter's `Into<BoxError>` bound makes this future not `Send` for
        // every lifetime (rust-lang/rust#102211) once the service spawns it.
        let mut body = body;
        let mut bytes = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(SignError::Body)?;
            if let Ok(data) = frame.into_data() {
                let len = (bytes.len() + data.len()) as u64;
                if len > self.max_body {
                    return Err(SignError::BodyTooLarge {
                        limit: self.max_body,
                    });
                }
                if let Some(r) = held.as_mut()
                    && !r.grow(len.saturating_sub(r.bytes()))
                {
                    return Err(SignError::BufferFull {
                        limit: r.budget_limit(),
                    });
                }
                bytes.extend_from_slice(&data);
            }
        }
        Ok((bytes.freeze(), held))
    }
}

/// The budget taken by a body being hashed (`None`: no budget).
type Reserved = Option<Reservation>;

/// How the payload is covered by the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Payload {
    /// Read whole and hashed; `content_sha256` when the hash also goes in
    /// `x-amz-content-sha256` (the client sent one, or the service wants it).
    Hashed { content_sha256: bool },
    /// `UNSIGNED-PAYLOAD` (S3 object data).
    Unsigned,
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`: head only.
    StreamingUnsignedTrailer,
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`: chunks re-signed.
    SignedChunks { trailer: bool },
}

impl Payload {
    fn choose(
        headers: &HeaderMap,
        service: &str,
        endpoint: Option<&Endpoint>,
    ) -> Result<Self, SignError> {
        let content_sha256 = headers.get("x-amz-content-sha256").map(|v| v.as_bytes());
        let aws_chunked = headers.get_all(CONTENT_ENCODING).iter().any(|v| {
            v.as_bytes()
                .split(|b| *b == b',')
                .any(|c| c.trim_ascii().eq_ignore_ascii_case(b"aws-chunked"))
        });
        match content_sha256 {
            Some(b"STREAMING-UNSIGNED-PAYLOAD-TRAILER") => {
                return Ok(Self::StreamingUnsignedTrailer);
            }
            Some(b"STREAMING-AWS4-HMAC-SHA256-PAYLOAD") => {
                return Ok(Self::SignedChunks { trailer: false });
            }
            Some(b"STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER") => {
                return Ok(Self::SignedChunks { trailer: true });
            }
            Some(other) if other.starts_with(b"STREAMING-") => {
                return Err(SignError::Unsupported(format!(
                    "x-amz-content-sha256: {} (SigV4a or unknown streaming signature)",
                    String::from_utf8_lossy(other)
                )));
            }
            _ if aws_chunked => {
                return Err(SignError::Unsupported(
                    "Content-Encoding: aws-chunked without a streaming x-amz-content-sha256"
                        .to_owned(),
                ));
            }
            _ => {}
        }
        // S3 object data streams unsigned; S3 Control (signing name `s3`
        // too) takes small XML bodies and gets them hashed.
        let s3_data = match endpoint {
            Some(endpoint) if endpoint.service.starts_with("s3") => endpoint.is_s3_data,
            _ => matches!(
                service,
                "s3" | "s3-object-lambda" | "s3-outposts" | "s3express"
            ),
        };
        if s3_data {
            return Ok(Self::Unsigned);
        }
        Ok(Self::Hashed {
            content_sha256: content_sha256.is_some() || service == "glacier",
        })
    }

    fn is_streaming(self) -> bool {
        matches!(
            self,
            Self::StreamingUnsignedTrailer | Self::SignedChunks { .. }
        )
    }
}

#[cfg(test)]
mod tests;
