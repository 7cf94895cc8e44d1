//! Request signatures: the plain `signature` of every callback, the safe-mode `msg_signature`
//! and the constant-time comparison of both.

use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// 32 hex characters of the SHA-1 of `parts`, each prefixed with its length (so no part runs
/// into the next): wxoa's own digest for keys and fingerprints, not one of WeChat's signatures.
pub fn digest<S: AsRef<[u8]>>(parts: impl IntoIterator<Item = S>) -> String {
    let mut hash = Sha1::new();
    for part in parts {
        let part = part.as_ref();
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hex::encode(&hash.finalize()[..16])
}

/// `hex(sha1(concat(sort(parts))))`: sort byte-wise, join with no separator, lowercase hex.
pub fn sha1_sorted(parts: &[&str]) -> String {
    let mut sorted: Vec<&str> = parts.to_vec();
    sorted.sort_unstable();
    let mut hasher = Sha1::new();
    for part in sorted {
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// The plain callback `signature`: SHA-1 over the sorted `[token, timestamp, nonce]`.
pub fn server_signature(token: &str, timestamp: &str, nonce: &str) -> String {
    sha1_sorted(&[token, timestamp, nonce])
}

/// The safe-mode `msg_signature`: SHA-1 over the sorted `[token, timestamp, nonce, encrypt]`.
pub fn msg_signature(token: &str, timestamp: &str, nonce: &str, encrypt: &str) -> String {
    sha1_sorted(&[token, timestamp, nonce, encrypt])
}

/// Compares a received hex signature with the computed one in constant time (ASCII case of
/// the received value is ignored, as WeChat always sends lowercase).
pub fn signatures_match(received: &str, computed: &str) -> bool {
    let received = received.to_ascii_lowercase();
    received.len() == computed.len() && bool::from(received.as_bytes().ct_eq(computed.as_bytes()))
}

/// Checks the plain `signature` of a callback.
pub fn verify_server_signature(token: &str, timestamp: &str, nonce: &str, signature: &str) -> bool {
    signatures_match(signature, &server_signature(token, timestamp, nonce))
}

/// Checks the safe-mode `msg_signature` of a callback.
pub fn verify_msg_signature(
    token: &str,
    timestamp: &str,
    nonce: &str,
    encrypt: &str,
    msg_signature: &str,
) -> bool {
    signatures_match(
        msg_signature,
        &self::msg_signature(token, timestamp, nonce, encrypt),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wechatpy_check_signature_example() {
        assert_eq!(
            server_signature("test", "1410685589", "test"),
            "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff"
        );
    }

    #[test]
    fn sort_is_byte_order_not_locale() {
        // Digits < uppercase < lowercase, and UTF-8 bytes after ASCII.
        let parts = ["b", "B", "1", "é", "a"];
        assert_eq!(sha1_sorted(&parts), sha1_sorted(&["1", "B", "a", "b", "é"]));
        use sha1::{Digest, Sha1};
        assert_eq!(
            sha1_sorted(&parts),
            hex::encode(Sha1::digest("1Babé".as_bytes()))
        );
        // No separator: the split between parts does not matter, only the sorted concatenation.
        assert_eq!(sha1_sorted(&["ab", "c"]), sha1_sorted(&["a", "bc"]));
        assert_eq!(sha1_sorted(&[]), hex::encode(Sha1::digest(b"")));
    }

    #[test]
    fn safe_mode_signature_covers_encrypt() {
        let sig = msg_signature("t", "1", "n", "E");
        assert!(verify_msg_signature("t", "1", "n", "E", &sig));
        assert!(!verify_msg_signature("t", "1", "n", "F", &sig));
        assert!(!verify_server_signature("t", "1", "n", &sig));
    }

    #[test]
    fn mismatch_and_length_are_rejected() {
        let good = server_signature("t", "1", "n");
        assert!(signatures_match(&good.to_uppercase(), &good));
        assert!(!signatures_match(&good[1..], &good));
        assert!(!signatures_match("", &good));
        let mut bad = good.clone().into_bytes();
        bad[0] = if bad[0] == b'a' { b'b' } else { b'a' };
        assert!(!signatures_match(std::str::from_utf8(&bad).unwrap(), &good));
    }
}
