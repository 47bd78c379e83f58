//! rustls's process-wide crypto provider: configuring a `rediss://` client keeps the one the
//! application installed first. A test binary of its own, as the provider is set once per process.
#![cfg(feature = "tls")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use baseplate_config::RawConfig;
use baseplate_redis_cluster::ClusterRedisClient;
use rustls::crypto::CryptoProvider;

#[test]
fn a_provider_the_application_installed_first_is_kept() {
    // The application's own provider, told apart from ring's default by its single cipher suite.
    let mut own = rustls::crypto::ring::default_provider();
    own.cipher_suites.truncate(1);
    let suites = own.cipher_suites.clone();
    assert!(rustls::crypto::ring::default_provider().cipher_suites.len() > 1);
    own.install_default().unwrap();
    let installed = Arc::clone(CryptoProvider::get_default().unwrap());

    let config: RawConfig = [("foo.url", "rediss://127.0.0.1:1")].into_iter().collect();
    let _factory = ClusterRedisClient::new().parse("foo", &config).unwrap();

    let after = CryptoProvider::get_default().unwrap();
    assert!(Arc::ptr_eq(after, &installed), "the provider was replaced");
    let names =
        |s: &[rustls::SupportedCipherSuite]| s.iter().map(|s| s.suite()).collect::<Vec<_>>();
    assert_eq!(names(&after.cipher_suites), names(&suites));
}
