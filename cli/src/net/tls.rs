//! Which servers this client talks to, and how: `https://` with the system's root
//! certificates plus an optional `--ca-cert` (for the HTTP client and the event stream
//! alike), and plain `http://` only to this machine (127.0.0.0/8, ::1, `localhost`)
//! unless `--insecure-http` says otherwise: a session token must not cross a network in
//! the clear.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use reqwest::Url;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::error::{CliError, Result};

/// A server URL this client agreed to use, as one canonical string (no trailing `/`),
/// so that two spellings of one server compare equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl(String);

impl ServerUrl {
    /// Parses and checks `text`; plain HTTP to another machine needs `insecure_http`.
    pub fn parse(text: &str, insecure_http: bool) -> Result<Self> {
        let url = Url::parse(text.trim()).map_err(|e| {
            CliError::Usage(format!(
                "the server URL {text:?} is not a URL ({e}); use e.g. https://chat.example.org"
            ))
        })?;
        match url.scheme() {
            "https" => {}
            "http" if insecure_http || is_loopback(&url) => {}
            "http" => {
                return Err(CliError::Usage(format!(
                    "refusing plain http:// to {}: your session token and messages' metadata \
                     would cross the network unencrypted. Use https://, or pass \
                     --insecure-http (FASTCHAT_INSECURE_HTTP=1) if you mean it",
                    url.host_str().unwrap_or("that server")
                )))
            }
            _ => {
                return Err(CliError::Usage(format!(
                    "the server URL must start with https:// (or http:// for this machine), \
                     not {text:?}"
                )))
            }
        }
        if url.host_str().is_none_or(str::is_empty)
            || url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
        {
            return Err(CliError::Usage(format!(
                "the server URL {text:?} must be just scheme, host, port and path"
            )));
        }
        Ok(ServerUrl(url.as_str().trim_end_matches('/').to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_https(&self) -> bool {
        self.0.starts_with("https://")
    }
}

impl std::fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// The TLS settings both connections use: the system's roots and `--ca-cert`'s.
#[derive(Clone)]
pub struct Tls {
    config: Arc<rustls::ClientConfig>,
}

impl Tls {
    pub fn new(ca_cert: Option<&Path>) -> Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        // A system without roots still works with --ca-cert; errors reading some of
        // them only leave those out.
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(path) = ca_cert {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|iter| iter.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|e| {
                    CliError::Usage(format!(
                        "--ca-cert {}: not a readable PEM file of certificates ({e})",
                        path.display()
                    ))
                })?;
            if certs.is_empty() {
                return Err(CliError::Usage(format!(
                    "--ca-cert {}: no certificate in it",
                    path.display()
                )));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| CliError::Usage(format!("--ca-cert {}: {e}", path.display())))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| CliError::local("setting up TLS", e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Tls {
            config: Arc::new(config),
        })
    }

    /// For plain-HTTP connections, which need no roots.
    pub fn without_roots() -> Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| CliError::local("setting up TLS", e))?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        Ok(Tls {
            config: Arc::new(config),
        })
    }

    /// For reqwest.
    pub fn client_config(&self) -> rustls::ClientConfig {
        (*self.config).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::ServerUrl;

    #[test]
    fn plain_http_is_for_this_machine_only() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://127.5.0.1",
            "http://localhost:1/",
            "http://[::1]:80",
            "https://chat.example.org",
        ] {
            assert!(ServerUrl::parse(ok, false).is_ok(), "{ok}");
        }
        for refused in ["http://chat.example.org", "http://10.0.0.1:8080", "ftp://x"] {
            assert!(ServerUrl::parse(refused, false).is_err(), "{refused}");
        }
        assert!(ServerUrl::parse("http://chat.example.org", true).is_ok());
        assert!(ServerUrl::parse("https://x/?a=b", false).is_err());
    }

    #[test]
    fn spellings_of_one_server_are_one_url() {
        let a = ServerUrl::parse("https://Chat.Example.org:443/", false).unwrap();
        let b = ServerUrl::parse("https://chat.example.org", false).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "https://chat.example.org");
    }
}
