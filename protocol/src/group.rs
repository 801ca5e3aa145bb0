//! Group membership the server cannot forge: a chain of statements, each signed by the
//! member who makes the change and naming the hash of the one before. The server checks
//! and stores the chain; every client rebuilds the members and admins from it, from the
//! creator's first statement on, with [`GroupState`], the same code the server runs.
//! `docs/crypto.md` specifies the bytes.
//!
//! A statement is canonical text, UTF-8 lines joined by `\n` with no trailing newline:
//!
//! ```text
//! fastchat group v1
//! group 0b6f2c66-5a3e-4a53-9b8e-0f1f1c0d2a11     (the group's own id, made by its creator)
//! name team
//! seq 3                                          (0 for the first statement)
//! prev <hex SHA-256 of statement 2's text>       (`-` for the first)
//! by alice                                       (who signs it)
//! at 2026-12-01T12:00:00.000Z                    (the signer's clock, milliseconds, UTC)
//! add dave <dave's key fingerprint>              (the change: see [`Change`])
//! ```
//!
//! `sig` is RSA-PSS (SHA-256, MGF1-SHA-256, salt 32) by the signer over the text's bytes.

use std::fmt::Write as _;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use rand::rngs::OsRng;
use rsa::pss::{BlindedSigningKey, Signature, VerifyingKey};
use rsa::signature::{RandomizedSigner, SignatureEncoding, Verifier};
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::keys::fingerprint;
use crate::names::{GroupName, Username};

const FIRST_LINE: &str = "fastchat group v1";

/// A statement as it travels: its canonical text and the signer's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedStatement {
    pub text: String,
    pub sig: String,
}

/// The SHA-256 of a statement's text: what the next statement names as `prev`, and a
/// group's `head` after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatementHash(pub [u8; 32]);

impl StatementHash {
    pub fn of(text: &str) -> Self {
        StatementHash(Sha256::digest(text.as_bytes()).into())
    }

    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    pub fn parse(hex_text: &str) -> Option<Self> {
        if hex_text.len() != 64 || hex_text.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let bytes: [u8; 32] = hex::decode(hex_text).ok()?.try_into().ok()?;
        Some(StatementHash(bytes))
    }
}

impl std::fmt::Display for StatementHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// What a statement changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `create`, then a `member <name> <fingerprint>` line per member, the creator first:
    /// the group's first statement. The creator is its admin.
    Create { members: Vec<(Username, String)> },
    /// `add <name> <fingerprint>`: an admin adds a member, with the key they saw for them.
    Add { user: Username, fingerprint: String },
    /// `remove <name>`: an admin removes another member.
    Remove { user: Username },
    /// `leave`: the signer leaves.
    Leave,
    /// `promote <name>`: an admin makes a member an admin too.
    Promote { user: Username },
}

/// A statement's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub group: uuid::Uuid,
    pub name: GroupName,
    pub seq: u64,
    pub prev: Option<StatementHash>,
    pub by: Username,
    pub at: DateTime<Utc>,
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("the statement is not well formed: {0}")]
    Malformed(String),
    #[error("the statement's signature does not verify with {0}'s key")]
    BadSignature(String),
    #[error("the statement is for another group")]
    WrongGroup,
    #[error("the statement is out of order: expected seq {expected} after head {head}")]
    OutOfOrder { expected: u64, head: String },
    #[error("{0} is not a member of the group")]
    NotMember(String),
    #[error("only an admin may do that, and {0} is not one")]
    NotAdmin(String),
    #[error("{0} is already a member")]
    AlreadyMember(String),
    #[error("{0} is already an admin")]
    AlreadyAdmin(String),
    #[error("the key used for {0} is not the one the group's history names for them")]
    KeyMismatch(String),
    #[error("the group has ended: its last member left")]
    Ended,
}

/// The canonical form of a time in statements and message headers: RFC 3339, UTC,
/// milliseconds, `Z`.
pub fn canonical_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses a time in the canonical form, and only that form.
pub fn parse_canonical_time(text: &str) -> Option<DateTime<Utc>> {
    let at = DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc);
    (canonical_time(at) == text).then_some(at)
}

impl Statement {
    /// The canonical text.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{FIRST_LINE}\ngroup {}\nname {}\nseq {}\nprev {}\nby {}\nat {}\n",
            self.group.hyphenated(),
            self.name,
            self.seq,
            self.prev
                .map_or_else(|| "-".to_owned(), StatementHash::to_hex),
            self.by,
            canonical_time(self.at),
        );
        match &self.change {
            Change::Create { members } => {
                text.push_str("create");
                for (member, fp) in members {
                    let _ = write!(text, "\nmember {member} {fp}");
                }
            }
            Change::Add { user, fingerprint } => {
                let _ = write!(text, "add {user} {fingerprint}");
            }
            Change::Remove { user } => {
                let _ = write!(text, "remove {user}");
            }
            Change::Leave => text.push_str("leave"),
            Change::Promote { user } => {
                let _ = write!(text, "promote {user}");
            }
        }
        text
    }

    /// Parses canonical text; anything that does not print back the same is refused.
    pub fn parse(text: &str) -> Result<Statement, ChainError> {
        let bad = |what: &str| ChainError::Malformed(what.to_owned());
        let mut lines = text.split('\n');
        let mut field = |name: &str| -> Result<&str, ChainError> {
            let line = lines
                .next()
                .ok_or_else(|| bad(&format!("no {name} line")))?;
            if name == "first" {
                return Ok(line);
            }
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .ok_or_else(|| bad(&format!("expected a {name} line")))
        };
        if field("first")? != FIRST_LINE {
            return Err(bad("not a fastchat group v1 statement"));
        }
        let group =
            uuid::Uuid::parse_str(field("group")?).map_err(|_| bad("group is not a UUID"))?;
        let name = GroupName::parse(field("name")?).map_err(|_| bad("name is not a group name"))?;
        let seq = field("seq")?
            .parse::<u64>()
            .map_err(|_| bad("seq is not a number"))?;
        let prev = match field("prev")? {
            "-" => None,
            hash => Some(StatementHash::parse(hash).ok_or_else(|| bad("prev is not a hash"))?),
        };
        let by = Username::parse(field("by")?).map_err(|_| bad("by is not a user name"))?;
        let at =
            parse_canonical_time(field("at")?).ok_or_else(|| bad("at is not a canonical time"))?;
        let rest: Vec<&str> = lines.collect();
        let user = |arg: &str| Username::parse(arg).map_err(|_| bad("not a user name"));
        let change = match rest.as_slice() {
            ["create", members @ ..] => Change::Create {
                members: members
                    .iter()
                    .map(|line| {
                        let (name, fp) = line
                            .strip_prefix("member ")
                            .and_then(|m| m.split_once(' '))
                            .ok_or_else(|| bad("expected a member line"))?;
                        Ok((user(name)?, checked_fingerprint(fp)?))
                    })
                    .collect::<Result<_, ChainError>>()?,
            },
            [line] => match line.split_once(' ') {
                Some(("add", args)) => {
                    let (name, fp) = args.split_once(' ').ok_or_else(|| bad("add needs a key"))?;
                    Change::Add {
                        user: user(name)?,
                        fingerprint: checked_fingerprint(fp)?,
                    }
                }
                Some(("remove", name)) => Change::Remove { user: user(name)? },
                Some(("promote", name)) => Change::Promote { user: user(name)? },
                None if *line == "leave" => Change::Leave,
                _ => return Err(bad("unknown change")),
            },
            _ => return Err(bad("unknown change")),
        };
        let statement = Statement {
            group,
            name,
            seq,
            prev,
            by,
            at,
            change,
        };
        if statement.prev.is_none() != (statement.seq == 0) {
            return Err(bad("only the first statement has no prev"));
        }
        if statement.to_text() != text {
            return Err(bad("not in canonical form"));
        }
        Ok(statement)
    }

    /// Signs the canonical text with the signer's key.
    pub fn sign(&self, key: &RsaPrivateKey) -> SignedStatement {
        let text = self.to_text();
        let sig = BlindedSigningKey::<Sha256>::new(key.clone())
            .sign_with_rng(&mut OsRng, text.as_bytes());
        SignedStatement {
            text,
            sig: BASE64.encode(sig.to_bytes()),
        }
    }
}

fn checked_fingerprint(fp: &str) -> Result<String, ChainError> {
    let groups: Vec<&str> = fp.split(':').collect();
    let well_formed = groups.len() == 16
        && groups.iter().all(|g| {
            g.len() == 4
                && g.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
    if well_formed {
        Ok(fp.to_owned())
    } else {
        Err(ChainError::Malformed("not a key fingerprint".into()))
    }
}

impl SignedStatement {
    pub fn hash(&self) -> StatementHash {
        StatementHash::of(&self.text)
    }

    /// The statement, if `key` signed it.
    pub fn verify(&self, key: &RsaPublicKey) -> Result<Statement, ChainError> {
        let statement = Statement::parse(&self.text)?;
        let bad = || ChainError::BadSignature(statement.by.to_string());
        let sig = BASE64.decode(&self.sig).map_err(|_| bad())?;
        let sig = Signature::try_from(sig.as_slice()).map_err(|_| bad())?;
        VerifyingKey::<Sha256>::new(key.clone())
            .verify(self.text.as_bytes(), &sig)
            .map_err(|_| bad())?;
        Ok(statement)
    }
}

/// A member of a group, in the order they joined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: Username,
    /// The fingerprint of the key the statement that let them in names for them.
    pub fingerprint: String,
    pub admin: bool,
}

/// What a group is after some statements, computed from them alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupState {
    pub id: uuid::Uuid,
    pub name: GroupName,
    /// The seq of the last statement applied (the group's epoch).
    pub seq: u64,
    /// The hash of the last statement applied.
    #[serde(with = "hash_hex")]
    pub head: StatementHash,
    pub created_at: DateTime<Utc>,
    pub members: Vec<Member>,
}

mod hash_hex {
    use super::StatementHash;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(hash: &StatementHash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hash.to_hex())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<StatementHash, D::Error> {
        let text = String::deserialize(d)?;
        StatementHash::parse(&text).ok_or_else(|| serde::de::Error::custom("not a statement hash"))
    }
}

/// What applying a statement did, beyond the statement itself: the rules that follow
/// from it on their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub statement: Statement,
    /// The last admin left or was removed: the member who joined earliest is admin now.
    pub promoted: Option<Username>,
    /// The last member left: the group is gone.
    pub ended: bool,
}

impl GroupState {
    /// The group its first statement creates, if `creator_key` signed it and it names
    /// that key for its creator.
    pub fn create(
        first: &SignedStatement,
        creator_key: &RsaPublicKey,
    ) -> Result<GroupState, ChainError> {
        let statement = first.verify(creator_key)?;
        Self::created(&statement, first.hash(), Some(&fingerprint(creator_key)))
    }

    /// [`create`](Self::create) for a first statement this client verified before and
    /// kept: the same rules, without the signature.
    pub fn replay_create(first: &SignedStatement) -> Result<GroupState, ChainError> {
        let statement = Statement::parse(&first.text)?;
        Self::created(&statement, first.hash(), None)
    }

    fn created(
        statement: &Statement,
        hash: StatementHash,
        creator_fp: Option<&str>,
    ) -> Result<GroupState, ChainError> {
        let Change::Create { members } = &statement.change else {
            return Err(ChainError::Malformed(
                "a group's first statement creates it".into(),
            ));
        };
        if statement.seq != 0 {
            return Err(ChainError::OutOfOrder {
                expected: 0,
                head: "-".into(),
            });
        }
        let Some((creator, named_fp)) = members.first() else {
            return Err(ChainError::Malformed("a group has members".into()));
        };
        if *creator != statement.by {
            return Err(ChainError::Malformed(
                "the creator is the first member".into(),
            ));
        }
        if creator_fp.is_some_and(|signer| signer != named_fp) {
            return Err(ChainError::KeyMismatch(creator.to_string()));
        }
        let mut seen = std::collections::BTreeSet::new();
        if !members.iter().all(|(name, _)| seen.insert(name)) {
            return Err(ChainError::Malformed("a member is named twice".into()));
        }
        Ok(GroupState {
            id: statement.group,
            name: statement.name.clone(),
            seq: 0,
            head: hash,
            created_at: statement.at,
            members: members
                .iter()
                .map(|(name, fp)| Member {
                    name: name.clone(),
                    fingerprint: fp.clone(),
                    admin: name == creator,
                })
                .collect(),
        })
    }

    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name.as_str() == name)
    }

    pub fn is_admin(&self, name: &str) -> bool {
        self.member(name).is_some_and(|m| m.admin)
    }

    pub fn admins(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|m| m.admin)
    }

    /// The statement that would come next, for `by` to sign.
    pub fn next(&self, by: &Username, at: DateTime<Utc>, change: Change) -> Statement {
        Statement {
            group: self.id,
            name: self.name.clone(),
            seq: self.seq + 1,
            prev: Some(self.head),
            by: by.clone(),
            at,
            change,
        }
    }

    /// Applies the next statement, signed by `signer_key`, which must be the key the
    /// chain names for its signer. On any error the state is unchanged. A group whose
    /// last member left takes no more statements: the caller drops it.
    pub fn apply(
        &mut self,
        next: &SignedStatement,
        signer_key: &RsaPublicKey,
    ) -> Result<Applied, ChainError> {
        let statement = next.verify(signer_key)?;
        self.step(statement, next.hash(), Some(&fingerprint(signer_key)))
    }

    /// [`apply`](Self::apply) for a statement this client verified before and kept: the
    /// same rules, without the signature.
    pub fn replay(&mut self, next: &SignedStatement) -> Result<Applied, ChainError> {
        let statement = Statement::parse(&next.text)?;
        self.step(statement, next.hash(), None)
    }

    fn step(
        &mut self,
        statement: Statement,
        hash: StatementHash,
        signer_fp: Option<&str>,
    ) -> Result<Applied, ChainError> {
        if statement.group != self.id || statement.name != self.name {
            return Err(ChainError::WrongGroup);
        }
        if statement.seq != self.seq + 1 || statement.prev != Some(self.head) {
            return Err(ChainError::OutOfOrder {
                expected: self.seq + 1,
                head: self.head.to_hex(),
            });
        }
        let by = statement.by.as_str();
        let signer = self
            .member(by)
            .ok_or_else(|| ChainError::NotMember(by.to_owned()))?;
        if signer_fp.is_some_and(|fp| fp != signer.fingerprint) {
            return Err(ChainError::KeyMismatch(by.to_owned()));
        }
        let signer_is_admin = signer.admin;
        let need_admin = || {
            if signer_is_admin {
                Ok(())
            } else {
                Err(ChainError::NotAdmin(by.to_owned()))
            }
        };
        let mut members = self.members.clone();
        let position = |members: &[Member], user: &Username| {
            members
                .iter()
                .position(|m| m.name == *user)
                .ok_or_else(|| ChainError::NotMember(user.to_string()))
        };
        match &statement.change {
            Change::Create { .. } => {
                return Err(ChainError::Malformed("a group is created only once".into()))
            }
            Change::Add { user, fingerprint } => {
                need_admin()?;
                if members.iter().any(|m| m.name == *user) {
                    return Err(ChainError::AlreadyMember(user.to_string()));
                }
                members.push(Member {
                    name: user.clone(),
                    fingerprint: fingerprint.clone(),
                    admin: false,
                });
            }
            Change::Remove { user } => {
                need_admin()?;
                if user.as_str() == by {
                    return Err(ChainError::Malformed("to remove yourself, leave".into()));
                }
                members.remove(position(&members, user)?);
            }
            Change::Leave => {
                members.remove(position(&members, &statement.by)?);
            }
            Change::Promote { user } => {
                need_admin()?;
                let at = position(&members, user)?;
                if members[at].admin {
                    return Err(ChainError::AlreadyAdmin(user.to_string()));
                }
                members[at].admin = true;
            }
        }
        let ended = members.is_empty();
        let mut promoted = None;
        if !ended && !members.iter().any(|m| m.admin) {
            members[0].admin = true;
            promoted = Some(members[0].name.clone());
        }
        self.members = members;
        self.seq = statement.seq;
        self.head = hash;
        Ok(Applied {
            statement,
            promoted,
            ended,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::generate_private_key;
    use std::sync::OnceLock;

    fn keys() -> &'static [RsaPrivateKey; 3] {
        static KEYS: OnceLock<[RsaPrivateKey; 3]> = OnceLock::new();
        KEYS.get_or_init(|| std::array::from_fn(|_| generate_private_key().expect("a key")))
    }

    fn user(name: &str) -> Username {
        Username::parse(name).expect("a name")
    }

    fn fp(i: usize) -> String {
        fingerprint(&keys()[i].to_public_key())
    }

    fn created() -> (GroupState, SignedStatement) {
        let first = Statement {
            group: uuid::Uuid::new_v4(),
            name: GroupName::parse("team").expect("a name"),
            seq: 0,
            prev: None,
            by: user("alice"),
            at: Utc::now(),
            change: Change::Create {
                members: vec![(user("alice"), fp(0)), (user("bob"), fp(1))],
            },
        }
        .sign(&keys()[0]);
        let state = GroupState::create(&first, &keys()[0].to_public_key()).expect("created");
        (state, first)
    }

    fn signed(state: &GroupState, by: usize, name: &str, change: Change) -> SignedStatement {
        state
            .next(&user(name), Utc::now(), change)
            .sign(&keys()[by])
    }

    #[test]
    fn statements_print_and_parse_canonically_and_nothing_else_parses() {
        let (_, first) = created();
        let parsed = Statement::parse(&first.text).expect("parses");
        assert_eq!(parsed.to_text(), first.text);
        for bad in [
            first.text.replace("seq 0", "seq 00"),
            first.text.replace("name team", "name Team"),
            format!("{}\n", first.text),
            first.text.replace("create", "create "),
            first.text.replace(".", ","),
            first.text.replace("fastchat group v1", "fastchat group v2"),
        ] {
            assert!(Statement::parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn members_and_admins_follow_the_chain_and_the_automatic_rules() {
        let (mut state, _) = created();
        let carol = Change::Add {
            user: user("carol"),
            fingerprint: fp(2),
        };
        let add = signed(&state, 0, "alice", carol);
        state
            .apply(&add, &keys()[0].to_public_key())
            .expect("alice adds carol");
        assert_eq!(state.members.len(), 3);
        assert_eq!(state.seq, 1);
        assert_eq!(state.head, add.hash());

        // The last admin leaves: bob, who joined earliest of the rest, is admin.
        let leave = signed(&state, 0, "alice", Change::Leave);
        let applied = state
            .apply(&leave, &keys()[0].to_public_key())
            .expect("alice leaves");
        assert_eq!(applied.promoted, Some(user("bob")));
        assert!(state.is_admin("bob") && !state.is_admin("carol"));

        let remove = signed(
            &state,
            1,
            "bob",
            Change::Remove {
                user: user("carol"),
            },
        );
        state
            .apply(&remove, &keys()[1].to_public_key())
            .expect("bob removes carol");
        let last = signed(&state, 1, "bob", Change::Leave);
        let applied = state
            .apply(&last, &keys()[1].to_public_key())
            .expect("bob leaves");
        assert!(applied.ended && state.members.is_empty());
    }

    #[test]
    fn forged_stale_and_unauthorised_statements_change_nothing() {
        let (mut state, first) = created();
        let before = state.clone();
        let alice_key = keys()[0].to_public_key();
        let bob_key = keys()[1].to_public_key();
        let eve = || Change::Add {
            user: user("eve"),
            fingerprint: fp(2),
        };
        // bob is not an admin.
        let by_bob = signed(&state, 1, "bob", eve());
        assert_eq!(
            state.apply(&by_bob, &bob_key),
            Err(ChainError::NotAdmin("bob".into()))
        );
        // Signed by bob's key in alice's name.
        let forged = signed(&state, 1, "alice", eve());
        assert!(matches!(
            state.apply(&forged, &alice_key),
            Err(ChainError::BadSignature(_))
        ));
        assert_eq!(
            state.apply(&forged, &bob_key),
            Err(ChainError::KeyMismatch("alice".into()))
        );
        // Out of order: the first statement again, and one that skips ahead.
        assert!(state.apply(&first, &alice_key).is_err());
        let mut ahead = state.next(&user("alice"), Utc::now(), eve());
        ahead.seq += 1;
        assert!(matches!(
            state.apply(&ahead.sign(&keys()[0]), &alice_key),
            Err(ChainError::OutOfOrder { .. })
        ));
        // A statement for another group of the same name.
        let mut other = state.next(&user("alice"), Utc::now(), eve());
        other.group = uuid::Uuid::new_v4();
        assert_eq!(
            state.apply(&other.sign(&keys()[0]), &alice_key),
            Err(ChainError::WrongGroup)
        );
        // A text altered after signing.
        let mut altered = signed(&state, 0, "alice", eve());
        altered.text = altered.text.replace("add eve", "add mal");
        assert!(state.apply(&altered, &alice_key).is_err());
        assert_eq!(state, before, "nothing was applied");

        // A removed member can sign no more.
        let remove = signed(&state, 0, "alice", Change::Remove { user: user("bob") });
        state.apply(&remove, &alice_key).expect("alice removes bob");
        let late = signed(&state, 1, "bob", Change::Leave);
        assert_eq!(
            state.apply(&late, &bob_key),
            Err(ChainError::NotMember("bob".into()))
        );
    }

    #[test]
    fn a_kept_chain_replays_to_the_same_state() {
        let (mut state, first) = created();
        let add = signed(
            &state,
            0,
            "alice",
            Change::Add {
                user: user("carol"),
                fingerprint: fp(2),
            },
        );
        state
            .apply(&add, &keys()[0].to_public_key())
            .expect("applied");
        let mut replayed = GroupState::replay_create(&first).expect("replayed");
        replayed.replay(&add).expect("replayed");
        assert_eq!(replayed, state);
    }

    #[test]
    fn the_first_statement_must_name_its_signers_key() {
        let (_, first) = created();
        assert!(matches!(
            GroupState::create(&first, &keys()[1].to_public_key()),
            Err(ChainError::BadSignature(_))
        ));
        let lying = Statement {
            group: uuid::Uuid::new_v4(),
            name: GroupName::parse("team").expect("a name"),
            seq: 0,
            prev: None,
            by: user("alice"),
            at: Utc::now(),
            change: Change::Create {
                members: vec![(user("alice"), fp(1))],
            },
        }
        .sign(&keys()[0]);
        assert_eq!(
            GroupState::create(&lying, &keys()[0].to_public_key()),
            Err(ChainError::KeyMismatch("alice".into()))
        );
    }

    /// docs/test-vectors/group-chain.json: a chain signed by another implementation.
    #[test]
    fn the_documented_chain_verifies_and_comes_to_the_documented_members() {
        let vector: serde_json::Value =
            serde_json::from_str(include_str!("../../docs/test-vectors/group-chain.json"))
                .expect("vector parses");
        let key = |name: &str| {
            crate::keys::parse_public_key_pem(
                vector[format!("{name}_public_key")]
                    .as_str()
                    .expect("a key"),
            )
            .expect("a public key")
        };
        let statements: Vec<SignedStatement> = vector["statements"]
            .as_array()
            .expect("statements")
            .iter()
            .map(|s| SignedStatement {
                text: s["text"].as_str().expect("text").to_owned(),
                sig: s["sig"].as_str().expect("sig").to_owned(),
            })
            .collect();
        for (statement, documented) in statements
            .iter()
            .zip(vector["statements"].as_array().expect("statements"))
        {
            assert_eq!(
                statement.hash().to_hex(),
                documented["hash"].as_str().expect("hash")
            );
        }
        let mut state = GroupState::create(&statements[0], &key("alice")).expect("created");
        state
            .apply(&statements[1], &key("alice"))
            .expect("carol added");
        let names = |admins: bool| -> Vec<String> {
            state
                .members
                .iter()
                .filter(|m| m.admin || !admins)
                .map(|m| m.name.to_string())
                .collect()
        };
        assert_eq!(serde_json::json!(names(false)), vector["members_after"]);
        assert_eq!(serde_json::json!(names(true)), vector["admins_after"]);
        assert_eq!(
            state.member("carol").map(|m| m.fingerprint.clone()),
            Some(fingerprint(&key("carol")))
        );
    }
}
