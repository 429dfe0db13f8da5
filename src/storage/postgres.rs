//! Connecting to PostgreSQL, with TLS as the URL's `sslmode` asks:
//!
//! - `disable`, `prefer` or none: no TLS (`prefer` cannot both verify and fall back, so it
//!   is taken as `disable`);
//! - `require`: TLS; the server's signatures are checked, its certificate is not
//!   (libpq's meaning: encrypted, not authenticated);
//! - `verify-full` (or `verify-ca`): TLS with the certificate verified against the
//!   system's trusted roots, or the PEM file named by `sslrootcert`, host name included.

use std::path::PathBuf;
use std::sync::Arc;

use diesel::ConnectionError;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

#[derive(Debug, Clone, PartialEq, Eq)]
enum SslMode {
    Disable,
    Require,
    VerifyFull { root_cert: Option<PathBuf> },
}

/// How to reach one PostgreSQL database: the URL without the TLS parameters, and the TLS to use.
#[derive(Clone)]
pub struct PgConnector {
    url: String,
    tls: Option<Arc<ClientConfig>>,
}

impl PgConnector {
    /// Reads the URL's `sslmode` and `sslrootcert`; an unknown mode or an unreadable root
    /// certificate is an error that says which.
    pub fn from_url(url: &str) -> Result<Self, String> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut mode = None;
        let mut root_cert = None;
        let mut rest = Vec::new();
        for param in query.split('&').filter(|p| !p.is_empty()) {
            match param.split_once('=') {
                Some(("sslmode", v)) => mode = Some(v.to_string()),
                Some(("sslrootcert", v)) => root_cert = Some(PathBuf::from(v)),
                _ => rest.push(param),
            }
        }
        let mode = match mode.as_deref() {
            None | Some("disable") | Some("prefer") | Some("allow") => SslMode::Disable,
            Some("require") => SslMode::Require,
            Some("verify-ca") | Some("verify-full") => SslMode::VerifyFull { root_cert },
            Some(other) => {
                return Err(format!(
                    "sslmode={other} is not known: use disable, prefer, require, verify-ca or verify-full"
                ));
            }
        };
        let tls = match &mode {
            SslMode::Disable => None,
            mode => Some(Arc::new(client_config(mode)?)),
        };
        // tokio-postgres must insist on TLS when we ask for it, never fall back to plain text.
        rest.push(if tls.is_some() {
            "sslmode=require"
        } else {
            "sslmode=disable"
        });
        Ok(Self {
            url: format!("{base}?{}", rest.join("&")),
            tls,
        })
    }

    pub async fn connect(&self) -> Result<AsyncPgConnection, ConnectionError> {
        let Some(tls) = &self.tls else {
            return AsyncPgConnection::establish(&self.url).await;
        };
        let (client, connection) =
            tokio_postgres::connect(&self.url, MakeRustlsConnect::new((**tls).clone()))
                .await
                .map_err(|e| ConnectionError::BadConnection(describe(&e)))?;
        AsyncPgConnection::try_from_client_and_connection(client, connection).await
    }
}

/// tokio-postgres's own message for a TLS failure is terse; its cause says what went wrong.
fn describe(e: &tokio_postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn client_config(mode: &SslMode) -> Result<ClientConfig, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = match mode {
        SslMode::Disable => unreachable!("no TLS configuration without TLS"),
        SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider())))
            .with_no_client_auth(),
        SslMode::VerifyFull { root_cert } => builder
            .with_root_certificates(roots(root_cert.as_ref())?)
            .with_no_client_auth(),
    };
    Ok(config)
}

fn roots(root_cert: Option<&PathBuf>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match root_cert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("cannot read sslrootcert {}: {e}", path.display()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "sslrootcert {} holds no usable certificate",
                    path.display()
                ));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            if roots.is_empty() {
                return Err(
                    "no trusted root certificates found on this system (install ca-certificates, \
                            or name one with sslrootcert=PATH)"
                        .into(),
                );
            }
        }
    }
    Ok(roots)
}

/// `sslmode=require`: any certificate is accepted, signatures are still checked.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_parameters_are_taken_out_of_the_url() {
        let c =
            PgConnector::from_url("postgres://u:p@h:5432/db?application_name=x&sslmode=require")
                .unwrap();
        assert_eq!(
            c.url,
            "postgres://u:p@h:5432/db?application_name=x&sslmode=require"
        );
        assert!(c.tls.is_some());
        let c = PgConnector::from_url("postgres://u@h/db").unwrap();
        assert_eq!(c.url, "postgres://u@h/db?sslmode=disable");
        assert!(c.tls.is_none());
        assert!(
            PgConnector::from_url("postgres://u@h/db?sslmode=prefer")
                .unwrap()
                .tls
                .is_none()
        );
    }

    #[test]
    fn bad_ssl_settings_say_what_is_wrong() {
        let e = PgConnector::from_url("postgres://h/db?sslmode=sometimes")
            .err()
            .unwrap();
        assert!(
            e.contains("sslmode=sometimes") && e.contains("verify-full"),
            "{e}"
        );
        let e =
            PgConnector::from_url("postgres://h/db?sslmode=verify-full&sslrootcert=/no/such.pem")
                .err()
                .unwrap();
        assert!(e.contains("/no/such.pem"), "{e}");
    }
}
