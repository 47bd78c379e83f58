//! `read_from_replicas = false`: a replica never serves the client's reads, not even while the
//! connection to the key's primary is being opened again (redis-rs then sends a read routed to
//! the primary to another node of its shard, which a replica in `READONLY` mode would answer with
//! what it has, maybe an older value). On a cluster of this binary's own: the test pauses a
//! primary and reads the replicas' command counters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use baseplate_config::RawConfig;
use baseplate_redis_cluster::{ClusterRedisClient, key_slot};
use cluster_launcher::info_field;
use integration::{eventually, own_cluster, unique_prefix};
use redis::AsyncCommands as _;

/// How long the primary refuses to run commands: long enough that the read below starts while
/// it does, whatever the machine's load (should it start later, nothing is left to fall back
/// from and the test passes without showing anything; it cannot fail for it).
const PAUSE_MS: u64 = 5000;

/// `GET` calls `addr` served, from its `INFO commandstats`.
async fn gets_served_by(addr: &str) -> u64 {
    let mut conn = own_cluster().node_connection(addr).await;
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    info_field(&stats, "cmdstat_get")
        .and_then(|v| v.strip_prefix("calls="))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
}

/// The addresses of the primary serving `slot` and of its replicas.
async fn shard_of(slot: u16) -> (String, Vec<String>) {
    let nodes = own_cluster().nodes().await;
    let primary = nodes
        .iter()
        .find(|n| n.primary && n.serves(slot))
        .expect("a primary serves every slot");
    let replicas = nodes
        .iter()
        .filter(|n| n.primary_id.as_deref() == Some(primary.id.as_str()))
        .map(|n| n.addr.clone())
        .collect();
    (primary.addr.clone(), replicas)
}

#[tokio::test]
async fn no_replica_answers_a_client_that_reads_from_primaries_while_its_primary_connection_reopens()
 {
    assert!(own_cluster().replicas_per_primary() > 0, "needs replicas");
    let key = format!("{}k", unique_prefix("primary-reads"));
    let mut setup = own_cluster().connection().await;
    let () = setup.set(&key, "v1").await.unwrap();
    let (primary, replicas) = shard_of(key_slot(key.as_bytes())).await;

    let config: RawConfig = [
        ("foo.url", own_cluster().url()),
        ("foo.read_from_replicas", "false"),
        ("foo.timeout", "30 seconds"),
    ]
    .into_iter()
    .collect();
    let factory = ClusterRedisClient::new().parse("foo", &config).unwrap();
    let mut foo = factory.make_object_for_context("foo", &tracing::Span::none());
    let read: Option<String> = foo.get(&key).await.unwrap();
    assert_eq!(read.as_deref(), Some("v1"));
    // Every replica has the write, so a read it served would look right: count what they serve.
    for replica in &replicas {
        let mut conn = own_cluster().node_connection(replica).await;
        let has_it = async || {
            let _: () = redis::cmd("READONLY").query_async(&mut conn).await.unwrap();
            let read: Option<String> = conn.get(&key).await.unwrap();
            read.as_deref() == Some("v1")
        };
        assert!(
            eventually(Duration::from_secs(5), has_it).await.is_some(),
            "{replica} never got the write"
        );
    }
    let before: Vec<u64> =
        futures_util::future::join_all(replicas.iter().map(|r| gets_served_by(r))).await;

    // Drop the primary's client connections and pause its clients in one go (a node runs a
    // client's pipelined commands back to back): the client's connection to it breaks, and the
    // new one cannot be set up before the pause ends.
    let mut admin = own_cluster().node_connection(&primary).await;
    let (_killed, ()): (u64, ()) = redis::pipe()
        .cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .cmd("CLIENT")
        .arg("PAUSE")
        .arg(PAUSE_MS)
        .arg("ALL")
        .query_async(&mut admin)
        .await
        .unwrap();

    let read: Option<String> = foo.get(&key).await.unwrap();
    assert_eq!(read.as_deref(), Some("v1"));
    let after: Vec<u64> =
        futures_util::future::join_all(replicas.iter().map(|r| gets_served_by(r))).await;
    assert_eq!(after, before, "a replica ({replicas:?}) served the read");
}
