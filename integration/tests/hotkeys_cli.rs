//! The `baseplate-hotkeys` command (the `baseplate-hotkeys-cli` crate, run in process through its
//! library) against a real TLS cluster and its plain ports: the report, `--ssl-ca-certs`, and the
//! errors a user sees.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use baseplate_hotkeys_cli::{Cli, run};
use clap::Parser as _;
use cluster_launcher::{Cluster, redis_cli};
use integration::tls_cluster;

/// The TLS cluster, with a few keys in the reads set, written once for the binary's tests.
fn cluster() -> &'static Cluster {
    static WRITTEN: OnceLock<()> = OnceLock::new();
    let cluster = tls_cluster();
    WRITTEN.get_or_init(|| {
        // The set's slot may be on any primary: ask each until one takes the writes.
        let written = cluster.spec().ports().into_iter().any(|port| {
            ["user:1", "user:1", "user:2"].iter().all(|key| {
                redis_cli(
                    port,
                    &["ZINCRBY", "baseplate-hot-key-tracker-reads", "1", key],
                )
                .is_ok_and(|reply| !reply.starts_with("MOVED") && !reply.is_empty())
            })
        });
        assert!(written, "no primary took the tracker set");
    });
    cluster
}

/// `baseplate-hotkeys top ARGS --json --timeout-secs 3`: what it prints, or its error message.
async fn top(args: &[&str]) -> Result<String, String> {
    let cli = Cli::try_parse_from(["baseplate-hotkeys", "top"].iter().chain(args).chain(&[
        "--json",
        "--timeout-secs",
        "3",
    ]))
    .unwrap();
    run(cli).await.map_err(|e| e.to_string())
}

#[tokio::test]
async fn rediss_with_the_clusters_ca_lists_the_hot_keys() {
    let cluster = cluster();
    let ca = cluster.spec().tls_files().ca_cert();
    let output = top(&[
        "--url",
        &cluster.url(),
        "--ssl-ca-certs",
        ca.to_str().unwrap(),
    ])
    .await
    .unwrap();
    let report: serde_json::Value = serde_json::from_str(&output).unwrap();
    let reads = &report["reads"]["keys"];
    assert_eq!(reads[0]["key"], "user:1", "{report}");
    assert_eq!(reads[0]["score"], 2.0, "{report}");
    assert_eq!(reads[1]["key"], "user:2", "{report}");
    assert_eq!(reads.as_array().map(Vec::len), Some(2), "{report}");

    // The same cluster over its plain ports.
    let plain = format!("redis://127.0.0.1:{}", cluster.spec().base_port);
    let output = top(&["--url", &plain]).await.unwrap();
    let again: serde_json::Value = serde_json::from_str(&output).unwrap();
    assert_eq!(again["reads"], report["reads"]);
}

#[tokio::test]
async fn without_the_ca_or_with_a_missing_file_the_error_says_why() {
    let cluster = cluster();
    let error = top(&["--url", &cluster.url()]).await.unwrap_err();
    assert!(
        error.contains("invalid peer certificate: UnknownIssuer"),
        "{error}"
    );

    let error = top(&[
        "--url",
        &cluster.url(),
        "--ssl-ca-certs",
        "/nonexistent/ca.pem",
    ])
    .await
    .unwrap_err();
    assert_eq!(
        error,
        "--ssl-ca-certs: cannot read /nonexistent/ca.pem: No such file or directory (os error 2)"
    );

    // TLS options with a plain URL are refused at once, not after a TLS handshake times out.
    let plain = format!("redis://127.0.0.1:{}", cluster.spec().base_port);
    let ca = cluster.spec().tls_files().ca_cert();
    let error = top(&["--url", &plain, "--ssl-ca-certs", ca.to_str().unwrap()])
        .await
        .unwrap_err();
    assert_eq!(
        error,
        format!("--ssl-ca-certs and --ssl-certfile need a rediss:// URL, not {plain}")
    );
}
