//! Pub/sub: a [`Subscriber`] receives classic (`SUBSCRIBE`, `PSUBSCRIBE`) and sharded
//! (`SSUBSCRIBE`) messages as a stream, on a cluster connection of its own, and subscribes again
//! after a failover or a slot move.
//!
//! The subscriber's connection speaks RESP3, so that redis-rs delivers messages as pushes and
//! itself resubscribes a node it reconnects to and moves subscriptions along with their slots when
//! it learns a new topology. Two cases need help, and a task of the subscriber's gives it:
//! - a primary that dies leaves redis-rs retrying its address until something makes it read the
//!   topology again, and an idle subscriber sends nothing that would;
//! - a node that gives up a slot tells its sharded subscribers so with an `SUNSUBSCRIBE` push,
//!   which redis-rs takes as the end of the subscription.
//!
//! On either event (a connection dropped, a sharded channel unsubscribed by the server) the task
//! sends the subscriptions the caller still holds again, one command per channel or pattern
//! (each goes to the primary of its slot, where redis-rs keeps it), until every one of them is
//! accepted.
//!
//! That push also reaches redis-rs unannounced: it cannot tell it from the reply to a command in
//! flight on that node, and takes it for one. When that command is the `CLUSTER SLOTS` of a
//! topology refresh, redis-rs reads an empty topology and drops its connection to every node,
//! subscriptions and all, without a word; every later command fails with "No connections found".
//! A node's connection whose replies were taken for others' may also stop answering altogether.
//! So the task checks, after each round of subscribing again, that the connection still reaches
//! a node and that no command of the round went unanswered, and otherwise opens another
//! connection from the seeds for the next round.

use std::collections::BTreeSet;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::join_all;
use futures_util::stream::FuturesUnordered;
use futures_util::{Stream, StreamExt as _};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Arg, Cmd, ErrorKind, Msg, PushInfo, PushKind, RedisError, RedisResult, ToRedisArgs};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::connection::MonitoredClusterRedisConnection;
use crate::error::ConnectTimeout;
use crate::pool::{SubscriberGuard, build_client, client_builder, connect};

/// Longest pause between two attempts to subscribe again after a failover or a slot move.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// A subscription to channels, patterns and sharded channels of one client, on a cluster
/// connection of its own: a [`Stream`] of the messages they receive.
///
/// Made by [`MonitoredClusterRedisConnection::subscriber`]. Every subscribe and unsubscribe call
/// is traced and measured as the client's other commands are (`foo.SUBSCRIBE`, `foo.SSUBSCRIBE`,
/// ...); publish with the client itself (`foo.publish(...)`, `foo.spublish(...)`, traced as
/// `foo.PUBLISH`, `foo.SPUBLISH`).
///
/// Classic channels and patterns receive what is published on any node; a sharded channel is
/// served by the primary of its slot. When that primary fails over, or the slot moves to another
/// primary, the subscriber subscribes there again by itself.
///
/// # What a subscriber may miss
/// Redis delivers pub/sub messages at most once and keeps none. When the node holding a
/// subscription dies, the subscriber subscribes again at once on another node: for a classic
/// channel or pattern any node will do, and a sharded channel is served by the replicas of its
/// primary (and then by the promoted one). Messages published during the failover may be lost:
/// those the dying node had not yet written out, those published before the subscriber
/// subscribed again (about a tenth of a second in `cargo xtask chaos`'s `pubsub-kill-primary`),
/// and sharded ones published while the shard's replicas change primary (a quarter of a second
/// around the promotion in some of its runs). So are those published to a sharded channel while
/// its slot moves to another primary, until the subscriber has followed it. `SPUBLISH` fails
/// while a shard has no node serving it. Messages published outside such a window all arrive,
/// in the order their node sent them.
///
/// After a topology change a subscription may for a while be held by two nodes (a replica and
/// the promoted primary, or a classic channel's old and new slot owners), and its messages then
/// arrive twice: a consumer that must not act twice on one message should say so in the message.
///
/// Messages wait in memory until the stream is read: a subscriber that stops reading keeps
/// receiving. Dropping it closes its connection.
///
/// ```no_run
/// # async fn example(foo: &mut baseplate_redis_cluster::MonitoredClusterRedisConnection) -> redis::RedisResult<()> {
/// use futures_util::StreamExt as _;
/// use redis::AsyncCommands as _;
///
/// let mut subscriber = foo.subscriber().await?;
/// subscriber.subscribe("news").await?;                   // span "foo.SUBSCRIBE"
/// subscriber.ssubscribe("{user:1}:inbox").await?;        // span "foo.SSUBSCRIBE"
/// let _: i64 = foo.publish("news", "hello").await?;       // span "foo.PUBLISH"
/// let _: i64 = foo.spublish("{user:1}:inbox", "hi").await?; // span "foo.SPUBLISH"
/// while let Some(message) = subscriber.next().await {
///     println!("{}: {:?}", message.get_channel_name(), message.get_payload_bytes());
/// }
/// # Ok(()) }
/// ```
pub struct Subscriber {
    client: MonitoredClusterRedisConnection,
    link: Arc<Link>,
    repair: Arc<Notify>,
    wanted: Arc<Mutex<Wanted>>,
    messages: mpsc::UnboundedReceiver<Msg>,
    task: JoinHandle<()>,
    _counted: SubscriberGuard,
}

impl fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wanted = self.wanted.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Subscriber")
            .field("client", &self.client.name())
            .field("channels", &wanted.channels.len())
            .field("patterns", &wanted.patterns.len())
            .field("shard_channels", &wanted.shard_channels.len())
            .finish_non_exhaustive()
    }
}

/// The subscriber's cluster connection, and how to open another one when it no longer works.
struct Link {
    client: ClusterClient,
    name: String,
    connect_timeout: Duration,
    current: Mutex<ClusterConnection>,
}

impl Link {
    /// The connection in use (a cheap clone).
    fn conn(&self) -> ClusterConnection {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Opens a connection from the seeds and uses it from now on; the old one is closed once the
    /// commands still holding it are done.
    async fn replace(&self) -> RedisResult<()> {
        let conn = connect(&self.client, &self.name, self.connect_timeout).await?;
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = conn;
        Ok(())
    }
}

/// What the caller is subscribed to, as it asked: what is sent again after a fault.
#[derive(Default)]
struct Wanted {
    channels: BTreeSet<Vec<u8>>,
    patterns: BTreeSet<Vec<u8>>,
    shard_channels: BTreeSet<Vec<u8>>,
}

/// The three kinds of subscription, with their commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Channel,
    Pattern,
    ShardChannel,
}

impl Kind {
    fn subscribe_command(self) -> &'static str {
        match self {
            Kind::Channel => "SUBSCRIBE",
            Kind::Pattern => "PSUBSCRIBE",
            Kind::ShardChannel => "SSUBSCRIBE",
        }
    }

    fn unsubscribe_command(self) -> &'static str {
        match self {
            Kind::Channel => "UNSUBSCRIBE",
            Kind::Pattern => "PUNSUBSCRIBE",
            Kind::ShardChannel => "SUNSUBSCRIBE",
        }
    }

    fn set(self, wanted: &mut Wanted) -> &mut BTreeSet<Vec<u8>> {
        match self {
            Kind::Channel => &mut wanted.channels,
            Kind::Pattern => &mut wanted.patterns,
            Kind::ShardChannel => &mut wanted.shard_channels,
        }
    }
}

impl MonitoredClusterRedisConnection {
    /// A [`Subscriber`] on a cluster connection of its own, opened with the client's config
    /// (seeds, credentials, TLS, timeouts). It takes no slot of the pool and never uses the
    /// connection the client's commands share; [`PoolStats::subscribers`](crate::PoolStats)
    /// counts it. Its spans are children of this connection's parent span.
    ///
    /// # Errors
    /// When the cluster cannot be reached within the connect timeout (a
    /// [`ConnectTimeout`](crate::ConnectTimeout)) or refuses the connection; the error names the
    /// client.
    ///
    /// ```no_run
    /// # async fn example(foo: &baseplate_redis_cluster::MonitoredClusterRedisConnection) -> redis::RedisResult<()> {
    /// let mut subscriber = foo.subscriber().await?;
    /// subscriber.psubscribe("events:*").await?;
    /// # Ok(()) }
    /// ```
    pub async fn subscriber(&self) -> RedisResult<Subscriber> {
        let pool = self.pool();
        let name = self.name();
        let (sender, mut pushes) = mpsc::unbounded_channel::<PushInfo>();
        // Subscriptions live on primaries: redis-rs routes a subscription like a read, and a
        // random replica per command would subscribe a channel on several nodes at once.
        let builder = client_builder(name, pool.options())
            .map_err(|e| client_error(name, "cannot configure a subscriber", e.to_string()))?
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(sender);
        let client = build_client(name, builder)
            .map_err(|e| client_error(name, "cannot configure a subscriber", e.to_string()))?;
        let connect_timeout = pool.connect_timeout();
        let conn = connect(&client, name, connect_timeout)
            .await
            .map_err(|error| {
                if ConnectTimeout::find(&error).is_some() {
                    error
                } else {
                    crate::error::name_call_error(error, name, &"opening a subscriber", None, None)
                }
            })?;
        let wanted = Arc::new(Mutex::new(Wanted::default()));
        let (messages_in, messages) = mpsc::unbounded_channel();
        let repair = Arc::new(Notify::new());
        let forward = {
            let wanted = Arc::clone(&wanted);
            let repair = Arc::clone(&repair);
            async move {
                while let Some(push) = pushes.recv().await {
                    if needs_repair(&push, &wanted) {
                        repair.notify_one();
                    }
                    if let Some(message) = Msg::from_push_info(push)
                        && messages_in.send(message).is_err()
                    {
                        return;
                    }
                }
            }
        };
        let link = Arc::new(Link {
            client,
            name: name.to_owned(),
            connect_timeout,
            current: Mutex::new(conn),
        });
        let resubscribe =
            resubscribe_on_notice(Arc::clone(&link), Arc::clone(&wanted), Arc::clone(&repair));
        let task = tokio::spawn(async move {
            tokio::select! {
                () = forward => {}
                () = resubscribe => {}
            }
        });
        Ok(Subscriber {
            client: self.clone(),
            link,
            repair,
            wanted,
            messages,
            task,
            _counted: pool.subscriber_opened(),
        })
    }
}

impl Subscriber {
    /// Subscribes to `channels` (`SUBSCRIBE`): messages published to them on any node arrive on
    /// this stream. Traced as `{client}.SUBSCRIBE`.
    ///
    /// # Errors
    /// When a channel's node refuses or cannot be reached within the client's timeout; the
    /// error names the client and the channel. The channels already accepted stay subscribed; a
    /// channel its node refused is not subscribed. When the call runs out of time, the channels
    /// not yet answered may still be subscribed (their commands may have reached their nodes):
    /// they are kept, and subscribed again after a fault, until
    /// [`unsubscribe`](Self::unsubscribe) drops them.
    pub async fn subscribe(&mut self, channels: impl ToRedisArgs) -> RedisResult<()> {
        self.change(Kind::Channel, true, channels).await
    }

    /// Subscribes to channels matching `patterns` (`PSUBSCRIBE`), published on any node. Traced as
    /// `{client}.PSUBSCRIBE`.
    ///
    /// # Errors
    /// As [`subscribe`](Self::subscribe), naming the pattern.
    pub async fn psubscribe(&mut self, patterns: impl ToRedisArgs) -> RedisResult<()> {
        self.change(Kind::Pattern, true, patterns).await
    }

    /// Subscribes to sharded `channels` (`SSUBSCRIBE`, Redis 7): each is served by the primary of
    /// its slot and receives what `SPUBLISH` sends to it. Traced as `{client}.SSUBSCRIBE`.
    ///
    /// # Errors
    /// As [`subscribe`](Self::subscribe); a server older than Redis 7 refuses the command.
    pub async fn ssubscribe(&mut self, channels: impl ToRedisArgs) -> RedisResult<()> {
        self.change(Kind::ShardChannel, true, channels).await
    }

    /// Unsubscribes from `channels` (`UNSUBSCRIBE`), or from every channel subscribed when
    /// `channels` is empty, as `UNSUBSCRIBE` with none does. Traced as `{client}.UNSUBSCRIBE`.
    ///
    /// # Errors
    /// As [`subscribe`](Self::subscribe); the channels are no longer subscribed again after a
    /// fault even when the command failed.
    pub async fn unsubscribe(&mut self, channels: impl ToRedisArgs) -> RedisResult<()> {
        self.change(Kind::Channel, false, channels).await
    }

    /// Unsubscribes from `patterns` (`PUNSUBSCRIBE`), or from every pattern when `patterns` is
    /// empty. Traced as `{client}.PUNSUBSCRIBE`.
    ///
    /// # Errors
    /// As [`unsubscribe`](Self::unsubscribe).
    pub async fn punsubscribe(&mut self, patterns: impl ToRedisArgs) -> RedisResult<()> {
        self.change(Kind::Pattern, false, patterns).await
    }

    /// Unsubscribes from sharded `channels` (`SUNSUBSCRIBE`), or from every sharded channel when
    /// `channels` is empty. Traced as `{client}.SUNSUBSCRIBE`.
    ///
    /// # Errors
    /// As [`unsubscribe`](Self::unsubscribe).
    pub async fn sunsubscribe(&mut self, channels: impl ToRedisArgs) -> RedisResult<()> {
        self.change(Kind::ShardChannel, false, channels).await
    }

    /// Sends one command per channel, concurrently, all in one traced call: redis-rs routes a
    /// subscription command by its first channel and would otherwise hold every channel on that
    /// one node, where a later topology change would subscribe them again on their own nodes
    /// and deliver their messages twice.
    async fn change(
        &mut self,
        kind: Kind,
        subscribe: bool,
        channels: impl ToRedisArgs,
    ) -> RedisResult<()> {
        let mut channels = channels.to_redis_args();
        {
            let mut wanted = self.wanted.lock().unwrap_or_else(PoisonError::into_inner);
            let set = kind.set(&mut wanted);
            if !subscribe && channels.is_empty() {
                // As `UNSUBSCRIBE` with no channel: every one subscribed.
                channels = set.iter().cloned().collect();
            }
            for channel in &channels {
                if subscribe {
                    set.insert(channel.clone());
                } else {
                    set.remove(channel);
                }
            }
        }
        let command = if subscribe {
            kind.subscribe_command()
        } else {
            kind.unsubscribe_command()
        };
        let described = Described {
            command,
            channels: &channels,
        };
        let conn = self.link.conn();
        let wanted = &self.wanted;
        let repair = &self.repair;
        let client = self.client.name();
        let work = async {
            // Outcomes taken as they come, so a refusal is recorded even when the call runs out
            // of time waiting for another channel's.
            let mut sent: FuturesUnordered<_> = channels
                .iter()
                .map(|channel| {
                    let mut conn = conn.clone();
                    async move { (channel, send(&mut conn, kind, subscribe, channel).await) }
                })
                .collect();
            let mut first_error = None;
            while let Some((channel, result)) = sent.next().await {
                let Err(error) = result else { continue };
                if lost_every_node(&error) {
                    // The subscriptions already held went with the connection: take them to a
                    // new one.
                    repair.notify_one();
                }
                if subscribe {
                    // What its node refused is not subscribed again after a fault.
                    let mut wanted = wanted.lock().unwrap_or_else(PoisonError::into_inner);
                    kind.set(&mut wanted).remove(channel);
                }
                first_error.get_or_insert_with(|| {
                    let described = Described {
                        command,
                        channels: std::slice::from_ref(channel),
                    };
                    name_subscription_error(error, client, &described)
                });
            }
            first_error.map_or(Ok(()), Err)
        };
        self.client
            .traced_on_own_connection(command.as_bytes(), &described, work)
            .await
    }

    /// The client's name.
    pub fn client_name(&self) -> &str {
        self.client.name()
    }
}

impl Stream for Subscriber {
    type Item = Msg;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Msg>> {
        self.messages.poll_recv(cx)
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        // The task holds the connection too, which would otherwise keep it open.
        self.task.abort();
    }
}

/// `SUBSCRIBE news`, `SSUBSCRIBE "{a}" "{b}"`: a call as its errors name it.
struct Described<'a> {
    command: &'static str,
    channels: &'a [Vec<u8>],
}

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.command)?;
        for channel in self.channels {
            write!(f, " {:?}", String::from_utf8_lossy(channel))?;
        }
        Ok(())
    }
}

async fn send(
    conn: &mut ClusterConnection,
    kind: Kind,
    subscribe: bool,
    channel: &[u8],
) -> RedisResult<()> {
    match (kind, subscribe) {
        (Kind::Channel, true) => conn.subscribe(channel).await,
        (Kind::Channel, false) => conn.unsubscribe(channel).await,
        (Kind::Pattern, true) => conn.psubscribe(channel).await,
        (Kind::Pattern, false) => conn.punsubscribe(channel).await,
        (Kind::ShardChannel, true) => conn.ssubscribe(channel).await,
        (Kind::ShardChannel, false) => conn.sunsubscribe(channel).await,
    }
}

/// Whether `push` shows a subscription the caller still holds may be gone: a connection dropped
/// (its node may be dead, and redis-rs waits for a reason to look for its successor), or a
/// node ended a sharded subscription by itself (it gave the channel's slot away).
fn needs_repair(push: &PushInfo, wanted: &Mutex<Wanted>) -> bool {
    let kind = match push.kind {
        PushKind::Disconnection => return true,
        PushKind::SUnsubscribe => Kind::ShardChannel,
        PushKind::Unsubscribe => Kind::Channel,
        PushKind::PUnsubscribe => Kind::Pattern,
        _ => return false,
    };
    let Some(redis::Value::BulkString(channel)) = push.data.first() else {
        return false;
    };
    let mut wanted = wanted.lock().unwrap_or_else(PoisonError::into_inner);
    kind.set(&mut wanted).contains(channel)
}

/// Whether `error` shows that redis-rs has no connection to any node left, so that the cluster
/// connection it came from will fail every command for as long as it lives.
fn lost_every_node(error: &RedisError) -> bool {
    error.kind() == ErrorKind::ClusterConnectionNotFound
}

/// Whether the outcome of subscribing again shows that the connection itself may no longer work:
/// it has no node left, or a node's connection did not answer in time (once its replies were
/// taken for others', every later command on it waits for a reply already handed out).
fn connection_failed(outcome: &Result<RedisResult<()>, tokio::time::error::Elapsed>) -> bool {
    match outcome {
        Ok(Ok(())) => false,
        Ok(Err(error)) => lost_every_node(error) || error.is_timeout(),
        Err(_) => true,
    }
}

/// Whether `conn` has lost every node: a `PING` to any node it knows fails for want of one.
async fn has_lost_every_node(conn: &mut ClusterConnection, timeout: Duration) -> bool {
    let ping = tokio::time::timeout(
        timeout,
        conn.route_command(
            redis::cmd("PING"),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
        ),
    )
    .await;
    matches!(ping, Ok(Err(error)) if lost_every_node(&error))
}

/// Each time `repair` is notified, subscribes to everything in `wanted` again, one command per
/// channel, until all of them are accepted and the connection still reaches a node. A command to
/// a node that died fails and makes redis-rs read the topology again, so the attempts that follow
/// reach its successor; a connection that no longer works is replaced by a new one first.
async fn resubscribe_on_notice(link: Arc<Link>, wanted: Arc<Mutex<Wanted>>, repair: Arc<Notify>) {
    let client = link.name.as_str();
    let attempt_timeout = link.connect_timeout;
    loop {
        repair.notified().await;
        let mut pause = Duration::from_millis(50);
        let mut failures = 0_u32;
        loop {
            let mut conn = link.conn();
            let all: Vec<(Kind, Vec<u8>)> = {
                let wanted = wanted.lock().unwrap_or_else(PoisonError::into_inner);
                let of = |kind: Kind, set: &BTreeSet<Vec<u8>>| {
                    set.iter()
                        .map(move |c| (kind, c.clone()))
                        .collect::<Vec<_>>()
                };
                let mut all = of(Kind::Channel, &wanted.channels);
                all.extend(of(Kind::Pattern, &wanted.patterns));
                all.extend(of(Kind::ShardChannel, &wanted.shard_channels));
                all
            };
            let sent = all.iter().map(|(kind, channel)| {
                let mut conn = conn.clone();
                async move {
                    tokio::time::timeout(attempt_timeout, send(&mut conn, *kind, true, channel))
                        .await
                }
            });
            let outcomes = join_all(sent).await;
            let failed = outcomes.iter().filter(|r| !matches!(r, Ok(Ok(())))).count();
            // A round whose commands all succeeded may still have ended in a topology refresh
            // that left the connection without a node (one of its redirections starts one).
            let broken = outcomes.iter().any(connection_failed)
                || has_lost_every_node(&mut conn, attempt_timeout).await;
            if failed == 0 && !broken {
                if failures > 0 {
                    tracing::info!(client = %client, "subscribed again after a fault");
                }
                break;
            }
            if broken {
                // Replaced only then: a new connection holds no subscription until the next
                // round, so replacing one that works would lose what it receives meanwhile. The
                // old one goes on trying until a new one opens.
                tracing::warn!(
                    client = %client,
                    "the subscriber's connection no longer works; opening another one"
                );
                drop(conn);
                if let Err(error) = link.replace().await {
                    tracing::warn!(client = %client, %error, "cannot open another connection yet");
                }
            }
            if failures == 0 {
                tracing::warn!(
                    client = %client,
                    failed,
                    "cannot subscribe again yet; retrying until the cluster serves the channels"
                );
            }
            failures += 1;
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_RETRY_PAUSE);
        }
    }
}

/// `error` naming the client and the channel. A node's refusal (`NOPERM` for a channel the user
/// may not use, say) keeps its kind, but unlike other error replies it says which channel it was
/// about: one call subscribes several channels, each on its own node.
fn name_subscription_error(
    error: RedisError,
    client: &str,
    described: &dyn fmt::Display,
) -> RedisError {
    match error.kind() {
        ErrorKind::Server(_) => RedisError::from((
            error.kind(),
            "subscription refused",
            format!("redis cluster client {client:?}: {described} refused: {error}"),
        )),
        _ => crate::error::name_call_error(error, client, described, None, None),
    }
}

/// Where a command must go that redis-rs would treat as a read: `SPUBLISH` goes to the primary of
/// its channel's slot, where the channel's subscribers are, so that one publisher's messages
/// arrive in the order it sent them (a replica would forward them to the primary over the cluster
/// bus, overtaking or overtaken by those sent to the primary directly).
pub(crate) fn primary_route(cmd: &Cmd) -> Option<RoutingInfo> {
    let mut args = cmd.args_iter();
    let (Some(Arg::Simple(name)), Some(Arg::Simple(channel))) = (args.next(), args.next()) else {
        return None;
    };
    name.eq_ignore_ascii_case(b"SPUBLISH").then(|| {
        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_key(
            channel,
            SlotAddr::Master,
        )))
    })
}

fn client_error(client: &str, what: &'static str, detail: String) -> RedisError {
    RedisError::from((
        ErrorKind::Client,
        what,
        format!("redis cluster client {client:?}: {detail}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::key_slot;

    #[test]
    fn spublish_goes_to_the_primary_of_its_channel_and_nothing_else_is_rerouted() {
        let route = primary_route(redis::cmd("spublish").arg("{a}news").arg("hi"));
        let expected = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
            key_slot(b"a"),
            SlotAddr::Master,
        )));
        assert_eq!(route, Some(expected));
        assert_eq!(
            primary_route(redis::cmd("PUBLISH").arg("news").arg("hi")),
            None
        );
        assert_eq!(primary_route(redis::cmd("GET").arg("news")), None);
        assert_eq!(primary_route(&redis::cmd("SPUBLISH")), None);
    }

    #[test]
    fn calls_are_described_by_command_and_channels() {
        let channels = [b"news".to_vec(), b"{a}\xff".to_vec()];
        let described = Described {
            command: "SSUBSCRIBE",
            channels: &channels,
        };
        assert_eq!(described.to_string(), "SSUBSCRIBE \"news\" \"{a}\u{fffd}\"");
    }

    #[test]
    fn only_a_dropped_connection_or_an_unrequested_unsubscribe_calls_for_a_repair() {
        let wanted = Mutex::new(Wanted::default());
        wanted
            .lock()
            .unwrap()
            .shard_channels
            .insert(b"kept".to_vec());
        let push = |kind, channel: &[u8]| PushInfo {
            kind,
            data: vec![
                redis::Value::BulkString(channel.to_vec()),
                redis::Value::Int(0),
            ],
        };
        assert!(needs_repair(
            &push(PushKind::SUnsubscribe, b"kept"),
            &wanted
        ));
        assert!(!needs_repair(
            &push(PushKind::SUnsubscribe, b"dropped"),
            &wanted
        ));
        assert!(!needs_repair(
            &push(PushKind::Unsubscribe, b"kept"),
            &wanted
        ));
        assert!(!needs_repair(&push(PushKind::SMessage, b"kept"), &wanted));
        let gone = PushInfo {
            kind: PushKind::Disconnection,
            data: Vec::new(),
        };
        assert!(needs_repair(&gone, &wanted));
    }
}
