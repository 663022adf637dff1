//! A client identity the proxy has checked, as opposed to one it was told.
//!
//! Only the signer's verification of a client's own SigV4 signature against
//! `--sign-client-credentials` makes one (`sign::verify`). Everything that
//! trusts an identity (budgets, per-client series) takes a
//! `VerifiedClient`; a key id read from an unverified `Authorization`
//! header is a claim and never becomes one.

/// A client whose SigV4 signature matched a secret the proxy holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedClient {
    /// The access key id the client signed with.
    pub access_key_id: String,
    /// The name given to that key in the credentials file, if any.
    pub name: Option<String>,
}
