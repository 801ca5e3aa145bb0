//! TLS for tests: the test CA and server certificates in `tests/fixtures/tls`, a copy of
//! them for a balancer to serve (and a test to renew in place), and a client that
//! reports which certificate a server presented.

use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::binaries::root;

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/tls").join(name)
}

/// The test CA, to pass as `--ca-cert`.
pub fn test_ca() -> PathBuf {
    fixture("ca.pem")
}

/// A certificate (and its key) for 127.0.0.1 in a folder of its own, where a balancer
/// reads it and a test may put its renewal.
pub struct ServedCertificate {
    dir: PathBuf,
}

impl ServedCertificate {
    /// `server.pem` from the fixtures.
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("fastchat-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("a folder for the certificate");
        let served = ServedCertificate { dir };
        served.install("server");
        served
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    /// The balancer's settings that serve it.
    pub fn balancer_env(&self) -> [(&'static str, String); 2] {
        let path = |p: PathBuf| p.to_str().expect("a UTF-8 path").to_owned();
        [
            ("FASTCHAT_TLS_CERT", path(self.cert_path())),
            ("FASTCHAT_TLS_KEY", path(self.key_path())),
        ]
    }

    /// Puts the fixture `name` (`server` or `renewed`) in place, each file renamed
    /// over the old one as a certificate renewal does.
    pub fn install(&self, name: &str) {
        for (from, to) in [
            (format!("{name}.key"), self.key_path()),
            (format!("{name}.pem"), self.cert_path()),
        ] {
            let staged = to.with_extension("new");
            std::fs::copy(fixture(&from), &staged).expect("copying a fixture");
            std::fs::rename(&staged, &to).expect("renaming it into place");
        }
    }
}

impl Default for ServedCertificate {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ServedCertificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The fixture certificate `name` (`server` or `renewed`), DER.
pub fn fixture_certificate(name: &str) -> Vec<u8> {
    CertificateDer::from_pem_file(fixture(&format!("{name}.pem")))
        .expect("a fixture certificate")
        .to_vec()
}

/// A TLS connection to 127.0.0.1:`port` trusting the test CA only, and the certificate
/// the server presented (DER).
pub async fn connect(port: u16) -> std::io::Result<(TlsStream<TcpStream>, Vec<u8>)> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(test_ca()).expect("the test CA") {
        roots
            .add(cert.expect("the test CA parses"))
            .expect("the test CA is a root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::try_from("127.0.0.1").expect("an IP address name");
    let tls = connector.connect(name, tcp).await?;
    let presented = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|cert| cert.to_vec())
        .unwrap_or_default();
    Ok((tls, presented))
}
