//! User names: what a valid name is, and the id a name is stored under.
//!
//! A name is 2 to [`MAX_NAME_LEN`] bytes of lowercase ASCII letters,
//! digits, `-` and `_`, starting with a letter. Its claim (a
//! [`crate::NameClaim`], signed by the key that holds it) lives on the home
//! supernodes of [`name_key`]: SHA-256 of a domain string and the name, a
//! point of the id space like any node id, so that names spread over the
//! supernodes as nodes do.

use sha2::{Digest, Sha256};

use crate::id::NodeId;

/// Longest name, in bytes.
pub const MAX_NAME_LEN: usize = 32;
/// Shortest name, in bytes.
pub const MIN_NAME_LEN: usize = 2;
/// Domain prefix hashed with a name to give the id it is stored under.
pub const NAME_KEY_DOMAIN: &[u8] = b"skyhop/2 name\0";

/// Why a string is not a name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Shorter than [`MIN_NAME_LEN`] or longer than [`MAX_NAME_LEN`].
    #[error("name '{name}' is {len} bytes; a name is {MIN_NAME_LEN} to {MAX_NAME_LEN}")]
    Length {
        /// The name, as given.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// A character outside `a-z 0-9 - _`.
    #[error("name '{name}' has '{bad}'; a name uses only a-z, 0-9, '-' and '_'")]
    Charset {
        /// The name, as given.
        name: String,
        /// The first character refused.
        bad: char,
    },
    /// Does not start with a letter.
    #[error("name '{name}' must start with a letter a-z")]
    FirstChar {
        /// The name, as given.
        name: String,
    },
}

/// Checks that `name` is a valid name.
pub fn check_name(name: &str) -> Result<(), NameError> {
    let len = name.len();
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        return Err(NameError::Charset {
            name: name.into(),
            bad,
        });
    }
    if !(MIN_NAME_LEN..=MAX_NAME_LEN).contains(&len) {
        return Err(NameError::Length {
            name: name.into(),
            len,
        });
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(NameError::FirstChar { name: name.into() });
    }
    Ok(())
}

/// The id `name`'s claim is stored under: SHA-256([`NAME_KEY_DOMAIN`] || name).
pub fn name_key(name: &str) -> NodeId {
    let mut h = Sha256::new();
    h.update(NAME_KEY_DOMAIN);
    h.update(name.as_bytes());
    NodeId(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_lowercase_words_and_errors_say_why() {
        assert!(check_name("alice").is_ok());
        assert!(check_name("bob_2-x").is_ok());
        let e = check_name("Alice").unwrap_err().to_string();
        assert!(e.contains("'A'"), "{e}");
        assert!(check_name("a").unwrap_err().to_string().contains("2 to 32"));
        assert!(check_name(&"a".repeat(33)).is_err());
        assert!(check_name("9lives")
            .unwrap_err()
            .to_string()
            .contains("start with a letter"));
        assert!(check_name("al ice").is_err());
        assert_ne!(name_key("alice"), name_key("alicf"));
    }
}
