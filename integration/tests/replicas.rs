//! `read_from_replicas`: with it, reads are spread over each slot's primary and replicas (as
//! baseplate.py does); without it, replicas serve nothing. On a cluster of this binary's own, so no
//! other test's reads disturb the replicas' command counters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use baseplate_config::RawConfig;
use baseplate_redis_cluster::ClusterRedisClient;
use std::time::Duration;

use integration::{eventually, own_cluster, unique_prefix};
use redis::AsyncCommands as _;

/// Total `GET` calls served by the replicas.
async fn gets_served_by_replicas() -> u64 {
    let mut total = 0;
    for node in own_cluster().nodes().await.iter().filter(|n| !n.primary) {
        total += own_cluster().command_calls(&node.addr, "get").await.calls;
    }
    total
}

async fn read_keys(read_from_replicas: &str, keys: &[String]) {
    let config: RawConfig = [
        ("foo.url", own_cluster().url()),
        ("foo.read_from_replicas", read_from_replicas),
    ]
    .into_iter()
    .collect();
    let factory = ClusterRedisClient::new().parse("foo", &config).unwrap();
    let mut foo = factory.make_object_for_context("foo", &tracing::Span::none());
    for key in keys {
        // A replica may lag the write by a moment; a read it serves early finds nothing.
        let read_back = async || foo.get::<_, Option<i64>>(key).await.unwrap() == Some(7);
        eventually(Duration::from_secs(1), read_back)
            .await
            .unwrap_or_else(|| panic!("{key} never read back"));
    }
}

#[tokio::test]
async fn replicas_serve_reads_only_when_read_from_replicas_is_true() {
    assert!(own_cluster().replicas_per_primary() > 0, "needs replicas");
    let prefix = unique_prefix("replicas");
    let keys: Vec<String> = (0..300).map(|i| format!("{prefix}{i}")).collect();
    let mut conn = own_cluster().connection().await;
    for key in &keys {
        let () = conn.set(key, 7).await.unwrap();
    }

    let before = gets_served_by_replicas().await;
    read_keys("false", &keys).await;
    let after_primaries_only = gets_served_by_replicas().await;
    assert_eq!(after_primaries_only, before, "replicas served reads");

    read_keys("true", &keys).await;
    let served = gets_served_by_replicas().await - after_primaries_only;
    // With one replica per primary, a read picks the primary or the replica at random: about
    // half of 300 (a lagging replica's early misses add a few). Far from both 0 (no replica
    // reads) and 300-plus (replicas only).
    assert!(
        (60..=250).contains(&served),
        "replicas served {served} reads for 300 keys"
    );

    own_cluster().delete(&keys).await;
}
