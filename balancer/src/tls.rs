//! TLS for the public listener: a certificate and key from files, read again whenever
//! either file changes (a renewed certificate takes effect for new connections within
//! seconds; open connections and their event streams are left alone).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, CryptoProvider, ResolvesServerCert};

/// The certificate new connections are served.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' modification times when they were last read.
    loaded: RwLock<(Option<SystemTime>, Option<SystemTime>)>,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn load(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, String> {
    pingora::tls::install_default_crypto_provider();
    let (cert_file, key_file) = (cert_path.to_string_lossy(), key_path.to_string_lossy());
    let (certs, key) = pingora::tls::load_certs_and_key_files(&cert_file, &key_file)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no certificate in {cert_file}, or no private key in {key_file}"))?;
    let provider = CryptoProvider::get_default().ok_or("no TLS crypto provider")?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("the private key in {key_file}: {e}"))?;
    let certified = CertifiedKey::new(certs, signing_key);
    certified
        .keys_match()
        .map_err(|e| format!("the key in {key_file} is not the certificate's: {e}"))?;
    Ok(certified)
}

impl ReloadingCert {
    /// Reads the certificate and key; an error names what is wrong with them.
    pub fn load(cert_path: PathBuf, key_path: PathBuf) -> Result<Arc<Self>, String> {
        let stamps = (modified(&cert_path), modified(&key_path));
        let certified = load(&cert_path, &key_path)?;
        Ok(Arc::new(Self {
            cert_path,
            key_path,
            current: RwLock::new(Arc::new(certified)),
            loaded: RwLock::new(stamps),
        }))
    }

    /// Reads the files again if either changed; keeps the old certificate if the new
    /// one does not load (a half-written renewal is picked up when it is whole).
    pub fn reload_if_changed(&self) {
        let stamps = (modified(&self.cert_path), modified(&self.key_path));
        if *self.loaded.read().unwrap_or_else(|e| e.into_inner()) == stamps {
            return;
        }
        match load(&self.cert_path, &self.key_path) {
            Ok(certified) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(certified);
                *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = stamps;
                tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "a changed TLS certificate did not load; keeping the old one")
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(|e| e.into_inner()),
        ))
    }
}
