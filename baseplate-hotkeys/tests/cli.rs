//! The `baseplate-hotkeys` binary against a real TLS cluster (its plain ports too): the report,
//! `--ssl-ca-certs`, and the errors a user sees.
#![cfg(feature = "tls")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};
use std::sync::OnceLock;

use cluster_launcher::{Cluster, redis_cli};

/// A TLS cluster for this test binary, with a few keys in the reads set.
fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let name = format!("baseplate-hotkeys-cli-{}", std::process::id());
        let cluster = cluster_launcher::start_watched(&std::env::temp_dir(), &name, true)
            .unwrap_or_else(|e| panic!("starting a TLS cluster: {e:#}"));
        // The set's slot may be on any primary: ask each until one takes the write.
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
        cluster
    })
}

fn top(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_baseplate-hotkeys"))
        .arg("top")
        .args(args)
        .args(["--json", "--timeout-secs", "3"])
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn rediss_with_the_clusters_ca_lists_the_hot_keys() {
    let cluster = cluster();
    let ca = cluster.spec().tls_files().ca_cert();
    let output = top(&[
        "--url",
        &cluster.url(),
        "--ssl-ca-certs",
        ca.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let reads = &report["reads"]["keys"];
    assert_eq!(reads[0]["key"], "user:1", "{report}");
    assert_eq!(reads[0]["score"], 2.0, "{report}");
    assert_eq!(reads[1]["key"], "user:2", "{report}");

    // The same cluster over its plain ports.
    let plain = format!("redis://127.0.0.1:{}", cluster.spec().base_port);
    let output = top(&["--url", &plain]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let again: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(again["reads"], report["reads"]);
}

#[test]
fn without_the_ca_or_with_a_missing_file_the_error_says_why() {
    let cluster = cluster();
    let output = top(&["--url", &cluster.url()]);
    assert_eq!(output.status.code(), Some(1));
    let error = text(&output.stderr);
    assert!(
        error.contains("invalid peer certificate: UnknownIssuer"),
        "{error}"
    );

    let output = top(&[
        "--url",
        &cluster.url(),
        "--ssl-ca-certs",
        "/nonexistent/ca.pem",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr).trim(),
        "baseplate-hotkeys: cannot read /nonexistent/ca.pem: No such file or directory (os error 2)"
    );

    // TLS options with a plain URL are refused at once, not after a TLS handshake times out.
    let plain = format!("redis://127.0.0.1:{}", cluster.spec().base_port);
    let ca = cluster.spec().tls_files().ca_cert();
    let output = top(&["--url", &plain, "--ssl-ca-certs", ca.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr).trim(),
        format!(
            "baseplate-hotkeys: --ssl-ca-certs and --ssl-certfile need a rediss:// URL, not {plain}"
        )
    );
}
