//! Which provider holds which shard of an object version.
//!
//! Weighted-free rendezvous hashing over the configured providers: each provider scores
//! `hash(version id, provider name)` and the highest scores win, so placement is stable as
//! providers come and go and spreads objects evenly when there are more providers than `n`. No
//! failure domain gets more than `n - k` shards, so losing any one organisation leaves `k`.

use std::collections::HashMap;

use outlast_codec::VersionId;
use outlast_provider::Provider;

/// Picks `n` providers for version `vid`; `result[i]` holds shard `i`. Returns `None` when the
/// domain rule cannot be met (config validation rules that out for the full provider list).
pub fn place<'a>(providers: &'a [Provider], vid: &VersionId, k: usize, n: usize) -> Option<Vec<&'a Provider>> {
    let cap = n - k;
    let mut scored: Vec<(u64, &Provider)> = providers
        .iter()
        .map(|p| {
            let mut h = blake3::Hasher::new();
            h.update(b"outlast/placement/v1");
            h.update(&vid.0);
            h.update(p.name().as_bytes());
            let score = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"));
            (score, p)
        })
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.name().cmp(b.1.name())));
    let mut per_domain: HashMap<&str, usize> = HashMap::new();
    let mut chosen = Vec::with_capacity(n);
    for (_, p) in scored {
        let used = per_domain.entry(p.domain()).or_default();
        if *used < cap {
            *used += 1;
            chosen.push(p);
            if chosen.len() == n {
                return Some(chosen);
            }
        }
    }
    None
}
