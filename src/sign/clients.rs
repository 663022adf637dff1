//! Who may have requests signed: the proxy lends its role only to clients it
//! can tell apart from the rest of the network.
//!
//! - `check_listener`: `--sign` on a listener that is not loopback-only needs
//!   client authentication (`--sign-allow-clients`,
//!   `--sign-client-credentials`), or the proxy does not start.
//! - `ClientGate`: a signed request from an address outside
//!   `--sign-allow-clients` is refused (the address is the client's after
//!   PROXY protocol and `--trust-forwarded`, as the access log shows it).

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use super::SignError;
use crate::config::SignConfig;

/// Refuses `--sign` on a listener reachable from other hosts unless client
/// authentication is configured: one line saying what to add.
pub fn check_listener(config: &SignConfig, listen: SocketAddr) -> Result<(), String> {
    if !config.enabled || listen.ip().to_canonical().is_loopback() || has_client_auth(config) {
        return Ok(());
    }
    Err(format!(
        "--sign on {listen}, which is not loopback-only, would sign for anyone who can \
         connect; add --sign-client-credentials FILE (clients' keys) or \
         --sign-allow-clients CIDR (the clients' addresses), or listen on 127.0.0.1"
    ))
}

fn has_client_auth(config: &SignConfig) -> bool {
    !config.allow_clients.is_empty() || config.client_credentials.is_some()
}

/// The client checks made before a request is signed.
#[derive(Debug, Clone, Default)]
pub(super) struct ClientGate {
    allow: Vec<IpNet>,
}

impl ClientGate {
    pub(super) fn new(config: &SignConfig) -> Self {
        ClientGate {
            allow: config.allow_clients.clone(),
        }
    }

    /// `Ok` when `client` may have its requests signed.
    pub(super) fn check_addr(&self, client: IpAddr) -> Result<(), SignError> {
        let ip = client.to_canonical();
        if self.allow.is_empty() || self.allow.iter().any(|net| net.contains(&ip)) {
            return Ok(());
        }
        Err(SignError::ClientNotAllowed(client))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(enabled: bool, allow: &[&str]) -> SignConfig {
        let mut c = crate::config::Config::default().sign;
        c.enabled = enabled;
        c.allow_clients = allow.iter().map(|a| a.parse().unwrap()).collect();
        c
    }

    #[test]
    fn exposed_listeners_need_client_authentication() {
        let any: SocketAddr = "0.0.0.0:3000".parse().unwrap();
        let v6: SocketAddr = "[::]:3000".parse().unwrap();
        let lan: SocketAddr = "10.0.0.5:3000".parse().unwrap();
        for addr in [any, v6, lan] {
            let err = check_listener(&config(true, &[]), addr).unwrap_err();
            assert!(err.contains("--sign-allow-clients"), "{err}");
            assert!(!err.contains('\n'));
            assert!(check_listener(&config(true, &["10.0.0.0/8"]), addr).is_ok());
            assert!(check_listener(&config(false, &[]), addr).is_ok());
        }
        for addr in [
            "127.0.0.1:3000",
            "127.0.0.2:1",
            "[::1]:3000",
            "[::ffff:127.0.0.1]:3000",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert!(check_listener(&config(true, &[]), addr).is_ok(), "{addr}");
        }
    }

    #[test]
    fn the_gate_admits_only_listed_addresses() {
        let open = ClientGate::new(&config(true, &[]));
        assert!(open.check_addr("192.0.2.1".parse().unwrap()).is_ok());
        let gate = ClientGate::new(&config(true, &["10.0.0.0/8", "2001:db8::/32"]));
        for ok in ["10.1.2.3", "::ffff:10.1.2.3", "2001:db8::1"] {
            assert!(gate.check_addr(ok.parse().unwrap()).is_ok(), "{ok}");
        }
        for refused in ["192.0.2.1", "127.0.0.1", "2001:db9::1"] {
            let err = gate.check_addr(refused.parse().unwrap()).unwrap_err();
            assert!(matches!(err, SignError::ClientNotAllowed(_)), "{refused}");
        }
    }
}
