//! The proxy's own AWS credentials: the standard chain of aws-config
//! (environment, shared profile incl. SSO and `credential_process`, web
//! identity, ECS container, EC2 IMDSv2), behind a cache.
//!
//! aws-config 1.x does not cache inside the chain (SDK clients cache in their
//! orchestrator's identity cache, which needs a whole SDK runtime), so this
//! module keeps its own cache with the same rules as the SDK's lazy cache:
//! - credentials are reused until `REFRESH_BEFORE` their expiry; from then on
//!   one background task loads new ones while requests keep using the old
//!   ones (no request waits on IMDS while valid credentials exist);
//! - credentials without an expiry are reloaded every `STATIC_REFRESH` (a
//!   rotated profile file is picked up);
//! - only when nothing valid is cached does a request wait, and concurrent
//!   waiters share one load (single flight), bounded by `LOAD_TIMEOUT`;
//! - a failed refresh keeps the old credentials until they expire.
//!
//! Nothing here logs secrets: `Credentials`' `Debug` redacts them, and log
//! lines name only the provider.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};

use crate::body::BoxError;

/// Refresh this long before credentials expire (IMDS and ECS hand out new
/// credentials at least five minutes before the old ones expire).
const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);
/// Reload credentials that carry no expiry this often.
const STATIC_REFRESH: Duration = Duration::from_secs(15 * 60);
/// Give up on one load of the chain after this long.
const LOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Cached credentials with the time to start refreshing them.
#[derive(Debug, Clone)]
struct Entry {
    credentials: Credentials,
    refresh_at: SystemTime,
}

impl Entry {
    fn new(credentials: Credentials, now: SystemTime) -> Self {
        let refresh_at = match credentials.expiry() {
            // Short-lived credentials (under twice the margin) refresh at
            // half their remaining life instead of immediately.
            Some(expiry) => {
                let life = expiry.duration_since(now).unwrap_or_default();
                expiry - REFRESH_BEFORE.min(life / 2)
            }
            None => now + STATIC_REFRESH,
        };
        Entry {
            credentials,
            refresh_at,
        }
    }

    fn is_valid(&self, now: SystemTime) -> bool {
        self.credentials.expiry().is_none_or(|expiry| now < expiry)
    }
}

/// A caching front of a credentials provider.
#[derive(Debug, Clone)]
pub struct CredentialsCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    provider: SharedCredentialsProvider,
    cached: RwLock<Option<Entry>>,
    // Held while a load runs: one load at a time.
    loading: Arc<tokio::sync::Mutex<()>>,
}

impl CredentialsCache {
    /// Caches credentials from `provider`; nothing is loaded yet.
    pub fn new(provider: SharedCredentialsProvider) -> Self {
        CredentialsCache {
            inner: Arc::new(Inner {
                provider,
                cached: RwLock::new(None),
                loading: Arc::new(tokio::sync::Mutex::new(())),
            }),
        }
    }

    /// The standard aws-config chain, cached. Its HTTPS client (IMDS, ECS,
    /// STS, SSO) uses ring like the rest of the proxy: one crypto backend.
    pub async fn default_chain() -> Self {
        use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
        let https = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let config = aws_config::provider_config::ProviderConfig::default().with_http_client(https);
        let chain = aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
            .configure(config)
            .build()
            .await;
        Self::new(SharedCredentialsProvider::new(chain))
    }

    /// Valid credentials: cached ones, or freshly loaded when none are valid.
    pub async fn credentials(&self) -> Result<Credentials, BoxError> {
        let now = SystemTime::now();
        if let Some(entry) = self.cached() {
            if now < entry.refresh_at {
                return Ok(entry.credentials);
            }
            if entry.is_valid(now) {
                self.refresh_in_background();
                return Ok(entry.credentials);
            }
        }
        let _loading = self.inner.loading.lock().await;
        // Another request may have loaded while this one waited.
        if let Some(entry) = self.cached()
            && entry.is_valid(SystemTime::now())
        {
            return Ok(entry.credentials);
        }
        self.inner.load().await
    }

    fn cached(&self) -> Option<Entry> {
        self.inner
            .cached
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn refresh_in_background(&self) {
        let Ok(guard) = Arc::clone(&self.inner.loading).try_lock_owned() else {
            return; // a load is already running
        };
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            let _guard = guard;
            if let Err(err) = inner.load().await {
                tracing::warn!(
                    error = &*err as &dyn std::error::Error,
                    "sign.credentials refresh failed; using the cached ones"
                );
            }
        });
    }
}

impl Inner {
    /// Loads from the provider and caches the result. Caller holds `loading`.
    async fn load(&self) -> Result<Credentials, BoxError> {
        let loaded = tokio::time::timeout(LOAD_TIMEOUT, self.provider.provide_credentials()).await;
        let credentials = match loaded {
            Ok(Ok(credentials)) => credentials,
            Ok(Err(err)) => return Err(err.into()),
            Err(_) => {
                return Err(
                    format!("credential chain did not answer within {LOAD_TIMEOUT:?}").into(),
                );
            }
        };
        let now = SystemTime::now();
        let entry = Entry::new(credentials.clone(), now);
        if !entry.is_valid(now) {
            return Err("the credential chain returned expired credentials".into());
        }
        tracing::debug!(
            expiry = ?credentials.expiry(),
            "sign.credentials loaded"
        );
        *self
            .cached
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(entry);
        Ok(credentials)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use aws_credential_types::provider::future;

    use super::*;

    /// Hands out credentials expiring `lifetime` from now, counting loads.
    #[derive(Debug)]
    struct Counting {
        loads: Arc<AtomicUsize>,
        lifetime: Option<Duration>,
        gate: Option<Arc<tokio::sync::Notify>>,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            future::ProvideCredentials::new(async move {
                if let Some(gate) = &self.gate {
                    gate.notified().await;
                }
                let n = self.loads.fetch_add(1, Ordering::SeqCst) + 1;
                let expiry = self.lifetime.map(|l| SystemTime::now() + l);
                Ok(Credentials::new(
                    format!("AKID{n}"),
                    "secret",
                    None,
                    expiry,
                    "test",
                ))
            })
        }
    }

    fn cache(lifetime: Option<Duration>) -> (CredentialsCache, Arc<AtomicUsize>) {
        let loads = Arc::new(AtomicUsize::new(0));
        let provider = Counting {
            loads: Arc::clone(&loads),
            lifetime,
            gate: None,
        };
        (
            CredentialsCache::new(SharedCredentialsProvider::new(provider)),
            loads,
        )
    }

    #[tokio::test]
    async fn long_lived_credentials_are_loaded_once() {
        let (cache, loads) = cache(Some(Duration::from_secs(3600)));
        for _ in 0..5 {
            assert_eq!(cache.credentials().await.unwrap().access_key_id(), "AKID1");
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn static_credentials_are_loaded_once() {
        let (cache, loads) = cache(None);
        for _ in 0..3 {
            cache.credentials().await.unwrap();
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn credentials_near_expiry_are_served_while_refreshed() {
        // 2 s of life: refresh starts at half of it, 1 s from now.
        let (cache, loads) = cache(Some(Duration::from_secs(2)));
        assert_eq!(cache.credentials().await.unwrap().access_key_id(), "AKID1");
        // Put the entry past its refresh point without waiting.
        cache
            .inner
            .cached
            .write()
            .unwrap()
            .as_mut()
            .unwrap()
            .refresh_at = SystemTime::now() - Duration::from_secs(1);
        // Still valid: served at once, refresh runs in the background.
        assert_eq!(cache.credentials().await.unwrap().access_key_id(), "AKID1");
        // The background load holds the lock; taking it waits for it.
        drop(cache.inner.loading.lock().await);
        assert_eq!(loads.load(Ordering::SeqCst), 2);
        assert_eq!(cache.credentials().await.unwrap().access_key_id(), "AKID2");
    }

    #[tokio::test]
    async fn expired_credentials_are_reloaded_before_use() {
        let (cache, loads) = cache(Some(Duration::from_secs(3600)));
        cache.credentials().await.unwrap();
        {
            let mut cached = cache.inner.cached.write().unwrap();
            let entry = cached.as_mut().unwrap();
            *entry = Entry {
                credentials: Credentials::new(
                    "OLD",
                    "secret",
                    None,
                    Some(SystemTime::now() - Duration::from_secs(1)),
                    "test",
                ),
                refresh_at: SystemTime::now() - Duration::from_secs(600),
            };
        }
        assert_eq!(cache.credentials().await.unwrap().access_key_id(), "AKID2");
        assert_eq!(loads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn concurrent_first_requests_share_one_load() {
        let loads = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let provider = Counting {
            loads: Arc::clone(&loads),
            lifetime: Some(Duration::from_secs(3600)),
            gate: Some(Arc::clone(&gate)),
        };
        let cache = CredentialsCache::new(SharedCredentialsProvider::new(provider));
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move {
                    cache
                        .credentials()
                        .await
                        .map(|c| c.access_key_id().to_owned())
                })
            })
            .collect();
        // Release the one load that runs; waiters then find it cached.
        gate.notify_one();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), "AKID1");
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn short_lived_credentials_refresh_at_half_life() {
        let now = SystemTime::now();
        let creds = Credentials::new("A", "s", None, Some(now + Duration::from_secs(120)), "test");
        assert_eq!(
            Entry::new(creds, now).refresh_at,
            now + Duration::from_secs(60)
        );
        let creds = Credentials::new(
            "A",
            "s",
            None,
            Some(now + Duration::from_secs(3600)),
            "test",
        );
        assert_eq!(
            Entry::new(creds, now).refresh_at,
            now + Duration::from_secs(3300)
        );
    }
}
