//! Names of users (and groups): `^[a-z0-9_]{3,32}$`.

use std::fmt;

use serde::{Deserialize, Serialize};

pub const NAME_MIN_LEN: usize = 3;
pub const NAME_MAX_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be {NAME_MIN_LEN} to {NAME_MAX_LEN} characters of a-z, 0-9 and _")]
pub struct InvalidName;

/// True when `name` follows the rule for user and group names.
pub fn is_valid_name(name: &str) -> bool {
    (NAME_MIN_LEN..=NAME_MAX_LEN).contains(&name.len()) && is_name_chars(name)
}

/// True when every character may appear in a name (used for prefixes too).
pub fn is_name_chars(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

macro_rules! checked_name {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(name: &str) -> Result<Self, InvalidName> {
                if is_valid_name(name) {
                    Ok(Self(name.to_owned()))
                } else {
                    Err(InvalidName)
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(de)?;
                $name::parse(&raw).map_err(serde::de::Error::custom)
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidName;
            fn from_str(name: &str) -> Result<Self, InvalidName> {
                $name::parse(name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
    };
}

checked_name! {
    /// A user name that has been checked against the naming rule.
    Username
}

checked_name! {
    /// A group name that has been checked against the naming rule (the same as users').
    GroupName
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_that_follow_the_rule() {
        for name in [
            "abc",
            "alice",
            "bob_2",
            "a_very_long_name_of_32_chars_xyz",
            "___",
        ] {
            assert!(Username::parse(name).is_ok(), "{name} should be valid");
        }
    }

    #[test]
    fn rejects_names_that_break_the_rule() {
        let too_long = "a".repeat(33);
        for name in [
            "",
            "ab",
            "Alice",
            "al ice",
            "al-ice",
            "élise",
            "bob!",
            too_long.as_str(),
        ] {
            assert_eq!(
                Username::parse(name),
                Err(InvalidName),
                "{name:?} should be invalid"
            );
        }
    }

    #[test]
    fn deserializing_checks_the_rule() {
        assert!(serde_json::from_str::<Username>("\"alice\"").is_ok());
        assert!(serde_json::from_str::<Username>("\"ALICE\"").is_err());
        assert!(serde_json::from_str::<GroupName>("\"team\"").is_ok());
        assert!(serde_json::from_str::<GroupName>("\"../session\"").is_err());
    }
}
