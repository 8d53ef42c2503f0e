//! Fault injection between Outlast and a real provider, for chaos tests and drills: latency,
//! transient errors, refusals (an ended account), hangs, truncated and corrupted bodies. The
//! provider behind stays real; only what Outlast sees of it changes.
//!
//! Set programmatically ([`crate::Provider::set_faults`]) or, for a whole process, with
//! `OUTLAST_FAULTS="name:latency=200ms,error=0.1;other:deny"`.

use std::time::Duration;

use bytes::Bytes;
use rand::Rng;

use crate::error::{classify, ProviderError};

/// The environment variable that injects faults into named providers.
pub const FAULTS_ENV: &str = "OUTLAST_FAULTS";

/// What to do to one provider's operations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Added before every operation.
    pub latency: Duration,
    /// Fraction of operations that fail with a temporary error (as a 503 would).
    pub error_rate: f64,
    /// Every operation refused as a 403 would be: an ended account.
    pub deny: bool,
    /// Operations never finish: a provider that accepts connections and says nothing.
    pub hang: bool,
    /// Reads succeed with only the first half of the body.
    pub truncate: bool,
    /// Reads succeed with one byte of the body flipped.
    pub corrupt: bool,
}

impl Faults {
    /// Whether anything is injected.
    pub fn is_none(&self) -> bool {
        *self == Faults::default()
    }

    /// Parses `latency=200ms,error=0.1,deny,hang,truncate,corrupt` (any subset).
    pub fn parse(spec: &str) -> Result<Faults, String> {
        let mut f = Faults::default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item.split_once('=') {
                Some(("latency", v)) => f.latency = parse_duration(v)?,
                Some(("error", v)) => {
                    f.error_rate =
                        v.parse().ok().filter(|r: &f64| (0.0..=1.0).contains(r)).ok_or(format!("error={v}: want 0..1"))?
                }
                None if item == "deny" => f.deny = true,
                None if item == "hang" => f.hang = true,
                None if item == "truncate" => f.truncate = true,
                None if item == "corrupt" => f.corrupt = true,
                _ => return Err(format!("unknown fault `{item}` (latency=DURATION, error=RATE, deny, hang, truncate, corrupt)")),
            }
        }
        Ok(f)
    }

    /// The faults [`FAULTS_ENV`] names for `provider`, if any.
    pub fn from_env(provider: &str) -> Result<Option<Faults>, String> {
        let Ok(all) = std::env::var(FAULTS_ENV) else { return Ok(None) };
        for entry in all.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, spec) = entry.split_once(':').ok_or(format!("{FAULTS_ENV}: `{entry}` is not NAME:FAULTS"))?;
            if name == provider {
                return Faults::parse(spec).map(Some).map_err(|e| format!("{FAULTS_ENV} for `{provider}`: {e}"));
            }
        }
        Ok(None)
    }

    /// Applied before an operation: waits, hangs or fails as configured.
    pub(crate) async fn before(&self, provider: &str, op: &'static str, path: &str) -> Result<(), ProviderError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        if self.hang {
            std::future::pending::<()>().await;
        }
        let injected = |kind: opendal::ErrorKind, what: &str, temporary: bool| {
            let mut e = opendal::Error::new(kind, format!("injected fault: {what}"));
            if temporary {
                e = e.set_temporary();
            }
            let class = classify(&e, op);
            ProviderError::Op { provider: provider.to_string(), op, path: path.to_string(), class, source: Box::new(e) }
        };
        if self.deny {
            return Err(injected(opendal::ErrorKind::PermissionDenied, "403 access denied", false));
        }
        if self.error_rate > 0.0 && rand::thread_rng().gen_bool(self.error_rate) {
            return Err(injected(opendal::ErrorKind::Unexpected, "503 service unavailable", true));
        }
        Ok(())
    }

    /// Applied to a successful read's body.
    pub(crate) fn mangle(&self, body: Bytes) -> Bytes {
        let mut body = if self.truncate { body.slice(..body.len() / 2) } else { body };
        if self.corrupt && !body.is_empty() {
            let mut v = body.to_vec();
            let at = v.len() / 2;
            v[at] ^= 0x01;
            body = Bytes::from(v);
        }
        body
    }
}

fn parse_duration(v: &str) -> Result<Duration, String> {
    let (num, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()));
    let n: u64 = num.parse().map_err(|_| format!("latency={v}: want e.g. 200ms or 2s"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        _ => Err(format!("latency={v}: want e.g. 200ms or 2s")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_say_why() {
        let f = Faults::parse("latency=250ms, error=0.5,deny,truncate").unwrap();
        assert_eq!((f.latency, f.error_rate, f.deny, f.truncate, f.hang), (Duration::from_millis(250), 0.5, true, true, false));
        assert!(Faults::parse("").unwrap().is_none());
        assert!(Faults::parse("latency=fast").unwrap_err().contains("latency"));
        assert!(Faults::parse("error=2").unwrap_err().contains("0..1"));
        assert!(Faults::parse("explode").unwrap_err().contains("unknown fault"));
    }

    #[test]
    fn mangled_bodies_are_short_or_wrong() {
        let body = Bytes::from_static(b"0123456789");
        assert_eq!(Faults { truncate: true, ..Default::default() }.mangle(body.clone()).len(), 5);
        let bad = Faults { corrupt: true, ..Default::default() }.mangle(body.clone());
        assert_eq!(bad.len(), 10);
        assert_ne!(bad, body);
    }
}
