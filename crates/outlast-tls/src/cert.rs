//! HTTPS with a certificate that can be renewed in place: the files are looked at again at
//! most once a second, on a handshake, and a new pair is used from then on. A pair that does
//! not load (written half-way) leaves the one in use, with a warning.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// How often the files are looked at.
const RECHECK: Duration = Duration::from_secs(1);

/// Why a certificate and key could not be used.
#[derive(Debug, thiserror::Error)]
#[error("TLS certificate `{cert}` and key `{key}`: {reason}")]
pub struct TlsError {
    cert: String,
    key: String,
    reason: String,
}

/// The certificate and key files, and the pair loaded from them.
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    state: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    certified: Arc<CertifiedKey>,
    stamps: (Option<SystemTime>, Option<SystemTime>),
    checked: Instant,
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let fail = |reason: String| TlsError { cert: cert.display().to_string(), key: key.display().to_string(), reason };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| fail(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| fail(e.to_string()))?;
    if chain.is_empty() {
        return Err(fail("no certificate in the file".into()));
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| fail(e.to_string()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing = provider.key_provider.load_private_key(der).map_err(|e| fail(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| fail(format!("the key is not the certificate's: {e}")))?;
    Ok(Arc::new(certified))
}

impl ReloadingCert {
    /// Loads `cert` (PEM, the chain) and `key` (PEM): an error if they do not load now.
    pub fn new(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let certified = load(cert, key)?;
        let loaded = Loaded { certified, stamps: (modified(cert), modified(key)), checked: Instant::now() };
        Ok(ReloadingCert { cert: cert.to_path_buf(), key: key.to_path_buf(), state: Mutex::new(loaded) })
    }

    fn current(&self) -> Arc<CertifiedKey> {
        let mut s = self.state.lock().expect("certificate lock");
        if s.checked.elapsed() >= RECHECK {
            s.checked = Instant::now();
            let stamps = (modified(&self.cert), modified(&self.key));
            if stamps != s.stamps {
                match load(&self.cert, &self.key) {
                    Ok(certified) => {
                        tracing::info!("a renewed TLS certificate was loaded from {}", self.cert.display());
                        s.certified = certified;
                        s.stamps = stamps;
                    }
                    Err(e) => tracing::warn!("{e}; the certificate loaded before is kept"),
                }
            }
        }
        s.certified.clone()
    }

    /// A server configuration that uses it (HTTP/2 and HTTP/1.1).
    pub fn server_config(self: Arc<Self>) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("the default provider supports the default versions")
            .with_no_client_auth()
            .with_cert_resolver(self);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}
