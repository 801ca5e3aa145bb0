//! Client-side key handling: the password split into an authentication key and an
//! encryption key, the user's RSA identity, and the encrypted backup of its private key.
//! `docs/crypto.md` specifies every byte so that other clients can interoperate.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hkdf::Hkdf;
use rand::rngs::OsRng;
use rand::RngCore;
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::traits::PublicKeyParts;
pub use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};

/// PBKDF2-HMAC-SHA256 iterations for the master key (OWASP's 2023 advice).
pub const PBKDF2_ROUNDS: u32 = 600_000;
/// Size of every user's RSA key pair.
pub const RSA_BITS: usize = 2048;
const HKDF_INFO_AUTH: &[u8] = b"fastchat auth_key v1";
const HKDF_INFO_ENC: &[u8] = b"fastchat enc_key v1";
const KEY_BACKUP_AAD_PREFIX: &str = "fastchat key_backup v1:";
const HKDF_INFO_CONTACTS: &[u8] = b"fastchat contacts v1";
const CONTACTS_AAD_PREFIX: &str = "fastchat contacts v1:";
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the public key is not an RSA SubjectPublicKeyInfo PEM")]
    BadPublicKey,
    #[error("the RSA key has {0} bits; at least {RSA_BITS} are required")]
    KeyTooSmall(usize),
    #[error("the private key file is not a PKCS#8 RSA key")]
    BadPrivateKey,
    #[error("the key backup cannot be decrypted: wrong password, or it was tampered with")]
    BadKeyBackup,
    #[error("the key backup does not match the public key the server has for this user")]
    KeyMismatch,
    #[error("could not generate a key: {0}")]
    Generate(String),
}

/// The two keys a password is split into. `auth_key` is what the server sees (as the
/// hex `password`); `enc_key` never leaves the client.
pub struct LoginKeys {
    pub auth_key: [u8; 32],
    pub enc_key: [u8; 32],
}

impl LoginKeys {
    /// master = PBKDF2-HMAC-SHA256(password, "fastchat:" + username, 600,000, 32 bytes);
    /// auth_key and enc_key = HKDF-SHA256(ikm = master, no salt, info = label, 32 bytes).
    pub fn derive(username: &str, password: &str) -> Self {
        Self::derive_with_rounds(username, password, PBKDF2_ROUNDS)
    }

    fn derive_with_rounds(username: &str, password: &str, rounds: u32) -> Self {
        let salt = format!("fastchat:{username}");
        let mut master = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt.as_bytes(), rounds, &mut master);
        let hkdf = Hkdf::<Sha256>::new(None, &master);
        let mut keys = LoginKeys {
            auth_key: [0; 32],
            enc_key: [0; 32],
        };
        // 32 bytes is far below HKDF-SHA256's 8160-byte output limit: expand cannot fail.
        hkdf.expand(HKDF_INFO_AUTH, &mut keys.auth_key)
            .expect("32 bytes is a valid HKDF-SHA256 length");
        hkdf.expand(HKDF_INFO_ENC, &mut keys.enc_key)
            .expect("32 bytes is a valid HKDF-SHA256 length");
        keys
    }

    /// The `password` field sent to the server: lowercase hex of `auth_key`.
    pub fn server_password(&self) -> String {
        hex::encode(self.auth_key)
    }
}

/// Makes a new RSA identity key pair.
pub fn generate_private_key() -> Result<RsaPrivateKey, KeyError> {
    RsaPrivateKey::new(&mut OsRng, RSA_BITS).map_err(|e| KeyError::Generate(e.to_string()))
}

/// The SubjectPublicKeyInfo PEM the server stores.
pub fn public_key_pem(key: &RsaPublicKey) -> String {
    key.to_public_key_pem(LineEnding::LF)
        .expect("encoding an RSA public key in memory cannot fail")
}

/// Parses and checks a public key as the server receives it.
pub fn parse_public_key_pem(pem: &str) -> Result<RsaPublicKey, KeyError> {
    let key = RsaPublicKey::from_public_key_pem(pem).map_err(|_| KeyError::BadPublicKey)?;
    let bits = key.n().bits();
    if bits < RSA_BITS {
        return Err(KeyError::KeyTooSmall(bits));
    }
    Ok(key)
}

/// A human-comparable fingerprint: SHA-256 of the SPKI DER, hex in groups of four.
pub fn fingerprint(key: &RsaPublicKey) -> String {
    let der = key
        .to_public_key_der()
        .expect("encoding an RSA public key in memory cannot fail");
    let digest = hex::encode(Sha256::digest(der.as_bytes()));
    digest
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(":")
}

/// PKCS#8 PEM, for the private key file in the user's FastChat home.
pub fn private_key_pem(key: &RsaPrivateKey) -> String {
    key.to_pkcs8_pem(LineEnding::LF)
        .expect("encoding an RSA private key in memory cannot fail")
        .to_string()
}

pub fn parse_private_key_pem(pem: &str) -> Result<RsaPrivateKey, KeyError> {
    RsaPrivateKey::from_pkcs8_pem(pem).map_err(|_| KeyError::BadPrivateKey)
}

fn key_backup_aad(username: &str) -> Vec<u8> {
    format!("{KEY_BACKUP_AAD_PREFIX}{username}").into_bytes()
}

/// base64(nonce || AES-256-GCM(key, nonce, plaintext, aad) || tag), a fresh nonce each time.
fn seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> String {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let sealed = Aes256Gcm::new(key.into())
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("AES-GCM encryption in memory cannot fail");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    BASE64.encode(out)
}

/// Reverses [`seal`]; `None` on a wrong key or any tampering.
fn open(key: &[u8; 32], aad: &[u8], sealed: &str) -> Option<Vec<u8>> {
    let raw = BASE64.decode(sealed.trim()).ok()?;
    if raw.len() <= NONCE_LEN {
        return None;
    }
    let (nonce, sealed) = raw.split_at(NONCE_LEN);
    Aes256Gcm::new(key.into())
        .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
        .ok()
}

/// Encrypts the private key (PKCS#8 DER) under `enc_key`:
/// base64(nonce || AES-256-GCM(ciphertext || tag)), AAD "fastchat key_backup v1:" + username.
pub fn seal_key_backup(enc_key: &[u8; 32], username: &str, key: &RsaPrivateKey) -> String {
    let der = key
        .to_pkcs8_der()
        .expect("encoding an RSA private key in memory cannot fail");
    seal(enc_key, &key_backup_aad(username), der.as_bytes())
}

/// Reverses [`seal_key_backup`]; fails on a wrong key or any tampering.
pub fn open_key_backup(
    enc_key: &[u8; 32],
    username: &str,
    backup: &str,
) -> Result<RsaPrivateKey, KeyError> {
    let der = open(enc_key, &key_backup_aad(username), backup).ok_or(KeyError::BadKeyBackup)?;
    RsaPrivateKey::from_pkcs8_der(&der).map_err(|_| KeyError::BadKeyBackup)
}

/// The key that encrypts the backup of a user's contacts (their pinned and verified
/// keys): HKDF-SHA256(ikm = PKCS#8 DER of the user's private key, salt = "fastchat:" +
/// username, info = "fastchat contacts v1"). Whoever holds the private key (every device
/// the user logs in on, after the key backup) can open it; the server cannot.
pub fn contacts_key(username: &str, key: &RsaPrivateKey) -> [u8; 32] {
    let der = key
        .to_pkcs8_der()
        .expect("encoding an RSA private key in memory cannot fail");
    let salt = format!("fastchat:{username}");
    let mut out = [0u8; 32];
    Hkdf::<Sha256>::new(Some(salt.as_bytes()), der.as_bytes())
        .expand(HKDF_INFO_CONTACTS, &mut out)
        .expect("32 bytes is a valid HKDF-SHA256 length");
    out
}

fn contacts_aad(username: &str) -> Vec<u8> {
    format!("{CONTACTS_AAD_PREFIX}{username}").into_bytes()
}

/// Encrypts the contacts backup: base64(nonce || AES-256-GCM(ciphertext || tag)), AAD
/// "fastchat contacts v1:" + username.
pub fn seal_contacts(key: &[u8; 32], username: &str, contacts: &[u8]) -> String {
    seal(key, &contacts_aad(username), contacts)
}

/// Reverses [`seal_contacts`]; `None` on a wrong key or any tampering.
pub fn open_contacts(key: &[u8; 32], username: &str, sealed: &str) -> Option<Vec<u8>> {
    open(key, &contacts_aad(username), sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Independent test vector (computed with Python's hashlib and hmac, see docs/crypto.md).
    #[test]
    fn login_keys_match_the_documented_test_vector() {
        let keys = LoginKeys::derive("alice", "correct horse battery staple");
        assert_eq!(keys.server_password(), TEST_VECTOR_AUTH_KEY);
        assert_eq!(hex::encode(keys.enc_key), TEST_VECTOR_ENC_KEY);
    }

    const TEST_VECTOR_AUTH_KEY: &str =
        "759aced32cb959f3a088a4334ce02f539af17e16628061def2ce3b6f5962e671";
    const TEST_VECTOR_ENC_KEY: &str =
        "2209911da127537c0785ecdf1ba459209dd35699f66aeca5346ef9fd7d1b1a5a";

    #[test]
    fn a_contacts_backup_opens_only_with_its_owners_key_and_name() {
        let key = generate_private_key().expect("a key");
        let other = generate_private_key().expect("a key");
        let sealed = seal_contacts(&contacts_key("alice", &key), "alice", b"{\"bob\": 1}");
        assert_eq!(
            open_contacts(&contacts_key("alice", &key), "alice", &sealed).as_deref(),
            Some(&b"{\"bob\": 1}"[..])
        );
        assert!(open_contacts(&contacts_key("alice", &other), "alice", &sealed).is_none());
        assert!(open_contacts(&contacts_key("alice", &key), "mallory", &sealed).is_none());
        assert_ne!(contacts_key("alice", &key), contacts_key("alicia", &key));
    }

    #[test]
    fn the_salt_binds_the_username() {
        let a = LoginKeys::derive_with_rounds("alice", "pw", 10);
        let b = LoginKeys::derive_with_rounds("alicf", "pw", 10);
        assert_ne!(a.auth_key, b.auth_key);
        assert_ne!(a.auth_key, a.enc_key, "the two keys must differ");
    }

    fn small_key() -> RsaPrivateKey {
        generate_private_key().expect("key generation")
    }

    #[test]
    fn key_backup_round_trips_and_rejects_tampering() {
        let key = small_key();
        let keys = LoginKeys::derive_with_rounds("alice", "pw", 10);
        let backup = seal_key_backup(&keys.enc_key, "alice", &key);
        let opened = open_key_backup(&keys.enc_key, "alice", &backup).expect("opens");
        assert_eq!(opened, key);

        let wrong = LoginKeys::derive_with_rounds("alice", "other", 10);
        assert!(open_key_backup(&wrong.enc_key, "alice", &backup).is_err());
        // The username is authenticated: a backup cannot be replayed for another account.
        assert!(open_key_backup(&keys.enc_key, "mallory", &backup).is_err());
        let mut raw = BASE64.decode(&backup).expect("base64");
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert!(open_key_backup(&keys.enc_key, "alice", &BASE64.encode(raw)).is_err());
        assert!(open_key_backup(&keys.enc_key, "alice", "not base64!").is_err());
    }

    #[test]
    fn public_keys_round_trip_and_small_keys_are_refused() {
        let key = small_key();
        let pem = public_key_pem(&key.to_public_key());
        let parsed = parse_public_key_pem(&pem).expect("parses");
        assert_eq!(fingerprint(&parsed), fingerprint(&key.to_public_key()));
        assert_eq!(fingerprint(&parsed).len(), 64 + 15);

        let small = RsaPrivateKey::new(&mut OsRng, 1024).expect("key generation");
        let small_pem = public_key_pem(&small.to_public_key());
        assert!(matches!(
            parse_public_key_pem(&small_pem),
            Err(KeyError::KeyTooSmall(1024))
        ));
        assert!(
            parse_public_key_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----")
                .is_err()
        );
    }

    #[test]
    fn private_key_pem_round_trips() {
        let key = small_key();
        let parsed = parse_private_key_pem(&private_key_pem(&key)).expect("parses");
        assert_eq!(parsed, key);
        assert!(parse_private_key_pem("garbage").is_err());
    }
}
