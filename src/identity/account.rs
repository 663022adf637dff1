//! The AWS account an access key id belongs to, decoded offline.
//!
//! Key ids issued since about 2019 (`AKIA…` long-term, `ASIA…` temporary)
//! carry the account: after the four-letter prefix come 16 base32
//! characters, and bits 1–40 of the first six decoded bytes, read big-endian,
//! are the account number. This is how an operator groups temporary keys,
//! which change every hour, under the account that stays. Older key ids do
//! not carry it and decode to a number that is not theirs: the fifth
//! character of those is `I` or `J`, and they get `None`. Pure.

/// Characters of a key id, prefix included.
const KEY_ID_LEN: usize = 20;

/// Digits of an account id, leading zeros kept.
pub const ACCOUNT_DIGITS: usize = 12;

/// The account id of `key_id` as its 12 ASCII digits, or `None` when the
/// key id is not of a form that carries one.
pub fn account_of(key_id: &str) -> Option<[u8; ACCOUNT_DIGITS]> {
    let bytes = key_id.as_bytes();
    if bytes.len() != KEY_ID_LEN || !matches!(&bytes[..4], b"AKIA" | b"ASIA") {
        return None;
    }
    if matches!(bytes[4], b'I' | b'J') {
        return None;
    }
    // Ten base32 characters are 50 bits: enough for the 48 we read.
    let mut bits: u64 = 0;
    for &c in &bytes[4..14] {
        bits = (bits << 5) | u64::from(base32_value(c)?);
    }
    // The first six bytes are the top 48 of those 50 bits.
    let first_six = bits >> 2;
    let account = (first_six & 0x7fff_ffff_ff80) >> 7;
    // Every remaining character must be base32 too, or it is no key id.
    bytes[14..]
        .iter()
        .try_for_each(|&c| base32_value(c).map(drop))?;
    Some(digits(account))
}

/// `n` (below 10^12: 40 bits are) as 12 ASCII digits.
fn digits(mut n: u64) -> [u8; ACCOUNT_DIGITS] {
    let mut out = [b'0'; ACCOUNT_DIGITS];
    for d in out.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out
}

/// RFC 4648 base32: `A`–`Z` are 0–25, `2`–`7` are 26–31.
fn base32_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'2'..=b'7' => Some(c - b'2' + 26),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::account_of as digits_of;

    fn account_of(key: &str) -> Option<String> {
        digits_of(key).map(|d| String::from_utf8(d.to_vec()).unwrap())
    }

    #[test]
    fn temporary_and_long_term_keys_decode_to_their_account() {
        assert_eq!(
            account_of("ASIAY34FZKBOKMUTVV7A").as_deref(),
            Some("609629065308")
        );
        // The same account's long-term key shares the encoded part.
        assert_eq!(
            account_of("AKIAY34FZKBOKMUTVV7A").as_deref(),
            Some("609629065308")
        );
    }

    #[test]
    fn leading_zeros_are_kept() {
        // Account 1: the first six bytes are 0x000000000080.
        assert_eq!(
            account_of("AKIAAAAAAAAAQAAAAAAA").as_deref(),
            Some("000000000001")
        );
    }

    #[test]
    fn other_forms_carry_no_account() {
        for key in [
            "",
            "AKIA",
            "ASIAY34FZKBOKMUTVV7",   // 19 characters
            "ASIAY34FZKBOKMUTVV7AB", // 21 characters
            "AIDAY34FZKBOKMUTVV7A",  // an IAM user id, not a key id
            "AKIAIOSFODNN7EXAMPLE",  // an old key id (fifth character I)
            "AKIAJ34FZKBOKMUTVV7A",  // an old key id (fifth character J)
            "ASIAY34FZKBOKMUTVV7a",  // not base32
            "ASIAY34FZKBOKMUTVV71",  // 1 is not a base32 digit
        ] {
            assert_eq!(account_of(key), None, "{key:?}");
        }
    }
}
