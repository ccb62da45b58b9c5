//! Secrets at rest: API keys, OAuth tokens, webhook signing secrets and the SMTP password are
//! stored sealed with XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`), each value under
//! its own random 24-byte nonce, as `sealed:v1:<base64 of nonce ‖ ciphertext and tag>`. A copy
//! of the database file (a backup, a stolen disk) then holds no usable secret without the key,
//! and a changed value fails to open instead of being used.
//!
//! The key is 32 random bytes, found by one rule (`Sealer::for_config`): `database.secret_key`
//! (config file, `MMC_DATABASE__SECRET_KEY` or `MMC_DATABASE__SECRET_KEY_FILE`) when it is set;
//! otherwise the key file beside the database (`<database.path>.key`), which the first command
//! that opens a database without one creates, mode 0600, and nothing ever overwrites.
//!
//! SQL reaches the key through two functions every connection gets (`db::open`): `seal(text)`
//! and `unseal(text)`, so every query that writes or reads a secret says so in its SQL.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, Generate, KeyInit};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};

use crate::config::{Config, Source};
use crate::Error;

/// What marks a sealed value; the version names the algorithm and layout above.
pub const PREFIX: &str = "sealed:v1:";

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// The cipher under the key, and where the key came from (named in every error about it).
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    location: String,
}

/// The key never shows in a `{:?}`.
impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("key", &"[redacted]")
            .field("location", &self.location)
            .finish()
    }
}

/// Whether `stored` is a sealed value (as opposed to plain text from before sealing, or empty).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

/// The key file of the database at `database`: `<database>.key` beside it.
pub fn key_file(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".key");
    PathBuf::from(name)
}

/// A new random key, as the key file holds it (64 hex digits).
pub fn new_key_text() -> Result<String, Error> {
    let key = Key::try_generate()
        .map_err(|e| Error::Io(std::io::Error::other(format!("no random key: {e}"))))?;
    Ok(hex::encode(key.as_slice()))
}

impl Sealer {
    /// A sealer for the key in `text` (32 bytes as 64 hex digits or as base64), which came
    /// from `location` ("the key file /var/lib/mmc/mailmycustomer.db.key").
    pub fn from_text(text: &str, location: impl Into<String>) -> Result<Sealer, Error> {
        let location = location.into();
        let text = text.trim();
        let bytes = match text.len() {
            64 => hex::decode(text).ok(),
            _ => BASE64.decode(text).ok(),
        };
        let cipher = bytes
            .filter(|b| b.len() == 32)
            .and_then(|b| XChaCha20Poly1305::new_from_slice(&b).ok())
            .ok_or_else(|| {
                Error::Config(format!(
                    "{location} is not a key: it must be 32 random bytes written as 64 hex \
                     digits or as base64 (make one with `openssl rand -hex 32`)"
                ))
            })?;
        Ok(Sealer { cipher, location })
    }

    /// The sealer for `config`'s database, by the one rule: `database.secret_key` when set,
    /// else the key file beside the database, created (0600) when neither exists yet and the
    /// database holds nothing sealed. A sealed database without its key is an error naming
    /// both places, never a new key.
    pub fn for_config(config: &Config) -> Result<Sealer, Error> {
        let database = &config.database.path;
        let file = key_file(database);
        if !config.database.secret_key.is_empty() {
            let location = match config.source("database.secret_key") {
                Source::Env(var) => format!("database.secret_key (set by {var})"),
                Source::File => "database.secret_key in the config file".to_owned(),
                _ => "database.secret_key".to_owned(),
            };
            return Sealer::from_text(config.database.secret_key.expose(), location);
        }
        let location = format!("the key file {}", file.display());
        match std::fs::read_to_string(&file) {
            Ok(text) => return Sealer::from_text(&text, location),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::Config(format!(
                    "cannot read {location}: {e} (it holds the key to the database's secrets)"
                )))
            }
            Err(_) => {}
        }
        if crate::db::is_sealed(database)? {
            return Err(Error::Config(format!(
                "the database {} holds secrets sealed with a key, but {location} is missing and \
                 database.secret_key is not set: put the key back in that file, or set \
                 database.secret_key (MMC_DATABASE__SECRET_KEY or MMC_DATABASE__SECRET_KEY_FILE) \
                 to it",
                database.display()
            )));
        }
        create_key_file(&file)?;
        let text = std::fs::read_to_string(&file)
            .map_err(|e| Error::Config(format!("cannot read {location}: {e}")))?;
        Sealer::from_text(&text, location)
    }

    /// Where the key came from, as errors name it.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// `plain` sealed under a fresh random nonce. Empty stays empty: there is nothing to hide,
    /// and an integration without a signing secret keeps reading as one.
    pub fn seal(&self, plain: &str) -> Result<String, Error> {
        if plain.is_empty() {
            return Ok(String::new());
        }
        let nonce = XNonce::try_generate()
            .map_err(|e| Error::Io(std::io::Error::other(format!("no random nonce: {e}"))))?;
        let sealed = self
            .cipher
            .encrypt(&nonce, plain.as_bytes())
            .map_err(|_| Error::Io(std::io::Error::other("sealing a secret failed")))?;
        let mut bytes = Vec::with_capacity(NONCE_LEN + sealed.len());
        bytes.extend_from_slice(nonce.as_slice());
        bytes.extend_from_slice(&sealed);
        Ok(format!("{PREFIX}{}", BASE64.encode(bytes)))
    }

    /// The secret in `stored`. A sealed value that does not open (another key, or changed) is
    /// an error naming the key's location; plain text passes as it is only while
    /// `plain_allowed` (the database's one-time seal step has not run yet), and is an error
    /// after it.
    pub fn unseal(&self, stored: &str, plain_allowed: bool) -> Result<String, Error> {
        let Some(encoded) = stored.strip_prefix(PREFIX) else {
            if stored.is_empty() || plain_allowed {
                return Ok(stored.to_owned());
            }
            return Err(Error::Config(
                "a secret in the database is in plain text although the database's secrets \
                 were sealed: something wrote it around this program; set it again (on its \
                 page or with the CLI)"
                    .to_owned(),
            ));
        };
        let opened = BASE64
            .decode(encoded)
            .ok()
            .filter(|bytes| bytes.len() >= NONCE_LEN + TAG_LEN)
            .and_then(|bytes| {
                let (nonce, sealed) = bytes.split_at(NONCE_LEN);
                let nonce = XNonce::try_from(nonce).ok()?;
                self.cipher.decrypt(&nonce, sealed).ok()
            })
            .and_then(|plain| String::from_utf8(plain).ok());
        opened.ok_or_else(|| {
            Error::Config(format!(
                "a secret in the database does not open with the key from {}: the key is wrong \
                 (not the one the secrets were sealed with) or the value was changed; give the \
                 key the database was sealed with",
                self.location
            ))
        })
    }
}

/// Writes a new key to `file`, mode 0600, unless a file is there already (another process
/// made it a moment ago: that one is used). A missing directory is created 0700, as the
/// database's is.
fn create_key_file(file: &Path) -> Result<(), Error> {
    let failed = |e: std::io::Error| {
        Error::Config(format!(
            "cannot create the key file {}: {e} (check database.path and the directory's \
             permissions, or set database.secret_key)",
            file.display()
        ))
    };
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::db::create_private_dir(dir)?;
    }
    let key = new_key_text()?;
    let mut created = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
    {
        Ok(created) => created,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(failed(e)),
    };
    // The umask can only take bits away from 0600; set it whole again in case it did.
    created
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .and_then(|()| writeln!(created, "{key}"))
        .and_then(|()| created.sync_all())
        .map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(location: &str) -> Sealer {
        Sealer::from_text(&new_key_text().unwrap(), location).unwrap()
    }

    #[test]
    fn a_secret_comes_back_and_each_sealing_differs() {
        let s = sealer("test");
        let secret = "whsec_0123456789abcdefghij Ünïcode";
        let once = s.seal(secret).unwrap();
        let twice = s.seal(secret).unwrap();
        assert!(is_sealed(&once), "{once}");
        assert_ne!(once, twice, "a fresh nonce each time");
        assert!(!once.contains("whsec") && !once.contains("0123456789abcdef"));
        for sealed in [&once, &twice] {
            assert_eq!(s.unseal(sealed, false).unwrap(), secret);
        }
        assert_eq!(s.seal("").unwrap(), "");
        assert_eq!(s.unseal("", false).unwrap(), "");
    }

    #[test]
    fn a_changed_value_is_refused() {
        let s = sealer("test");
        let sealed = s.seal("rk_live_0123456789").unwrap();
        let encoded = sealed.strip_prefix(PREFIX).unwrap();
        let mut bytes = BASE64.decode(encoded).unwrap();
        for at in [0, NONCE_LEN, bytes.len() - 1] {
            bytes[at] ^= 1;
            let tampered = format!("{PREFIX}{}", BASE64.encode(&bytes));
            assert!(s.unseal(&tampered, true).is_err(), "flipped byte {at}");
            bytes[at] ^= 1;
        }
        let cut = format!(
            "{PREFIX}{}",
            BASE64.encode(&bytes[..NONCE_LEN + TAG_LEN - 1])
        );
        assert!(s.unseal(&cut, true).is_err());
        assert!(s.unseal(&format!("{PREFIX}not base64!"), true).is_err());
    }

    #[test]
    fn another_key_is_refused_with_the_key_location_named() {
        let sealed = sealer("a").seal("smtp-password").unwrap();
        let err = sealer("the key file /srv/mmc.db.key")
            .unseal(&sealed, true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("the key file /srv/mmc.db.key") && err.contains("key is wrong"),
            "{err}"
        );
        assert!(!err.contains("smtp-password"), "{err}");
    }

    #[test]
    fn plain_text_passes_only_before_the_seal_step() {
        let s = sealer("test");
        assert_eq!(s.unseal("whsec_old", true).unwrap(), "whsec_old");
        let err = s.unseal("whsec_old", false).unwrap_err().to_string();
        assert!(err.contains("plain text"), "{err}");
        assert!(!err.contains("whsec_old"), "{err}");
    }

    #[test]
    fn a_key_is_hex_or_base64_of_32_bytes() {
        let hex_key = new_key_text().unwrap();
        let bytes = hex::decode(&hex_key).unwrap();
        let as_hex = Sealer::from_text(&format!("{hex_key}\n"), "hex").unwrap();
        let as_base64 = Sealer::from_text(&BASE64.encode(&bytes), "base64").unwrap();
        let sealed = as_hex.seal("same key").unwrap();
        assert_eq!(as_base64.unseal(&sealed, false).unwrap(), "same key");
        for bad in ["", "abc", &hex_key[..62], &BASE64.encode([7u8; 16])] {
            let err = Sealer::from_text(bad, "MMC_DATABASE__SECRET_KEY")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("MMC_DATABASE__SECRET_KEY") && err.contains("32 random bytes"),
                "{err}"
            );
        }
    }

    #[test]
    fn the_key_file_is_made_once_private_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.database.path = dir.path().join("data/mmc.db");
        let first = Sealer::for_config(&config).unwrap();
        let file = key_file(&config.database.path);
        assert_eq!(file, dir.path().join("data/mmc.db.key"));
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let written = std::fs::read_to_string(&file).unwrap();
        let again = Sealer::for_config(&config).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), written);
        let sealed = first.seal("kept").unwrap();
        assert_eq!(again.unseal(&sealed, false).unwrap(), "kept");
        assert!(again.location().contains(&file.display().to_string()));

        // The config's key wins over the file, and names itself.
        config.database.secret_key = crate::secret::Secret::new(new_key_text().unwrap());
        let configured = Sealer::for_config(&config).unwrap();
        assert_eq!(configured.location(), "database.secret_key");
        assert!(configured.unseal(&sealed, false).is_err());
    }
}
