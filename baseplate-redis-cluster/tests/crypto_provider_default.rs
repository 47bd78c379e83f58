//! rustls's process-wide crypto provider: configuring a `rediss://` client in a process that has
//! none installs ring's, so the first connection does not depend on what else the service links.
//! A test binary of its own, as the provider is set once per process.
#![cfg(feature = "tls")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use baseplate_config::RawConfig;
use baseplate_redis_cluster::ClusterRedisClient;
use rustls::crypto::CryptoProvider;

#[test]
fn without_a_provider_configuring_a_rediss_client_installs_rings() {
    assert!(CryptoProvider::get_default().is_none());
    let plain: RawConfig = [("foo.url", "redis://127.0.0.1:1")].into_iter().collect();
    let _plain = ClusterRedisClient::new().parse("foo", &plain).unwrap();
    assert!(
        CryptoProvider::get_default().is_none(),
        "a redis:// client needs no provider"
    );

    let config: RawConfig = [("foo.url", "rediss://127.0.0.1:1")].into_iter().collect();
    let _factory = ClusterRedisClient::new().parse("foo", &config).unwrap();
    let installed =
        CryptoProvider::get_default().expect("a provider once a rediss:// client is configured");
    let suites = |p: &CryptoProvider| {
        p.cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        suites(installed),
        suites(&rustls::crypto::ring::default_provider())
    );
}
