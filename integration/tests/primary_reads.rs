//! `read_from_replicas = false`: a replica never serves the client's reads, not even while the
//! connection to the key's primary is being opened again (redis-rs then sends a read routed to
//! the primary to a node of the same shard, which a replica in `READONLY` mode would answer with
//! what it has, maybe an older value), nor when it is sent there by name (`on_node`). On a
//! cluster of this binary's own: the tests pause a primary and read the replicas' command
//! counters, one test at a time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use baseplate_config::RawConfig;
use baseplate_redis_cluster::{ClusterRedisClient, MonitoredClusterRedisConnection, key_slot};
use futures_util::future::join_all;
use integration::{CommandCalls, eventually, own_cluster, unique_prefix};
use redis::AsyncCommands as _;
use tokio::sync::Mutex;

/// How long the primary refuses to run commands each round: the read below starts well within
/// it unless the machine stalls for seconds, when the round shows nothing and another is run.
const PAUSE_MS: u64 = 3000;
/// Rounds run at most before the test gives up on seeing a replica redirect a read.
const ROUNDS: usize = 5;

/// Held by each test: one test's reads would show in the other's counters.
static TURN: Mutex<()> = Mutex::const_new(());

/// The client `foo` reading from primaries only.
fn primary_reads_client() -> MonitoredClusterRedisConnection {
    let config: RawConfig = [
        ("foo.url", own_cluster().url()),
        ("foo.read_from_replicas", "false"),
        ("foo.timeout", "30 seconds"),
    ]
    .into_iter()
    .collect();
    let factory = ClusterRedisClient::new().parse("foo", &config).unwrap();
    factory.make_object_for_context("foo", &tracing::Span::none())
}

/// Every replica's `GET` counts.
async fn replica_gets(replicas: &[String]) -> Vec<CommandCalls> {
    join_all(
        replicas
            .iter()
            .map(|r| own_cluster().command_calls(r, "get")),
    )
    .await
}

#[tokio::test]
async fn no_replica_answers_a_client_that_reads_from_primaries_while_its_primary_connection_reopens()
 {
    let _turn = TURN.lock().await;
    assert!(own_cluster().replicas_per_primary() > 0, "needs replicas");
    let key = format!("{}k", unique_prefix("primary-reads"));
    let mut setup = own_cluster().connection().await;
    let () = setup.set(&key, "v1").await.unwrap();
    let (primary, replicas) = own_cluster().shard_of(key_slot(key.as_bytes())).await;
    let mut foo = primary_reads_client();
    let read: Option<String> = foo.get(&key).await.unwrap();
    assert_eq!(read.as_deref(), Some("v1"));
    // Every replica has the write, so a read one served would look right: count what they serve.
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

    let mut admin = own_cluster().node_connection(&primary).await;
    for _ in 0..ROUNDS {
        let before = replica_gets(&replicas).await;
        // Drop the primary's client connections and pause its clients in one go (a node runs a
        // client's pipelined commands back to back): the client's connection to it breaks, and
        // the new one cannot be set up before the pause ends.
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
        let after = replica_gets(&replicas).await;
        let served: Vec<u64> = before
            .iter()
            .zip(&after)
            .map(|(b, a)| a.calls - b.calls)
            .collect();
        assert!(
            served.iter().all(|&n| n == 0),
            "replicas {replicas:?} served {served:?} reads"
        );
        // The read went to a replica first and was redirected: the round showed what it must.
        if before
            .iter()
            .zip(&after)
            .any(|(b, a)| a.rejected > b.rejected)
        {
            return;
        }
    }
    panic!("in {ROUNDS} rounds no read reached a replica while its primary was paused");
}

#[tokio::test]
async fn a_read_sent_to_a_replica_by_name_is_redirected_to_its_primary() {
    let _turn = TURN.lock().await;
    let key = format!("{}k", unique_prefix("on-replica"));
    let mut setup = own_cluster().connection().await;
    let () = setup.set(&key, "v1").await.unwrap();
    let (_, replicas) = own_cluster().shard_of(key_slot(key.as_bytes())).await;
    let replica = replicas.first().expect("needs replicas");
    let foo = primary_reads_client();

    let before = own_cluster().command_calls(replica, "get").await;
    let mut node = foo.on_node(replica).unwrap();
    let read: Option<String> = node.get(&key).await.unwrap();
    assert_eq!(read.as_deref(), Some("v1"));
    let after = own_cluster().command_calls(replica, "get").await;
    assert_eq!(after.calls, before.calls, "{replica} served the read");
    assert_eq!(
        after.rejected,
        before.rejected + 1,
        "{replica} redirected the read"
    );
}
