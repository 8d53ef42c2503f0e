//! What the store owes: redundancy that the index does not record as in place. A job or a
//! report reads it here; repair and evacuation pay it.
//!
//! Owed is counted from the index alone, per provider the current placements name: a shard
//! blob placed there but not recorded (a put that missed it, a blob a read, listing or scrub
//! found missing or damaged), a manifest copy placed there but not recorded, a tombstone copy a
//! configured provider lacks. A provider that is placed but no longer configured owes what it
//! held until `evacuate` moves it; the others owe until `repair` runs.

use std::collections::{BTreeMap, HashSet};

use outlast_codec::{names, Manifest, ManifestBody, ObjectManifest};
use serde::Serialize;

use crate::error::EngineError;
use crate::index::{IndexEntry, Placed};
use crate::store::Store;
use crate::unopened::Unopened;

/// What one provider owes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProviderOwed {
    /// Provider name.
    pub provider: String,
    /// Whether it is in the configuration (if not, `evacuate` pays, not `repair`).
    pub configured: bool,
    /// Shard blobs placed there that are not recorded as stored.
    pub shards: u64,
    /// Manifest copies placed there that are not recorded.
    pub manifests: u64,
    /// Tombstone copies it lacks.
    pub tombstones: u64,
    /// Objects with something owed there.
    pub objects: u64,
}

impl ProviderOwed {
    /// Whether anything is owed.
    pub fn any(&self) -> bool {
        self.shards + self.manifests + self.tombstones > 0
    }

    /// The command that pays it.
    pub fn paid_by(&self) -> String {
        if self.configured {
            "outlast repair".into()
        } else {
            format!("outlast evacuate {} --to NEW", self.provider)
        }
    }
}

/// What one object version owes, from the index alone.
pub(crate) struct ObjectDebt {
    /// The manifest, opened.
    pub om: ObjectManifest,
    /// Each part with owed shards: (part, shard indexes).
    pub parts: Vec<(u32, Vec<usize>)>,
    /// Shard indexes whose provider lacks a recorded manifest copy.
    pub manifests: Vec<usize>,
}

impl Store {
    /// What `entry`'s version owes (`None`: nothing, or a tombstone).
    /// One whose manifest does not open owes nothing that can be paid; it is named in
    /// `unopened`, when given (then every manifest is opened, to name those that do not).
    /// Otherwise the placement kept beside the manifest decides, and only a version that owes
    /// something has its manifest opened.
    pub(crate) async fn object_debt(
        &self,
        entry: &IndexEntry,
        unopened: Option<&mut Unopened>,
    ) -> Result<Option<ObjectDebt>, EngineError> {
        if let (Some(placed), None) = (&entry.placed, &unopened) {
            // The placement kept beside the manifest decides; the manifest is opened only
            // for a version that owes something (repair needs it to pay).
            let Some((parts, manifests)) = self.debt_of_placement(entry, placed).await? else { return Ok(None) };
            let Some(Manifest { body: ManifestBody::Object(om), .. }) = self.open_manifest_or_note(entry, None) else {
                return Ok(None);
            };
            return Ok(Some(ObjectDebt { om, parts, manifests }));
        }
        let Some(Manifest { body: ManifestBody::Object(om), .. }) = self.open_manifest_or_note(entry, unopened) else {
            return Ok(None);
        };
        let Some((parts, manifests)) = self.debt_of_placement(entry, &Placed::of(&om)).await? else { return Ok(None) };
        Ok(Some(ObjectDebt { om, parts, manifests }))
    }

    /// The parts with owed shards and the shards owing a manifest copy, of the version placed
    /// as `placed` (`None`: nothing owed).
    #[allow(clippy::type_complexity)]
    async fn debt_of_placement(
        &self,
        entry: &IndexEntry,
        placed: &Placed,
    ) -> Result<Option<(Vec<(u32, Vec<usize>)>, Vec<usize>)>, EngineError> {
        let layout = placed.layout()?;
        let vid = &entry.stamp.vid;
        let recorded = self.index.recorded_of(vid).await?;
        // A provider the configuration no longer has holds nothing this store can count on,
        // whatever the index recorded there.
        let has = |i: usize, blob: String| {
            let provider = &placed.providers[i];
            self.provider(provider).is_some() && recorded.has(provider, &blob)
        };
        let n = placed.n as usize;
        let mut parts = Vec::new();
        for part in 0..layout.part_count() {
            let shards: Vec<usize> = (0..n).filter(|&i| !has(i, names::shard_blob(&self.keys, vid, i as u16, part))).collect();
            if !shards.is_empty() {
                parts.push((part, shards));
            }
        }
        let manifest_blob = names::manifest_blob(&self.keys, vid);
        let manifests: Vec<usize> = (0..n).filter(|&i| !has(i, manifest_blob.clone())).collect();
        if parts.is_empty() && manifests.is_empty() {
            return Ok(None);
        }
        Ok(Some((parts, manifests)))
    }

    /// What every provider owes, configured or not; only providers that owe something.
    pub async fn owed(&self) -> Result<Vec<ProviderOwed>, EngineError> {
        let mut by: BTreeMap<String, ProviderOwed> = BTreeMap::new();
        let configured: HashSet<&str> = self.providers.iter().map(|p| p.name()).collect();
        fn entry_of<'a>(
            by: &'a mut BTreeMap<String, ProviderOwed>,
            configured: &HashSet<&str>,
            name: &str,
        ) -> &'a mut ProviderOwed {
            by.entry(name.to_string()).or_insert_with(|| ProviderOwed {
                provider: name.to_string(),
                configured: configured.contains(name),
                ..Default::default()
            })
        }
        let mut pages = self.index.object_pages("");
        while let Some(page) = pages.next_page().await? {
            for entry in page {
                let Some(debt) = self.object_debt(&entry, None).await? else { continue };
                let mut touched: HashSet<usize> = HashSet::new();
                for (_, shards) in &debt.parts {
                    for &i in shards {
                        entry_of(&mut by, &configured, &debt.om.placement[i].provider).shards += 1;
                        touched.insert(i);
                    }
                }
                for &i in &debt.manifests {
                    entry_of(&mut by, &configured, &debt.om.placement[i].provider).manifests += 1;
                    touched.insert(i);
                }
                let providers: HashSet<&str> = touched.iter().map(|&i| debt.om.placement[i].provider.as_str()).collect();
                for p in providers {
                    entry_of(&mut by, &configured, p).objects += 1;
                }
            }
        }
        let mut pages = self.index.tombstone_pages();
        while let Some(page) = pages.next_page().await? {
            for (_, stamp) in page {
                let holders: HashSet<String> = self.index.blobs_of(&stamp.vid).await?.into_iter().map(|b| b.provider).collect();
                for p in self.providers.iter().filter(|p| !holders.contains(p.name())) {
                    entry_of(&mut by, &configured, p.name()).tombstones += 1;
                }
            }
        }
        Ok(by.into_values().filter(ProviderOwed::any).collect())
    }
}
