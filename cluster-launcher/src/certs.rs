//! Certificates for a TLS cluster: a throwaway CA, one certificate for every node (valid for
//! `127.0.0.1` and `localhost`), one for another host (to show hostname checks fail) and one
//! client certificate, written as PEM files.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Where a TLS cluster's PEM files are, all under one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    dir: PathBuf,
}

impl TlsFiles {
    /// The files under `dir` (written by [`TlsFiles::generate`]).
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The CA certificate that signed every other certificate here.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The nodes' certificate (for `127.0.0.1` and `localhost`).
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.crt")
    }

    /// The nodes' private key.
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// A certificate from the same CA for `redis.invalid` only: a node serving it (`CONFIG SET
    /// tls-cert-file`) fails a client's hostname check but passes its chain check.
    pub fn other_host_cert(&self) -> PathBuf {
        self.dir.join("other-host.crt")
    }

    /// The private key of [`TlsFiles::other_host_cert`].
    pub fn other_host_key(&self) -> PathBuf {
        self.dir.join("other-host.key")
    }

    /// A client certificate the nodes accept, for mutual TLS.
    pub fn client_cert(&self) -> PathBuf {
        self.dir.join("client.crt")
    }

    /// The client certificate's private key.
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client.key")
    }

    /// Whether the files were written.
    pub fn exist(&self) -> bool {
        [self.ca_cert(), self.server_cert(), self.client_cert()]
            .iter()
            .all(|path| path.is_file())
    }

    /// Generates a new CA and the certificates it signs, and writes them (keys readable by the
    /// owner only).
    ///
    /// # Errors
    /// When a key cannot be generated or a file cannot be written.
    pub fn generate(&self) -> Result<()> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let ca_key = KeyPair::generate().context("generating the CA's key")?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "baseplate-rs test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).context("signing the CA")?;
        let issuer = Issuer::new(ca, ca_key);
        write(&self.ca_cert(), &ca_cert.pem())?;

        let leaves = [
            (
                "redis node",
                vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
                // Nodes are each other's clients on the cluster bus and in replication.
                vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ],
                self.server_cert(),
                self.server_key(),
            ),
            (
                "another host",
                vec!["redis.invalid".to_owned()],
                vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ],
                self.other_host_cert(),
                self.other_host_key(),
            ),
            (
                "baseplate-rs test client",
                Vec::new(),
                vec![ExtendedKeyUsagePurpose::ClientAuth],
                self.client_cert(),
                self.client_key(),
            ),
        ];
        for (name, names, usages, cert_path, key_path) in leaves {
            let key = KeyPair::generate().with_context(|| format!("generating the {name} key"))?;
            let mut params = CertificateParams::new(names)?;
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = usages;
            let cert = params
                .signed_by(&key, &issuer)
                .with_context(|| format!("signing the {name} certificate"))?;
            write(&cert_path, &cert.pem())?;
            write(&key_path, &key.serialize_pem())?;
            restrict(&key_path)?;
        }
        Ok(())
    }
}

fn write(path: &Path, pem: &str) -> Result<()> {
    fs::write(path, pem).with_context(|| format!("writing {}", path.display()))
}

#[cfg(unix)]
fn restrict(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))
}

#[cfg(not(unix))]
fn restrict(_path: &Path) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_ca_and_the_certificates_it_signs() {
        let dir = std::env::temp_dir().join(format!("xtask-certs-{}", std::process::id()));
        let files = TlsFiles::in_dir(&dir);
        assert!(!files.exist());
        files.generate().unwrap();
        assert!(files.exist());
        for (path, header) in [
            (files.ca_cert(), "-----BEGIN CERTIFICATE-----"),
            (files.server_cert(), "-----BEGIN CERTIFICATE-----"),
            (files.client_cert(), "-----BEGIN CERTIFICATE-----"),
            (files.other_host_cert(), "-----BEGIN CERTIFICATE-----"),
            (files.other_host_key(), "-----BEGIN PRIVATE KEY-----"),
            (files.server_key(), "-----BEGIN PRIVATE KEY-----"),
            (files.client_key(), "-----BEGIN PRIVATE KEY-----"),
        ] {
            let text = fs::read_to_string(&path).unwrap();
            assert!(text.starts_with(header), "{}: {text}", path.display());
        }
        fs::remove_dir_all(dir).unwrap();
    }
}
