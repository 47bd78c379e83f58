//! The client's errors: configuration, and the failures of calls (the pool's, deadlines, the
//! client's side of a connection) carried inside a `RedisError`, each naming the client.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use baseplate_config::ConfigError;

/// Why a cluster client could not be configured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterConfigError {
    /// A key is missing, malformed or unknown; the message names the full key.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A value parsed but is out of range or inconsistent, e.g. a sample rate above 1.
    #[error("{key}: {reason}")]
    Invalid {
        /// The full key, e.g. `foo.track_key_reads_sample_rate`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The prefix passed to [`cluster_pool_from_config`](crate::cluster_pool_from_config) is
    /// empty (or only a dot): it names no client.
    #[error("the config prefix {prefix:?} names no client")]
    Prefix {
        /// The prefix as given.
        prefix: String,
    },
}

/// A command could not get one of the `max_connections` permits within the wait the pool allows.
///
/// It reaches callers inside a [`redis::RedisError`] (an I/O error of kind `TimedOut`, so
/// `RedisError::is_timeout` is true); [`PoolTimeout::find`] recovers it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "redis cluster client {client:?}: all {max_connections} permits (max_connections) stayed busy for {waited:?}"
)]
pub struct PoolTimeout {
    /// The client's name (its config prefix without the dot).
    pub client: String,
    /// The pool's size.
    pub max_connections: usize,
    /// How long the caller waited.
    pub waited: Duration,
}

impl PoolTimeout {
    /// The pool timeout inside `error`, if that is what it is.
    ///
    /// ```
    /// use std::time::Duration;
    /// use baseplate_redis_cluster::PoolTimeout;
    ///
    /// let timeout = PoolTimeout { client: "foo".into(), max_connections: 2, waited: Duration::from_secs(1) };
    /// let error = redis::RedisError::from(timeout.clone());
    /// assert!(error.is_timeout());
    /// assert_eq!(PoolTimeout::find(&error), Some(&timeout));
    /// ```
    pub fn find(error: &redis::RedisError) -> Option<&PoolTimeout> {
        find_io(error)
    }
}

impl From<PoolTimeout> for redis::RedisError {
    fn from(timeout: PoolTimeout) -> Self {
        io::Error::new(io::ErrorKind::TimedOut, timeout).into()
    }
}

/// Opening a cluster connection took longer than the connect timeout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("redis cluster client {client:?}: connecting to the cluster took longer than {after:?}")]
pub struct ConnectTimeout {
    /// The client's name.
    pub client: String,
    /// The connect timeout that ran out.
    pub after: Duration,
}

impl ConnectTimeout {
    /// The connect timeout inside `error`, if that is what it is.
    ///
    /// ```
    /// use std::time::Duration;
    /// use baseplate_redis_cluster::ConnectTimeout;
    ///
    /// let timeout = ConnectTimeout { client: "foo".into(), after: Duration::from_secs(1) };
    /// let error = redis::RedisError::from(timeout.clone());
    /// assert!(error.is_timeout());
    /// assert_eq!(ConnectTimeout::find(&error), Some(&timeout));
    /// ```
    pub fn find(error: &redis::RedisError) -> Option<&ConnectTimeout> {
        find_io(error)
    }
}

impl From<ConnectTimeout> for redis::RedisError {
    fn from(timeout: ConnectTimeout) -> Self {
        io::Error::new(io::ErrorKind::TimedOut, timeout).into()
    }
}

/// `cache_hot_keys` is on and a node refused what the cache needs: RESP3 (`HELLO 3`) or
/// `CLIENT TRACKING` (Redis 6 and later have both). Every command of the client fails with it
/// until the cache is turned off or the server upgraded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "redis cluster client {client:?}: cache_hot_keys needs RESP3 and CLIENT TRACKING (Redis 6 or \
     later), and the cluster refused them ({refusal}); turn {client}.cache_hot_keys off or \
     upgrade the servers"
)]
pub struct CacheUnsupported {
    /// The client's name.
    pub client: String,
    /// What the server answered.
    pub refusal: String,
}

impl CacheUnsupported {
    /// `error` as a [`CacheUnsupported`] if it is a node refusing RESP3 or tracking while
    /// connecting; any other error as it is.
    pub(crate) fn from_refusal(client: &str, error: redis::RedisError) -> redis::RedisError {
        let refused_resp3 = error.kind() == redis::ErrorKind::RESP3NotSupported;
        let text = error.to_string();
        // redis-rs passes the server's answer on: "unknown command 'HELLO'" from a server without
        // RESP3, an error about CLIENT TRACKING from one without tracking.
        let refused = ["HELLO", "TRACKING", "Client-side caching"]
            .iter()
            .any(|needle| text.contains(needle));
        if !refused_resp3 && !refused {
            return error;
        }
        let refusal = CacheUnsupported {
            client: client.to_owned(),
            refusal: text,
        };
        redis::RedisError::from((
            redis::ErrorKind::Client,
            CACHE_UNSUPPORTED,
            refusal.to_string(),
        ))
    }
}

/// The description of a [`CacheUnsupported`] carried in a `RedisError`.
const CACHE_UNSUPPORTED: &str = "hot-key cache unsupported";

/// A transaction's commands do not all hash to one slot, so it cannot run atomically on one node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "redis cluster client {client:?}: transaction {name:?} touches more than one slot; \
     put its keys in one hash slot with a {{hash tag}}"
)]
pub struct CrossSlotTransaction {
    /// The client's name.
    pub client: String,
    /// The transaction's name.
    pub name: String,
}

impl From<CrossSlotTransaction> for redis::RedisError {
    fn from(error: CrossSlotTransaction) -> Self {
        redis::RedisError::from((
            redis::ErrorKind::Client,
            CROSS_SLOT_TRANSACTION,
            error.to_string(),
        ))
    }
}

/// The description of a [`CrossSlotTransaction`] carried in a `RedisError`.
const CROSS_SLOT_TRANSACTION: &str = "cross-slot transaction";

/// The description of a [`PlainScan`] carried in a `RedisError`.
const PLAIN_SCAN: &str = "plain SCAN on a cluster";

/// The description of a [`CrossSlotScript`] carried in a `RedisError`.
const CROSS_SLOT_SCRIPT: &str = "cross-slot script";

/// The description of a [`SharedConnectionCommand`] carried in a `RedisError`.
const SHARED_CONNECTION_COMMAND: &str = "command would change a shared connection";

/// A plain `SCAN` was sent through the connection. On a cluster it would walk the keys of one
/// node, picked at random, and its cursor would mean nothing to the next node asked; the cluster
/// scan ([`MonitoredClusterRedisConnection::cluster_scan`](crate::MonitoredClusterRedisConnection::cluster_scan))
/// walks every node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "redis cluster client {client:?}: SCAN would walk the keys of one random node; \
     use cluster_scan() to walk every node's keys"
)]
pub struct PlainScan {
    /// The client's name.
    pub client: String,
}

impl From<PlainScan> for redis::RedisError {
    fn from(error: PlainScan) -> Self {
        redis::RedisError::from((redis::ErrorKind::Client, PLAIN_SCAN, error.to_string()))
    }
}

/// A command that changes the state of its connection (`SUBSCRIBE`, `MULTI`, `WATCH`, `MONITOR`,
/// `RESET`, `HELLO`, `AUTH`, `QUIT`, `READONLY`, `CLIENT REPLY`, `CLIENT TRACKING`...) was sent
/// through the client, whose node connections every caller shares: it would break their
/// commands, so nothing was sent. Subscribe with
/// [`MonitoredClusterRedisConnection::subscriber`](crate::MonitoredClusterRedisConnection::subscriber),
/// run transactions with
/// [`MonitoredClusterRedisConnection::transaction`](crate::MonitoredClusterRedisConnection::transaction).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error(
    "redis cluster client {client:?}: {command} would change the connection other callers \
     share ({reason}); nothing was sent"
)]
pub struct SharedConnectionCommand {
    /// The client's name.
    pub client: String,
    /// The command, upper case: `MONITOR`, `CLIENT REPLY`.
    pub command: String,
    /// What it would break.
    pub reason: &'static str,
}

impl From<SharedConnectionCommand> for redis::RedisError {
    fn from(error: SharedConnectionCommand) -> Self {
        redis::RedisError::from((
            redis::ErrorKind::Client,
            SHARED_CONNECTION_COMMAND,
            error.to_string(),
        ))
    }
}

/// A script or function call (`EVAL`, `EVALSHA`, `FCALL` and their `_RO` forms) names keys in
/// more than one hash slot, so no node can run it; nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error(
    "redis cluster client {client:?}: {command} keys {first:?} (slot {first_slot}) and {other:?} \
     (slot {other_slot}) are in different hash slots; a script's keys must share one slot: put \
     them in one with a {{hash tag}}"
)]
pub struct CrossSlotScript {
    /// The client's name.
    pub client: String,
    /// The command, upper case: `EVALSHA`, `FCALL`.
    pub command: String,
    /// The script's first key (shown lossily when it is not UTF-8).
    pub first: String,
    /// Its slot.
    pub first_slot: u16,
    /// The first key in another slot.
    pub other: String,
    /// Its slot.
    pub other_slot: u16,
}

impl From<CrossSlotScript> for redis::RedisError {
    fn from(error: CrossSlotScript) -> Self {
        redis::RedisError::from((
            redis::ErrorKind::Client,
            CROSS_SLOT_SCRIPT,
            error.to_string(),
        ))
    }
}

/// A call got no reply within its deadline: `timeout` (or `socket_timeout` when that is longer)
/// from the moment it was made, its wait for a permit, connecting, redirections and retries
/// included.
///
/// It reaches callers inside a [`redis::RedisError`] (an I/O error of kind `TimedOut`, so
/// `RedisError::is_timeout` is true, with redis-rs's own error, if any, as its source);
/// [`CallTimeout::find`] recovers it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
#[error(
    "redis cluster client {client:?}: no reply to {command}{key} within {after:?}{waited}",
    key = self.key.as_deref().map(|key| format!(" {key}")).unwrap_or_default()
        + &self.node.as_deref().map(|node| format!(" from {node}")).unwrap_or_default(),
    waited = if self.waited_for_permit.is_zero() {
        String::new()
    } else {
        format!(" ({:?} of it waiting for one of the pool's permits)", self.waited_for_permit)
    }
)]
pub struct CallTimeout {
    /// The client's name.
    pub client: String,
    /// What was called: `GET`, `pipeline_bar`.
    pub command: String,
    /// The command's first key, quoted (see [`CallFailed::key`]); none for pipelines and keyless
    /// commands.
    pub key: Option<String>,
    /// The node the call went to, `host:port`, when it addressed one slot whose primary is known
    /// (a read may have gone to one of its replicas).
    pub node: Option<String>,
    /// The deadline that ran out.
    pub after: Duration,
    /// How much of it the call spent waiting for a permit (the pool's other callers held them
    /// all): zero when one was free at once.
    pub waited_for_permit: Duration,
    /// What redis-rs reported, when its own timeout fired first.
    #[source]
    pub source: Option<redis::RedisError>,
}

impl CallTimeout {
    /// The call timeout inside `error`, if that is what it is.
    pub fn find(error: &redis::RedisError) -> Option<&CallTimeout> {
        find_io(error)
    }
}

impl From<CallTimeout> for redis::RedisError {
    fn from(timeout: CallTimeout) -> Self {
        io::Error::new(io::ErrorKind::TimedOut, timeout).into()
    }
}

/// A call failed on the client's side (a connection refused or dropped, no node for a slot): the
/// client and the call named, redis-rs's error kept as the source. Error replies, the server's own
/// answers, reach callers as redis-rs reports them.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
#[error(
    "redis cluster client {client:?}: {command}{key} failed: {source}",
    key = self.key.as_deref().map(|key| format!(" {key}")).unwrap_or_default()
        + &self.node.as_deref().map(|node| format!(" on {node}")).unwrap_or_default()
)]
pub struct CallFailed {
    /// The client's name.
    pub client: String,
    /// What was called: `GET`, `pipeline_bar`.
    pub command: String,
    /// The command's first key, quoted as Rust quotes a string (bytes that are not UTF-8 shown
    /// as `\u{FFFD}`), and cut to its first 100 characters; none for pipelines and keyless
    /// commands.
    pub key: Option<String>,
    /// The node the call was sent to, `host:port`, when the caller named one
    /// ([`MonitoredClusterRedisConnection::on_node`](crate::MonitoredClusterRedisConnection::on_node)).
    pub node: Option<String>,
    /// What redis-rs reported.
    #[source]
    pub source: redis::RedisError,
}

impl CallFailed {
    /// The failure inside `error`, if that is what it is.
    pub fn find(error: &redis::RedisError) -> Option<&CallFailed> {
        find_io(error)
    }
}

/// An error of ours carried inside a `RedisError` as an I/O error's inner error.
fn find_io<T: std::error::Error + 'static>(error: &redis::RedisError) -> Option<&T> {
    // redis-rs keeps an I/O error as the `Arc` its `source()` returns.
    std::error::Error::source(error)?
        .downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>()?
        .downcast_ref::<io::Error>()?
        .get_ref()?
        .downcast_ref::<T>()
}

/// `error.type` on a failed call's span: a low-cardinality class of `error`, as OpenTelemetry's
/// conventions ask. An error reply's prefix (`WRONGTYPE`, `ERR`, `MOVED`), the client's own
/// errors by their type's name (`CallTimeout`), else redis-rs's error kind (`Io`, `Client`,
/// `UnexpectedReturnType`...), the one a [`CallFailed`] keeps as its source for failures on the
/// client's side.
pub(crate) fn error_type(error: &redis::RedisError) -> std::borrow::Cow<'_, str> {
    if let Some(code) = error.code() {
        return code.into();
    }
    let ours = if PoolTimeout::find(error).is_some() {
        "PoolTimeout"
    } else if CallTimeout::find(error).is_some() {
        "CallTimeout"
    } else if find_io::<ConnectTimeout>(error).is_some() {
        "ConnectTimeout"
    } else if let Some(ours) = [
        (CROSS_SLOT_TRANSACTION, "CrossSlotTransaction"),
        (CROSS_SLOT_SCRIPT, "CrossSlotScript"),
        (PLAIN_SCAN, "PlainScan"),
        (SHARED_CONNECTION_COMMAND, "SharedConnectionCommand"),
    ]
    .into_iter()
    .find_map(|(description, name)| {
        (error.kind() == redis::ErrorKind::Client && error.to_string().starts_with(description))
            .then_some(name)
    }) {
        ours
    } else {
        let kind = CallFailed::find(error).map_or(error.kind(), |failed| failed.source.kind());
        return format!("{kind:?}").into();
    };
    ours.into()
}

/// Whether `error` is one of the client's own, which name the client already.
pub(crate) fn names_client(error: &redis::RedisError) -> bool {
    error.to_string().contains("redis cluster client \"")
}

/// `key` as errors show it: quoted, at most [`SHOWN_KEY_CHARS`] characters of it.
pub(crate) fn shown_key(key: &[u8]) -> String {
    let text = String::from_utf8_lossy(key);
    match text.char_indices().nth(SHOWN_KEY_CHARS) {
        Some((cut, _)) => format!("{:?}...", &text[..cut]),
        None => format!("{text:?}"),
    }
}

/// How much of a key an error shows.
const SHOWN_KEY_CHARS: usize = 100;

/// `error` as callers of the client `client` see it: naming the client, what was called and the
/// first key of `cmd`, keeping redis-rs's error kind (the I/O error's kind for I/O errors) and
/// source. Error replies and the client's own errors, which already say all that, pass through.
pub(crate) fn name_call_error(
    error: redis::RedisError,
    client: &str,
    command: &dyn std::fmt::Display,
    cmd: Option<&redis::Cmd>,
    node: Option<&str>,
) -> redis::RedisError {
    use redis::ErrorKind;
    if matches!(error.kind(), ErrorKind::Server(_) | ErrorKind::Extension) || names_client(&error) {
        return error;
    }
    // Looked for only now: error replies, the common failures, pass through without it.
    let key = cmd.and_then(crate::routing::first_key_of);
    if error.kind() != ErrorKind::Io {
        // Only an I/O error can carry ours as its source; the others keep their kind this way.
        return redis::RedisError::from((
            error.kind(),
            "redis cluster client call failed",
            format!(
                "redis cluster client {client:?}: {command}{}{} failed: {error}",
                key.map(|key| format!(" {}", shown_key(key)))
                    .unwrap_or_default(),
                node.map(|node| format!(" on {node}")).unwrap_or_default()
            ),
        ));
    }
    let io_kind = std::error::Error::source(&error)
        .and_then(|source| source.downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>())
        .and_then(|source| source.downcast_ref::<io::Error>())
        // redis-rs's own I/O-kind errors ("connection dropped", "failed to create initial
        // connections") carry no I/O error: ConnectionAborted keeps `is_connection_dropped()`
        // true for them, as it was.
        .map_or(io::ErrorKind::ConnectionAborted, io::Error::kind);
    let failed = CallFailed {
        client: client.to_owned(),
        command: command.to_string(),
        key: key.map(shown_key),
        node: node.map(str::to_owned),
        source: error,
    };
    io::Error::new(io_kind, failed).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(key: &[u8]) -> redis::Cmd {
        redis::cmd("GET").arg(key).clone()
    }

    #[test]
    fn error_types_name_the_reply_prefix_or_the_clients_error() {
        let error_type = |error: redis::RedisError| error_type(&error).into_owned();
        let wrongtype = redis::make_extension_error(
            "WRONGTYPE".to_owned(),
            Some("Operation against a key holding the wrong kind of value".to_owned()),
        );
        assert_eq!(error_type(wrongtype), "WRONGTYPE");
        let crossed = CrossSlotTransaction {
            client: "foo".to_owned(),
            name: "tx".to_owned(),
        };
        assert_eq!(error_type(crossed.into()), "CrossSlotTransaction");
        let scan = PlainScan {
            client: "foo".to_owned(),
        };
        assert_eq!(error_type(scan.into()), "PlainScan");
        let connect = ConnectTimeout {
            client: "foo".to_owned(),
            after: Duration::from_secs(1),
        };
        assert_eq!(error_type(connect.into()), "ConnectTimeout");
        let call = CallTimeout {
            client: "foo".to_owned(),
            command: "GET".to_owned(),
            key: None,
            node: None,
            after: Duration::from_secs(1),
            waited_for_permit: Duration::ZERO,
            source: None,
        };
        assert_eq!(error_type(call.into()), "CallTimeout");
        let refused = redis::RedisError::from(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(
            error_type(name_call_error(
                refused,
                "foo",
                &"GET",
                Some(&get(b"k")),
                None
            )),
            "Io"
        );
    }

    #[test]
    fn a_failed_calls_error_names_its_key_quoted_and_cut_short() {
        let refused = || redis::RedisError::from(io::Error::from(io::ErrorKind::ConnectionRefused));
        let shown = |key: &[u8]| {
            name_call_error(refused(), "foo", &"GET", Some(&get(key)), None)
                .to_string()
                .split(" failed: ")
                .next()
                .unwrap()
                .to_owned()
        };
        assert_eq!(
            shown(b"user:1"),
            "redis cluster client \"foo\": GET \"user:1\""
        );
        assert_eq!(
            shown(b"say \"hi\"\n\xff"),
            "redis cluster client \"foo\": GET \"say \\\"hi\\\"\\n\u{fffd}\""
        );
        let long = "k".repeat(150);
        assert_eq!(
            shown(long.as_bytes()),
            format!(
                "redis cluster client \"foo\": GET \"{}\"...",
                "k".repeat(100)
            )
        );
        let failed = name_call_error(refused(), "foo", &"GET", Some(&get(b"user:1")), None);
        assert_eq!(
            CallFailed::find(&failed).and_then(|f| f.key.clone()),
            Some("\"user:1\"".to_owned())
        );
        let on_node = name_call_error(
            refused(),
            "foo",
            &"GET",
            Some(&get(b"k")),
            Some("10.0.0.1:7000"),
        );
        assert!(
            on_node
                .to_string()
                .starts_with("redis cluster client \"foo\": GET \"k\" on 10.0.0.1:7000 failed: "),
            "{on_node}"
        );
        let timeout = CallTimeout {
            client: "foo".to_owned(),
            command: "GET".to_owned(),
            key: Some(shown_key(b"user:1")),
            node: Some("127.0.0.1:7001".to_owned()),
            after: Duration::from_secs(1),
            waited_for_permit: Duration::ZERO,
            source: None,
        };
        assert_eq!(
            timeout.to_string(),
            "redis cluster client \"foo\": no reply to GET \"user:1\" from 127.0.0.1:7001 within 1s"
        );
    }
}
