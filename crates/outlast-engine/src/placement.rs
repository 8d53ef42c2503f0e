//! Which provider holds which shard of an object version.
//!
//! Weighted-free rendezvous hashing over the configured providers: each provider scores
//! `hash(version id, provider name)` and the highest scores win, so placement is stable as
//! providers come and go and spreads objects evenly when there are more providers than `n`. No
//! failure domain gets more than `n - k` shards, so losing any one organisation leaves `k`.

use std::collections::{HashMap, HashSet};

use outlast_codec::VersionId;
use outlast_provider::Provider;

/// Picks `n` of `providers` for version `vid`; `result[i]` holds shard `i`. Returns `None` when
/// the domain rule cannot be met (config validation rules that out for the full provider list).
pub fn place<'a>(providers: &[&'a Provider], vid: &VersionId, k: usize, n: usize) -> Option<Vec<&'a Provider>> {
    let cap = n - k;
    let mut scored: Vec<(u64, &'a Provider)> = providers
        .iter()
        .map(|&p| {
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

/// Places a new version over the providers fit to take it: those not being evacuated, and
/// among them fast and healthy ones first, then slow ones. When those cannot hold `n` shards
/// within the domain rule, providers being evacuated are used too (a write must not fail because
/// an evacuation is under way; the evacuation picks such versions up when run again), and last
/// unreachable or terminated ones (the write then succeeds at its quorum, the missing shards
/// being debt). Slow and unusable providers that must be used get the parity shards: reads ask
/// for data shards first, so while they stay slow or down, reads of the version decode nothing.
pub fn place_new<'a>(
    providers: &'a [Provider],
    draining: &HashSet<String>,
    slow: &[String],
    vid: &VersionId,
    k: usize,
    n: usize,
) -> Option<Vec<&'a Provider>> {
    let all: Vec<&Provider> = providers.iter().collect();
    let staying: Vec<&Provider> = all.iter().copied().filter(|p| !draining.contains(p.name())).collect();
    let usable = |v: &[&'a Provider]| -> Vec<&'a Provider> { v.iter().copied().filter(|p| p.state().is_usable()).collect() };
    let is_slow = |p: &Provider| slow.iter().any(|s| s == p.name());
    let fast: Vec<&Provider> = usable(&staying).into_iter().filter(|p| !is_slow(p)).collect();
    let mut chosen = place(&fast, vid, k, n)
        .or_else(|| place(&usable(&staying), vid, k, n))
        .or_else(|| place(&usable(&all), vid, k, n))
        .or_else(|| place(&staying, vid, k, n))
        .or_else(|| place(&all, vid, k, n))?;
    // Stable: fast ones keep their order, the others move to the parity positions.
    chosen.sort_by_key(|p| !p.state().is_usable() as u8 * 2 + is_slow(p) as u8);
    Some(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use outlast_provider::ProviderSpec;

    fn providers(dir: &std::path::Path, count: usize) -> Vec<Provider> {
        (0..count)
            .map(|i| {
                let options = [("root".to_string(), dir.join(format!("p{i}")).display().to_string())].into();
                let spec = ProviderSpec {
                    name: format!("p{i}"),
                    domain: format!("d{i}"),
                    scheme: "fs".into(),
                    options,
                    env: Default::default(),
                };
                Provider::build_creating(&spec).unwrap()
            })
            .collect()
    }

    #[test]
    fn a_slow_provider_holds_parity_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (k, n) = (4, 6);
        let slow = vec!["p2".to_string()];
        let six = providers(dir.path(), 6);
        let eight = providers(dir.path(), 8);
        for _ in 0..50 {
            let vid = VersionId::generate();
            // Six providers for six shards: p2 must hold one, and it is a parity shard; the
            // others keep their rendezvous order.
            let got = place_new(&six, &HashSet::new(), &slow, &vid, k, n).unwrap();
            let at = got.iter().position(|p| p.name() == "p2").unwrap();
            assert!(at >= k, "slow p2 holds data shard {at}");
            let plain: Vec<&str> = place(&six.iter().collect::<Vec<_>>(), &vid, k, n).unwrap().iter().map(|p| p.name()).collect();
            let fast: Vec<&str> = got.iter().map(|p| p.name()).filter(|p| *p != "p2").collect();
            assert_eq!(fast, plain.into_iter().filter(|p| *p != "p2").collect::<Vec<_>>());
            // With spares, it holds nothing.
            let got = place_new(&eight, &HashSet::new(), &slow, &vid, k, n).unwrap();
            assert!(got.iter().all(|p| p.name() != "p2"));
        }
    }
}
