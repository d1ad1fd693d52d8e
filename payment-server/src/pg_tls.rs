//! TLS to PostgreSQL, said in the database URL the way libpq says it.
//!
//! - `sslmode=require`, `verify-ca` or `verify-full` turns TLS on; `disable`,
//!   `prefer` or no `sslmode` leaves it off (a database on loopback or a
//!   private socket, as the tests and the demo have).
//! - `sslrootcert=FILE` (PEM) is the only CA trusted for it; without it, the
//!   system's roots.
//!
//! Unlike libpq's `require`, the server's certificate is always verified,
//! chain and host name (libpq's `verify-full`): a payment server must not
//! hand captures to a database it has not authenticated, and there is no
//! switch to turn that off. `tokio-postgres` knows neither `sslrootcert` nor
//! the `verify-*` modes, so they are taken out of the URL here and the rest
//! is its to parse. Used by the payment store's pool and by the clearing
//! database (both on `tokio-postgres`).

use std::path::PathBuf;

use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// Where to connect and how.
pub struct PgTarget {
    pub config: tokio_postgres::Config,
    /// `Some` when the URL asks for TLS.
    pub tls: Option<MakeRustlsConnect>,
}

/// Why a database URL cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PgUrlError {
    #[error("database URL {url}: {problem}")]
    Url { url: String, problem: String },
    #[error("database URL {url}: TLS: {source}")]
    Tls {
        url: String,
        source: Box<cardpay_tls::TlsError>,
    },
}

/// The connection config and, if the URL asks for it, the TLS connector.
pub fn target(url: &str) -> Result<PgTarget, PgUrlError> {
    let shown = crate::config::redact_password(url);
    let bad = |problem: String| PgUrlError::Url {
        url: shown.clone(),
        problem,
    };
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut kept = Vec::new();
    let mut root: Option<PathBuf> = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslrootcert", file)) if !file.is_empty() => root = Some(file.into()),
            Some(("sslrootcert", _)) => return Err(bad("sslrootcert names no file".into())),
            // Verified either way: see the module's doc.
            Some(("sslmode", "verify-ca" | "verify-full")) => kept.push("sslmode=require"),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let config: tokio_postgres::Config = rest.parse().map_err(|e| bad(format!("{e}")))?;
    let tls = match config.get_ssl_mode() {
        SslMode::Require => {
            let client =
                cardpay_tls::client_config(root.as_deref()).map_err(|source| PgUrlError::Tls {
                    url: shown.clone(),
                    source: Box::new(source),
                })?;
            Some(MakeRustlsConnect::new(client))
        }
        _ if root.is_some() => {
            return Err(bad(
                "sslrootcert without sslmode=require (or verify-full) would be ignored".into(),
            ))
        }
        _ => None,
    };
    Ok(PgTarget { config, tls })
}

/// Connect one client (its connection driven by a task of its own, on the
/// current runtime), over TLS when the target says so.
pub async fn connect(t: PgTarget) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    fn drive<F>(conn: F)
    where
        F: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
    {
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::warn!(error = %e, "database connection closed");
            }
        });
    }
    match t.tls {
        Some(tls) => {
            let (client, conn) = t.config.connect(tls).await?;
            drive(conn);
            Ok(client)
        }
        None => {
            let (client, conn) = t.config.connect(tokio_postgres::NoTls).await?;
            drive(conn);
            Ok(client)
        }
    }
}

/// A driver error with its causes: `tokio-postgres` keeps the reason (the
/// certificate refused, the connection reset) in the error's source.
pub fn describe(e: &tokio_postgres::Error) -> String {
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_tls_unless_the_url_asks() {
        for url in [
            "postgres://u@h/db",
            "postgres://u@h/db?sslmode=disable",
            "postgres://u@h/db?sslmode=prefer&connect_timeout=5",
        ] {
            assert!(target(url).unwrap().tls.is_none(), "{url}");
        }
    }

    #[test]
    fn libpq_words_are_taken_out_and_every_tls_mode_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let ca = cardpay_tls::test_ca::TestCa::new(dir.path(), "pg test CA");
        let file = ca.ca_file.display().to_string();
        for mode in ["require", "verify-ca", "verify-full"] {
            let url = format!(
                "postgres://u:pw@h:5433/db?sslmode={mode}&sslrootcert={file}&application_name=x"
            );
            let t = target(&url).unwrap();
            assert!(t.tls.is_some(), "{mode}");
            assert_eq!(t.config.get_ssl_mode(), SslMode::Require);
            assert_eq!(t.config.get_application_name(), Some("x"));
            assert_eq!(t.config.get_ports(), &[5433]);
        }
    }

    #[test]
    fn a_ca_that_cannot_be_used_is_a_clear_error_without_the_password() {
        let err =
            target("postgres://u:secret@h/db?sslmode=require&sslrootcert=/nonexistent/ca.pem")
                .err()
                .unwrap()
                .to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        let err = target("postgres://u@h/db?sslrootcert=/etc/ca.pem")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("without sslmode=require"), "{err}");
        assert!(target("postgres://u@h/db?sslrootcert=&sslmode=require").is_err());
        assert!(target("postgres://u@h/db?sslmode=sometimes").is_err());
    }
}
