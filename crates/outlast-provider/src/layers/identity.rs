//! The identity gate: a location must prove it is this provider (the engine's check reads its
//! sealed marker) before anything else touches it, and again once its verdict is old.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::ProviderError;
use crate::provider::Provider;

/// What an identity check concluded about a location.
pub type Verdict = Result<(), String>;

/// Checks that a location answers as the provider it is configured as, before anything else
/// touches it and again once the last verdict is older than [`IdentityRecheck`] says. The
/// check gets the provider without its gate (its own operations must not wait on it). A
/// transport failure is no verdict: the operation that ran into it fails, and the next one
/// checks again.
pub type IdentityCheck =
    Arc<dyn Fn(Provider) -> futures::future::BoxFuture<'static, Result<Verdict, ProviderError>> + Send + Sync>;

/// How long an identity verdict stands. A long-lived process (a gateway, a repair of hours)
/// must notice a location swapped, wiped or unmounted under it, and must take back one that
/// was refused for a passing reason (a corrupt read, a mount that came back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentityRecheck {
    /// A location found to be this provider is checked again after this long.
    pub accepted: Duration,
    /// A location refused is checked again after this long.
    pub refused: Duration,
}

impl Default for IdentityRecheck {
    fn default() -> Self {
        IdentityRecheck { accepted: Duration::from_secs(5 * 60), refused: Duration::from_secs(30) }
    }
}

/// The identity gate shared by a provider and its clones.
pub(crate) struct Gate {
    pub(crate) check: IdentityCheck,
    /// The last verdict and when it was reached.
    pub(crate) verdict: Mutex<Option<(Verdict, Instant)>>,
    pub(crate) recheck: Mutex<IdentityRecheck>,
    /// Held while a check runs, so that concurrent operations wait for one check.
    pub(crate) checking: tokio::sync::Mutex<()>,
}

impl Gate {
    /// The last verdict, while it stands.
    pub(crate) fn standing(&self) -> Option<Verdict> {
        let recheck = *self.recheck.lock().expect("recheck lock");
        let verdict = self.verdict.lock().expect("verdict lock");
        let (v, when) = verdict.as_ref()?;
        let lasts = if v.is_ok() { recheck.accepted } else { recheck.refused };
        (when.elapsed() < lasts).then(|| v.clone())
    }

    /// The standing verdict, or a fresh one.
    pub(crate) async fn verdict(&self, p: &Provider) -> Result<Verdict, ProviderError> {
        if let Some(v) = self.standing() {
            return Ok(v);
        }
        let _one_check = self.checking.lock().await;
        if let Some(v) = self.standing() {
            return Ok(v);
        }
        let v = (self.check)(p.ungated()).await?;
        *self.verdict.lock().expect("verdict lock") = Some((v.clone(), Instant::now()));
        Ok(v)
    }
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gate({:?})", self.verdict.lock().map(|v| v.as_ref().map(|(v, _)| v.clone())))
    }
}
