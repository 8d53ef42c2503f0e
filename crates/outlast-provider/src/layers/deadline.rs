//! The deadline of each operation, over OpenDAL's own timeout and retries.

use std::time::Duration;

use super::err;
use crate::error::ProviderError;

/// How long one operation on a provider may take, retries included, before it counts as a
/// transient failure: `floor`, plus the bytes it moves at `min_rate`. Hedged reads and quorum
/// writes stop waiting long before that; this bounds what waits on one provider alone
/// (repair, evacuation, scrub), which would otherwise sit out the transport's timeouts and
/// retries (minutes) for a provider that takes connections and never answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Patience {
    /// Time allowed for any operation, however small.
    pub floor: Duration,
    /// Slowest transfer rate still counted as working, in bytes per second.
    pub min_rate: u64,
}

impl Default for Patience {
    fn default() -> Self {
        Patience { floor: Duration::from_secs(30), min_rate: 256 * 1024 }
    }
}

impl Patience {
    /// The time allowed for an operation that moves `bytes`.
    pub fn limit(&self, bytes: u64) -> Duration {
        self.floor + Duration::from_secs_f64(bytes as f64 / self.min_rate.max(1) as f64)
    }

    /// Runs `fut`, or fails it as transient once the time allowed for `bytes` has passed.
    pub(crate) async fn bound<T>(
        self,
        provider: &str,
        op: &'static str,
        path: &str,
        bytes: u64,
        fut: impl std::future::Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        let limit = self.limit(bytes);
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r,
            Err(_) => {
                let e =
                    opendal::Error::new(opendal::ErrorKind::Unexpected, format!("no answer within {limit:?}")).set_temporary();
                Err(err(provider, path, op, e))
            }
        }
    }
}
