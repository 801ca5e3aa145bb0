//! Safety numbers: what two people compare, in person or on a call, to know that the
//! keys their clients use for each other are the keys they really hold. The number is
//! the same on both sides: it is made of one half per person, in name order.
//!
//! ```text
//! half(name, key) = the first 30 bytes of h_5200, where
//!     h_0     = SHA-512(0x00 0x01 || SPKI DER of key || name)
//!     h_(i+1) = SHA-512(h_i || SPKI DER of key)
//! each 5-byte piece of a half, read big-endian, modulo 100000: five decimal digits
//! number   = the halves of the two names, the lower name first: 12 groups of 5 digits
//! ```
//!
//! (Signal's scheme, with the user name as the identifier.)

use rsa::pkcs8::EncodePublicKey;
use rsa::RsaPublicKey;
use sha2::{Digest, Sha512};

const ITERATIONS: usize = 5200;
const VERSION: [u8; 2] = [0, 1];

fn half(name: &str, key: &RsaPublicKey) -> [u64; 6] {
    let der = key
        .to_public_key_der()
        .expect("encoding an RSA public key in memory cannot fail");
    let mut hash = Sha512::new()
        .chain_update(VERSION)
        .chain_update(der.as_bytes())
        .chain_update(name.as_bytes())
        .finalize();
    for _ in 0..ITERATIONS {
        hash = Sha512::new()
            .chain_update(hash)
            .chain_update(der.as_bytes())
            .finalize();
    }
    std::array::from_fn(|i| {
        let piece = &hash[i * 5..i * 5 + 5];
        piece.iter().fold(0u64, |n, b| n << 8 | u64::from(*b)) % 100_000
    })
}

/// The safety number of two people and their keys: twelve groups of five digits.
pub fn safety_number(a: (&str, &RsaPublicKey), b: (&str, &RsaPublicKey)) -> Vec<String> {
    let (first, second) = if a.0 <= b.0 { (a, b) } else { (b, a) };
    half(first.0, first.1)
        .into_iter()
        .chain(half(second.0, second.1))
        .map(|n| format!("{n:05}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::parse_public_key_pem;

    /// docs/test-vectors/safety-number.json: two keys, two names, and their number.
    #[test]
    fn the_documented_test_vector_gives_the_documented_number_on_both_sides() {
        let vector: serde_json::Value =
            serde_json::from_str(include_str!("../../docs/test-vectors/safety-number.json"))
                .expect("vector parses");
        let key = |field: &str| {
            parse_public_key_pem(vector[field].as_str().expect(field)).expect("a public key")
        };
        let (alice, bob) = (key("alice_public_key"), key("bob_public_key"));
        let expected: Vec<String> = vector["safety_number"]
            .as_str()
            .expect("the number")
            .split(' ')
            .map(str::to_owned)
            .collect();
        assert_eq!(expected.len(), 12);
        assert_eq!(safety_number(("alice", &alice), ("bob", &bob)), expected);
        assert_eq!(safety_number(("bob", &bob), ("alice", &alice)), expected);
        // Another key, or another name, is another number.
        assert_ne!(safety_number(("alice", &bob), ("bob", &bob)), expected);
        assert_ne!(safety_number(("alice", &alice), ("bobby", &bob)), expected);
    }
}
