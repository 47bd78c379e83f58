//! The cluster scan: [`MonitoredClusterRedisConnection::cluster_scan`] walks the keys of every
//! hash slot, node by node, with `SCAN`, and checks with each node before and after its walk that
//! it served the slots it was asked for throughout, so a failover or a slot migration during the
//! scan never makes it skip a key.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt as _};
use rand::RngExt as _;
use redis::{ErrorKind, FromRedisValue, RedisError, RedisResult, ServerErrorKind, Value};

use crate::connection::MonitoredClusterRedisConnection;
use crate::error::shown_key;
use crate::routing::key_slot;

/// How long a scan keeps trying while it makes no progress (every node it asks fails, or the
/// slots it still has to walk stay in migration) before it gives up with an error.
pub const CLUSTER_SCAN_PATIENCE: Duration = Duration::from_secs(60);

/// The `SCAN` options of a [cluster scan](MonitoredClusterRedisConnection::cluster_scan):
/// `MATCH`, `COUNT` and `TYPE`, sent with every `SCAN` to every node.
///
/// ```
/// use baseplate_redis_cluster::ClusterScanOptions;
///
/// let options = ClusterScanOptions::default()
///     .with_pattern("user:*")
///     .with_count(500)
///     .with_type("hash");
/// assert_eq!(options.pattern.as_deref(), Some(&b"user:*"[..]));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterScanOptions {
    /// `MATCH`: only keys matching this glob-style pattern (bytes, as keys are).
    pub pattern: Option<Vec<u8>>,
    /// `COUNT`: how much work each `SCAN` does on its node (Redis's hint, 10 by default): more
    /// means fewer round trips, each holding its node a little longer.
    pub count: Option<usize>,
    /// `TYPE`: only keys of this type (`string`, `list`, `set`, `zset`, `hash`, `stream`).
    pub key_type: Option<String>,
}

impl ClusterScanOptions {
    /// Only keys matching `pattern` (`MATCH`).
    pub fn with_pattern(mut self, pattern: impl AsRef<[u8]>) -> Self {
        self.pattern = Some(pattern.as_ref().to_vec());
        self
    }

    /// `COUNT` for each `SCAN`.
    pub fn with_count(mut self, count: usize) -> Self {
        self.count = Some(count);
        self
    }

    /// Only keys of type `key_type` (`TYPE`).
    pub fn with_type(mut self, key_type: impl Into<String>) -> Self {
        self.key_type = Some(key_type.into());
        self
    }
}

/// The keys of a [cluster scan](MonitoredClusterRedisConnection::cluster_scan), as they come:
/// [`next`](Self::next) needs no trait in scope, and it is a [`Stream`] too.
pub struct ClusterScan<T> {
    keys: BoxStream<'static, RedisResult<T>>,
}

impl<T> ClusterScan<T> {
    /// The next key; `None` once every slot was walked, or after an error.
    pub async fn next(&mut self) -> Option<RedisResult<T>> {
        self.keys.next().await
    }
}

impl<T> Stream for ClusterScan<T> {
    type Item = RedisResult<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().keys.poll_next_unpin(cx)
    }
}

impl<T> fmt::Debug for ClusterScan<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterScan").finish_non_exhaustive()
    }
}

impl MonitoredClusterRedisConnection {
    /// A stream of every key of the cluster (matching `options`), over every primary, or, when
    /// `read_from_replicas` is on, over one node of each shard picked at random among its primary
    /// and replicas.
    ///
    /// Each `SCAN` is a command like any other: a span `{client}.SCAN` (with `server.address`
    /// and `server.port` naming the node), statsd `clients.{client}.SCAN`, Prometheus
    /// `redis_command="scan"`. Before and after walking a node the scan asks it which slots it
    /// serves (`CLUSTER NODES`, spans `{client}.CLUSTER`); nothing happens until the stream is
    /// polled.
    ///
    /// What it guarantees, as Redis does for `SCAN` on one node:
    /// - A key that exists from the start of the scan to its end, in the same slot, is returned,
    ///   also when its slot migrates to another node or its shard fails over during the scan:
    ///   a node's keys count only for the slots it served, not migrating, from the start to the
    ///   end of its walk; the slots it lost or that moved meanwhile are walked again where they
    ///   went, and a node that fails mid-walk is walked again from the start, on whichever node
    ///   then serves its slots.
    /// - A key may be returned more than once: when `SCAN` itself repeats it (Redis's own
    ///   guarantee allows that when a node's hash table shrinks during the walk), and when its
    ///   slot is walked again after a migration or a failover.
    /// - A key created or deleted during the scan may or may not be returned.
    /// - What the cluster itself loses is not found: writes acknowledged by a primary that failed
    ///   before replicating them, and, when reading from replicas, writes the replica had not
    ///   received yet when it was walked (replication is asynchronous).
    ///
    /// ```no_run
    /// # async fn example(foo: &baseplate_redis_cluster::MonitoredClusterRedisConnection) -> redis::RedisResult<()> {
    /// use baseplate_redis_cluster::ClusterScanOptions;
    ///
    /// let mut keys = foo.cluster_scan::<String>(ClusterScanOptions::default().with_pattern("user:*"));
    /// while let Some(key) = keys.next().await {
    ///     println!("{}", key?);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The stream yields an error and ends when a key cannot be converted to `T`, when a node
    /// answers `SCAN` with an error reply that retrying cannot help (a malformed pattern), or when
    /// it made no progress for [`CLUSTER_SCAN_PATIENCE`] (nodes unreachable, slots that stay
    /// in migration or unserved); errors name the client and, where one is at fault, the node.
    pub fn cluster_scan<T>(&self, options: ClusterScanOptions) -> ClusterScan<T>
    where
        T: FromRedisValue + Send + 'static,
    {
        let walk = Walk::new(self.clone(), options);
        let keys = futures_util::stream::unfold(walk, |mut walk| async move {
            let item = walk.next().await?;
            Some((item, walk))
        })
        .boxed();
        ClusterScan { keys }
    }
}

/// The state of one cluster scan.
struct Walk<T> {
    conn: MonitoredClusterRedisConnection,
    options: ClusterScanOptions,
    /// The slots whose keys have not all been returned yet.
    pending: Slots,
    /// The nodes this round still has to walk.
    queue: VecDeque<Target>,
    /// The node being walked.
    current: Option<NodeWalk>,
    /// Keys returned by the last `SCAN`, not yet yielded.
    keys: VecDeque<T>,
    /// When the scan last moved forward: a `SCAN` answered, or slots were done.
    progressed_at: Instant,
    /// Whether the current round finished any slot.
    round_progressed: bool,
    /// Consecutive rounds or failures without progress, for the back-off.
    idle: u32,
    rounds: u64,
    finished: bool,
}

/// A node to walk this round: `scan` (the primary or one of its replicas) for the slots the
/// primary `primary` serves.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    scan: String,
    primary: String,
}

/// A node being walked.
struct NodeWalk {
    target: Target,
    /// The primary's id and config epoch when the walk started: if either changed by its end,
    /// the primary failed over or took slots in, and its walk proves nothing.
    primary_id: String,
    epoch: u64,
    /// The slots whose keys this walk returns: those the primary served, not migrating, when it
    /// started, and that were still pending.
    claimed: Slots,
    cursor: Vec<u8>,
}

impl<T: FromRedisValue> Walk<T> {
    fn new(conn: MonitoredClusterRedisConnection, options: ClusterScanOptions) -> Self {
        Self {
            conn,
            options,
            pending: Slots::all(),
            queue: VecDeque::new(),
            current: None,
            keys: VecDeque::new(),
            progressed_at: Instant::now(),
            round_progressed: false,
            idle: 0,
            rounds: 0,
            finished: false,
        }
    }

    /// The next key, an error (after which the stream ends), or `None` at the end.
    async fn next(&mut self) -> Option<RedisResult<T>> {
        loop {
            if let Some(key) = self.keys.pop_front() {
                return Some(Ok(key));
            }
            if self.finished {
                return None;
            }
            let Err(error) = self.step().await else {
                continue;
            };
            if !transient(&error) || self.progressed_at.elapsed() > CLUSTER_SCAN_PATIENCE {
                self.finished = true;
                return Some(Err(error));
            }
            // The node or the cluster is in trouble (a failover, say): plan again from what the
            // cluster says once it had a moment.
            self.current = None;
            self.queue.clear();
            self.back_off().await;
        }
    }

    async fn step(&mut self) -> RedisResult<()> {
        if self.current.is_some() {
            return self.page().await;
        }
        if let Some(target) = self.queue.pop_front() {
            return self.begin(target).await;
        }
        if self.pending.is_empty() {
            self.finished = true;
            return Ok(());
        }
        if self.rounds > 0 && !self.round_progressed {
            if self.progressed_at.elapsed() > CLUSTER_SCAN_PATIENCE {
                return Err(RedisError::from((
                    ErrorKind::Client,
                    "cluster scan made no progress",
                    format!(
                        "redis cluster client {:?}: the cluster scan made no progress for {:?}: \
                         {} slots stayed unserved or in migration",
                        self.conn.name(),
                        CLUSTER_SCAN_PATIENCE,
                        self.pending.len()
                    ),
                )));
            }
            // Every slot left is migrating or unserved: give the cluster a moment.
            self.back_off().await;
        } else {
            self.idle = 0;
        }
        self.rounds += 1;
        self.round_progressed = false;
        self.plan().await
    }

    /// Queues one node per shard that serves pending slots, as any node's `CLUSTER NODES` says.
    async fn plan(&mut self) -> RedisResult<()> {
        let text: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut self.conn.clone())
            .await?;
        let nodes = parse_nodes(&text);
        let read_from_replicas = self.conn.pool().options().read_from_replicas;
        for primary in nodes.iter().filter(|node| node.primary && !node.failed) {
            if primary.slots.intersection(&self.pending).is_empty() {
                continue;
            }
            let mut candidates = vec![&primary.addr];
            if read_from_replicas {
                candidates.extend(
                    nodes
                        .iter()
                        .filter(|n| n.master.as_deref() == Some(&primary.id) && !n.failed)
                        .map(|n| &n.addr),
                );
            }
            let pick = rand::rng().random_range(0..candidates.len());
            self.queue.push_back(Target {
                scan: candidates[pick].clone(),
                primary: primary.addr.clone(),
            });
        }
        Ok(())
    }

    /// Starts walking `target` for the pending slots its primary serves, not migrating, now.
    async fn begin(&mut self, target: Target) -> RedisResult<()> {
        let Some(own) = myself(&self.conn, &target.primary).await? else {
            // No longer a primary: the next round plans again.
            return Ok(());
        };
        let claimed = own
            .slots
            .intersection(&self.pending)
            .difference(&own.moving);
        if claimed.is_empty() {
            return Ok(());
        }
        let mut target = target;
        if target.scan != target.primary && !replicates(&self.conn, &target.scan, &own.id).await? {
            target.scan = target.primary.clone();
        }
        self.current = Some(NodeWalk {
            target,
            primary_id: own.id,
            epoch: own.epoch,
            claimed,
            cursor: b"0".to_vec(),
        });
        Ok(())
    }

    /// One `SCAN` on the node being walked; at the end of its walk, the slots it proved done.
    async fn page(&mut self) -> RedisResult<()> {
        let Some(walk) = &self.current else {
            return Ok(());
        };
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(&walk.cursor[..]);
        if let Some(pattern) = &self.options.pattern {
            cmd.arg("MATCH").arg(&pattern[..]);
        }
        if let Some(count) = self.options.count {
            cmd.arg("COUNT").arg(count);
        }
        if let Some(key_type) = &self.options.key_type {
            cmd.arg("TYPE").arg(key_type);
        }
        let mut node = self.conn.on_node(&walk.target.scan)?;
        let reply: Value = cmd.query_async(&mut node).await?;
        let (cursor, keys) = parse_scan_reply(reply).ok_or_else(|| {
            RedisError::from((
                ErrorKind::UnexpectedReturnType,
                "unexpected SCAN reply",
                format!(
                    "redis cluster client {:?}: SCAN on {} answered neither a cursor nor keys",
                    self.conn.name(),
                    walk.target.scan
                ),
            ))
        })?;
        self.progressed_at = Instant::now();
        self.idle = 0;
        for key in keys {
            // A key of a slot this walk does not claim is another node's to return: its slot
            // is migrating here, or is walked elsewhere.
            if walk.claimed.contains(key_slot(&key)) {
                let key = Value::BulkString(key);
                let converted = T::from_redis_value_ref(&key).map_err(|error| {
                    let shown = match &key {
                        Value::BulkString(key) => shown_key(key),
                        _ => String::new(),
                    };
                    RedisError::from((
                        ErrorKind::UnexpectedReturnType,
                        "scanned key not convertible",
                        format!(
                            "redis cluster client {:?}: key {} from SCAN on {} cannot be read \
                             as the scan's key type ({error}); cluster_scan::<Vec<u8>>() reads \
                             any key",
                            self.conn.name(),
                            shown,
                            walk.target.scan
                        ),
                    ))
                })?;
                self.keys.push_back(converted);
            }
        }
        if cursor != b"0" {
            if let Some(walk) = &mut self.current {
                walk.cursor = cursor;
            }
            return Ok(());
        }
        let Some(walk) = self.current.take() else {
            return Ok(());
        };
        self.finish(walk).await
    }

    /// Marks done the slots the walk claimed that its primary still serves, not migrating, with
    /// the same id and config epoch, and (for a replica) that the node walked still replicates.
    async fn finish(&mut self, walk: NodeWalk) -> RedisResult<()> {
        let Some(own) = myself(&self.conn, &walk.target.primary).await? else {
            return Ok(());
        };
        if own.id != walk.primary_id || own.epoch != walk.epoch {
            return Ok(());
        }
        if walk.target.scan != walk.target.primary
            && !replicates(&self.conn, &walk.target.scan, &own.id).await?
        {
            return Ok(());
        }
        let done = walk
            .claimed
            .intersection(&own.slots)
            .difference(&own.moving);
        if !done.is_empty() {
            self.pending = self.pending.difference(&done);
            self.round_progressed = true;
            self.progressed_at = Instant::now();
        }
        Ok(())
    }

    async fn back_off(&mut self) {
        let wait = Duration::from_millis(50) * 2u32.pow(self.idle.min(4));
        self.idle = self.idle.saturating_add(1);
        tokio::time::sleep(wait).await;
    }
}

/// What the node at `addr` says of itself, if it is a primary.
async fn myself(conn: &MonitoredClusterRedisConnection, addr: &str) -> RedisResult<Option<Myself>> {
    let text: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut conn.on_node(addr)?)
        .await?;
    Ok(parse_nodes(&text)
        .into_iter()
        .find(|node| node.myself && node.primary)
        .map(|node| Myself {
            id: node.id,
            epoch: node.epoch,
            slots: node.slots,
            moving: node.moving,
        }))
}

/// Whether the node at `addr` replicates the primary `primary_id`, as it says itself.
async fn replicates(
    conn: &MonitoredClusterRedisConnection,
    addr: &str,
    primary_id: &str,
) -> RedisResult<bool> {
    let text: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut conn.on_node(addr)?)
        .await?;
    Ok(parse_nodes(&text)
        .iter()
        .any(|node| node.myself && node.master.as_deref() == Some(primary_id)))
}

/// What a primary says of itself.
struct Myself {
    id: String,
    epoch: u64,
    slots: Slots,
    /// Slots migrating out or being imported.
    moving: Slots,
}

/// Whether retrying after planning again may help: the node or the cluster is in trouble, as
/// during a failover, rather than the request being wrong.
fn transient(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || matches!(
            error.kind(),
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::Moved
                        | ServerErrorKind::Ask
                )
        )
}

/// `SCAN`'s reply: the next cursor and the keys, as bytes.
fn parse_scan_reply(reply: Value) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
    let Value::Array(mut parts) = reply else {
        return None;
    };
    if parts.len() != 2 {
        return None;
    }
    let keys = parts.pop()?;
    let cursor = match parts.pop()? {
        Value::BulkString(cursor) => cursor,
        Value::SimpleString(cursor) => cursor.into_bytes(),
        Value::Int(cursor) => cursor.to_string().into_bytes(),
        _ => return None,
    };
    let Value::Array(keys) = keys else {
        return None;
    };
    let keys = keys
        .into_iter()
        .map(|key| match key {
            Value::BulkString(key) => Some(key),
            Value::SimpleString(key) => Some(key.into_bytes()),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some((cursor, keys))
}

/// A node as a `CLUSTER NODES` line describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NodeLine {
    id: String,
    /// `host:port` of its client port.
    addr: String,
    myself: bool,
    primary: bool,
    /// Flagged `fail` or `fail?`.
    failed: bool,
    /// The id of its primary, for a replica.
    master: Option<String>,
    epoch: u64,
    slots: Slots,
    /// Slots it migrates out or imports (`[slot->-id]`, `[slot-<-id]`), listed on its own line only.
    moving: Slots,
}

/// The nodes of a `CLUSTER NODES` reply that have an address.
fn parse_nodes(text: &str) -> Vec<NodeLine> {
    text.lines().filter_map(parse_node_line).collect()
}

fn parse_node_line(line: &str) -> Option<NodeLine> {
    let mut fields = line.split_whitespace();
    let id = fields.next()?.to_owned();
    // `host:port@cport[,hostname]`
    let addr = fields.next()?.split([',', '@']).next()?.to_owned();
    if addr.starts_with(':') {
        // A node without an address yet (`noaddr`, or one being added).
        return None;
    }
    let flags: Vec<&str> = fields.next()?.split(',').collect();
    let master = Some(fields.next()?)
        .filter(|m| *m != "-")
        .map(str::to_owned);
    let epoch = fields.nth(2)?.parse().ok()?;
    let _link_state = fields.next()?;
    let mut slots = Slots::none();
    let mut moving = Slots::none();
    for token in fields {
        if let Some(inner) = token.strip_prefix('[') {
            // `[slot->-id]` or `[slot-<-id]`
            let slot = inner.split('-').next().and_then(|s| s.parse::<u16>().ok());
            if let Some(slot) = slot {
                moving.insert(slot);
            }
            continue;
        }
        let (start, end) = token.split_once('-').unwrap_or((token, token));
        if let (Ok(start), Ok(end)) = (start.parse::<u16>(), end.parse::<u16>()) {
            for slot in start..=end {
                slots.insert(slot);
            }
        }
    }
    Some(NodeLine {
        id,
        addr,
        myself: flags.contains(&"myself"),
        primary: flags.contains(&"master"),
        failed: flags.iter().any(|f| *f == "fail" || *f == "fail?"),
        master,
        epoch,
        slots,
        moving,
    })
}

/// A set of hash slots.
#[derive(Clone, PartialEq, Eq)]
struct Slots(Box<[u64; 256]>);

impl std::fmt::Debug for Slots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Slots({} slots)", self.len())
    }
}

impl Slots {
    fn none() -> Self {
        Self(Box::new([0; 256]))
    }

    fn all() -> Self {
        Self(Box::new([u64::MAX; 256]))
    }

    fn insert(&mut self, slot: u16) {
        if let Some(word) = self.0.get_mut(usize::from(slot / 64)) {
            *word |= 1 << (slot % 64);
        }
    }

    fn contains(&self, slot: u16) -> bool {
        self.0
            .get(usize::from(slot / 64))
            .is_some_and(|word| word & (1 << (slot % 64)) != 0)
    }

    fn intersection(&self, other: &Slots) -> Slots {
        let mut out = self.clone();
        for (a, b) in out.0.iter_mut().zip(other.0.iter()) {
            *a &= b;
        }
        out
    }

    fn difference(&self, other: &Slots) -> Slots {
        let mut out = self.clone();
        for (a, b) in out.0.iter_mut().zip(other.0.iter()) {
            *a &= !b;
        }
        out
    }

    fn is_empty(&self) -> bool {
        self.0.iter().all(|word| *word == 0)
    }

    fn len(&self) -> usize {
        self.0.iter().map(|word| word.count_ones() as usize).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_lines_give_ownership_and_migrations() {
        let text = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,node-a myself,master - 0 1426238317239 4 connected 0-3 5 [6->-e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca] [7-<-292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f]
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 slave,fail? 07c37dfeb235213a872192d90877d0cd55635b91 0 1426238316232 4 connected
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f :0@0 master,noaddr - 0 0 0 disconnected
";
        let nodes = parse_nodes(text);
        assert_eq!(nodes.len(), 2);
        let primary = &nodes[0];
        assert_eq!(primary.addr, "127.0.0.1:30004");
        assert!(primary.myself && primary.primary && !primary.failed);
        assert_eq!(primary.epoch, 4);
        assert_eq!(primary.master, None);
        let owned: Vec<u16> = (0..16).filter(|&s| primary.slots.contains(s)).collect();
        assert_eq!(owned, [0, 1, 2, 3, 5]);
        let moving: Vec<u16> = (0..16).filter(|&s| primary.moving.contains(s)).collect();
        assert_eq!(moving, [6, 7]);
        let replica = &nodes[1];
        assert!(!replica.myself && !replica.primary && replica.failed);
        assert_eq!(replica.master.as_deref(), Some(primary.id.as_str()));
        assert!(replica.slots.is_empty());
    }

    #[test]
    fn slot_sets_combine() {
        let mut a = Slots::none();
        for slot in [0, 63, 64, 16_383] {
            a.insert(slot);
        }
        assert_eq!(a.len(), 4);
        let mut b = Slots::none();
        b.insert(63);
        b.insert(100);
        assert_eq!(a.intersection(&b).len(), 1);
        assert!(a.intersection(&b).contains(63));
        assert_eq!(a.difference(&b).len(), 3);
        assert!(!a.difference(&b).contains(63));
        assert_eq!(Slots::all().len(), 16_384);
        assert!(Slots::all().difference(&Slots::all()).is_empty());
    }

    #[test]
    fn scan_replies_give_the_cursor_and_the_keys() {
        let reply = Value::Array(vec![
            Value::BulkString(b"17".to_vec()),
            Value::Array(vec![
                Value::BulkString(b"a".to_vec()),
                Value::BulkString(b"\xff".to_vec()),
            ]),
        ]);
        assert_eq!(
            parse_scan_reply(reply),
            Some((b"17".to_vec(), vec![b"a".to_vec(), b"\xff".to_vec()]))
        );
        assert_eq!(parse_scan_reply(Value::Nil), None);
        assert_eq!(
            parse_scan_reply(Value::Array(vec![Value::BulkString(b"0".to_vec())])),
            None
        );
    }

    #[test]
    fn only_trouble_with_nodes_is_retried() {
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(transient(&io));
        let down = RedisError::from((
            ErrorKind::Server(ServerErrorKind::ClusterDown),
            "CLUSTERDOWN",
        ));
        assert!(transient(&down));
        let syntax = RedisError::from((
            ErrorKind::Server(ServerErrorKind::ResponseError),
            "syntax error",
        ));
        assert!(!transient(&syntax));
    }
}
