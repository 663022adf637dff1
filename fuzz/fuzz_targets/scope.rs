//! The SigV4 credential-scope parser reads client bytes: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

use ccnproxy::scope::CredentialScope;

fuzz_target!(|data: &[u8]| {
    let _ = CredentialScope::from_authorization(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = CredentialScope::from_credential(text);
    }
});
