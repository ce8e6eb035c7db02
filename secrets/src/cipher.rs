//! Encryption at rest with Fernet, as Airflow's `fernet_key`: `UPDRAFT_SECRET_KEY` holds one or
//! more keys separated by commas; the first encrypts, any of them decrypts, so a key is rotated
//! by putting the new one first and re-encrypting (`updraft secrets rotate`).

use fernet::{Fernet, MultiFernet};

/// The environment variable holding the keys.
pub const SECRET_KEY_VAR: &str = "UPDRAFT_SECRET_KEY";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CipherError {
    #[error(
        "{SECRET_KEY_VAR}: key {position} is not a Fernet key (32 bytes, URL-safe base64; make one with `updraft secrets generate-key`)"
    )]
    InvalidKey { position: usize },
    #[error(
        "{SECRET_KEY_VAR} is not set: secrets are stored encrypted and there is no key to encrypt them with (make one with `updraft secrets generate-key`)"
    )]
    NoKey,
    #[error(
        "a stored secret cannot be decrypted with {SECRET_KEY_VAR}: it was encrypted with another key (put the old key after the new one, comma-separated, to read and rotate it)"
    )]
    WrongKey,
    #[error("a stored secret decrypts to bytes that are not UTF-8")]
    NotText,
}

/// The keys of `UPDRAFT_SECRET_KEY` (or none).
#[derive(Clone)]
pub struct Cipher {
    keys: Option<MultiFernet>,
    count: usize,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys themselves.
        f.debug_struct("Cipher").field("keys", &self.count).finish()
    }
}

impl Cipher {
    /// From `UPDRAFT_SECRET_KEY`; no key when it is unset or blank.
    pub fn from_env() -> Result<Cipher, CipherError> {
        Cipher::from_keys(&std::env::var(SECRET_KEY_VAR).unwrap_or_default())
    }

    /// From comma-separated keys, the first one encrypting; none when `keys` is blank.
    pub fn from_keys(keys: &str) -> Result<Cipher, CipherError> {
        let parsed = keys
            .split(',')
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .enumerate()
            .map(|(index, key)| {
                Fernet::new(key).ok_or(CipherError::InvalidKey {
                    position: index + 1,
                })
            })
            .collect::<Result<Vec<Fernet>, CipherError>>()?;
        let count = parsed.len();
        Ok(Cipher {
            keys: (count > 0).then(|| MultiFernet::new(parsed)),
            count,
        })
    }

    /// No key at all: nothing can be encrypted or decrypted.
    pub fn none() -> Cipher {
        Cipher {
            keys: None,
            count: 0,
        }
    }

    /// A new random key, for `updraft secrets generate-key` and the local quickstart.
    pub fn generate_key() -> String {
        Fernet::generate_key()
    }

    pub fn has_key(&self) -> bool {
        self.keys.is_some()
    }

    /// A Fernet token of `plain`, with the first key.
    pub fn encrypt(&self, plain: &str) -> Result<String, CipherError> {
        let keys = self.keys.as_ref().ok_or(CipherError::NoKey)?;
        Ok(keys.encrypt(plain.as_bytes()))
    }

    /// The text of a token made with any of the keys.
    pub fn decrypt(&self, token: &str) -> Result<String, CipherError> {
        let keys = self.keys.as_ref().ok_or(CipherError::NoKey)?;
        let bytes = keys.decrypt(token).map_err(|_| CipherError::WrongKey)?;
        String::from_utf8(bytes).map_err(|_| CipherError::NotText)
    }

    /// The token again, encrypted with the first key (a rotation step).
    pub fn rotate(&self, token: &str) -> Result<String, CipherError> {
        self.encrypt(&self.decrypt(token)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypts_with_the_first_key_and_decrypts_with_any() {
        let old = Cipher::generate_key();
        let new = Cipher::generate_key();
        let before = Cipher::from_keys(&old).unwrap();
        let token = before.encrypt("s3cret").unwrap();
        assert!(!token.contains("s3cret"));
        assert_eq!(before.decrypt(&token).unwrap(), "s3cret");

        // The new key first, the old one after it: old tokens still read, rotated ones are
        // the new key's alone.
        let both = Cipher::from_keys(&format!("{new}, {old}")).unwrap();
        assert_eq!(both.decrypt(&token).unwrap(), "s3cret");
        let rotated = both.rotate(&token).unwrap();
        let only_new = Cipher::from_keys(&new).unwrap();
        assert_eq!(only_new.decrypt(&rotated).unwrap(), "s3cret");
        assert_eq!(only_new.decrypt(&token), Err(CipherError::WrongKey));
    }

    #[test]
    fn bad_and_missing_keys_are_clear_errors() {
        let good = Cipher::generate_key();
        assert_eq!(
            Cipher::from_keys(&format!("{good},not-a-key")).unwrap_err(),
            CipherError::InvalidKey { position: 2 }
        );
        let none = Cipher::from_keys("  ").unwrap();
        assert!(!none.has_key());
        assert_eq!(none.encrypt("x"), Err(CipherError::NoKey));
        let cipher = Cipher::from_keys(&good).unwrap();
        assert_eq!(cipher.decrypt("garbage"), Err(CipherError::WrongKey));
        assert!(!format!("{cipher:?}").contains(&good));
    }
}
