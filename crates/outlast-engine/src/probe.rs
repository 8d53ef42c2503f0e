//! The provider probe behind `outlast providers`: each provider's state, checked now, and
//! what the index places there.

use std::collections::HashMap;

use futures::future::join_all;
use outlast_provider::HealthState;
use serde::Serialize;

use crate::error::EngineError;
use crate::store::Store;

/// Known blobs a probe stats per provider: enough to tell "all gone" from one lost blob.
const PROBE_BLOBS: usize = outlast_provider::health::TERMINATED_AFTER as usize;
/// What a probe of a provider holding nothing of ours asks for (never written).
const PROBE_NAME: &str = "outlast-probe";

/// One provider as `outlast providers` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderReport {
    /// Name.
    pub name: String,
    /// Failure domain.
    pub domain: String,
    /// OpenDAL scheme.
    pub scheme: String,
    /// Whether it answered a probe.
    pub reachable: bool,
    /// The probe's error, if any.
    pub error: Option<String>,
    /// Healthy, slow, unreachable or terminated, from the probe and earlier runs.
    pub state: HealthState,
    /// Why, when not healthy.
    pub reason: String,
    /// Median latency of recent reads, in milliseconds.
    pub p50_ms: Option<f64>,
    /// 95th percentile latency of recent reads, in milliseconds.
    pub p95_ms: Option<f64>,
    /// Shard blobs the index places there.
    pub shards: u64,
    /// Bytes of all blobs (shards and manifests) the index places there.
    pub bytes: u64,
    /// What it owes (redundancy placed there and not recorded as stored), if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owed: Option<crate::owed::ProviderOwed>,
}

impl Store {
    /// Each provider: its state, and what the index places there. The probe asks for a few
    /// blobs the store wrote there: a deleted bucket or folder answers "not found" to every
    /// one, which an empty probe could not tell from a healthy provider.
    pub async fn providers(&self) -> Result<Vec<ProviderReport>, EngineError> {
        let (mut held, mut samples) = (Vec::new(), Vec::new());
        for p in &self.providers {
            held.push(self.index.count_blobs_on(p.name()).await?);
            samples.push(self.index.sample_blobs_on(p.name(), PROBE_BLOBS).await?);
        }
        let probes = join_all(self.providers.iter().zip(samples).map(|(p, known)| async move {
            if known.is_empty() {
                return match p.stat(PROBE_NAME).await {
                    Ok(_) => None,
                    Err(e) if e.is_not_found() => None,
                    Err(e) => Some(e.to_string()),
                };
            }
            let mut error = None;
            for b in known {
                match p.stat(&b.blob).await {
                    Ok(_) => p.note_known_blob(true),
                    Err(e) if e.is_not_found() => {
                        p.note_known_blob(false);
                        error.get_or_insert_with(|| format!("blob `{}` it held is gone", b.blob));
                    }
                    Err(e) => {
                        error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            error
        }))
        .await;
        let health = self.health();
        let mut owed: HashMap<String, crate::owed::ProviderOwed> =
            self.owed().await?.into_iter().map(|o| (o.provider.clone(), o)).collect();
        let mut out = Vec::new();
        for (((p, err), blobs), h) in self.providers.iter().zip(probes).zip(held).zip(health) {
            // A provider whose probe failed is never shown healthy.
            let (state, reason) = match &err {
                Some(e) if h.state.is_usable() => (HealthState::Unreachable, e.clone()),
                _ => (h.state, h.reason),
            };
            out.push(ProviderReport {
                name: p.name().to_string(),
                domain: p.domain().to_string(),
                scheme: p.scheme().to_string(),
                reachable: err.is_none() && state.is_usable(),
                error: err,
                state,
                reason,
                p50_ms: h.p50_ms,
                p95_ms: h.p95_ms,
                shards: blobs.shards,
                bytes: blobs.bytes,
                owed: owed.remove(p.name()),
            });
        }
        // Providers the placements still name that the configuration no longer has (removed
        // or renamed by hand): their share is owed until an evacuation rebuilds it elsewhere.
        for (name, o) in owed {
            let why = format!("not in the configuration; `outlast evacuate {name} --to NEW` rebuilds its share elsewhere");
            out.push(ProviderReport {
                name,
                domain: String::new(),
                scheme: String::new(),
                reachable: false,
                error: Some(why.clone()),
                state: HealthState::Unreachable,
                reason: why,
                p50_ms: None,
                p95_ms: None,
                shards: 0,
                bytes: 0,
                owed: Some(o),
            });
        }
        Ok(out)
    }
}
