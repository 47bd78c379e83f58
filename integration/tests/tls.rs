//! `rediss://` against a real TLS cluster: certificates checked against `ssl_ca_certs`, refused
//! without it, hostnames checked unless `ssl_check_hostname = false`, no verification with
//! `ssl_cert_reqs = none`, client certificates for nodes that require them, and subscribers
//! connecting with the same settings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use baseplate_config::RawConfig;
use baseplate_redis_cluster::{ClusterRedisClient, MonitoredClusterRedisConnection};
use cluster_launcher::redis_cli;
use integration::{tls_cluster, unique_prefix};
use redis::AsyncCommands as _;
use tokio::sync::RwLock;

/// Tests that change the nodes' TLS settings (`CONFIG SET`) hold this exclusively; the others
/// share it, so none connects while the settings are changed.
static NODE_SETTINGS: RwLock<()> = RwLock::const_new(());

fn path(p: std::path::PathBuf) -> String {
    p.to_string_lossy().into_owned()
}

/// A monitored connection to the TLS cluster, configured with `extra` keys. It reads from
/// primaries unless `extra` says otherwise, so that a read right after a write sees it.
fn connection(extra: &[(&str, String)]) -> MonitoredClusterRedisConnection {
    let cluster = tls_cluster();
    let mut config: RawConfig = [
        ("foo.url", cluster.url()),
        ("foo.timeout", "2 seconds".into()),
        ("foo.read_from_replicas", "false".into()),
    ]
    .into_iter()
    .collect();
    for (key, value) in extra {
        config.insert(*key, value.clone());
    }
    ClusterRedisClient::new()
        .parse("foo", &config)
        .expect("a valid TLS config")
        .make_object_for_context("foo", &tracing::Span::none())
}

fn ca() -> (&'static str, String) {
    (
        "foo.ssl_ca_certs",
        path(tls_cluster().spec().tls_files().ca_cert()),
    )
}

/// GETs served so far by the cluster's replicas (their `INFO commandstats`, read over the plain
/// ports).
fn replica_gets() -> u64 {
    tls_cluster()
        .spec()
        .ports()
        .into_iter()
        .filter(|&port| {
            let replication = redis_cli(port, &["INFO", "replication"]).unwrap();
            cluster_launcher::info_field(&replication, "role") == Some("slave")
        })
        .map(|port| {
            let stats = redis_cli(port, &["INFO", "commandstats"]).unwrap();
            cluster_launcher::info_field(&stats, "cmdstat_get")
                .and_then(|s| s.strip_prefix("calls="))
                .and_then(|s| s.split(',').next())
                .map_or(0, |calls| calls.parse().unwrap())
        })
        .sum()
}

/// Writes and reads back keys in every primary's slots; the keys' count.
async fn round_trip(foo: &mut MonitoredClusterRedisConnection, test: &str) -> usize {
    let prefix = unique_prefix(test);
    let keys: Vec<String> = (0..30).map(|i| format!("{prefix}{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        let () = foo.set(key, i).await.unwrap();
    }
    let mut pipe = foo.pipeline("read_back");
    for key in &keys {
        pipe.get(key);
    }
    let values: Vec<usize> = pipe.query_async().await.unwrap();
    assert_eq!(values, (0..30).collect::<Vec<_>>());
    for key in &keys {
        let () = foo.del(key).await.unwrap();
    }
    keys.len()
}

/// The error of a first command, and how long it took to come.
async fn first_command_error(extra: &[(&str, String)]) -> (String, Duration) {
    let mut foo = connection(extra);
    let started = Instant::now();
    let error = foo.get::<_, Option<String>>("k").await.unwrap_err();
    (format!("{error}"), started.elapsed())
}

/// Sets TLS settings on every node for as long as it lives, and restores them when dropped,
/// even when a test fails.
struct NodeSettings(Vec<(&'static str, String)>);

impl NodeSettings {
    fn set(changes: &[(&'static str, String)], restore: &[(&'static str, String)]) -> Self {
        let guard = NodeSettings(restore.to_vec());
        config_set_all(changes);
        guard
    }
}

impl Drop for NodeSettings {
    fn drop(&mut self) {
        config_set_all(&self.0);
    }
}

/// `CONFIG SET` of all `settings` at once (a certificate and its key must change together) on
/// every node, through its plain port.
fn config_set_all(settings: &[(&'static str, String)]) {
    let mut args = vec!["CONFIG", "SET"];
    for (name, value) in settings {
        args.push(name);
        args.push(value);
    }
    for port in tls_cluster().spec().ports() {
        let reply = redis_cli(port, &args).unwrap();
        assert_eq!(reply.trim(), "OK", "CONFIG SET on node {port}: {reply}");
    }
}

#[tokio::test]
async fn a_rediss_client_trusts_nodes_signed_by_ssl_ca_certs_and_reads_from_replicas() {
    let _shared = NODE_SETTINGS.read().await;
    let mut foo = connection(&[ca()]);
    assert_eq!(round_trip(&mut foo, "tls-ca").await, 30);

    // Reads may go to replicas, which the client reaches at the TLS ports CLUSTER SLOTS gives it.
    let mut foo = connection(&[ca(), ("foo.read_from_replicas", "true".into())]);
    let prefix = unique_prefix("tls-replicas");
    let () = foo.set(format!("{prefix}k"), "v").await.unwrap();
    let before = replica_gets();
    for _ in 0..60 {
        let value: Option<String> = foo.get(format!("{prefix}k")).await.unwrap();
        assert!(value.is_none_or(|v| v == "v"));
    }
    assert!(replica_gets() > before, "no replica served a GET over TLS");
}

#[tokio::test]
async fn the_tls_settings_may_come_from_the_url_as_in_redis_py() {
    let _shared = NODE_SETTINGS.read().await;
    let url = format!(
        "{}/0?ssl_ca_certs={}&ssl_cert_reqs=required",
        tls_cluster().url(),
        path(tls_cluster().spec().tls_files().ca_cert())
    );
    let mut foo = connection(&[("foo.url", url)]);
    assert_eq!(round_trip(&mut foo, "tls-url").await, 30);
}

#[tokio::test]
async fn without_the_ca_the_nodes_are_not_trusted_and_the_error_says_so_at_once() {
    let _shared = NODE_SETTINGS.read().await;
    let (error, took) = first_command_error(&[]).await;
    assert!(
        error.contains("invalid peer certificate: UnknownIssuer"),
        "{error}"
    );
    // A refusal, not a timeout: the client's `timeout` is 2 seconds.
    assert!(took < Duration::from_secs(1), "took {took:?}: {error}");
}

#[tokio::test]
async fn ssl_cert_reqs_none_encrypts_without_verifying() {
    let _shared = NODE_SETTINGS.read().await;
    let mut foo = connection(&[("foo.ssl_cert_reqs", "none".into())]);
    assert_eq!(round_trip(&mut foo, "tls-none").await, 30);
}

#[tokio::test]
async fn a_certificate_for_another_host_fails_unless_ssl_check_hostname_is_false() {
    let _exclusive = NODE_SETTINGS.write().await;
    let files = tls_cluster().spec().tls_files();
    let _other_host = NodeSettings::set(
        &[
            ("tls-cert-file", path(files.other_host_cert())),
            ("tls-key-file", path(files.other_host_key())),
        ],
        &[
            ("tls-cert-file", path(files.server_cert())),
            ("tls-key-file", path(files.server_key())),
        ],
    );

    let (error, _) = first_command_error(&[ca()]).await;
    assert!(
        error.contains("invalid peer certificate") && error.contains("redis.invalid"),
        "{error}"
    );
    let mut foo = connection(&[ca(), ("foo.ssl_check_hostname", "false".into())]);
    assert_eq!(round_trip(&mut foo, "tls-hostname").await, 30);
}

#[tokio::test]
async fn nodes_that_require_client_certificates_get_ssl_certfile() {
    let _exclusive = NODE_SETTINGS.write().await;
    let files = tls_cluster().spec().tls_files();
    let _required = NodeSettings::set(
        &[("tls-auth-clients", "yes".into())],
        &[("tls-auth-clients", "optional".into())],
    );

    let (error, _) = first_command_error(&[ca()]).await;
    assert!(
        error.contains("received fatal alert: CertificateRequired"),
        "{error}"
    );

    let mut foo = connection(&[
        ca(),
        ("foo.ssl_certfile", path(files.client_cert())),
        ("foo.ssl_keyfile", path(files.client_key())),
    ]);
    assert_eq!(round_trip(&mut foo, "tls-client-cert").await, 30);

    // As in redis-py, the key may be in the certificate's file.
    let both = std::env::temp_dir().join(format!("baseplate-rs-client-{}.pem", std::process::id()));
    let pem = std::fs::read_to_string(files.client_cert()).unwrap()
        + &std::fs::read_to_string(files.client_key()).unwrap();
    std::fs::write(&both, pem).unwrap();
    let mut foo = connection(&[ca(), ("foo.ssl_certfile", path(both.clone()))]);
    assert_eq!(round_trip(&mut foo, "tls-client-cert-combined").await, 30);
    std::fs::remove_file(both).unwrap();
}

#[tokio::test]
async fn unreadable_or_malformed_certificate_files_fail_configuration_naming_the_key() {
    let files = tls_cluster().spec().tls_files();
    let not_pem = std::env::temp_dir().join(format!("baseplate-rs-not-pem-{}", std::process::id()));
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let not_pem = path(not_pem);
    let cases = [
        (
            vec![("foo.ssl_ca_certs", "/nonexistent/ca.pem".to_owned())],
            "foo.ssl_ca_certs: cannot read /nonexistent/ca.pem: No such file or directory (os error 2)"
                .to_owned(),
        ),
        (
            vec![("foo.ssl_ca_certs", not_pem.clone())],
            format!("foo.ssl_ca_certs: {not_pem} holds no PEM certificate"),
        ),
        (
            vec![
                ("foo.ssl_certfile", path(files.client_cert())),
                ("foo.ssl_keyfile", not_pem.clone()),
            ],
            format!("foo.ssl_keyfile: {not_pem}: no PEM private key (no items found)"),
        ),
        (
            // The key's file given as the certificate's.
            vec![("foo.ssl_certfile", path(files.client_key()))],
            format!(
                "foo.ssl_certfile: {} holds no PEM certificate",
                path(files.client_key())
            ),
        ),
    ];
    let bad_der = std::env::temp_dir().join(format!("baseplate-rs-bad-der-{}", std::process::id()));
    std::fs::write(
        &bad_der,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let bad_der = path(bad_der);
    let cases = cases.into_iter().chain([
        (
            vec![("foo.ssl_ca_certs", bad_der.clone())],
            format!("foo.ssl_ca_certs: {bad_der}: not a usable CA certificate ("),
        ),
        (
            // A key of another certificate.
            vec![
                ("foo.ssl_certfile", path(files.client_cert())),
                ("foo.ssl_keyfile", path(files.other_host_key())),
            ],
            format!(
                "foo.ssl_keyfile: {}: not a usable key for {} (",
                path(files.other_host_key()),
                path(files.client_cert())
            ),
        ),
    ]);
    for (extra, expected) in cases {
        let mut config: RawConfig = [("foo.url", tls_cluster().url())].into_iter().collect();
        for (key, value) in &extra {
            config.insert(*key, value.clone());
        }
        let error = ClusterRedisClient::new()
            .parse("foo", &config)
            .unwrap_err()
            .to_string();
        // The last two end with rustls's own words.
        if expected.ends_with('(') {
            assert!(error.starts_with(&expected), "{extra:?}: {error}");
        } else {
            assert_eq!(error, expected, "{extra:?}");
        }
    }
    std::fs::remove_file(not_pem).unwrap();
    std::fs::remove_file(bad_der).unwrap();
}

#[tokio::test]
async fn subscribers_connect_with_the_clients_tls_settings() {
    use futures_util::StreamExt as _;

    let _shared = NODE_SETTINGS.read().await;
    let channel = format!("{}news", unique_prefix("tls-pubsub"));
    let mut foo = connection(&[ca()]);
    let mut subscriber = foo.subscriber().await.unwrap();
    subscriber.subscribe(&channel).await.unwrap();
    subscriber.ssubscribe(&channel).await.unwrap();
    let _: i64 = foo.publish(&channel, "classic").await.unwrap();
    let _: i64 = foo.spublish(&channel, "sharded").await.unwrap();
    let mut payloads = Vec::new();
    for _ in 0..2 {
        let message = tokio::time::timeout(Duration::from_secs(10), subscriber.next())
            .await
            .expect("a message within 10 s")
            .expect("the subscriber's stream goes on");
        payloads.push(String::from_utf8_lossy(message.get_payload_bytes()).into_owned());
    }
    payloads.sort();
    assert_eq!(payloads, ["classic", "sharded"]);

    // Without the CA the subscriber is refused as commands are, naming the client.
    let error = connection(&[]).subscriber().await.unwrap_err().to_string();
    assert!(error.contains("redis cluster client \"foo\""), "{error}");
    assert!(error.contains("UnknownIssuer"), "{error}");
}
