//! The fixture engine tests share: a store on local folders with a generated key.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use outlast_codec::MasterKey;
use outlast_engine::progress::NoProgress;
use outlast_engine::{Config, EngineError, PutOptions, Store};

pub const SEG: u32 = 64 * 1024;

pub struct Fixture {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub key: MasterKey,
    pub k: u16,
    pub n: u16,
    /// Providers configured beyond `n` (p{n}, p{n+1}, ...).
    pub spare: u16,
    /// `timeouts.operation_secs`, when not the default.
    pub operation_secs: Option<f64>,
    /// `coding.write_quorum`, when not the default (k).
    pub write_quorum: Option<u16>,
}

impl Fixture {
    pub fn new(k: u16, n: u16) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let f = Fixture { _tmp: tmp, root, key: MasterKey::generate(), k, n, spare: 0, operation_secs: None, write_quorum: None };
        f.make_provider_dirs();
        f
    }

    /// The same store with `spare` more providers configured.
    pub fn with_spare(mut self, spare: u16) -> Self {
        self.spare = spare;
        self.make_provider_dirs();
        self
    }

    /// Sets up the providers' folders as `outlast init` does: each created, with its identity
    /// marker. A root that does not exist is a provider that is not there (an unmounted disk),
    /// never created behind the user's back.
    fn make_provider_dirs(&self) {
        for i in 0..self.n + self.spare {
            self.mark(i);
        }
    }

    /// Writes provider `i`'s identity marker into its folder (created if need be).
    pub fn mark(&self, i: u16) {
        let keys = self.key.store_keys();
        let blob = outlast_codec::names::marker_blob(&keys);
        let sealed = outlast_codec::ProviderMarker { provider: format!("p{i}"), written_ns: 1 }.seal(&keys, &blob);
        let path = self.provider_dir(i).join(&blob);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, sealed).unwrap();
    }

    /// The same store acknowledging a write only once `q` shards are durable.
    pub fn with_write_quorum(mut self, q: u16) -> Self {
        self.write_quorum = Some(q);
        self
    }

    /// The same store with each provider operation bounded to `secs`.
    pub fn with_operation_timeout(mut self, secs: f64) -> Self {
        self.operation_secs = Some(secs);
        self
    }

    pub fn provider_dir(&self, i: u16) -> PathBuf {
        self.root.join(format!("p{i}"))
    }

    /// Config text; `broken` providers get a root that cannot be created (below a file).
    pub fn config_text(&self, broken: &[u16]) -> String {
        std::fs::write(self.root.join("a-file"), b"x").unwrap();
        let mut t = format!(
            "key_fingerprint = \"{}\"\n[coding]\nk = {}\nn = {}\nsegment_size = {SEG}\nsegments_per_part = 3\nread_run_segments = 2\n",
            self.key.fingerprint(),
            self.k,
            self.n
        );
        if let Some(q) = self.write_quorum {
            t.push_str(&format!("write_quorum = {q}\n"));
        }
        if let Some(secs) = self.operation_secs {
            t.push_str(&format!("[timeouts]\noperation_secs = {secs}\n"));
        }
        for i in 0..self.n + self.spare {
            let root = if broken.contains(&i) { self.root.join(format!("a-file/p{i}")) } else { self.provider_dir(i) };
            t.push_str(&format!(
                "[[providers]]\nname = \"p{i}\"\ndomain = \"d{i}\"\nscheme = \"fs\"\noptions = {{ root = \"{}\" }}\n",
                root.display()
            ));
        }
        t
    }

    pub async fn store_with(&self, broken: &[u16]) -> Store {
        let cfg = Config::parse(&self.config_text(broken), &self.root.join("outlast.toml")).unwrap();
        Store::open_with_key(cfg, self.key.clone()).await.unwrap()
    }

    /// The store over config text `text` as is, validation skipped: the engine must hold even
    /// where a config slips past it (a symlink made afterwards), or comes from a second folder.
    pub async fn open_unvalidated(&self, text: &str) -> Store {
        let cfg = Config { path: self.root.join("outlast.toml"), ..toml::from_str(text).unwrap() };
        Store::open_with_key(cfg, self.key.clone()).await.unwrap()
    }

    pub async fn store(&self) -> Store {
        self.store_with(&[]).await
    }

    /// Every blob file of the providers, identity markers (`i/`) left out.
    pub fn blob_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for i in 0..self.n + self.spare {
            collect(&self.provider_dir(i), &mut out);
        }
        out.retain(|p| !p.parent().is_some_and(|d| d.ends_with("i")));
        out
    }
}

pub fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else {
            out.push(p);
        }
    }
}

pub fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed).collect()
}

pub async fn get(store: &Store, name: &str) -> Result<Vec<u8>, EngineError> {
    let mut out = Vec::new();
    store.get(name, None, &mut out, &NoProgress).await?;
    Ok(out)
}

pub async fn put(store: &Store, name: &str, bytes: &[u8]) -> Result<outlast_engine::PutReport, EngineError> {
    store.put(name, bytes, PutOptions::default(), &NoProgress).await
}

/// Sets the modification time of every file under `dir` to `secs` ago: a blob gc sees as
/// that old (gc judges age by what the provider lists).
pub fn backdate(dir: &Path, secs: u64) {
    let when = std::time::SystemTime::now() - std::time::Duration::from_secs(secs);
    let mut files = Vec::new();
    collect(dir, &mut files);
    for f in files {
        // A file may be gone since the listing (a temporary file renamed into place).
        match std::fs::File::options().write(true).open(&f) {
            Ok(file) => file.set_modified(when).unwrap(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("{}: {e}", f.display()),
        }
    }
}

/// Removes `dir` and everything under it, though files may vanish meanwhile (an index
/// connection closing removes its journal files when its last task lets go of it).
pub fn remove_tree(dir: &Path) {
    for _ in 0..50 {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !dir.exists() => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::thread::sleep(std::time::Duration::from_millis(10)),
            Err(e) => panic!("{}: {e}", dir.display()),
        }
    }
    panic!("{} keeps changing", dir.display());
}

/// gc as a user runs it: `grace_secs` for what the index knows is garbage.
pub async fn gc(store: &Store, grace_secs: u64) -> outlast_engine::GcReport {
    let opts = outlast_engine::GcOptions { grace: std::time::Duration::from_secs(grace_secs), dry_run: false };
    store.gc(&opts, &outlast_engine::progress::NoProgress).await.unwrap()
}
