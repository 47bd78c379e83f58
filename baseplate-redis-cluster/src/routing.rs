//! Routing: baseplate's replica reads (a random node among a slot's primary and replicas), and the
//! cluster topology that lets a pipeline be split into one sub-pipeline per node.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use baseplate_hotkeys::{CommandSpec, KeyPositions, command_of};
use rand::RngExt as _;
use redis::Cmd;
use redis::cluster::NodeAddress;
use redis::cluster_read_routing::{
    ClusterTopology, ReadCandidates, ReadRoutingStrategy, ReadRoutingStrategyFactory,
};
use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};

/// The number of hash slots in a Redis Cluster.
const SLOTS: u16 = 16_384;

/// Shared by every connection of one pool: how reads are routed, and the latest topology seen.
#[derive(Debug, Default)]
pub(crate) struct Router {
    read_from_replicas: bool,
    topology: RwLock<Option<ClusterTopology>>,
    /// How many different topologies redis-rs has reported in turn: the hot-key cache drops what
    /// it read under an earlier one (a failover or a slot move may have made it stale without a
    /// word from the server it came from). A report of the topology already known (every new
    /// connection reads it) does not count.
    topologies: AtomicU64,
}

impl Router {
    pub(crate) fn new(read_from_replicas: bool) -> Arc<Self> {
        Arc::new(Self {
            read_from_replicas,
            topology: RwLock::new(None),
            topologies: AtomicU64::new(0),
        })
    }

    /// Whether replicas serve reads (`read_from_replicas`).
    pub(crate) fn reads_from_replicas(&self) -> bool {
        self.read_from_replicas
    }

    /// How many different topologies redis-rs has reported in turn so far.
    pub(crate) fn topologies(&self) -> u64 {
        self.topologies.load(Ordering::Acquire)
    }

    /// How many nodes (primaries and replicas) the topology lists, if it is known yet: a cluster
    /// connection keeps one socket to each.
    pub(crate) fn node_count(&self) -> Option<usize> {
        let topology = self.topology.read().ok()?;
        let shards = topology.as_ref()?.shards();
        Some(shards.map(|shard| 1 + shard.replicas().len()).sum())
    }

    /// The primary serving `slot` as `host:port`, if the topology is known yet.
    pub(crate) fn primary_of(&self, slot: u16) -> Option<String> {
        let topology = self.topology.read().ok()?;
        let shard = topology.as_ref()?.shard_for_slot(slot)?;
        Some(shard.primary().to_string())
    }

    /// The node a command for `slot` goes to, if it can be known before redis-rs routes it: the
    /// slot's primary for writes, and for reads too unless they may go to a replica (replica
    /// reads on, and the slot has replicas), when redis-rs asks [`RouterFactory::route_read`] to
    /// pick one at random as it sends the command and does not say which it picked.
    pub(crate) fn node_for(&self, slot: u16, read_only: bool) -> Option<NodeAddress> {
        let topology = self.topology.read().ok()?;
        let shard = topology.as_ref()?.shard_for_slot(slot)?;
        if read_only && self.read_from_replicas && !shard.replicas().is_empty() {
            return None;
        }
        Some(shard.primary().clone())
    }

    /// Takes `topology` as the cluster's, as redis-rs reports each one it reads, and counts it
    /// when it differs from the one known.
    pub(crate) fn learn(&self, topology: ClusterTopology) {
        let mut current = self
            .topology
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let changed = current
            .as_ref()
            .is_none_or(|known| layout(known) != layout(&topology));
        *current = Some(topology);
        if changed {
            self.topologies.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Whether `node` is a primary or a replica in the topology (`true` while none is known yet):
    /// redis-rs keeps a connection to these nodes and to no other.
    pub(crate) fn lists(&self, node: &NodeAddress) -> bool {
        let Ok(topology) = self.topology.read() else {
            return true;
        };
        topology.as_ref().is_none_or(|topology| {
            topology
                .shards()
                .any(|shard| shard.primary() == node || shard.replicas().contains(node))
        })
    }
}

/// One shard as a topology lists it: its slot ranges, primary and replicas (sorted).
type ShardLayout<'a> = (&'a [(u16, u16)], &'a NodeAddress, Vec<&'a NodeAddress>);

/// What a topology says: its shards, in an order of their own (redis-rs lists them as `CLUSTER
/// SLOTS` did).
fn layout(topology: &ClusterTopology) -> Vec<ShardLayout<'_>> {
    let mut shards: Vec<_> = topology
        .shards()
        .map(|shard| {
            let mut replicas: Vec<_> = shard.replicas().iter().collect();
            replicas.sort_unstable();
            (shard.slot_ranges(), shard.primary(), replicas)
        })
        .collect();
    shards.sort_unstable();
    shards
}

/// The factory redis-rs asks for a strategy per connection; all of them share the pool's [`Router`].
#[derive(Debug, Clone)]
pub(crate) struct RouterFactory(pub(crate) Arc<Router>);

impl ReadRoutingStrategyFactory for RouterFactory {
    fn create_strategy(&self) -> Box<dyn ReadRoutingStrategy> {
        Box::new(self.clone())
    }
}

impl ReadRoutingStrategy for RouterFactory {
    fn on_topology_changed(&self, topology: ClusterTopology) {
        self.0.learn(topology);
    }

    fn route_read<'a>(&self, candidates: &ReadCandidates<'a>) -> &'a NodeAddress {
        match candidates {
            // baseplate.py's `random.choice(self.nodes.slots[slot])`: the primary is a candidate too.
            ReadCandidates::AnyNode(c) if self.0.read_from_replicas => {
                let replicas = c.replicas();
                let pick = rand::rng().random_range(0..=replicas.len().get());
                replicas.get(pick).unwrap_or(c.primary())
            }
            ReadCandidates::AnyNode(c) => c.primary(),
            // Only commands that demand a replica get here; honour that.
            ReadCandidates::ReplicasOnly(c) => c.replicas().choose_random(),
        }
    }
}

/// Where a command that addresses one slot goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CmdRoute {
    /// The hash slot of the command's first key.
    pub(crate) slot: u16,
    /// Whether the command only reads, so a replica may serve it.
    pub(crate) read_only: bool,
}

impl CmdRoute {
    /// The route redis-rs takes it by: the slot's primary, or for a read any node serving the
    /// slot (the router decides, as for single reads).
    pub(crate) fn routing(self) -> SingleNodeRoutingInfo {
        let addr = if self.read_only {
            SlotAddr::ReplicaOptional
        } else {
            SlotAddr::Master
        };
        SingleNodeRoutingInfo::SpecificNode(Route::new(self.slot, addr))
    }
}

/// The route of a command by its first key; `None` for keyless commands.
///
/// redis-rs keeps its routing tables private, so pipelines are split with `baseplate-hotkeys`'s
/// command table, the one that also says which keys the hot-key tracker counts: it knows where
/// the first key is for the commands that do not take it first (`EVAL`-like commands, the
/// `numkeys` family, `XREAD ... STREAMS key`, `OBJECT ENCODING key`, `BITOP op destkey`) and
/// which server commands name no key. A command it does not know is routed by its first argument;
/// the node answers a misplaced one with `MOVED`, and the command follows it (see `redirects`
/// for one in a pipeline).
pub(crate) fn route_of(cmd: &Cmd) -> Option<CmdRoute> {
    let (key, spec) = first_key_and_row(cmd)?;
    // Anything but a read, known or not, goes to the primary.
    Some(CmdRoute {
        slot: key_slot(key),
        read_only: spec.as_ref().is_some_and(only_reads),
    })
}

/// Whether the table counts a command as a read: reading keys and writing none.
pub(crate) fn only_reads(spec: &CommandSpec) -> bool {
    spec.writes() == KeyPositions::None && spec.reads() != KeyPositions::None
}

/// A command's first key, as [`route_of`] routes it; `None` for keyless commands.
pub(crate) fn first_key_of(cmd: &Cmd) -> Option<&[u8]> {
    first_key_and_row(cmd).map(|(key, _)| key)
}

/// A command's first key and its name's table row.
fn first_key_and_row(cmd: &Cmd) -> Option<(&[u8], Option<CommandSpec>)> {
    let args: Vec<&[u8]> = cmd
        .args_iter()
        .map(|arg| match arg {
            redis::Arg::Simple(bytes) => bytes,
            // A SCAN cursor is never a key.
            _ => b"0",
        })
        .collect();
    let spec = baseplate_hotkeys::command(args.first()?).copied();
    Some((first_key(&args, spec)?, spec))
}

/// Where a script or function call (`EVAL`, `EVALSHA`, `FCALL` and their `_RO` forms) may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScriptRoute<'a> {
    /// The command is not a script or function call.
    NotAScript,
    /// It names no key: any primary runs it (redis-rs would pick any node, a replica too, where a
    /// script that writes fails).
    Keyless,
    /// All its keys hash to one slot: redis-rs routes it by its first key.
    OneSlot,
    /// Two of its keys hash to different slots, so no node can run it.
    CrossSlot {
        first: &'a [u8],
        first_slot: u16,
        other: &'a [u8],
        other_slot: u16,
    },
}

/// Where a script or function call may run, by its keys (the `numkeys` after its second word);
/// `row` is the table row of its name ([`command_of`]), looked up once per command.
pub(crate) fn script_route<'a>(cmd: &'a Cmd, row: Option<&CommandSpec>) -> ScriptRoute<'a> {
    // Every command passes here: look at its row before collecting its arguments.
    let Some(spec) = row.filter(|spec| spec.is_script()) else {
        return ScriptRoute::NotAScript;
    };
    let args: Vec<&[u8]> = cmd.args_iter().map(simple).collect();
    // A script's keys are all read or all written.
    let mut keys = spec.reads().keys(&args).chain(spec.writes().keys(&args));
    let Some(first) = keys.next() else {
        return ScriptRoute::Keyless;
    };
    let first_slot = key_slot(first);
    for other in keys {
        let other_slot = key_slot(other);
        if other_slot != first_slot {
            return ScriptRoute::CrossSlot {
                first,
                first_slot,
                other,
                other_slot,
            };
        }
    }
    ScriptRoute::OneSlot
}

/// The slot of a command's first key.
pub(crate) fn slot_of(cmd: &Cmd) -> Option<u16> {
    route_of(cmd).map(|route| route.slot)
}

/// Whether a command may block its connection waiting for data (`BLPOP`, `XREAD ... BLOCK`, ...):
/// such commands run on a connection of their own, so their wait never holds up the callers
/// sharing a node's multiplexed socket.
///
/// `WAIT` and `WAITAOF` block too, but wait for the replication of the writes made *on their
/// connection*: on a connection of their own they would answer at once and mean nothing. They
/// stay with the writes they follow, bounded by their own timeout argument.
pub(crate) fn blocks(cmd: &Cmd) -> bool {
    blocks_as(cmd, command_of(cmd))
}

/// [`blocks`] for a command whose table row ([`command_of`]) the caller has.
pub(crate) fn blocks_as(cmd: &Cmd, row: Option<&CommandSpec>) -> bool {
    // XREAD and XREADGROUP block only with a BLOCK option, looked for without collecting.
    row.is_some_and(|spec| spec.blocking().blocks(cmd.args_iter().map(simple)))
}

/// Why `cmd` must not run on a connection other callers share, when it would change that
/// connection's state under them: their replies would stop matching their commands, or the
/// protocol, authentication or tracking the client set up would be gone. `None` for any other
/// command. The command is named upper case, with its subcommand for `CLIENT`.
pub(crate) fn changes_shared_connection(cmd: &Cmd) -> Option<(String, &'static str)> {
    let mut args = cmd.args_iter().map(simple);
    let name = args.next()?;
    let is = |expected: &str| name.eq_ignore_ascii_case(expected.as_bytes());
    let upper = |bytes: &[u8]| String::from_utf8_lossy(bytes).to_ascii_uppercase();
    let reason = if ["SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE"]
        .into_iter()
        .any(is)
        || ["UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE"]
            .into_iter()
            .any(is)
    {
        "it puts the connection in subscriber mode, where other callers' commands fail; \
         subscribe with subscriber()"
    } else if ["MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH"]
        .into_iter()
        .any(is)
    {
        "other callers' commands would join or end its transaction; run one with transaction()"
    } else if is("MONITOR") {
        "other callers would take the node's stream of commands for their replies"
    } else if is("RESET") || is("HELLO") {
        "it resets the connection's protocol, authentication or tracking"
    } else if is("AUTH") {
        "every caller would run as the user it names; give the user and password in the URL"
    } else if is("READONLY") || is("READWRITE") {
        "the client sets which nodes serve reads (read_from_replicas)"
    } else if is("QUIT") {
        "it closes the connection under other callers' commands"
    } else if is("CLIENT") {
        let sub = args.next().unwrap_or_default();
        let reason = if sub.eq_ignore_ascii_case(b"REPLY") {
            "other callers' commands would get no replies"
        } else if sub.eq_ignore_ascii_case(b"TRACKING") {
            "the hot-key cache's invalidations come by the tracking the client set up"
        } else {
            return None;
        };
        return Some((format!("CLIENT {}", upper(sub)), reason));
    } else {
        return None;
    };
    Some((upper(name), reason))
}

/// An argument's bytes, or none for a SCAN cursor (never a name, a key or an option).
fn simple(arg: redis::Arg<&[u8]>) -> &[u8] {
    match arg {
        redis::Arg::Simple(bytes) => bytes,
        _ => b"",
    }
}

/// Redis Cluster's hash slot of `key`: CRC16 (XMODEM) of the key, or of its `{hash tag}` (the
/// first non-empty `{...}`), modulo 16384, as `CLUSTER KEYSLOT` computes it.
///
/// ```
/// assert_eq!(baseplate_redis_cluster::key_slot(b"foo"), 12182);
/// assert_eq!(
///     baseplate_redis_cluster::key_slot(b"{user1000}.following"),
///     baseplate_redis_cluster::key_slot(b"user1000"),
/// );
/// ```
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(hashed) % SLOTS
}

/// The first key of `args` (the command name first), as the command table finds it; a command the
/// table does not know is taken to have it first, as most commands do.
fn first_key<'a>(args: &[&'a [u8]], spec: Option<CommandSpec>) -> Option<&'a [u8]> {
    match spec {
        Some(spec) => spec.first_key().find(args),
        None => args.get(1).copied(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::cluster_read_routing::Shard;

    #[test]
    fn only_a_topology_that_differs_from_the_known_one_counts() {
        let node = |port| NodeAddress::new("127.0.0.1", port);
        let topology = |first_end: u16, replicas: Vec<NodeAddress>| {
            ClusterTopology::from_shards(vec![
                Shard::new(vec![(0, first_end)], node(7000), replicas),
                Shard::new(vec![(first_end + 1, 16_383)], node(7001), vec![node(7004)]),
            ])
        };
        let router = Router::new(false);
        router.learn(topology(8000, vec![node(7002), node(7003)]));
        assert_eq!(router.topologies(), 1, "the first one");
        router.learn(topology(8000, vec![node(7003), node(7002)]));
        assert_eq!(
            router.topologies(),
            1,
            "the same, replicas listed in another order"
        );
        router.learn(topology(8001, vec![node(7002), node(7003)]));
        assert_eq!(router.topologies(), 2, "a slot moved");
        router.learn(topology(8001, vec![node(7002)]));
        assert_eq!(router.topologies(), 3, "a replica left");
        router.learn(topology(8000, vec![node(7002), node(7003)]));
        assert_eq!(router.topologies(), 4, "back to the first one");
        let failed_over = ClusterTopology::from_shards(vec![
            Shard::new(vec![(0, 8000)], node(7002), vec![node(7000), node(7003)]),
            Shard::new(vec![(8001, 16_383)], node(7001), vec![node(7004)]),
        ]);
        router.learn(failed_over);
        assert_eq!(router.topologies(), 5, "a replica promoted");
    }

    #[test]
    fn slots_match_redis_cluster_keyslot() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.
        let cases = [
            ("foo", 12182),
            ("bar", 5061),
            ("{user1000}.following", 3443),
            ("{user1000}.followers", 3443),
            ("foo{}{bar}", 8363),
            ("foo{{bar}}zap", 4015),
            ("", 0),
        ];
        for (key, slot) in cases {
            assert_eq!(key_slot(key.as_bytes()), slot, "{key}");
        }
    }

    /// Whether `key_slot` gives the slot redis-rs routes `key` to (redis-rs's `Slot` does not
    /// tell its number, so `key_slot` computes it itself and must not drift from it).
    fn same_slot_as_redis_rs(key: &[u8]) -> bool {
        redis::cluster_routing::Slot::new(key_slot(key))
            == Some(redis::cluster_routing::Slot::for_key(key))
    }

    #[test]
    fn slots_match_redis_rs_on_every_short_key_of_braces() {
        // Every key of up to 7 bytes over braces, two letters and a byte that is not UTF-8: every
        // way a hash tag can open, close, be empty, nest or be left open.
        let alphabet = [b'{', b'}', b'a', b'b', 0xff];
        let mut keys = vec![Vec::new()];
        let mut checked = 0;
        for _ in 0..7 {
            keys = keys
                .iter()
                .flat_map(|key| {
                    alphabet.iter().map(move |&byte| {
                        let mut longer = key.clone();
                        longer.push(byte);
                        longer
                    })
                })
                .collect();
            for key in &keys {
                assert!(same_slot_as_redis_rs(key), "{key:?}");
                checked += 1;
            }
        }
        assert!(same_slot_as_redis_rs(b""));
        assert_eq!(checked, 97_655);
    }

    proptest::proptest! {
        #[test]
        fn slots_match_redis_rs_on_any_bytes(
            key in proptest::collection::vec(
                proptest::prop_oneof![
                    4 => proptest::num::u8::ANY,
                    1 => proptest::strategy::Just(b'{'),
                    1 => proptest::strategy::Just(b'}'),
                ],
                0..48,
            )
        ) {
            proptest::prop_assert!(same_slot_as_redis_rs(&key), "{:?}", key);
        }
    }

    #[test]
    fn blocking_commands_are_known_by_name_and_xread_by_its_block_option() {
        for name in [
            "BLPOP",
            "brpop",
            "BLMOVE",
            "BRPOPLPUSH",
            "BLMPOP",
            "BZPOPMIN",
            "BZPOPMAX",
        ] {
            assert!(blocks(redis::cmd(name).arg("k").arg(1)), "{name}");
        }
        assert!(blocks(
            redis::cmd("BZMPOP").arg(1).arg(1).arg("k").arg("MIN")
        ));
        // They wait for their own connection's writes.
        assert!(!blocks(redis::cmd("WAIT").arg(1).arg(100)));
        assert!(!blocks(redis::cmd("WAITAOF").arg(1).arg(0).arg(100)));
        let xread = |args: &[&str]| {
            let mut cmd = redis::cmd("XREAD");
            for arg in args {
                cmd.arg(*arg);
            }
            blocks(&cmd)
        };
        assert!(xread(&["BLOCK", "100", "STREAMS", "s", "$"]));
        assert!(xread(&["COUNT", "1", "block", "0", "STREAMS", "s", "$"]));
        assert!(!xread(&["COUNT", "1", "STREAMS", "s", "0"]));
        // A stream named BLOCK is a key, not the option.
        assert!(!xread(&["STREAMS", "BLOCK", "0"]));
        assert!(blocks(
            redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg("g")
                .arg("c")
                .arg("BLOCK")
                .arg(10)
                .arg("STREAMS")
                .arg("s")
                .arg(">")
        ));
        for cmd in [
            redis::cmd("GET").arg("k").clone(),
            redis::cmd("LPOP").arg("k").clone(),
            redis::cmd("BLPOPX").arg("k").clone(),
            redis::Cmd::new(),
        ] {
            assert!(!blocks(&cmd), "{cmd:?}");
        }
    }

    #[test]
    fn scripts_route_by_all_their_keys() {
        fn route(cmd: &Cmd) -> ScriptRoute<'_> {
            script_route(cmd, command_of(cmd))
        }
        let eval = |keys: &[&str]| {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg("8f3d1c").arg(keys.len());
            for key in keys {
                cmd.arg(*key);
            }
            cmd.arg("an argument, not a key");
            cmd
        };
        assert_eq!(route(&eval(&[])), ScriptRoute::Keyless);
        assert_eq!(
            route(&eval(&["{user1}.a", "{user1}.b"])),
            ScriptRoute::OneSlot
        );
        assert_eq!(
            route(&eval(&["foo", "{foo}.x", "bar"])),
            ScriptRoute::CrossSlot {
                first: b"foo",
                first_slot: 12182,
                other: b"bar",
                other_slot: 5061,
            }
        );
        assert_eq!(
            route(redis::cmd("fcall_ro").arg("f").arg(0)),
            ScriptRoute::Keyless
        );
        assert_eq!(
            route(redis::cmd("FCALL").arg("f").arg(1).arg("foo")),
            ScriptRoute::OneSlot
        );
        assert_eq!(route(redis::cmd("GET").arg("foo")), ScriptRoute::NotAScript);
        assert_eq!(route(&redis::Cmd::new()), ScriptRoute::NotAScript);
    }

    #[test]
    fn commands_route_by_their_first_key() {
        let route = |cmd: &Cmd| route_of(cmd);
        let foo = key_slot(b"foo");
        assert_eq!(
            route(redis::cmd("GET").arg("foo")),
            Some(CmdRoute {
                slot: foo,
                read_only: true
            })
        );
        assert_eq!(
            route(redis::cmd("incr").arg("foo")),
            Some(CmdRoute {
                slot: foo,
                read_only: false
            })
        );
        assert_eq!(
            slot_of(redis::cmd("EVAL").arg("return 1").arg(1).arg("foo")),
            Some(foo)
        );
        assert_eq!(slot_of(redis::cmd("EVAL").arg("return 1").arg(0)), None);
        assert_eq!(
            slot_of(
                redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(2)
                    .arg("STREAMS")
                    .arg("foo")
                    .arg(0)
            ),
            Some(foo)
        );
        assert_eq!(
            slot_of(redis::cmd("OBJECT").arg("ENCODING").arg("foo")),
            Some(foo)
        );
        assert_eq!(slot_of(redis::cmd("ZUNION").arg(1).arg("foo")), Some(foo));
        assert_eq!(slot_of(&redis::cmd("PING")), None);
        assert_eq!(slot_of(&redis::cmd("GET")), None);
        assert_eq!(slot_of(redis::cmd("EVAL").arg("x").arg("lots")), None);
    }

    fn cmd_of(line: &str) -> Cmd {
        let mut cmd = Cmd::new();
        for word in line.split(' ') {
            cmd.arg(word);
        }
        cmd
    }

    #[test]
    fn every_command_the_tracker_counts_routes_by_a_key_and_only_its_reads_may_use_replicas() {
        // Every argument is the key "1", and every count is 1: the route is the key's slot,
        // whichever argument the command's first key is.
        let slot = key_slot(b"1");
        for spec in baseplate_hotkeys::commands() {
            let cmd = cmd_of(&format!("{} 1 1 1 1", spec.name()));
            let read_only = spec.writes() == KeyPositions::None;
            assert_eq!(
                route_of(&cmd),
                Some(CmdRoute { slot, read_only }),
                "{}",
                spec.name()
            );
        }
    }

    #[test]
    fn reads_whose_key_is_not_their_first_argument_may_go_to_replicas() {
        // Each is routed by the key `a`, not by its count or its script.
        for line in [
            "ZUNION 2 a b",
            "ZINTER 2 a b",
            "ZDIFF 2 a b",
            "SINTERCARD 2 a b",
            "ZINTERCARD 2 a b",
            "EVAL_RO script 1 a",
            "EVALSHA_RO 8f3d1c 1 a",
            "fcall_ro f 1 a",
        ] {
            assert_eq!(
                route_of(&cmd_of(line)),
                Some(CmdRoute {
                    slot: key_slot(b"a"),
                    read_only: true
                }),
                "{line}"
            );
        }
        // Reads the tracker does not count, and commands nobody knows, stay on the primaries.
        for line in [
            "XREAD COUNT 1 STREAMS a 0",
            "OBJECT ENCODING a",
            "MEMORY USAGE a",
            "NOT-A-COMMAND a",
        ] {
            assert_eq!(
                route_of(&cmd_of(line)),
                Some(CmdRoute {
                    slot: key_slot(b"a"),
                    read_only: false
                }),
                "{line}"
            );
        }
        for line in [
            "PING",
            "PUBLISH a message",
            "CLUSTER KEYSLOT a",
            "WAIT 1 100",
        ] {
            assert_eq!(route_of(&cmd_of(line)), None, "{line}");
        }
    }

    #[test]
    fn the_readme_lists_the_blocking_commands_of_the_command_table() {
        let readme = include_str!("../README.md");
        let listed = readme
            .split("Blocking commands (")
            .nth(1)
            .and_then(|rest| rest.split(", and a pipeline").next())
            .expect("the README lists the blocking commands");
        let mut listed: Vec<&str> = listed
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|word| *word != "BLOCK")
            .collect();
        listed.sort_unstable();
        let blocking: Vec<&str> = baseplate_hotkeys::all_commands()
            .filter(|spec| spec.blocking() != baseplate_hotkeys::Blocking::Never)
            .map(|spec| spec.name())
            .collect();
        assert_eq!(listed, blocking);
        // Each one blocks the way the table says.
        assert!(blocks(&cmd_of("BZMPOP 0 1 a MIN")));
        assert!(blocks(&cmd_of("XREADGROUP GROUP g c BLOCK 0 STREAMS a >")));
        assert!(!blocks(&cmd_of("XREADGROUP GROUP g c STREAMS a >")));
    }

    #[test]
    fn only_commands_that_change_their_connections_state_are_refused_on_a_shared_one() {
        let named = |line: &str| changes_shared_connection(&cmd_of(line)).map(|(name, _)| name);
        assert_eq!(named("subscribe news"), Some("SUBSCRIBE".to_owned()));
        assert_eq!(named("SUnsubscribe"), Some("SUNSUBSCRIBE".to_owned()));
        assert_eq!(named("client Reply SKIP"), Some("CLIENT REPLY".to_owned()));
        assert_eq!(
            named("CLIENT tracking off"),
            Some("CLIENT TRACKING".to_owned())
        );
        for line in ["MULTI", "exec", "WATCH k", "AUTH u p", "READONLY"] {
            assert!(named(line).is_some(), "{line}");
        }
        // Commands that leave the connection as it was, or change only what is theirs.
        for line in [
            "PUBLISH news hi",
            "SPUBLISH news hi",
            "SUBSTR k 0 1",
            "CLIENT SETNAME worker",
            "CLIENT CACHING YES",
            "CLIENT TRACKINGINFO",
            "CLIENT",
            "PING",
        ] {
            assert_eq!(named(line), None, "{line}");
        }
        assert_eq!(changes_shared_connection(&Cmd::new()), None);
    }
}
