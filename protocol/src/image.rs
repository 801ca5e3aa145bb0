//! Images: recognised by their magic bytes, encrypted under a key of their own before
//! upload (AES-256-GCM, no AAD); the key, nonce, size and SHA-256 travel inside the
//! signed message, so a swapped or damaged blob is caught before it is saved.

use aes_gcm::aead::Aead;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::envelope::ImageRef;

/// The MIME type of an image we accept, by its first bytes.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// An image sealed for upload: the bytes to upload, and what the message must carry.
pub struct SealedImage {
    pub ciphertext: Vec<u8>,
    pub key: String,
    pub nonce: String,
    pub sha256: String,
}

pub fn seal(image: &[u8]) -> SealedImage {
    let mut key = [0u8; 32];
    let mut nonce = [0u8; 12];
    OsRng.fill_bytes(&mut key);
    OsRng.fill_bytes(&mut nonce);
    let ciphertext = Aes256Gcm::new(&key.into())
        .encrypt(Nonce::from_slice(&nonce), image)
        .expect("AES-GCM encryption in memory cannot fail");
    SealedImage {
        ciphertext,
        key: BASE64.encode(key),
        nonce: BASE64.encode(nonce),
        sha256: hex::encode(Sha256::digest(image)),
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    #[error("the image's key or nonce is malformed")]
    Malformed,
    #[error("the downloaded image does not decrypt: it was damaged or swapped")]
    Undecryptable,
    #[error("the image is not what the sender sent (size or SHA-256 differ)")]
    Mismatch,
}

/// Decrypts a downloaded blob and checks it against the signed message's description.
pub fn open(ciphertext: &[u8], image: &ImageRef) -> Result<Vec<u8>, ImageError> {
    let key = BASE64
        .decode(&image.key)
        .map_err(|_| ImageError::Malformed)?;
    let nonce = BASE64
        .decode(&image.nonce)
        .map_err(|_| ImageError::Malformed)?;
    if nonce.len() != 12 {
        return Err(ImageError::Malformed);
    }
    let plain = Aes256Gcm::new_from_slice(&key)
        .map_err(|_| ImageError::Malformed)?
        .decrypt(Nonce::from_slice(&nonce), ciphertext)
        .map_err(|_| ImageError::Undecryptable)?;
    let size_ok = u64::try_from(plain.len()).is_ok_and(|n| n == image.size);
    if !size_ok || hex::encode(Sha256::digest(&plain)) != image.sha256 {
        return Err(ImageError::Mismatch);
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(sealed: &SealedImage, size: usize) -> ImageRef {
        ImageRef {
            blob: "b".into(),
            key: sealed.key.clone(),
            nonce: sealed.nonce.clone(),
            name: "x.png".into(),
            mime: "image/png".into(),
            size: size as u64,
            sha256: sealed.sha256.clone(),
        }
    }

    #[test]
    fn recognises_images_by_their_magic_bytes() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest"), Some("image/png"));
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(sniff(b"GIF89a..."), Some("image/gif"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"%PDF-1.7"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn round_trips_and_catches_damage() {
        let image = b"\x89PNG\r\n\x1a\n pretend pixels".to_vec();
        let sealed = seal(&image);
        assert_eq!(
            open(&sealed.ciphertext, &reference(&sealed, image.len())),
            Ok(image.clone())
        );

        let mut damaged = sealed.ciphertext.clone();
        damaged[3] ^= 1;
        assert_eq!(
            open(&damaged, &reference(&sealed, image.len())),
            Err(ImageError::Undecryptable)
        );

        let other = seal(b"\x89PNG\r\n\x1a\n other pixels");
        let mut swapped = reference(&sealed, image.len());
        swapped.sha256 = other.sha256;
        assert_eq!(
            open(&sealed.ciphertext, &swapped),
            Err(ImageError::Mismatch)
        );
        assert_eq!(
            open(&sealed.ciphertext, &reference(&sealed, 3)),
            Err(ImageError::Mismatch)
        );
    }
}
