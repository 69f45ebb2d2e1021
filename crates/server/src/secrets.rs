//! Encryption at rest of SIP account passwords: ChaCha20-Poly1305 (ring) with a random 96-bit
//! nonce per value, stored as `v1:` + hex(nonce ‖ ciphertext ‖ tag). The 256-bit key comes
//! from `SIPMETER_SECRET_KEY` (64 hex digits) or from `secret.key` in the data directory
//! (created on first start, mode 0600).

use std::path::Path;

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::auth::hex;

/// The key; `Debug` never shows it.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// Why a key could not be loaded or a value not decrypted.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key text is not 64 hex digits.
    #[error("the secret key must be 64 hexadecimal digits (32 bytes)")]
    BadKey,
    /// Reading or writing the key file failed.
    #[error("secret key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The value is not ours or was made with another key.
    #[error("the stored secret cannot be decrypted (wrong key or corrupt value)")]
    Undecryptable,
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl SecretKey {
    /// A random key (tests, or when nothing is configured and nothing may be written).
    pub fn random() -> SecretKey {
        let mut k = [0u8; 32];
        // See auth::random_token: no safe way to go on without the OS RNG.
        getrandom::fill(&mut k).expect("the operating system's random number generator failed");
        SecretKey(k)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Result<SecretKey, SecretError> {
        let bytes = unhex(s.trim()).ok_or(SecretError::BadKey)?;
        let k: [u8; 32] = bytes.try_into().map_err(|_| SecretError::BadKey)?;
        Ok(SecretKey(k))
    }

    /// Loads `dir/secret.key`, creating it (mode 0600) with a random key when absent.
    pub fn load_or_create(dir: &Path) -> Result<SecretKey, SecretError> {
        let path = dir.join("secret.key");
        let io = |source| SecretError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => SecretKey::from_hex(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = SecretKey::random();
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                let mut f = opts.open(&path).map_err(io)?;
                std::io::Write::write_all(&mut f, format!("{}\n", hex(&key.0)).as_bytes())
                    .map_err(io)?;
                Ok(key)
            }
            Err(e) => Err(io(e)),
        }
    }

    fn aead(&self) -> LessSafeKey {
        // A 32-byte key is exactly what CHACHA20_POLY1305 takes, so this cannot fail.
        LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &self.0).expect("32-byte key"))
    }

    /// Encrypts a secret; `context` (e.g. the registrar id) is bound as associated data, so a
    /// value copied to another row does not decrypt.
    pub fn encrypt(&self, plain: &str, context: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the operating system's random number generator failed");
        let mut buf = plain.as_bytes().to_vec();
        self.aead()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            // Only fails for inputs over ~256 GiB.
            .expect("secret too large to encrypt");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        format!("v1:{}", hex(&out))
    }

    /// Decrypts a value made by [`SecretKey::encrypt`] with the same context.
    pub fn decrypt(&self, stored: &str, context: &str) -> Result<String, SecretError> {
        let bytes = stored
            .strip_prefix("v1:")
            .and_then(unhex)
            .ok_or(SecretError::Undecryptable)?;
        if bytes.len() < NONCE_LEN {
            return Err(SecretError::Undecryptable);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretError::Undecryptable)?;
        let mut sealed = sealed.to_vec();
        let plain = self
            .aead()
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut sealed)
            .map_err(|_| SecretError::Undecryptable)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SecretError::Undecryptable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let k = SecretKey::random();
        let a = k.encrypt("s3cret-pässword", "registrar:7");
        let b = k.encrypt("s3cret-pässword", "registrar:7");
        assert_ne!(a, b, "fresh nonce per value");
        assert!(!a.contains("s3cret"));
        assert_eq!(a.len(), 3 + 2 * (12 + "s3cret-pässword".len() + 16));
        assert_eq!(k.decrypt(&a, "registrar:7").unwrap(), "s3cret-pässword");
        assert!(k.decrypt(&a, "registrar:8").is_err(), "bound to its row");
        assert!(
            SecretKey::random().decrypt(&a, "registrar:7").is_err(),
            "other key"
        );
        let mut t = a.clone().into_bytes();
        let last = t.len() - 1;
        t[last] = if t[last] == b'0' { b'1' } else { b'0' };
        assert!(
            k.decrypt(&String::from_utf8(t).unwrap(), "registrar:7")
                .is_err()
        );
        for junk in ["", "v1:", "v1:zz", "v2:00", "v1:0011"] {
            assert!(k.decrypt(junk, "x").is_err(), "{junk}");
        }
    }

    #[test]
    fn keys_from_hex_and_file() {
        assert!(SecretKey::from_hex(&"ab".repeat(32)).is_ok());
        assert!(SecretKey::from_hex("abcd").is_err());
        assert!(SecretKey::from_hex(&"zz".repeat(32)).is_err());
        let dir = std::env::temp_dir().join(format!("sipmeter-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let k1 = SecretKey::load_or_create(&dir).unwrap();
        let k2 = SecretKey::load_or_create(&dir).unwrap();
        assert_eq!(k2.decrypt(&k1.encrypt("x", "c"), "c").unwrap(), "x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("secret.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
