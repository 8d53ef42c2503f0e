//! Provider identity: each provider's location holds a sealed marker naming the provider
//! (`docs/FORMAT.md`). Before anything touches a provider in a process, its marker is checked;
//! a location that answers with another provider's marker (two providers configured at one
//! place), another store's, a marker that does not open, or none where one was written, is
//! unavailable for the command: it is never written to, and nothing is deleted from it.
//!
//! A location without a marker is taken (the marker written) only when this index has never
//! known the provider there (no marker, no blob recorded) and the location shows it is this
//! store's: it holds a manifest this key opens (a store from before markers), or it is empty
//! (a new store, a provider that was down when the store was set up). A location the index
//! knows that lost its marker was wiped or replaced: `outlast provider reset` takes it back
//! on purpose.

use std::sync::Arc;

use bytes::Bytes;
use outlast_codec::{names, Manifest, ProviderMarker, StoreKeys};
use outlast_provider::{IdentityCheck, Provider, ProviderError, ProviderSpec, Verdict};

use crate::error::EngineError;
use crate::index::Index;
use crate::stamps::now_ns;
use crate::store::Store;

/// The verdict on a location that holds the marker of another key: another store's location,
/// or this is not the store's key.
const FOREIGN_MARKER: &str = "it holds another Outlast store's identity marker: the configured location belongs to another \
     store, or the key file is not this store's";

/// The verdict on an empty location when the key does not open the index's manifests.
const FOREIGN_KEY: &str = "it holds no identity marker, and the key file does not open this state folder's manifests: \
     the key file is not this store's";

/// Index rows whose manifests are tried, at most, before an empty location takes this key's
/// marker.
const KEY_EVIDENCE: usize = 8;

/// Manifests read, at most, to see whether an unmarked location holds this store's data.
const EVIDENCE_MANIFESTS: usize = 3;

/// What every provider's check shares.
pub(crate) struct IdentityKit {
    keys: Arc<StoreKeys>,
    index: Arc<dyn Index>,
    /// The configured provider names.
    configured: Vec<String>,
    /// Taking an unmarked location is done one at a time, re-listing under the lock: two
    /// providers of this process at one location cannot both take it.
    taking: tokio::sync::Mutex<()>,
}

impl IdentityKit {
    pub(crate) fn new(keys: Arc<StoreKeys>, index: Arc<dyn Index>, configured: Vec<String>) -> Arc<Self> {
        Arc::new(IdentityKit { keys, index, configured, taking: tokio::sync::Mutex::new(()) })
    }

    /// The check the provider named `name` runs before its first operation.
    pub(crate) fn check_for(self: &Arc<Self>, name: &str) -> IdentityCheck {
        let (kit, name) = (self.clone(), name.to_string());
        Arc::new(move |p: Provider| {
            let (kit, name) = (kit.clone(), name.clone());
            Box::pin(async move { kit.check(&name, &p).await })
        })
    }

    async fn check(&self, name: &str, p: &Provider) -> Result<Verdict, ProviderError> {
        let verdict = self.verdict(name, p).await?;
        if let Err(why) = &verdict {
            tracing::error!(provider = name, "provider `{name}` is unavailable for this command: {why}");
        }
        Ok(verdict)
    }

    async fn verdict(&self, name: &str, p: &Provider) -> Result<Verdict, ProviderError> {
        let marker = names::marker_blob(&self.keys);
        let known = self.index.knows_provider(name).await.map_err(|e| identity_error(name, e))?;
        let gone = || {
            format!(
                "everything it held is gone, its identity marker too (an ended account, a deleted bucket or folder?). \
                 Reads carry on from the others; `outlast evacuate {name} --to OTHER` moves its share elsewhere, or, \
                 if the location was emptied on purpose, `outlast provider reset {name}` takes it back for repair"
            )
        };
        match self.read_marker(name, p, &marker).await {
            Ok(Some(verdict)) => return Ok(verdict),
            Ok(None) => {}
            // A deleted bucket may refuse the listing itself ("no such bucket"), while every
            // blob it held answers "not found".
            Err(e) if known && self.known_blobs_are_gone(name, p).await.unwrap_or(false) => {
                tracing::debug!(provider = name, "listing its marker failed: {e}");
                return Ok(Err(gone()));
            }
            Err(e) => return Err(e),
        }
        if known && location_is_empty(p).await? && self.known_blobs_are_gone(name, p).await? {
            // Everything the store knows it wrote there is gone with the marker: an ended
            // account, a deleted bucket or folder. The health record says terminated.
            return Ok(Err(gone()));
        }
        if known {
            return Ok(Err(format!(
                "its identity marker is gone: the location was wiped or replaced, or is not the one configured. \
                 If it was wiped or replaced on purpose, `outlast provider reset {name}` takes it back (repair then refills it)"
            )));
        }
        let _one_at_a_time = self.taking.lock().await;
        if let Some(verdict) = self.read_marker(name, p, &marker).await? {
            return Ok(verdict);
        }
        if !self.holds_our_manifest(p).await? {
            if !location_is_empty(p).await? {
                return Ok(Err(format!(
                    "it holds no identity marker of this store, and blobs that are not this store's. If the location \
                     is meant to be `{name}` and its content may go, empty it and run `outlast provider reset {name}`"
                )));
            }
            // An empty location takes the marker of whatever key this is: not one that opens
            // none of what this index holds (another store's key, with no fingerprint to tell).
            if !self.key_opens_index().await.map_err(|e| identity_error(name, e))? {
                return Ok(Err(FOREIGN_KEY.to_string()));
            }
        }
        write_marker(&self.keys, &*self.index, name, p).await?;
        tracing::info!(
            provider = name,
            "wrote the identity marker of `{name}` (the location holds this store's data, or is new)"
        );
        Ok(Ok(()))
    }

    /// Whether the key opens a manifest of the first versions this index records (true for an
    /// index that records none: a new store). A few, since a store may hold an object sealed
    /// under another key (`unopened.rs`).
    async fn key_opens_index(&self) -> Result<bool, EngineError> {
        let entries = self.index.objects_page("", None, KEY_EVIDENCE).await?;
        Ok(entries.is_empty()
            || entries.iter().any(|e| {
                let blob = names::manifest_blob(&self.keys, &e.stamp.vid);
                Manifest::open(&self.keys, &blob, &e.sealed_manifest).is_ok()
            }))
    }

    /// The verdict of the marker this location holds, or `None` when it holds none. One
    /// request when the marker is there (the common case): it is read by name, and only when
    /// absent are other stores' markers looked for.
    async fn read_marker(&self, name: &str, p: &Provider, marker: &str) -> Result<Option<Verdict>, ProviderError> {
        match p.read(marker).await {
            Ok(bytes) => {
                let verdict = self.judge(name, &bytes, marker);
                if verdict.is_ok() {
                    self.index.record_marker(name, now_ns()).await.map_err(|e| identity_error(name, e))?;
                }
                return Ok(Some(verdict));
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        let listed = p.list_some(names::MARKER_PREFIX, 16).await?;
        if listed.iter().any(|m| names::has_shape(m, names::MARKER_PREFIX)) {
            return Ok(Some(Err(FOREIGN_MARKER.into())));
        }
        Ok(None)
    }

    fn judge(&self, name: &str, bytes: &[u8], marker: &str) -> Verdict {
        let Ok(m) = ProviderMarker::open(&self.keys, marker, bytes) else {
            return Err(format!(
                "its identity marker does not open with this store's key (tampered or damaged). If the location was \
                 replaced on purpose, empty it and run `outlast provider reset {name}`"
            ));
        };
        if m.provider == name {
            Ok(())
        } else if self.configured.contains(&m.provider) {
            Err(format!(
                "it holds the identity marker of `{}`: `{name}` and `{}` point to one location; give each provider a place of its own",
                m.provider, m.provider
            ))
        } else {
            Err(format!(
                "this location is provider `{}` of this store (renamed by hand?); every manifest records a shard's \
                 provider by name: rename it back to `{}` in the config",
                m.provider, m.provider
            ))
        }
    }

    /// Whether blobs the index records on the provider answer "not found", each one asked: an
    /// empty listing alone is no proof (a listing cut short by a server going away can look
    /// empty). Each answer goes to the health record.
    async fn known_blobs_are_gone(&self, name: &str, p: &Provider) -> Result<bool, ProviderError> {
        let asked = outlast_provider::health::TERMINATED_AFTER as usize;
        let known = self.index.sample_blobs_on(name, asked).await.map_err(|e| identity_error(name, e))?;
        if known.is_empty() {
            return Ok(false);
        }
        for b in &known {
            match p.stat(&b.blob).await {
                Err(e) if e.is_not_found() => p.note_known_blob(false),
                Err(e) => return Err(e),
                Ok(_) => return Ok(false),
            }
        }
        Ok(asked >= outlast_provider::health::TERMINATED_AFTER as usize)
    }

    /// Whether one of the first manifests the location lists opens with this store's key.
    async fn holds_our_manifest(&self, p: &Provider) -> Result<bool, ProviderError> {
        let listed = p.list_some(names::MANIFEST_PREFIX, EVIDENCE_MANIFESTS).await?;
        for blob in listed.iter().filter(|b| names::has_shape(b, names::MANIFEST_PREFIX)) {
            let bytes = p.read(blob).await?;
            if Manifest::open(&self.keys, blob, &bytes).is_ok() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

fn identity_error(provider: &str, e: EngineError) -> ProviderError {
    ProviderError::Identity { provider: provider.to_string(), message: format!("cannot check its identity marker: {e}") }
}

/// Whether the location holds nothing of this format's shapes (and no marker).
async fn location_is_empty(p: &Provider) -> Result<bool, ProviderError> {
    for prefix in [names::SHARD_PREFIX, names::MANIFEST_PREFIX, names::MARKER_PREFIX] {
        if !p.list_some(prefix, 1).await?.is_empty() {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn write_marker(keys: &StoreKeys, index: &dyn Index, name: &str, p: &Provider) -> Result<(), ProviderError> {
    let blob = names::marker_blob(keys);
    let written_ns = now_ns();
    let sealed = ProviderMarker { provider: name.to_string(), written_ns }.seal(keys, &blob);
    p.write(&blob, Bytes::from(sealed)).await?;
    index.record_marker(name, written_ns).await.map_err(|e| identity_error(name, e))
}

impl Store {
    /// Sets up `spec`'s location as that provider of this store, on purpose: creates a local
    /// root that does not exist, and writes the provider's identity marker. Refused when the
    /// location holds shards or manifests (this store's or another's) or another marker; an
    /// empty location already marked as this provider is left as it is. Used by `init`,
    /// `provider add` and `provider reset` (a wiped or replaced location; repair refills it).
    pub async fn claim_location(&self, spec: &ProviderSpec) -> Result<(), EngineError> {
        let p = Provider::build_creating(spec)?.with_patience(self.config.timeouts.patience());
        let in_use = || EngineError::LocationInUse { provider: spec.name.clone(), location: spec.location().to_string() };
        for prefix in [names::SHARD_PREFIX, names::MANIFEST_PREFIX] {
            if !p.list_some(prefix, 1).await?.is_empty() {
                return Err(in_use());
            }
        }
        let marker = names::marker_blob(&self.keys);
        let held = p.list_some(names::MARKER_PREFIX, 16).await?;
        if held.contains(&marker) {
            // Already this provider's and empty (a reset or an add run twice): nothing to do.
            let bytes = p.read(&marker).await?;
            if ProviderMarker::open(&self.keys, &marker, &bytes).is_ok_and(|m| m.provider == spec.name) {
                self.index.record_marker(&spec.name, now_ns()).await?;
                return Ok(());
            }
        }
        if !held.is_empty() {
            return Err(in_use());
        }
        write_marker(&self.keys, &*self.index, &spec.name, &p).await?;
        Ok(())
    }

    /// Whether `p` returns its own identity marker intact right now (read afresh, whatever the
    /// standing verdict): then what else it returns is what it stores, not damage on the way.
    pub(crate) async fn marker_reads_intact(&self, p: &Provider) -> bool {
        let marker = names::marker_blob(&self.keys);
        p.read(&marker)
            .await
            .is_ok_and(|bytes| ProviderMarker::open(&self.keys, &marker, &bytes).is_ok_and(|m| m.provider == p.name()))
    }

    /// Refuses a key that is not the store's, for a config that does not record the key's
    /// fingerprint: when no provider holds this key's identity marker and some hold another
    /// key's, the key is wrong (not every location was swapped for another store's).
    /// Providers that do not answer prove nothing either way.
    pub async fn check_key_against_markers(&self) -> Result<(), EngineError> {
        let verdicts = futures::future::join_all(self.providers.iter().map(|p| p.verify_identity())).await;
        let fits = verdicts.iter().any(|v| v.is_ok());
        let foreign = verdicts
            .iter()
            .filter(|v| matches!(v, Err(ProviderError::Identity { message, .. }) if message == FOREIGN_MARKER || message == FOREIGN_KEY))
            .count();
        if !fits && foreign > 0 {
            return Err(EngineError::KeyFitsNoMarker { path: self.config.key_path(), providers: foreign });
        }
        Ok(())
    }

    /// `outlast provider reset NAME`: takes a configured provider's wiped, replaced or
    /// recreated location back (see [`Store::claim_location`]).
    pub async fn reset_provider(&self, name: &str) -> Result<(), EngineError> {
        let spec = self
            .config
            .providers
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| EngineError::UnknownProvider(name.to_string()))?
            .clone();
        self.claim_location(&spec).await
    }
}
