//! The master key file, `outlast.key`.
//!
//! Either it holds the key itself (`raw`), or only the Argon2id parameters from which the key is
//! derived again from a passphrase (`argon2id`, passphrase from `OUTLAST_PASSPHRASE`). The file
//! is created with mode 0600 and never overwritten.

use std::io::Write;
use std::path::Path;

use outlast_codec::keys::KEY_LEN;
use outlast_codec::{KdfParams, MasterKey};

use crate::error::EngineError;

/// Environment variable holding the passphrase of a passphrase-derived key.
pub const PASSPHRASE_ENV: &str = "OUTLAST_PASSPHRASE";

const HEADER: &str = "# Outlast master key. Keep it secret and keep a copy somewhere safe:\n\
# without it nothing in the store can be read. It is never sent to a provider.\n";

fn write_new(path: &Path, line: &str) -> Result<(), EngineError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            EngineError::Key(format!("{} already exists; refusing to overwrite a key", path.display()))
        } else {
            EngineError::io(format!("creating key file {}", path.display()), e)
        }
    })?;
    f.write_all(format!("{HEADER}{line}\n").as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| EngineError::io(format!("writing key file {}", path.display()), e))
}

/// Creates a key file holding a fresh random key.
pub fn create_random(path: &Path) -> Result<MasterKey, EngineError> {
    let key = MasterKey::generate();
    write_new(path, &format!("outlast-key v1 raw {}", hex_of(key.as_bytes())))?;
    Ok(key)
}

/// Creates a key file recording fresh Argon2id parameters; the key is derived from `passphrase`.
pub fn create_passphrase(path: &Path, passphrase: &str) -> Result<MasterKey, EngineError> {
    refuse_empty(passphrase)?;
    let p = KdfParams::new_random();
    let key = MasterKey::from_passphrase(passphrase, &p)?;
    write_new(path, &format!("outlast-key v1 argon2id m_kib={} t={} p={} salt={}", p.m_kib, p.t, p.p, p.salt))?;
    Ok(key)
}

/// An empty passphrase derives a key anyone can derive again.
fn refuse_empty(passphrase: &str) -> Result<(), EngineError> {
    if passphrase.trim().is_empty() {
        return Err(EngineError::Key(format!("{PASSPHRASE_ENV} is empty: a passphrase-derived key needs a passphrase")));
    }
    Ok(())
}

/// Most memory an Argon2id key derivation may ask for (4 GiB, in KiB): more is a damaged or
/// hostile key file, refused before anything is allocated.
const MAX_KDF_M_KIB: u32 = 4 * 1024 * 1024;
/// Most Argon2id passes and lanes a key file may ask for.
const MAX_KDF_T: u32 = 64;
const MAX_KDF_P: u32 = 64;

/// Refuses Argon2id parameters outside what a key file can sensibly hold.
fn check_kdf(p: &KdfParams) -> Result<(), String> {
    if p.p == 0 || p.p > MAX_KDF_P {
        return Err(format!("p={} is not 1 to {MAX_KDF_P}", p.p));
    }
    if p.t == 0 || p.t > MAX_KDF_T {
        return Err(format!("t={} is not 1 to {MAX_KDF_T}", p.t));
    }
    if p.m_kib < 8 * p.p || p.m_kib > MAX_KDF_M_KIB {
        return Err(format!("m_kib={} is not {} to {MAX_KDF_M_KIB}", p.m_kib, 8 * p.p));
    }
    if !(16..=128).contains(&p.salt.len()) || hex::decode(&p.salt).is_err() {
        return Err("the salt is not 8 to 64 bytes of hex".into());
    }
    Ok(())
}

/// Whether the key file at `path` holds Argon2id parameters (the key comes from a passphrase).
pub fn is_passphrase_file(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| t.lines().any(|l| l.trim().starts_with("outlast-key v1 argon2id")))
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Longest key file read: its one line is under 200 bytes.
const MAX_KEY_FILE: u64 = 4096;

/// Refuses a raw key that other users may read, as ssh does: whoever reads it reads the store.
/// (A passphrase file holds only Argon2id parameters, no secret.)
fn refuse_if_shared(path: &Path, meta: &std::fs::Metadata) -> Result<(), EngineError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(EngineError::Key(format!(
                "key file {} can be read by other users (mode {mode:o}); nothing is read with it until only you can: `chmod 600 {}`",
                path.display(),
                path.display()
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = (path, meta);
    Ok(())
}

/// Loads the key from `path`, asking `OUTLAST_PASSPHRASE` when the file holds parameters only.
pub fn load(path: &Path) -> Result<MasterKey, EngineError> {
    let bad = |why: &str| EngineError::Key(format!("{} is not an Outlast key file: {why}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            EngineError::Key(format!("key file {} not found; it was created by `outlast init` beside the config", path.display()))
        } else {
            EngineError::io(format!("reading key file {}", path.display()), e)
        }
    })?;
    let meta = file.metadata().map_err(|e| EngineError::io(format!("reading key file {}", path.display()), e))?;
    // A device or a pipe would be read without end, and a key file is one short line.
    if !meta.is_file() {
        return Err(bad("it is not a regular file"));
    }
    if meta.len() > MAX_KEY_FILE {
        return Err(bad(&format!("it is {} bytes, and a key file is under {MAX_KEY_FILE}", meta.len())));
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_KEY_FILE), &mut text)
        .map_err(|e| EngineError::io(format!("reading key file {}", path.display()), e))?;
    let line = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).ok_or_else(|| bad("it is empty"))?;
    let mut words = line.split_whitespace();
    if words.next() != Some("outlast-key") || words.next() != Some("v1") {
        return Err(bad("it does not start with `outlast-key v1`"));
    }
    match words.next() {
        Some("raw") => {
            refuse_if_shared(path, &meta)?;
            let hex = words.next().ok_or_else(|| bad("the key is missing"))?;
            let bytes: [u8; KEY_LEN] =
                hex::decode(hex).ok().and_then(|v| v.try_into().ok()).ok_or_else(|| bad("the key is not 64 hex digits"))?;
            Ok(MasterKey::from_bytes(bytes))
        }
        Some("argon2id") => {
            let mut p = KdfParams { m_kib: 0, t: 0, p: 0, salt: String::new() };
            for w in words {
                let (k, v) = w.split_once('=').ok_or_else(|| bad("malformed parameter"))?;
                let num = || v.parse::<u32>().map_err(|_| bad("malformed parameter"));
                match k {
                    "m_kib" => p.m_kib = num()?,
                    "t" => p.t = num()?,
                    "p" => p.p = num()?,
                    "salt" => p.salt = v.to_string(),
                    _ => return Err(bad("unknown parameter")),
                }
            }
            check_kdf(&p).map_err(|why| bad(&format!("its Argon2id parameters are out of range: {why}")))?;
            let pass = std::env::var(PASSPHRASE_ENV)
                .map_err(|_| EngineError::Key(format!("{} is passphrase-protected: set {PASSPHRASE_ENV}", path.display())))?;
            // A store made before empty passphrases were refused must still open.
            if pass.trim().is_empty() {
                tracing::warn!("{PASSPHRASE_ENV} is empty: anyone can derive this store's key; move the data to a new store");
            }
            Ok(MasterKey::from_passphrase(&pass, &p)?)
        }
        _ => Err(bad("unknown key kind")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_key_roundtrips_with_mode_0600_and_no_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outlast.key");
        let k = create_random(&path).unwrap();
        assert_eq!(load(&path).unwrap().fingerprint(), k.fingerprint());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(matches!(create_random(&path), Err(EngineError::Key(_))));
        assert_eq!(load(&path).unwrap().fingerprint(), k.fingerprint());
    }

    #[test]
    fn garbage_and_missing_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        assert!(load(&path).unwrap_err().to_string().contains("not found"));
        std::fs::write(&path, "hello\n").unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("not an Outlast key file"));
        std::fs::write(&path, "outlast-key v1 raw abcd\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert!(load(&path).unwrap_err().to_string().contains("64 hex digits"));
        // A device is refused, not read without end; so is a file far too big for a key.
        assert!(load(Path::new("/dev/zero")).unwrap_err().to_string().contains("not a regular file"));
        std::fs::write(&path, vec![b'#'; 1 << 20]).unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("bytes, and a key file is under"));
    }

    #[test]
    fn absurd_argon2_parameters_and_empty_passphrases_are_refused_before_any_work() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        assert!(create_passphrase(&path, " ").unwrap_err().to_string().contains("is empty"));
        assert!(!path.exists());
        let salt = "00112233445566778899aabbccddeeff";
        for (params, says) in [
            (format!("m_kib=4294967295 t=3 p=1 salt={salt}"), "m_kib="),
            (format!("m_kib=65536 t=0 p=1 salt={salt}"), "t=0"),
            (format!("m_kib=65536 t=4000000000 p=1 salt={salt}"), "t=4000000000"),
            (format!("m_kib=65536 t=3 p=0 salt={salt}"), "p=0"),
            ("m_kib=65536 t=3 p=1 salt=zz".to_string(), "salt"),
        ] {
            std::fs::write(&path, format!("outlast-key v1 argon2id {params}\n")).unwrap();
            let e = load(&path).unwrap_err().to_string();
            assert!(e.contains("out of range") && e.contains(says), "{params}: {e}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_key_other_users_can_read_is_refused_until_it_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outlast.key");
        let k = create_random(&path).unwrap();
        for mode in [0o644, 0o640, 0o604] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = load(&path).unwrap_err().to_string();
            assert!(e.contains("can be read by other users") && e.contains("chmod 600"), "{e}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(load(&path).unwrap().fingerprint(), k.fingerprint());
    }
}
