//! Key material: the user's master key and everything derived from it.
//!
//! The master key never leaves the user's machine. From it, HKDF-SHA256 derives separate keys for
//! sealing manifests, naming blobs and keying shard checks, so that no key serves two purposes.
//! Each object version has its own random [`DataKey`], stored only inside its sealed manifest.

use rand::RngCore;
use ring::{aead, hkdf, hmac};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::CodecError;

/// Length in bytes of the master key and of data keys.
pub const KEY_LEN: usize = 32;

/// The user's root secret. Losing it loses the store; it is never written to a provider.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; KEY_LEN]);

/// Argon2id parameters recorded beside a passphrase-derived key, so the same key can be derived
/// again on any machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory cost in KiB.
    pub m_kib: u32,
    /// Number of passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
    /// Random salt, hex encoded.
    pub salt: String,
}

impl KdfParams {
    /// Parameters for a new passphrase key: 64 MiB, 3 passes, 1 lane (the RFC 9106 second
    /// recommendation), with a fresh random salt.
    pub fn new_random() -> Self {
        let mut salt = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        KdfParams { m_kib: 64 * 1024, t: 3, p: 1, salt: hex::encode(salt) }
    }
}

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

impl MasterKey {
    /// A fresh random key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut k = [0u8; KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut k);
        MasterKey(k)
    }

    /// Wraps existing key bytes (read from a key file).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        MasterKey(bytes)
    }

    /// The raw bytes, for writing the key file.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Derives the key from a passphrase with Argon2id.
    pub fn from_passphrase(passphrase: &str, params: &KdfParams) -> Result<Self, CodecError> {
        let salt = hex::decode(&params.salt).map_err(|e| CodecError::Kdf(format!("salt: {e}")))?;
        let p =
            argon2::Params::new(params.m_kib, params.t, params.p, Some(KEY_LEN)).map_err(|e| CodecError::Kdf(e.to_string()))?;
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
        let mut out = [0u8; KEY_LEN];
        argon.hash_password_into(passphrase.as_bytes(), &salt, &mut out).map_err(|e| CodecError::Kdf(e.to_string()))?;
        Ok(MasterKey(out))
    }

    fn derive(&self, label: &[u8], out: &mut [u8]) {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"outlast/v1").extract(&self.0);
        prk.expand(&[label], Len(out.len())).and_then(|okm| okm.fill(out)).expect("HKDF output length is valid");
    }

    /// A short public identifier of the key, recorded in the config so that a wrong key is
    /// refused with a clear message before anything is read or written.
    pub fn fingerprint(&self) -> String {
        let mut fp = [0u8; 8];
        self.derive(b"fingerprint", &mut fp);
        hex::encode(fp)
    }

    /// Derives the per-purpose keys used by the rest of the codec.
    pub fn store_keys(&self) -> StoreKeys {
        let mut manifest = [0u8; KEY_LEN];
        let mut names = [0u8; KEY_LEN];
        let mut seed = [0u8; 8];
        self.derive(b"manifest", &mut manifest);
        self.derive(b"names", &mut names);
        self.derive(b"shard-check", &mut seed);
        let keys = StoreKeys {
            manifest: aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_256_GCM, &manifest).expect("32-byte key")),
            names: hmac::Key::new(hmac::HMAC_SHA256, &names),
            check_seed: u64::from_le_bytes(seed),
        };
        manifest.zeroize();
        names.zeroize();
        keys
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey(fingerprint {})", self.fingerprint())
    }
}

/// Keys derived from the master key, one per purpose.
pub struct StoreKeys {
    pub(crate) manifest: aead::LessSafeKey,
    pub(crate) names: hmac::Key,
    /// Seed of the keyed shard check (see [`crate::check`]).
    pub check_seed: u64,
}

/// A random key that encrypts one object version's segments, and nothing else.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DataKey(pub(crate) [u8; KEY_LEN]);

impl DataKey {
    /// A fresh random key: each object version gets its own, so segment nonces never repeat
    /// under one key.
    pub fn generate() -> Self {
        let mut k = [0u8; KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut k);
        DataKey(k)
    }

    /// Rebuilds a data key read from a manifest.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        DataKey(bytes)
    }

    /// The raw bytes, for storing inside a sealed manifest.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    pub(crate) fn aead_key(&self) -> aead::LessSafeKey {
        aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_256_GCM, &self.0).expect("32-byte key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passphrase_is_deterministic_and_salted() {
        let mut p = KdfParams::new_random();
        p.m_kib = 256; // keep the test fast
        p.t = 1;
        let a = MasterKey::from_passphrase("correct horse", &p).unwrap();
        let b = MasterKey::from_passphrase("correct horse", &p).unwrap();
        let c = MasterKey::from_passphrase("wrong horse", &p).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
        let mut q = p.clone();
        q.salt = KdfParams::new_random().salt;
        let d = MasterKey::from_passphrase("correct horse", &q).unwrap();
        assert_ne!(a.fingerprint(), d.fingerprint());
    }

    #[test]
    fn derived_keys_differ_per_purpose() {
        let m = MasterKey::generate();
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        m.derive(b"manifest", &mut a);
        m.derive(b"names", &mut b);
        assert_ne!(a, b);
        assert_ne!(MasterKey::generate().fingerprint(), m.fingerprint());
    }
}
