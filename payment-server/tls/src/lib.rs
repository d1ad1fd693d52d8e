//! TLS for the Cardpay servers (the payment server and the demo store).
//!
//! # Layout
//! - [`Transport::choose`]: TLS with the configured certificate, or plain HTTP
//!   only when the operator asked for it (`--insecure-http`). Neither is a
//!   start-up error that says what to write.
//! - [`serve`]: an axum router over rustls, or over plain HTTP when asked for.
//! - [`http_client`]: reqwest over rustls (no OpenSSL) trusting the system's
//!   roots plus an optional CA file (e.g. a local test CA). Certificate
//!   verification is never switched off.
//! - [`client_config`]: the rustls client side for other protocols (the
//!   PostgreSQL connections), with the same rule: a CA file, else the
//!   system's roots, and always verified.
//! - [`test_ca`] (feature `test-ca`): a throw-away CA and server certificate
//!   for tests, made with rcgen.
//!
//! # Why axum-server
//! `axum::serve` speaks plain TCP only. axum-server (0.9, `tls-rustls`) serves
//! the same axum `Router` over rustls with what a hand-written `tokio-rustls`
//! accept loop would have to add: the handshake runs in the connection's own
//! task with a timeout (10 s), so a client that stalls it blocks nobody;
//! graceful shutdown through a `Handle`; certificate reload without restart.
//! It is small, on the same hyper/tower stack as axum, and we choose its
//! crypto provider (ring, as reqwest's rustls uses).

#![forbid(unsafe_code)]

#[cfg(feature = "test-ca")]
pub mod test_ca;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// How long open connections may finish their requests after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(10);

/// The server's certificate chain and key (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server certificate first, then any intermediate CA certificates.
    pub cert_file: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// No certificate and no `--insecure-http`: the message says what to write.
    #[error(
        "refusing to start without TLS: no certificate is configured. {how}; \
         or start with --insecure-http to serve plain HTTP for local development only \
         (anyone on the network path could then read and change the traffic)"
    )]
    NotConfigured { how: String },
    #[error("both a TLS certificate and --insecure-http are given: drop one of them")]
    Ambiguous,
    #[error("reading {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {path}: {problem}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        problem: String,
    },
    #[error("TLS certificate {cert} and key {key} do not fit together: {source}")]
    Unusable {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("building the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("no usable root certificate: {0}")]
    Roots(String),
}

/// What the server listens with.
#[derive(Clone)]
pub enum Transport {
    /// TLS (rustls) with the configured certificate.
    Tls(Arc<ServerConfig>),
    /// Plain HTTP, because the operator asked for it.
    InsecureHttp,
}

impl core::fmt::Debug for Transport {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Tls(_) => "Tls",
            Self::InsecureHttp => "InsecureHttp",
        })
    }
}

impl Transport {
    /// TLS when `tls` is given, plain HTTP when `insecure_http` is; neither (or
    /// both) is an error. `how` tells the operator where the certificate goes
    /// (e.g. "write [tls] cert_file … in the config").
    pub fn choose(
        tls: Option<&TlsFiles>,
        insecure_http: bool,
        how: &str,
    ) -> Result<Self, TlsError> {
        match (tls, insecure_http) {
            (Some(_), true) => Err(TlsError::Ambiguous),
            (Some(files), false) => Ok(Self::Tls(server_config(files)?)),
            (None, true) => Ok(Self::InsecureHttp),
            (None, false) => Err(TlsError::NotConfigured { how: how.into() }),
        }
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        match self {
            Self::Tls(_) => "https",
            Self::InsecureHttp => "http",
        }
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.into(),
        source,
    })
}

/// All certificates of a PEM file; an error if there is none.
pub fn load_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let bad = |problem: String| TlsError::Pem {
        what,
        path: path.into(),
        problem,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into(),
        ));
    }
    Ok(certs)
}

/// The rustls server config of a certificate chain and key: TLS 1.2 and 1.3
/// (ring), ALPN h2 and http/1.1. Refuses a key that does not belong to the
/// certificate.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = load_certs("TLS certificate", &files.cert_file)?;
    let key_pem = read("TLS key", &files.key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
        what: "TLS key",
        path: files.key_file.clone(),
        problem: format!("no private key (PKCS#8, PKCS#1 or SEC1 PEM) in it: {e}"),
    })?;
    let unusable = |source| TlsError::Unusable {
        cert: files.cert_file.clone(),
        key: files.key_file.clone(),
        source,
    };
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(unusable)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(unusable)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What every answer over TLS to a real host name says: use https for this
/// host for a year (RFC 6797). Not to loopback names: HSTS pins a host for
/// every port, and `localhost` in a developer's everyday browser serves other
/// things over plain HTTP too (browsers ignore it for IP literals anyway).
/// Never over `--insecure-http`.
pub const HSTS: &str = "max-age=31536000";

/// Add [`HSTS`] to the answer unless the request named a loopback host.
async fn hsts(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let host = req
        .uri()
        .authority()
        .map(|a| a.host().to_owned())
        .or_else(|| {
            let h = req.headers().get(axum::http::header::HOST)?.to_str().ok()?;
            Some(
                h.parse::<axum::http::uri::Authority>()
                    .ok()?
                    .host()
                    .to_owned(),
            )
        });
    let pin = host.is_some_and(|h| !is_loopback_host(&h));
    let mut r = next.run(req).await;
    if pin {
        r.headers_mut().insert(
            axum::http::header::STRICT_TRANSPORT_SECURITY,
            axum::http::HeaderValue::from_static(HSTS),
        );
    }
    r
}

/// Serve `app` on `listener` until `shutdown` resolves, then let open
/// requests finish (up to 10 s). Over TLS answers carry
/// `Strict-Transport-Security` ([`HSTS`]) for non-loopback hosts.
///
/// Every connection gets `TCP_NODELAY`: an answer goes out as a few small
/// writes (TLS records, headers then body), and with Nagle's algorithm the
/// second waits for the client's delayed ACK, about 40 ms on Linux: a static
/// file took 41–44 ms over loopback from curl or Node before this.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    transport: Transport,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match transport {
        Transport::InsecureHttp => {
            use axum::serve::ListenerExt;
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!("TCP_NODELAY not set: {e}");
                }
            });
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Transport::Tls(config) => {
            let app = app.layer(axum::middleware::from_fn(hsts));
            let handle = axum_server::Handle::new();
            let h = handle.clone();
            tokio::spawn(async move {
                shutdown.await;
                h.graceful_shutdown(Some(DRAIN));
            });
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(
                axum_server::tls_rustls::RustlsConfig::from_config(config),
            )
            .acceptor(axum_server::accept::NoDelayAcceptor::new());
            axum_server::from_tcp(listener.into_std()?)?
                .acceptor(acceptor)
                .handle(handle)
                .serve(app.into_make_service())
                .await
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM (what `kill` and service managers send).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// An HTTP client over rustls that trusts the system's root certificates and,
/// if `ca_file` is given, the CA certificate(s) in it (PEM). It verifies every
/// server certificate; there is no switch to turn that off.
pub fn http_client(ca_file: Option<&Path>) -> Result<reqwest::Client, TlsError> {
    let mut b = reqwest::Client::builder().use_rustls_tls();
    if let Some(path) = ca_file {
        for der in load_certs("CA file", path)? {
            let cert = reqwest::Certificate::from_der(der.as_ref()).map_err(|e| TlsError::Pem {
                what: "CA file",
                path: path.into(),
                problem: e.to_string(),
            })?;
            b = b.add_root_certificate(cert);
        }
    }
    Ok(b.build()?)
}

/// A rustls client config (TLS 1.2 and 1.3, ring) that verifies the server's
/// chain and name against the CA certificate(s) in `ca_file` alone when one is
/// given (a private CA: nothing else is trusted), else against the system's
/// roots. There is no switch to turn verification off.
pub fn client_config(ca_file: Option<&Path>) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for der in load_certs("CA file", path)? {
                roots.add(der).map_err(|e| TlsError::Pem {
                    what: "CA file",
                    path: path.into(),
                    problem: e.to_string(),
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(TlsError::Roots(format!(
                    "the system has none ({} errors reading them); give a CA file",
                    found.errors.len()
                )));
            }
        }
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Roots(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(config)
}

/// `true` for a loopback host name or address (`localhost`, `127.0.0.0/8`, `::1`).
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neither_tls_nor_the_flag_is_refused_with_what_to_do() {
        let e = Transport::choose(None, false, "write [tls] cert_file and key_file")
            .unwrap_err()
            .to_string();
        assert!(e.contains("refusing to start without TLS"), "{e}");
        assert!(e.contains("write [tls] cert_file and key_file"), "{e}");
        assert!(e.contains("--insecure-http"), "{e}");
        assert!(matches!(
            Transport::choose(None, true, ""),
            Ok(Transport::InsecureHttp)
        ));
        let files = TlsFiles {
            cert_file: "/nonexistent/cert.pem".into(),
            key_file: "/nonexistent/key.pem".into(),
        };
        assert!(matches!(
            Transport::choose(Some(&files), true, ""),
            Err(TlsError::Ambiguous)
        ));
        // A missing file is named.
        let e = Transport::choose(Some(&files), false, "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/cert.pem"), "{e}");
    }

    #[test]
    fn loopback_hosts() {
        for h in ["localhost", "127.0.0.1", "127.8.0.1", "[::1]", "::1"] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["example.com", "10.0.0.1", "[::2]", "localhost.example"] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
