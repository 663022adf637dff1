//! Secrets inside flag values, kept out of every message and printout: a
//! URL's password (`--rate-limit-redis redis://:PASSWORD@host`).

/// What stands in for a secret.
pub const REDACTED: &str = "REDACTED";

/// `scheme://user:password@host…` with the password replaced, or `None`
/// when `text` carries no password.
pub fn url_password(text: &str) -> Option<String> {
    let (scheme, rest) = text.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let (userinfo, host) = authority.rsplit_once('@')?;
    let (user, password) = userinfo.split_once(':')?;
    if password.is_empty() {
        return None;
    }
    Some(format!(
        "{scheme}://{user}:{REDACTED}@{host}{}",
        &rest[authority_end..]
    ))
}

/// `text` fit for a message: a URL's password replaced, anything else as
/// it is.
pub fn url(text: &str) -> String {
    url_password(text).unwrap_or_else(|| text.to_owned())
}
