//! The store: one configuration, one key, its providers and its index.

use std::sync::Arc;

use outlast_codec::{names, Manifest, MasterKey, StoreKeys};
use outlast_provider::{HealthState, Provider};

use crate::config::Config;
use crate::error::EngineError;
use crate::fleet::operations;
use crate::index::{Index, IndexEntry, SqliteIndex};
use crate::keyfile;
use crate::unopened::Unopened;

/// An open store.
pub struct Store {
    pub(crate) config: Config,
    pub(crate) keys: Arc<StoreKeys>,
    pub(crate) providers: Vec<Provider>,
    pub(crate) index: Arc<dyn Index>,
    /// Operations each provider had seen when the store was opened (to tell which ones this
    /// process touched).
    pub(crate) baseline: Vec<u64>,
    /// When long puts take leases and how long gc honours them.
    pub(crate) lease_timing: crate::lease::LeaseTiming,
    /// Notified when a write leaves repair debt (`jobs/upkeep.rs`).
    pub(crate) debt: tokio::sync::Notify,
}

impl Drop for Store {
    fn drop(&mut self) {
        // Health is advice for the next command: not worth a long wait on a busy index.
        // Drop cannot await: the save runs on the blocking pool while this thread waits.
        let saved = futures::executor::block_on(self.save_health(std::time::Duration::from_secs(1)));
        if let Err(e) = saved {
            if matches!(e, EngineError::IndexBusy) {
                // The command's own result says so if it matters; the next one saves.
                tracing::debug!("provider health not saved: {e}");
                return;
            }
            tracing::warn!("could not save provider health: {e}");
        }
    }
}

impl Store {
    /// Opens the store described by `config`, loading its key file.
    pub async fn open(config: Config) -> Result<Store, EngineError> {
        let key = keyfile::load(&config.key_path())?;
        Self::open_with_key(config, key).await
    }

    /// Opens the store with a key already in hand; refuses a key whose fingerprint differs from
    /// the one recorded in the config.
    pub async fn open_with_key(config: Config, key: MasterKey) -> Result<Store, EngineError> {
        if let Some(expected) = &config.key_fingerprint {
            let found = key.fingerprint();
            if &found != expected {
                let path = config.key_path();
                if keyfile::is_passphrase_file(&path) {
                    return Err(EngineError::WrongPassphrase { path });
                }
                return Err(EngineError::WrongKey { path, found, expected: expected.clone() });
            }
        }
        let patience = config.timeouts.patience();
        let index: Arc<dyn Index> = Arc::new(SqliteIndex::open(&config.state_dir())?);
        let keys = Arc::new(key.store_keys());
        let configured = config.providers.iter().map(|s| s.name.clone()).collect();
        let identity = crate::identity::IdentityKit::new(keys.clone(), index.clone(), configured);
        let providers: Vec<Provider> = config
            .providers
            .iter()
            .map(|s| Provider::build_or_unavailable(s).with_patience(patience).with_identity_check(identity.check_for(&s.name)))
            .collect();
        for p in &providers {
            if let Some(e) = p.build_error() {
                tracing::error!(provider = p.name(), "provider unavailable: {e}");
            }
        }
        for (name, stats) in index.load_health().await? {
            if let Some(p) = providers.iter().find(|p| p.name() == name) {
                p.restore_health(stats);
            }
        }
        let baseline = providers.iter().map(|p| operations(&p.health())).collect();
        let store =
            Store { keys, providers, index, config, baseline, lease_timing: Default::default(), debt: Default::default() };
        for h in store.health() {
            if h.state == HealthState::Terminated {
                tracing::error!(provider = h.name, "provider `{}` looked TERMINATED when last used: {}", h.name, h.reason);
            }
        }
        Ok(store)
    }

    /// Changes when long puts take leases and how long gc honours them (tests and tools that
    /// cannot wait minutes; the defaults suit everything else).
    pub fn set_lease_timing(&mut self, timing: crate::lease::LeaseTiming) {
        self.lease_timing = timing;
    }

    /// Changes how long providers' identity verdicts stand (tests that cannot wait).
    pub fn set_identity_recheck(&self, recheck: outlast_provider::IdentityRecheck) {
        for p in &self.providers {
            p.set_identity_recheck(recheck);
        }
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The local index (faces that list or report read it directly).
    pub fn index(&self) -> &dyn Index {
        &*self.index
    }

    /// The provider named `name` (faces show it; tests inject faults into it).
    pub fn provider_named(&self, name: &str) -> Option<&Provider> {
        self.provider(name)
    }

    pub(crate) fn provider(&self, name: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.name() == name)
    }

    pub(crate) fn open_manifest(&self, e: &IndexEntry) -> Result<Manifest, EngineError> {
        let blob = names::manifest_blob(&self.keys, &e.stamp.vid);
        let m = Manifest::open(&self.keys, &blob, &e.sealed_manifest)?;
        if m.name != e.name || m.stamp != e.stamp {
            return Err(outlast_codec::CodecError::ManifestFormat("manifest does not match its index entry".into()).into());
        }
        Ok(m)
    }

    /// `entry`'s manifest, or `None` when it does not open with this store's key (sealed
    /// under another key, a damaged index): a store-wide job names such an object in
    /// `unopened`, skips it and carries on.
    pub(crate) fn open_manifest_or_note(&self, entry: &IndexEntry, unopened: Option<&mut Unopened>) -> Option<Manifest> {
        match self.open_manifest(entry) {
            Ok(m) => Some(m),
            Err(e) => {
                if let Some(unopened) = unopened {
                    unopened.note(&entry.name, &e);
                }
                None
            }
        }
    }
}
