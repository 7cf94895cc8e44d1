//! Safe-mode message crypto, exactly as WeChat's WXBizMsgCrypt: AES-256-CBC with IV = the first
//! 16 key bytes, PKCS#7 padding to 32-byte blocks, and the plaintext layout
//! `random(16) ‖ u32_be(len) ‖ msg ‖ appid`.

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::NoPadding};
use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};

type Enc = cbc::Encryptor<aes::Aes256>;
type Dec = cbc::Decryptor<aes::Aes256>;

/// WeChat's 43-char keys carry 258 bits: the low bits of the last char are discarded, and
/// real keys have them set, so decode leniently.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The pad block of WeChat's PKCS#7 variant.
const BLOCK: usize = 32;

/// A failure of the message crypto, carrying WXBizMsgCrypt's library-local code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// -40007: the ciphertext is not a whole number of AES blocks.
    #[error("DecryptAESError(-40007): ciphertext is not a whole number of AES blocks")]
    DecryptAes,
    /// -40010: the `Encrypt` text is not base64.
    #[error("DecodeBase64Error(-40010): Encrypt is not valid base64")]
    DecodeBase64,
    /// -40004: the EncodingAESKey is not 43 base64 chars decoding to 32 bytes.
    #[error("IllegalAesKey(-40004): {0}")]
    IllegalAesKey(&'static str),
    /// -40008: the decrypted buffer does not hold the documented layout.
    #[error("IllegalBuffer(-40008): decrypted buffer is malformed")]
    IllegalBuffer,
    /// -40005: the receive id in the plaintext is not this account's appid.
    #[error("ValidateAppidError(-40005): message was encrypted for another appid")]
    ValidateAppid,
}

impl CryptoError {
    /// The WXBizMsgCrypt error code.
    pub fn code(&self) -> i32 {
        match self {
            CryptoError::DecryptAes => -40007,
            CryptoError::DecodeBase64 => -40010,
            CryptoError::IllegalAesKey(_) => -40004,
            CryptoError::IllegalBuffer => -40008,
            CryptoError::ValidateAppid => -40005,
        }
    }
}

/// The AES-256 key decoded from an EncodingAESKey; the IV is its first 16 bytes.
#[derive(Clone)]
pub struct AesKey([u8; 32]);

impl std::fmt::Debug for AesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AesKey(<redacted>)")
    }
}

impl AesKey {
    /// Decodes a 43-char EncodingAESKey (`base64(key43 + "=")`, leniently).
    pub fn from_encoding_aes_key(encoding_aes_key: &str) -> Result<Self, CryptoError> {
        if encoding_aes_key.len() != 43 {
            return Err(CryptoError::IllegalAesKey("length must be 43"));
        }
        let bytes = LENIENT
            .decode(encoding_aes_key)
            .map_err(|_| CryptoError::IllegalAesKey("not base64"))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| CryptoError::IllegalAesKey("must decode to 32 bytes"))?;
        Ok(AesKey(key))
    }

    /// The 32 key bytes.
    pub fn key(&self) -> &[u8; 32] {
        &self.0
    }

    /// The IV: the first 16 key bytes.
    pub fn iv(&self) -> &[u8] {
        &self.0[..16]
    }

    /// Encrypts `msg` for `appid` with the given 16-byte random prefix; returns base64.
    pub fn encrypt_with(&self, appid: &str, random: &[u8; 16], msg: &[u8]) -> String {
        let mut buf = pre_padding(appid, random, msg);
        let pad = BLOCK - buf.len() % BLOCK;
        buf.resize(buf.len() + pad, pad as u8);
        let len = buf.len();
        let out = Enc::new(self.0.as_slice().into(), self.iv().into())
            .encrypt_padded_mut::<NoPadding>(&mut buf, len)
            .expect("buffer is padded to whole blocks");
        STANDARD.encode(out)
    }

    /// Encrypts `msg` for `appid` with a fresh random prefix of `[A-Za-z0-9]` chars.
    pub fn encrypt(&self, appid: &str, msg: &[u8]) -> String {
        self.encrypt_with(appid, &random_prefix(), msg)
    }

    /// Decrypts a base64 `Encrypt` value and checks that it was meant for `appid`.
    pub fn decrypt(&self, appid: &str, encrypt: &str) -> Result<Decrypted, CryptoError> {
        let decrypted = self.decrypt_any(encrypt)?;
        if decrypted.receive_id != appid {
            return Err(CryptoError::ValidateAppid);
        }
        Ok(decrypted)
    }

    /// Decrypts a base64 `Encrypt` value without checking the receive id.
    pub fn decrypt_any(&self, encrypt: &str) -> Result<Decrypted, CryptoError> {
        let mut buf = STANDARD
            .decode(encrypt.trim())
            .map_err(|_| CryptoError::DecodeBase64)?;
        if buf.is_empty() || buf.len() % 16 != 0 {
            return Err(CryptoError::DecryptAes);
        }
        let plain = Dec::new(self.0.as_slice().into(), self.iv().into())
            .decrypt_padded_mut::<NoPadding>(&mut buf)
            .map_err(|_| CryptoError::DecryptAes)?;
        let pad = usize::from(*plain.last().unwrap_or(&0));
        let pad = if (1..=BLOCK).contains(&pad) { pad } else { 0 };
        let plain = &plain[..plain.len().saturating_sub(pad)];
        if plain.len() < 20 {
            return Err(CryptoError::IllegalBuffer);
        }
        let len = u32::from_be_bytes(plain[16..20].try_into().expect("4 bytes")) as usize;
        let end = 20usize.checked_add(len).ok_or(CryptoError::IllegalBuffer)?;
        if end > plain.len() {
            return Err(CryptoError::IllegalBuffer);
        }
        let receive_id =
            String::from_utf8(plain[end..].to_vec()).map_err(|_| CryptoError::IllegalBuffer)?;
        Ok(Decrypted {
            random: plain[..16].try_into().expect("16 bytes"),
            message: plain[20..end].to_vec(),
            receive_id,
        })
    }
}

/// A decrypted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrypted {
    /// The 16-byte random prefix (opaque).
    pub random: [u8; 16],
    /// The message bytes (UTF-8 XML, or an echostr).
    pub message: Vec<u8>,
    /// The receive id found after the message: the appid it was encrypted for.
    pub receive_id: String,
}

/// `random ‖ u32_be(len(msg)) ‖ msg ‖ appid`, before padding.
pub fn pre_padding(appid: &str, random: &[u8; 16], msg: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(20 + msg.len() + appid.len() + BLOCK);
    buf.extend_from_slice(random);
    buf.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    buf.extend_from_slice(msg);
    buf.extend_from_slice(appid.as_bytes());
    buf
}

/// 16 random chars from `[A-Za-z0-9]`, as the official libraries make them.
pub fn random_prefix() -> [u8; 16] {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    std::array::from_fn(|_| CHARS[rng.random_range(0..CHARS.len())])
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

    #[test]
    fn round_trip_and_wrong_appid() {
        let key = AesKey::from_encoding_aes_key(KEY).unwrap();
        for len in [0usize, 1, 11, 12, 13, 100, 3000] {
            let msg = vec![b'x'; len];
            let enc = key.encrypt("wx0123456789abcdef", &msg);
            let dec = key.decrypt("wx0123456789abcdef", &enc).unwrap();
            assert_eq!(dec.message, msg);
            assert_eq!(
                key.decrypt("wxother", &enc).unwrap_err(),
                CryptoError::ValidateAppid
            );
        }
    }

    #[test]
    fn broken_ciphertext_is_a_clear_error() {
        let key = AesKey::from_encoding_aes_key(KEY).unwrap();
        assert_eq!(key.decrypt("wx", "not base64!").unwrap_err().code(), -40010);
        assert_eq!(key.decrypt("wx", "AAAA").unwrap_err().code(), -40007);
        assert_eq!(key.decrypt("wx", "").unwrap_err().code(), -40007);
        // 32 zero bytes decrypt to garbage: the layout check catches it.
        let garbage = STANDARD.encode([0u8; 32]);
        assert!(key.decrypt("wx", &garbage).is_err());
    }

    /// Encrypts a hand-made (already padded) buffer, to reach the layout checks.
    fn raw_encrypt(key: &AesKey, mut buf: Vec<u8>) -> String {
        let len = buf.len();
        let out = Enc::new(key.0.as_slice().into(), key.iv().into())
            .encrypt_padded_mut::<NoPadding>(&mut buf, len)
            .unwrap();
        STANDARD.encode(out)
    }

    #[test]
    fn aligned_plaintext_gets_a_full_pad_block() {
        let key = AesKey::from_encoding_aes_key(KEY).unwrap();
        // 16 + 4 + 0 + 12 = 32 bytes: already aligned, so 32 bytes of 0x20 follow.
        let enc = key.encrypt_with("wx0123456789", b"0123456789abcdef", b"");
        assert_eq!(STANDARD.decode(&enc).unwrap().len(), 64);
        let dec = key.decrypt("wx0123456789", &enc).unwrap();
        assert_eq!(
            (dec.message.as_slice(), dec.random),
            (&b""[..], *b"0123456789abcdef")
        );
        // Whitespace around the base64 (line breaks in a pasted body) is tolerated.
        assert!(key.decrypt("wx0123456789", &format!("\n {enc}\n")).is_ok());
    }

    #[test]
    fn malformed_layouts_are_illegal_buffers() {
        let key = AesKey::from_encoding_aes_key(KEY).unwrap();
        let layout = |len: u32, msg: &[u8], id: &[u8], pad: u8| {
            let mut buf = vec![b'r'; 16];
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(msg);
            buf.extend_from_slice(id);
            let n = BLOCK - buf.len() % BLOCK;
            buf.resize(buf.len() + n, pad);
            raw_encrypt(&key, buf)
        };
        // The declared length runs past the buffer.
        let long = layout(1000, b"<xml/>", b"wx1", 26);
        assert_eq!(
            key.decrypt_any(&long).unwrap_err(),
            CryptoError::IllegalBuffer
        );
        let huge = layout(u32::MAX, b"<xml/>", b"wx1", 26);
        assert_eq!(
            key.decrypt_any(&huge).unwrap_err(),
            CryptoError::IllegalBuffer
        );
        // The receive id is not UTF-8.
        let id = layout(6, b"<xml/>", &[0xff, 0xfe], 26);
        assert_eq!(
            key.decrypt_any(&id).unwrap_err(),
            CryptoError::IllegalBuffer
        );
        // A pad byte out of 1..=32 strips nothing (the official behaviour): the pad bytes then
        // read as part of the receive id, which no longer matches.
        let zero_pad = layout(6, b"<xml/>", b"wx1", 0);
        let dec = key.decrypt_any(&zero_pad).unwrap();
        assert_eq!(dec.message, b"<xml/>");
        assert_eq!(
            dec.receive_id,
            format!("wx1{}", "\0".repeat(BLOCK - (16 + 4 + 6 + 3)))
        );
        assert_eq!(
            key.decrypt("wx1", &zero_pad).unwrap_err(),
            CryptoError::ValidateAppid
        );
        // Shorter than random + length after unpadding: one block of pure padding.
        let short = raw_encrypt(&key, vec![32u8; 32]);
        assert_eq!(
            key.decrypt_any(&short).unwrap_err(),
            CryptoError::IllegalBuffer
        );
        // Whole AES blocks but not whole pad blocks still decrypt (the official check is 16).
        let sixteen = raw_encrypt(&key, vec![b'x'; 16]);
        assert_eq!(
            key.decrypt_any(&sixteen).unwrap_err(),
            CryptoError::IllegalBuffer
        );
    }

    #[test]
    fn random_prefixes_are_alphanumeric_and_fresh() {
        let a = random_prefix();
        assert!(a.iter().all(u8::is_ascii_alphanumeric));
        assert_ne!(a, random_prefix());
        let key = AesKey::from_encoding_aes_key(KEY).unwrap();
        assert_ne!(key.encrypt("wx1", b"m"), key.encrypt("wx1", b"m"));
    }

    #[test]
    fn key_length_is_checked() {
        assert_eq!(
            AesKey::from_encoding_aes_key("abc").unwrap_err().code(),
            -40004
        );
        assert!(format!("{:?}", AesKey::from_encoding_aes_key(KEY).unwrap()).contains("redacted"));
        // 43 bytes but not base64, and 43 bytes of multi-byte UTF-8 chars.
        let bad = format!("{}!", &KEY[..42]);
        assert_eq!(
            AesKey::from_encoding_aes_key(&bad).unwrap_err(),
            CryptoError::IllegalAesKey("not base64")
        );
        let wide = format!("{}é", &KEY[..41]);
        assert_eq!(
            AesKey::from_encoding_aes_key(&wide).unwrap_err().code(),
            -40004
        );
        // A padded 44-char form is refused: the key is exactly 43 chars.
        assert_eq!(
            AesKey::from_encoding_aes_key(&format!("{KEY}="))
                .unwrap_err()
                .code(),
            -40004
        );
    }
}
