//! A TLS front for tests: terminates `https://` with the test certificate in
//! `tests/fixtures/tls` (signed by the test CA there) and relays the bytes to a plain
//! server, so the real CLI can be run against `https://127.0.0.1:<port>` with
//! `--ca-cert tests/fixtures/tls/ca.pem`. Event streams pass through as they come.

use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};

use crate::binaries::root;

/// The test CA, to pass as `--ca-cert`.
pub fn test_ca() -> PathBuf {
    root().join("tests/fixtures/tls/ca.pem")
}

pub struct TlsFront {
    /// `https://127.0.0.1:<port>`
    pub url: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl TlsFront {
    /// A TLS front on a free port before `upstream` (`http://host:port`), on a thread of
    /// its own so that a test may block on the CLI while it serves.
    pub fn start(upstream: &str) -> TlsFront {
        let dir = root().join("tests/fixtures/tls");
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(dir.join("server.pem"))
                .expect("the test certificate")
                .collect::<Result<_, _>>()
                .expect("the test certificate parses");
        let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).expect("the test key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("a server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.set_nonblocking(true).expect("non-blocking");
        let url = format!("https://{}", listener.local_addr().expect("an address"));
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("the TLS front's runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("a tokio listener");
                let accept = async {
                    while let Ok((stream, _)) = listener.accept().await {
                        let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
                        tokio::spawn(async move {
                            let Ok(mut tls) = acceptor.accept(stream).await else {
                                return;
                            };
                            let Ok(mut plain) = TcpStream::connect(&upstream).await else {
                                return;
                            };
                            let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                        });
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stopped => {}
                }
            });
        });
        TlsFront { url, _stop: stop }
    }
}
