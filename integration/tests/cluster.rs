//! The local Redis Cluster itself: its shape, and data written across every slot reads back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use cluster_launcher::info_field;
use integration::{cluster, unique_prefix};
use redis::AsyncCommands as _;

#[tokio::test]
async fn cluster_is_ok_with_the_expected_primaries_and_replicas() {
    let cluster = cluster();
    let nodes = cluster.nodes().await;
    let expected_nodes = cluster.primaries() * (1 + cluster.replicas_per_primary());
    assert_eq!(nodes.len(), expected_nodes, "{nodes:?}");
    let primaries: Vec<_> = nodes.iter().filter(|n| n.primary).collect();
    assert_eq!(primaries.len(), cluster.primaries(), "{nodes:?}");
    assert!(primaries.iter().all(|p| !p.slots.is_empty()), "{nodes:?}");

    for node in &nodes {
        let mut conn = cluster.node_connection(&node.addr).await;
        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            info_field(&info, "cluster_state"),
            Some("ok"),
            "{}",
            node.addr
        );
        assert_eq!(
            info_field(&info, "cluster_known_nodes"),
            Some(expected_nodes.to_string().as_str()),
            "{}",
            node.addr
        );
        assert_eq!(info_field(&info, "cluster_slots_assigned"), Some("16384"));
        if !node.primary {
            let replication: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut conn)
                .await
                .unwrap();
            assert_eq!(
                info_field(&replication, "master_link_status"),
                Some("up"),
                "{}",
                node.addr
            );
        }
    }
}

#[tokio::test]
async fn a_thousand_keys_across_all_slots_read_back() {
    let cluster = cluster();
    let prefix = unique_prefix("thousand");
    let keys: Vec<String> = (0..1000).map(|i| format!("{prefix}{i}")).collect();
    let mut conn = cluster.connection().await;

    for (i, key) in keys.iter().enumerate() {
        let _: () = conn.set(key, format!("value-{i}")).await.unwrap();
    }

    // The keys must really be spread: every primary serves some of them.
    assert_eq!(cluster.primaries_covering(&keys).await, cluster.primaries());
    let mut slots = BTreeSet::new();
    for key in &keys {
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        slots.insert(slot);
    }
    assert!(slots.len() > 900, "only {} distinct slots", slots.len());

    for (i, key) in keys.iter().enumerate() {
        let value: String = conn.get(key).await.unwrap();
        assert_eq!(value, format!("value-{i}"));
    }
    cluster.delete(&keys).await;
}
