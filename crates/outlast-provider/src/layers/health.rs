//! The health record: every operation's outcome and latency, kept per provider (the model is
//! `crate::health`), and said loudly when a provider's state turns for the worse.

use std::sync::Mutex;
use std::time::Instant;

use crate::error::ProviderError;
use crate::health::{HealthState, HealthStats};

/// Adds an operation's outcome to the provider's health record.
pub(crate) fn record<T>(
    provider: &str,
    health: &Mutex<HealthStats>,
    started: Option<Instant>,
    r: Result<T, ProviderError>,
) -> Result<T, ProviderError> {
    // A location that is not this provider says nothing of the provider's health.
    if let Err(ProviderError::Identity { .. }) = &r {
        return r;
    }
    let outcome = match &r {
        Ok(_) => Ok(()),
        Err(e) => Err((e.class(), e.to_string())),
    };
    observe(provider, health, |h| h.record(started.map(|t| t.elapsed()), outcome));
    r
}

/// Applies `change` to the health record and says so loudly when the provider's state changes
/// for the worse: an account that was just ended must not go unnoticed.
pub(crate) fn observe(provider: &str, health: &Mutex<HealthStats>, change: impl FnOnce(&mut HealthStats)) {
    let mut h = health.lock().expect("health lock");
    let before = h.state();
    change(&mut h);
    let after = h.state();
    if after == before {
        return;
    }
    let why = h.reason().unwrap_or_default();
    match after {
        HealthState::Terminated => tracing::error!(
            provider,
            "provider `{provider}` looks TERMINATED: {why}. reads carry on from the other providers while it stays so"
        ),
        HealthState::Unreachable => tracing::warn!(provider, "provider `{provider}` is unreachable: {why}"),
        _ => tracing::info!(provider, "provider `{provider}` is {} again", after.as_str()),
    }
}
