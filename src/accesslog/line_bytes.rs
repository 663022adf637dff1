//! Byte writers for the hot path of a line: short fixed pieces, integers and
//! IPv4 addresses appended to the line buffer without the `fmt` machinery
//! and without a `memcpy` call per piece.
//!
//! The trick: a piece of at most `N` bytes is kept in (or built into) an
//! `[u8; N]`; appending the whole array compiles to a few vector moves, and
//! truncating the buffer back drops the padding. What the buffer holds after
//! each call is exactly the piece appended, byte for byte what
//! `extend_from_slice` of the piece would leave (the padding never survives).

use std::net::Ipv4Addr;

/// Appends the first `len` bytes of `bytes` (`len <= N`).
#[inline]
pub(super) fn put_fixed<const N: usize>(out: &mut Vec<u8>, bytes: &[u8; N], len: usize) {
    debug_assert!(len <= N);
    let end = out.len() + len;
    out.extend_from_slice(bytes);
    out.truncate(end);
}

/// Literal text of a line kept padded for `put_fixed` when it is short.
pub(super) enum Literal {
    /// At most 16 bytes: the bytes, zero-padded, and how many count.
    Short([u8; 16], u8),
    /// Longer text, copied as it is.
    Long(Box<[u8]>),
}

impl Literal {
    /// Keeps `bytes` in the cheapest form to append.
    pub(super) fn new(bytes: &[u8]) -> Self {
        let mut short = [0; 16];
        match short.get_mut(..bytes.len()) {
            Some(head) => {
                head.copy_from_slice(bytes);
                Self::Short(short, bytes.len() as u8)
            }
            None => Self::Long(bytes.into()),
        }
    }

    /// Appends the text.
    #[inline]
    pub(super) fn put(&self, out: &mut Vec<u8>) {
        match self {
            Self::Short(bytes, len) => put_fixed(out, bytes, usize::from(*len)),
            Self::Long(bytes) => out.extend_from_slice(bytes),
        }
    }
}

/// "00" to "99": two digits per division.
const PAIRS: &[u8; 200] = b"\
    0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

/// Appends `n` in decimal, as `itoa` and `Display` write it. One digit (a
/// zero timing, a retry count) is a single push.
#[inline]
pub(super) fn put_uint(out: &mut Vec<u8>, n: u64) {
    if n < 10 {
        out.push(b'0' + n as u8);
    } else {
        put_digits(out, n);
    }
}

fn put_digits(out: &mut Vec<u8>, mut n: u64) {
    // u64::MAX has 20 digits; `checked_ilog10` is at most 19.
    let len = n.checked_ilog10().map_or(1, |d| d as usize + 1);
    let mut digits = [b'0'; 20];
    let mut i = len;
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        digits[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        digits[i - 2..i].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        digits[i - 1] = b'0' + n as u8;
    }
    put_fixed(out, &digits, len);
}

/// Appends `192.0.2.10`, as `Ipv4Addr`'s `Display` writes it.
#[inline]
pub(super) fn put_ipv4(out: &mut Vec<u8>, ip: Ipv4Addr) {
    let mut text = [0; 16];
    let mut len = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            text[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            text[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        text[len] = b'0' + octet % 10;
        len += 1;
    }
    put_fixed(out, &text, len);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn fixed(prefix: &[u8], f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut out = prefix.to_vec();
        f(&mut out);
        out
    }

    #[test]
    fn integers_at_the_edges() {
        for n in [
            0,
            9,
            10,
            99,
            100,
            999_999,
            1_000_000,
            u64::MAX - 1,
            u64::MAX,
        ] {
            assert_eq!(
                fixed(b"x", |o| put_uint(o, n)),
                format!("x{n}").into_bytes()
            );
        }
        for n in (0..64).map(|s| 1u64 << s) {
            for m in [n - 1, n, n + 1] {
                assert_eq!(fixed(b"", |o| put_uint(o, m)), m.to_string().into_bytes());
            }
        }
    }

    #[test]
    fn literals_of_every_length() {
        for len in 0..40 {
            let text: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let literal = Literal::new(&text);
            assert_eq!(matches!(literal, Literal::Short(..)), len <= 16);
            let mut want = b"before".to_vec();
            want.extend_from_slice(&text);
            assert_eq!(fixed(b"before", |o| literal.put(o)), want, "length {len}");
        }
    }

    proptest! {
        #[test]
        fn uint_is_display(n in any::<u64>(), prefix in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut want = prefix.clone();
            want.extend_from_slice(n.to_string().as_bytes());
            prop_assert_eq!(fixed(&prefix, |o| put_uint(o, n)), want);
        }

        #[test]
        fn ipv4_is_display(octets in any::<[u8; 4]>()) {
            let ip = Ipv4Addr::from(octets);
            prop_assert_eq!(fixed(b"ip=", |o| put_ipv4(o, ip)), format!("ip={ip}").into_bytes());
        }

        #[test]
        fn literal_is_its_bytes(text in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut want = b"x".to_vec();
            want.extend_from_slice(&text);
            prop_assert_eq!(fixed(b"x", |o| Literal::new(&text).put(o)), want);
        }
    }
}
