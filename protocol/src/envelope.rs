//! The end-to-end encrypted message envelope (v2): AES-256-GCM for the content, its key
//! wrapped with RSA-OAEP-256 for every member of the conversation, and an RSA-PSS
//! signature by the sender over a header that names the sender's own time and, for a
//! group, the state of the group's membership chain it was sent in. `docs/crypto.md`
//! specifies every byte. Version 1 (no time, no group state) can still be opened.

use std::collections::BTreeMap;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use rand::rngs::OsRng;
use rand::RngCore;
use rsa::pss::{BlindedSigningKey, Signature, VerifyingKey};
use rsa::signature::{RandomizedSigner, SignatureEncoding, Verifier};
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const VERSION: u8 = 2;
/// The first version: its header carries no time and no group state.
pub const LEGACY_VERSION: u8 = 1;
pub const ALGORITHM: &str = "RSA-OAEP-256+A256GCM+PS256";
pub const NONCE_LEN: usize = 12;

/// The envelope as it travels. Binary fields are standard padded base64. `keys` maps a
/// username to the message key wrapped for that user; a reader receives only its own.
/// `sent_at` and `group` are part of the signed header (v2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub v: u8,
    pub alg: String,
    /// The sender's clock when it sealed the message, canonical (see
    /// [`crate::group::canonical_time`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<String>,
    /// For a group message: the state of the group's chain it was sealed in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupBinding>,
    pub nonce: String,
    pub ciphertext: String,
    pub keys: BTreeMap<String, String>,
    pub sig: String,
}

/// A group message's place in its group's history: the group's own id, and the seq and
/// hash of the last statement of its membership chain when the message was sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupBinding {
    pub id: uuid::Uuid,
    #[serde(deserialize_with = "crate::whole::u64")]
    pub epoch: u64,
    pub head: String,
}

/// Where a message goes: one user, or a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    User(String),
    Group(String),
}

/// The message kind, part of the authenticated header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Text,
    Image,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Image => "image",
        }
    }

    pub fn parse(kind: &str) -> Option<Self> {
        match kind {
            "text" => Some(Kind::Text),
            "image" => Some(Kind::Image),
            _ => None,
        }
    }
}

/// The header the envelope authenticates: who sent what kind of message where, when
/// by the sender's clock, and in which state of the group. `sent_at` is `None` only for
/// a v1 envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub from: String,
    pub to: Destination,
    pub kind: Kind,
    pub client_id: uuid::Uuid,
    pub sent_at: Option<String>,
    pub group: Option<GroupBinding>,
}

impl Header {
    /// The header a received message claims: its routing as the server delivers it, and
    /// the time and group state its envelope carries.
    pub fn received(
        from: &str,
        to: Destination,
        kind: Kind,
        client_id: uuid::Uuid,
        envelope: &Envelope,
    ) -> Self {
        Header {
            from: from.to_owned(),
            to,
            kind,
            client_id,
            sent_at: envelope.sent_at.clone(),
            group: envelope.group.clone(),
        }
    }

    fn version(&self) -> u8 {
        if self.sent_at.is_some() {
            VERSION
        } else {
            LEGACY_VERSION
        }
    }

    /// The additional authenticated data: lines joined by `\n`, no trailing newline:
    /// `fastchat v2`, `from <user>`, `to <user>` or `group <name>` (then, for a group,
    /// `group_id <uuid>`, `epoch <seq>`, `head <hex hash>`), `kind <kind>`,
    /// `client_id <uuid, lowercase hyphenated>`, `sent_at <canonical time>`. Version 1
    /// had neither the group lines nor `sent_at`.
    pub fn aad(&self) -> Vec<u8> {
        let mut lines = vec![
            format!("fastchat v{}", self.version()),
            format!("from {}", self.from),
        ];
        match &self.to {
            Destination::User(user) => lines.push(format!("to {user}")),
            Destination::Group(group) => lines.push(format!("group {group}")),
        }
        if let Some(binding) = &self.group {
            lines.push(format!("group_id {}", binding.id.hyphenated()));
            lines.push(format!("epoch {}", binding.epoch));
            lines.push(format!("head {}", binding.head));
        }
        lines.push(format!("kind {}", self.kind.as_str()));
        lines.push(format!("client_id {}", self.client_id.hyphenated()));
        if let Some(sent_at) = &self.sent_at {
            lines.push(format!("sent_at {sent_at}"));
        }
        lines.join("\n").into_bytes()
    }

    /// Whether the header is well formed for its version: v2 names a canonical time, and
    /// a group state exactly when it goes to a group; v1 names neither.
    fn well_formed(&self) -> bool {
        match (&self.sent_at, &self.group, &self.to) {
            (None, None, _) => true,
            (Some(at), group, to) => {
                crate::group::parse_canonical_time(at).is_some()
                    && group.is_some() == matches!(to, Destination::Group(_))
                    && group
                        .as_ref()
                        .is_none_or(|g| crate::group::StatementHash::parse(&g.head).is_some())
            }
            (None, Some(_), _) => false,
        }
    }
}

/// What is inside the ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Plaintext {
    Text { text: String },
    Image { image: ImageRef },
}

/// An encrypted image's blob and how to open it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    pub blob: String,
    pub key: String,
    pub nonce: String,
    pub name: String,
    pub mime: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("wrapping the message key: {0}")]
    Wrap(rsa::Error),
    #[error("signing the message: {0}")]
    Sign(rsa::signature::Error),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("unsupported envelope version or algorithm")]
    Unsupported,
    #[error("the envelope is malformed")]
    Malformed,
    #[error("the sender's signature does not verify: the message was forged or altered")]
    BadSignature,
    #[error("the envelope holds no key for this reader")]
    NoKeyForReader,
    #[error("the message cannot be decrypted: it was altered or not meant for this key")]
    Undecryptable,
}

/// SHA-256(aad || nonce || ciphertext): what the sender signs with RSA-PSS.
fn signed_digest(aad: &[u8], nonce: &[u8], ciphertext: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(aad);
    hasher.update(nonce);
    hasher.update(ciphertext);
    hasher.finalize().into()
}

/// Encrypts `plaintext` for every recipient (the sender should be one of them, to read
/// its own history) and signs it with the sender's key.
pub fn seal(
    header: &Header,
    plaintext: &Plaintext,
    sender_key: &RsaPrivateKey,
    recipients: &[(String, RsaPublicKey)],
) -> Result<Envelope, SealError> {
    let mut key = [0u8; 32];
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut key);
    OsRng.fill_bytes(&mut nonce);
    let aad = header.aad();
    let body = serde_json::to_vec(plaintext).expect("plaintext serializes to JSON");
    let ciphertext = Aes256Gcm::new(&key.into())
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &body,
                aad: &aad,
            },
        )
        .expect("AES-GCM encryption in memory cannot fail");
    let mut keys = BTreeMap::new();
    for (username, public_key) in recipients {
        let wrapped = public_key
            .encrypt(&mut OsRng, Oaep::new::<Sha256>(), &key)
            .map_err(SealError::Wrap)?;
        keys.insert(username.clone(), BASE64.encode(wrapped));
    }
    let digest = signed_digest(&aad, &nonce, &ciphertext);
    let signer = BlindedSigningKey::<Sha256>::new(sender_key.clone());
    let sig = signer
        .try_sign_with_rng(&mut OsRng, &digest)
        .map_err(SealError::Sign)?;
    Ok(Envelope {
        v: header.version(),
        alg: ALGORITHM.to_owned(),
        sent_at: header.sent_at.clone(),
        group: header.group.clone(),
        nonce: BASE64.encode(nonce),
        ciphertext: BASE64.encode(ciphertext),
        keys,
        sig: BASE64.encode(sig.to_bytes()),
    })
}

/// Checks that the sender signed `header` with this nonce and ciphertext, and returns
/// them decoded.
fn verified_parts(
    envelope: &Envelope,
    header: &Header,
    sender_public: &RsaPublicKey,
) -> Result<(Vec<u8>, Vec<u8>), OpenError> {
    if envelope.v != header.version() || envelope.alg != ALGORITHM {
        return Err(OpenError::Unsupported);
    }
    if !header.well_formed() || header.sent_at != envelope.sent_at || header.group != envelope.group
    {
        return Err(OpenError::Malformed);
    }
    let decode = |field: &str| BASE64.decode(field).map_err(|_| OpenError::Malformed);
    let nonce = decode(&envelope.nonce)?;
    let ciphertext = decode(&envelope.ciphertext)?;
    let sig = decode(&envelope.sig)?;
    if nonce.len() != NONCE_LEN {
        return Err(OpenError::Malformed);
    }
    let digest = signed_digest(&header.aad(), &nonce, &ciphertext);
    let signature = Signature::try_from(sig.as_slice()).map_err(|_| OpenError::BadSignature)?;
    VerifyingKey::<Sha256>::new(sender_public.clone())
        .verify(&digest, &signature)
        .map_err(|_| OpenError::BadSignature)?;
    Ok((nonce, ciphertext))
}

/// Verifies the sender's signature over `header` and the ciphertext, without decrypting.
pub fn verify(
    envelope: &Envelope,
    header: &Header,
    sender_public: &RsaPublicKey,
) -> Result<(), OpenError> {
    verified_parts(envelope, header, sender_public).map(|_| ())
}

/// Verifies the sender's signature over `header` and the ciphertext, then decrypts with
/// the reader's wrapped key. Nothing is returned unless the signature holds.
pub fn open(
    envelope: &Envelope,
    header: &Header,
    sender_public: &RsaPublicKey,
    reader: &str,
    reader_key: &RsaPrivateKey,
) -> Result<Plaintext, OpenError> {
    let (nonce, ciphertext) = verified_parts(envelope, header, sender_public)?;
    let decode = |field: &str| BASE64.decode(field).map_err(|_| OpenError::Malformed);
    let aad = header.aad();
    let wrapped = envelope.keys.get(reader).ok_or(OpenError::NoKeyForReader)?;
    let wrapped = decode(wrapped)?;
    let key = reader_key
        .decrypt(Oaep::new::<Sha256>(), &wrapped)
        .map_err(|_| OpenError::Undecryptable)?;
    if key.len() != 32 {
        return Err(OpenError::Undecryptable);
    }
    let body = Aes256Gcm::new_from_slice(&key)
        .map_err(|_| OpenError::Undecryptable)?
        .decrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| OpenError::Undecryptable)?;
    serde_json::from_slice(&body).map_err(|_| OpenError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{generate_private_key, parse_private_key_pem, parse_public_key_pem};
    use std::sync::OnceLock;

    fn keys() -> &'static (RsaPrivateKey, RsaPrivateKey, RsaPrivateKey) {
        static KEYS: OnceLock<(RsaPrivateKey, RsaPrivateKey, RsaPrivateKey)> = OnceLock::new();
        KEYS.get_or_init(|| {
            let k = || generate_private_key().expect("key");
            (k(), k(), k())
        })
    }

    fn header() -> Header {
        Header {
            from: "alice".into(),
            to: Destination::User("bob".into()),
            kind: Kind::Text,
            client_id: uuid::Uuid::new_v4(),
            sent_at: Some("2026-12-01T12:00:00.000Z".into()),
            group: None,
        }
    }

    fn sealed(header: &Header) -> Envelope {
        let (alice, bob, _) = keys();
        let recipients = vec![
            ("alice".to_owned(), alice.to_public_key()),
            ("bob".to_owned(), bob.to_public_key()),
        ];
        let text = Plaintext::Text {
            text: "hello bob".into(),
        };
        seal(header, &text, alice, &recipients).expect("seals")
    }

    #[test]
    fn both_members_open_what_the_sender_sealed() {
        let (alice, bob, _) = keys();
        let header = header();
        let envelope = sealed(&header);
        assert_eq!(envelope.keys.len(), 2);
        let expected = Plaintext::Text {
            text: "hello bob".into(),
        };
        for (reader, key) in [("alice", alice), ("bob", bob)] {
            let opened = open(&envelope, &header, &alice.to_public_key(), reader, key);
            assert_eq!(opened, Ok(expected.clone()));
        }
    }

    #[test]
    fn any_change_is_detected_before_decryption() {
        let (alice, bob, carol) = keys();
        let header = header();
        let envelope = sealed(&header);
        let bob_opens = |env: &Envelope, hdr: &Header, sender: &RsaPublicKey| {
            open(env, hdr, sender, "bob", bob)
        };

        let mut ct = BASE64.decode(&envelope.ciphertext).expect("b64");
        ct[0] ^= 1;
        let changed = Envelope {
            ciphertext: BASE64.encode(ct),
            ..envelope.clone()
        };
        assert_eq!(
            bob_opens(&changed, &header, &alice.to_public_key()),
            Err(OpenError::BadSignature)
        );

        // The server claims carol sent it: carol's key does not verify alice's signature.
        let claimed = Header {
            from: "carol".into(),
            ..header.clone()
        };
        assert_eq!(
            bob_opens(&envelope, &claimed, &carol.to_public_key()),
            Err(OpenError::BadSignature)
        );

        // Another header field changed (the kind, the client id, the recipient).
        for other in [
            Header {
                kind: Kind::Image,
                ..header.clone()
            },
            Header {
                client_id: uuid::Uuid::new_v4(),
                ..header.clone()
            },
        ] {
            assert_eq!(
                bob_opens(&envelope, &other, &alice.to_public_key()),
                Err(OpenError::BadSignature)
            );
        }

        // The server changes the sender's time (in the envelope, where a reader takes it).
        let retimed = Envelope {
            sent_at: Some("2026-12-01T12:00:00.001Z".into()),
            ..envelope.clone()
        };
        let as_received = Header {
            sent_at: retimed.sent_at.clone(),
            ..header.clone()
        };
        assert_eq!(
            bob_opens(&retimed, &as_received, &alice.to_public_key()),
            Err(OpenError::BadSignature)
        );

        // Claimed as a group message, or as a v1 one (no time): refused either way.
        for other in [
            Header {
                to: Destination::Group("bob".into()),
                ..header.clone()
            },
            Header {
                sent_at: None,
                ..header.clone()
            },
        ] {
            assert!(bob_opens(&envelope, &other, &alice.to_public_key()).is_err());
        }

        // A signature from another message.
        let other = sealed(&header);
        let swapped = Envelope {
            sig: other.sig.clone(),
            ..envelope.clone()
        };
        assert_eq!(
            bob_opens(&swapped, &header, &alice.to_public_key()),
            Err(OpenError::BadSignature)
        );

        // A key wrapped for someone else: the signature holds, decryption does not.
        let wrong_key = Envelope {
            keys: BTreeMap::from([("bob".to_owned(), envelope.keys["alice"].clone())]),
            ..envelope.clone()
        };
        assert_eq!(
            bob_opens(&wrong_key, &header, &alice.to_public_key()),
            Err(OpenError::Undecryptable)
        );
        assert_eq!(
            open(&envelope, &header, &alice.to_public_key(), "carol", carol),
            Err(OpenError::NoKeyForReader)
        );
    }

    #[test]
    fn the_aad_is_the_documented_text() {
        let client_id =
            uuid::Uuid::parse_str("6f1c2d3e-0000-4000-8000-00000000abcd").expect("uuid");
        let head = "ab".repeat(32);
        let header = Header {
            from: "alice".into(),
            to: Destination::Group("friends".into()),
            kind: Kind::Image,
            client_id,
            sent_at: Some("2026-12-01T12:00:00.250Z".into()),
            group: Some(GroupBinding {
                id: uuid::Uuid::parse_str("0b6f2c66-5a3e-4a53-9b8e-0f1f1c0d2a11").expect("uuid"),
                epoch: 4,
                head: head.clone(),
            }),
        };
        assert_eq!(
            String::from_utf8(header.aad()).expect("utf-8"),
            format!(
                "fastchat v2\nfrom alice\ngroup friends\ngroup_id 0b6f2c66-5a3e-4a53-9b8e-0f1f1c0d2a11\n\
                 epoch 4\nhead {head}\nkind image\nclient_id 6f1c2d3e-0000-4000-8000-00000000abcd\n\
                 sent_at 2026-12-01T12:00:00.250Z"
            )
        );
        let legacy = Header {
            sent_at: None,
            group: None,
            ..header
        };
        assert_eq!(
            String::from_utf8(legacy.aad()).expect("utf-8"),
            "fastchat v1\nfrom alice\ngroup friends\nkind image\nclient_id 6f1c2d3e-0000-4000-8000-00000000abcd"
        );
    }

    /// docs/test-vectors/envelope-v1.json: a message sealed once and pinned, so that any
    /// change to the scheme, and any other implementation, can be checked against it.
    #[test]
    fn the_documented_test_vector_opens() {
        let vector: serde_json::Value =
            serde_json::from_str(include_str!("../../docs/test-vectors/envelope-v1.json"))
                .expect("vector parses");
        let s = |k: &str| vector[k].as_str().expect(k).to_owned();
        let sender = parse_public_key_pem(&s("sender_public_key")).expect("sender key");
        let reader_key = parse_private_key_pem(&s("reader_private_key")).expect("reader key");
        let envelope: Envelope =
            serde_json::from_value(vector["envelope"].clone()).expect("envelope");
        let header = Header::received(
            &s("from"),
            Destination::User(s("to")),
            Kind::parse(&s("kind")).expect("kind"),
            uuid::Uuid::parse_str(&s("client_id")).expect("uuid"),
            &envelope,
        );
        assert_eq!(String::from_utf8(header.aad()).expect("utf-8"), s("aad"));
        let opened = open(&envelope, &header, &sender, &s("to"), &reader_key).expect("opens");
        let expected: Plaintext =
            serde_json::from_value(vector["plaintext"].clone()).expect("plaintext");
        assert_eq!(opened, expected);
    }

    /// docs/test-vectors/envelope-v2.json: a group message sealed by another
    /// implementation, bound to the state of docs/test-vectors/group-chain.json.
    #[test]
    fn the_documented_v2_vector_opens_and_names_the_documented_chain_state() {
        let vector: serde_json::Value =
            serde_json::from_str(include_str!("../../docs/test-vectors/envelope-v2.json"))
                .expect("vector parses");
        let chain: serde_json::Value =
            serde_json::from_str(include_str!("../../docs/test-vectors/group-chain.json"))
                .expect("vector parses");
        let s = |k: &str| vector[k].as_str().expect(k).to_owned();
        let sender = parse_public_key_pem(&s("sender_public_key")).expect("sender key");
        let reader_key = parse_private_key_pem(&s("reader_private_key")).expect("reader key");
        let envelope: Envelope =
            serde_json::from_value(vector["envelope"].clone()).expect("envelope");
        let header = Header::received(
            &s("from"),
            Destination::Group(s("group")),
            Kind::parse(&s("kind")).expect("kind"),
            uuid::Uuid::parse_str(&s("client_id")).expect("uuid"),
            &envelope,
        );
        assert_eq!(String::from_utf8(header.aad()).expect("utf-8"), s("aad"));
        let opened = open(&envelope, &header, &sender, &s("reader"), &reader_key).expect("opens");
        let expected: Plaintext =
            serde_json::from_value(vector["plaintext"].clone()).expect("plaintext");
        assert_eq!(opened, expected);
        let binding = envelope.group.expect("a group state");
        assert_eq!(binding.epoch, 1);
        assert_eq!(
            binding.head,
            chain["statements"][1]["hash"].as_str().expect("hash")
        );
    }
}
