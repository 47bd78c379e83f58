//! TLS for `rediss://` seeds: the options (redis-py's `ssl_*` names, which baseplate.py passes
//! through) and how they become redis-rs's TLS settings. Where the options come from (code,
//! config keys, the URL's query) is `config/tls_options.rs`'s.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// How a `rediss://` client speaks TLS, from the `ssl_*` keys (or the same names as query
/// parameters of the URL, where redis-py reads them).
///
/// The defaults verify every node's certificate against the system's roots and check that it
/// names the host it was reached at. Turning either check off (`ssl_cert_reqs = none`,
/// `ssl_check_hostname = false`) needs the `tls-insecure` cargo feature; without it the config
/// is refused at start-up, naming the key.
///
/// rustls needs a process-wide crypto provider: when a `rediss://` client is configured and the
/// process has none, ring's is installed (and logged at `debug` level). An application that wants
/// another one installs it before configuring its clients, and it is kept.
///
/// ```
/// use std::path::Path;
/// use baseplate_config::RawConfig;
/// use baseplate_redis_cluster::{CertReqs, ClusterRedisClient};
///
/// let config: RawConfig = [
///     ("foo.url", "rediss://10.0.0.1:6379/0?ssl_cert_reqs=required"),
///     ("foo.ssl_ca_certs", "/etc/redis/ca.pem"),
/// ]
/// .into_iter()
/// .collect();
/// let options = ClusterRedisClient::new()
///     .ssl_certfile("/etc/redis/client.pem")
///     .options_from_config(&config, "foo.")?;
/// let tls = options.tls.expect("rediss:// seeds");
/// assert_eq!(tls.ca_certs.as_deref(), Some(Path::new("/etc/redis/ca.pem")));
/// assert_eq!(tls.certfile.as_deref(), Some(Path::new("/etc/redis/client.pem")));
/// assert_eq!(tls.cert_reqs, CertReqs::Required);
/// assert!(tls.check_hostname);
/// # Ok::<(), baseplate_redis_cluster::ClusterConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsOptions {
    /// PEM file of the CA certificates that sign the nodes' certificates (`ssl_ca_certs`);
    /// `None` trusts the system's roots.
    pub ca_certs: Option<PathBuf>,
    /// PEM file of a client certificate, for nodes that require one (`ssl_certfile`).
    pub certfile: Option<PathBuf>,
    /// PEM file of the client certificate's key (`ssl_keyfile`); `None` reads it from `certfile`.
    pub keyfile: Option<PathBuf>,
    /// Whether the nodes' certificates are verified (`ssl_cert_reqs`); `none` needs the
    /// `tls-insecure` feature.
    pub cert_reqs: CertReqs,
    /// Whether a node's certificate must name the host it was reached at (`ssl_check_hostname`).
    /// Cluster nodes are reached at the addresses `CLUSTER SLOTS` gives, usually IPs, so their
    /// certificates need those IPs among their names unless this is off, which needs the
    /// `tls-insecure` feature.
    pub check_hostname: bool,
}

impl Default for TlsOptions {
    fn default() -> Self {
        Self {
            ca_certs: None,
            certfile: None,
            keyfile: None,
            cert_reqs: CertReqs::Required,
            check_hostname: true,
        }
    }
}

/// `ssl_cert_reqs`: whether the nodes' certificates are verified, in redis-py's words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertReqs {
    /// Verify them (the default).
    #[default]
    Required,
    /// As `Required`: a server always presents a certificate, so for a client the two are one.
    Optional,
    /// Do not verify them: the connection is encrypted but anyone can pose as the cluster. Only
    /// with the `tls-insecure` feature; without it this is a config error.
    None,
}

impl FromStr for CertReqs {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "required" => Ok(Self::Required),
            "optional" => Ok(Self::Optional),
            "none" => Ok(Self::None),
            _ => Err("expected required, optional or none".to_owned()),
        }
    }
}

impl<'de> Deserialize<'de> for CertReqs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for CertReqs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Required => "required",
            Self::Optional => "optional",
            Self::None => "none",
        })
    }
}

#[cfg(feature = "tls")]
pub(crate) use build::configure;

/// A TLS file that cannot be used: the option that names it and why, naming the file.
#[cfg(feature = "tls")]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{option}: {reason}")]
#[non_exhaustive]
pub struct TlsFileError {
    /// The option, in redis-py's words: `ssl_ca_certs`, `ssl_certfile` or `ssl_keyfile`.
    pub option: &'static str,
    /// What is wrong with the file: `cannot read /etc/redis/ca.pem: ...`.
    pub reason: String,
}

#[cfg(feature = "tls")]
mod build {
    use std::fs;
    use std::path::Path;

    use redis::TlsMode;
    use redis::cluster::ClusterClientBuilder;
    use redis::{ClientTlsConfig, TlsCertificates};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use rustls::{ClientConfig, RootCertStore};

    #[cfg(feature = "tls-insecure")]
    use super::CertReqs;
    use super::{TlsFileError, TlsOptions};
    use crate::error::ClusterConfigError;

    /// Applies `tls` to `builder`, as [`TlsOptions::apply`] does; a missing or malformed file
    /// fails configuration, naming its key (`{name}.ssl_ca_certs`).
    pub(crate) fn configure(
        builder: ClusterClientBuilder,
        tls: &TlsOptions,
        name: &str,
    ) -> Result<ClusterClientBuilder, ClusterConfigError> {
        tls.apply(builder).map_err(
            |TlsFileError { option, reason }| ClusterConfigError::Invalid {
                key: format!("{name}.{option}"),
                reason,
            },
        )
    }

    impl TlsOptions {
        /// Hands these options to a redis-rs cluster client builder for `rediss://` seeds,
        /// reading and checking the PEM files now, as rustls will use them, so that a missing or
        /// malformed file is reported before any connection, naming its option. Installs ring's
        /// crypto provider when the process has none (see [`TlsOptions`]).
        ///
        /// ```
        /// use baseplate_redis_cluster::TlsOptions;
        ///
        /// let mut tls = TlsOptions::default();
        /// tls.ca_certs = Some("/nonexistent/ca.pem".into());
        /// let builder = redis::cluster::ClusterClient::builder(["rediss://127.0.0.1:7000"]);
        /// let error = tls.apply(builder).unwrap_err();
        /// assert_eq!(error.option, "ssl_ca_certs");
        /// assert!(error.to_string().starts_with("ssl_ca_certs: cannot read /nonexistent/ca.pem: "));
        /// ```
        ///
        /// # Errors
        /// A [`TlsFileError`] naming the option whose file cannot be read or used.
        pub fn apply(
            &self,
            mut builder: ClusterClientBuilder,
        ) -> Result<ClusterClientBuilder, TlsFileError> {
            install_crypto_provider_if_none();

            let invalid = |option: &'static str, reason: String| TlsFileError { option, reason };
            let read = |key: &'static str, path: &Path| {
                fs::read(path)
                    .map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display())))
            };
            let certificates = |key: &'static str, path: &Path| {
                let pem = read(key, path)?;
                let certs = CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| {
                        invalid(
                            key,
                            format!("{}: not PEM certificates ({e})", path.display()),
                        )
                    })?;
                if certs.is_empty() {
                    return Err(invalid(
                        key,
                        format!("{} holds no PEM certificate", path.display()),
                    ));
                }
                Ok((pem, certs))
            };

            // The files are checked here as rustls will use them, so that a bad one is reported
            // under its own key; redis-rs gets the PEM bytes and parses them again.
            let root_cert = match self.ca_certs.as_deref() {
                None => None,
                Some(path) => {
                    let (pem, certs) = certificates("ssl_ca_certs", path)?;
                    let mut roots = RootCertStore::empty();
                    for cert in certs {
                        roots.add(cert).map_err(|e| {
                            invalid(
                                "ssl_ca_certs",
                                format!("{}: not a usable CA certificate ({e})", path.display()),
                            )
                        })?;
                    }
                    Some(pem)
                }
            };
            let client_tls = match &self.certfile {
                None => None,
                Some(certfile) => {
                    let (client_cert, certs) = certificates("ssl_certfile", certfile)?;
                    let (key, keyfile) = match &self.keyfile {
                        Some(keyfile) => ("ssl_keyfile", keyfile),
                        None => ("ssl_certfile", certfile),
                    };
                    let client_key = read(key, keyfile)?;
                    let private_key = PrivateKeyDer::from_pem_slice(&client_key).map_err(|e| {
                        invalid(
                            key,
                            format!("{}: no PEM private key ({e})", keyfile.display()),
                        )
                    })?;
                    ClientConfig::builder()
                        .with_root_certificates(RootCertStore::empty())
                        .with_client_auth_cert(certs, private_key)
                        .map_err(|e| {
                            invalid(
                                key,
                                format!(
                                    "{}: not a usable key for {} ({e})",
                                    keyfile.display(),
                                    certfile.display()
                                ),
                            )
                        })?;
                    Some(ClientTlsConfig {
                        client_cert,
                        client_key,
                    })
                }
            };
            if root_cert.is_some() || client_tls.is_some() {
                builder = builder.certs(TlsCertificates {
                    client_tls,
                    root_cert,
                });
            }
            // Without `tls-insecure` the config refused `none` and `ssl_check_hostname = false`
            // already (see `config::tls_options::insecure_needs_the_feature`), so this build is
            // always secure.
            #[cfg(feature = "tls-insecure")]
            let builder = {
                let mode = match self.cert_reqs {
                    CertReqs::Required | CertReqs::Optional => TlsMode::Secure,
                    CertReqs::None => TlsMode::Insecure,
                };
                builder
                    .tls(mode)
                    .danger_accept_invalid_hostnames(!self.check_hostname)
            };
            #[cfg(not(feature = "tls-insecure"))]
            let builder = builder.tls(TlsMode::Secure);
            Ok(builder)
        }
    }

    /// Makes sure rustls has its process-wide crypto provider, which redis-rs's TLS connections
    /// use: when the process has none yet, this installs ring's (the one this crate compiles
    /// in), and logs that at `debug` level; a provider the application installed first (aws-lc-rs,
    /// a FIPS build) is kept as it is. rustls cannot pick a provider by itself when several are
    /// compiled in (another crate may enable aws-lc-rs), and would then panic on the first
    /// connection; doing it here makes a `rediss://` client work whatever else the service links.
    pub(crate) fn install_crypto_provider_if_none() {
        if rustls::crypto::CryptoProvider::get_default().is_some() {
            return;
        }
        // Another thread may install one between the check and here: then its provider stays,
        // which is as good.
        if rustls::crypto::ring::default_provider()
            .install_default()
            .is_ok()
        {
            tracing::debug!(
                "no rustls crypto provider was installed: installed ring's as the process default"
            );
        }
    }
}
