//! The command table: for each Redis command, the keys it reads and writes (what the hot-key tracker
//! counts, and which commands are reads a replica may serve) and how a cluster client routes it
//! (where its first key is, whether it blocks, whether it is a script), and which replies a client
//! may cache.
//!
//! The tracker's part is baseplate.py's table (`SINGLE_KEY_READ_COMMANDS` and friends) plus the common
//! commands it missed. A command that modifies a key counts as a write of that key even when it also
//! returns the value (`GETSET`, `GETDEL`, `INCR`), following Redis's own `write` command flag; commands
//! that read some keys and write others (`COPY`, `SUNIONSTORE`, `ZUNIONSTORE`, `BITOP`) say so per key.
//! Scripts and functions (`EVAL`, `EVALSHA`, `FCALL`) write the keys they are given; their `_RO` forms
//! read them.
//!
//! A counted command's first key is where the first of its counted keys sits, so the tracker and
//! routing cannot disagree about it. The table also lists commands the tracker does not count but
//! routing must know: server commands with no key (`PING`, `CLUSTER`, `PUBLISH`), commands whose key
//! is not their first argument (`OBJECT ENCODING key`, `XREAD ... STREAMS key`), and `XREAD` and
//! `XREADGROUP`, which block with a `BLOCK` option.

use std::fmt;

/// Where a command's keys are among its arguments.
///
/// Positions count the arguments after the command name from 1, so in `GET k` the key is argument 1.
/// Malformed commands never panic: positions past the end are simply absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyPositions {
    /// No key in this direction.
    None,
    /// Argument 1 (`GET key`).
    First,
    /// Argument 2 (`COPY source destination` writes argument 2).
    Second,
    /// Arguments 1 and 2 (`RENAME key newkey`, `LMOVE source destination LEFT RIGHT`).
    FirstTwo,
    /// Every argument (`MGET key [key ...]`, `DEL key [key ...]`).
    All,
    /// Argument 2 and every one after it (`SUNIONSTORE destination key [key ...]` reads these).
    FromSecond,
    /// Argument 3 and every one after it (`BITOP operation destkey key [key ...]` reads these).
    FromThird,
    /// Every argument but the last (`BLPOP key [key ...] timeout`).
    AllButLast,
    /// The key of each key-value pair: arguments 1, 3, 5, ... (`MSET key value [key value ...]`). A trailing
    /// key without a value is not a key: Redis rejects such a command without touching anything.
    Pairs,
    /// Argument 1 is `numkeys`, the keys follow it (`ZUNION numkeys key [key ...] ...`).
    NumKeysAtFirst,
    /// Argument 2 is `numkeys`, the keys follow it (`ZUNIONSTORE destination numkeys key [key ...] ...`).
    NumKeysAtSecond,
}

/// Where a command's first key is: a cluster client sends the command to the node serving that key's
/// slot.
///
/// Positions count the arguments after the command name from 1, as [`KeyPositions`] do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FirstKey {
    /// The command names no key (`PING`, `CLUSTER INFO`, `PUBLISH channel message`): any node may run
    /// it, or the client sends it to several.
    Keyless,
    /// Argument N (`GET key`: 1; `OBJECT ENCODING key` and `BITOP AND destkey key`: 2).
    At(usize),
    /// The first of the keys after a `numkeys` count at argument N (`ZUNION 2 a b`: 1;
    /// `EVAL script 1 key`: 2); none when the count is 0 or not a number.
    AfterNumKeysAt(usize),
    /// The argument after the first `STREAMS` (`XREAD COUNT 1 STREAMS key id`).
    AfterStreams,
}

/// Whether a command may hold its connection waiting for data to arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Blocking {
    /// It answers at once.
    Never,
    /// It waits until data arrives or its timeout passes (`BLPOP`, `BZPOPMIN`, `BLMOVE`).
    Always,
    /// It waits only when given a `BLOCK` option, which comes before `STREAMS` (`XREAD`,
    /// `XREADGROUP`).
    WithBlockOption,
}

/// One row of the command table: a command, where its read and written keys are, where its first key
/// is, whether it blocks, whether it is a script or function call and whether its reply may be cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommandSpec {
    name: &'static str,
    reads: KeyPositions,
    writes: KeyPositions,
    first_key: FirstKey,
    blocking: Blocking,
    script: bool,
    cacheable: bool,
}

/// The keys a command reads and writes, as [`classify`] finds them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Classification<'a> {
    /// Keys the command reads, in argument order (a key given twice appears twice).
    pub reads: Vec<&'a [u8]>,
    /// Keys the command writes, in argument order (a key given twice appears twice).
    pub writes: Vec<&'a [u8]>,
}

/// Classifies a command given as its arguments, the command name first (matched case-insensitively).
///
/// Returns `None` for an empty argument list and for a command the table does not know (which the
/// tracker then ignores). Keys are bytes and are returned as given, UTF-8 or not.
///
/// # Examples
/// ```
/// use baseplate_hotkeys::classify;
///
/// let c = classify(&[b"mset", b"a", b"1", b"b", b"2"]).unwrap();
/// assert_eq!(c.writes, [&b"a"[..], b"b"]);
/// assert!(c.reads.is_empty());
///
/// let c = classify(&[b"ZUNIONSTORE", b"dest", b"2", b"x", b"y", b"WEIGHTS", b"1", b"2"]).unwrap();
/// assert_eq!(c.writes, [&b"dest"[..]]);
/// assert_eq!(c.reads, [&b"x"[..], b"y"]);
///
/// assert_eq!(classify(&[b"PING"]), None);
/// ```
pub fn classify<'a>(args: &[&'a [u8]]) -> Option<Classification<'a>> {
    let spec = command_spec(args.first()?)?;
    Some(Classification {
        reads: spec.reads.keys(args).collect(),
        writes: spec.writes.keys(args).collect(),
    })
}

/// The table row for a command the tracker counts (one that reads or writes a key), its name matched
/// case-insensitively; `None` if the command is not tracked, even when [`command`] knows it.
///
/// This does not allocate, so it is cheap enough to call for every command.
///
/// # Examples
/// ```
/// use baseplate_hotkeys::{KeyPositions, command_spec};
///
/// let get = command_spec(b"get").unwrap();
/// assert_eq!(get.name(), "GET");
/// assert_eq!(get.reads(), KeyPositions::First);
/// assert_eq!(get.writes(), KeyPositions::None);
/// assert!(command_spec(b"CLUSTER").is_none());
/// ```
pub fn command_spec(name: &[u8]) -> Option<CommandSpec> {
    command(name).copied().filter(CommandSpec::is_tracked)
}

/// The table row for any command the table knows, counted by the tracker or not, its name matched
/// case-insensitively; `None` for a command the table does not know.
///
/// This does not allocate, so it is cheap enough to call for every command.
///
/// # Examples
/// ```
/// use baseplate_hotkeys::{Blocking, FirstKey, command, command_spec};
///
/// let xread = command(b"xread").unwrap();
/// assert_eq!(xread.first_key(), FirstKey::AfterStreams);
/// assert_eq!(xread.blocking(), Blocking::WithBlockOption);
/// assert!(!xread.is_tracked());
/// assert!(command_spec(b"XREAD").is_none());
///
/// assert_eq!(command(b"PING").unwrap().first_key(), FirstKey::Keyless);
/// assert!(command(b"NOT-A-COMMAND").is_none());
/// ```
pub fn command(name: &[u8]) -> Option<&'static CommandSpec> {
    let packed = pack_upper(name)?;
    PACKED
        .binary_search(&packed)
        .ok()
        .and_then(|i| TABLE.get(i))
}

/// The table row for `cmd`'s name (its first argument), as [`command`] finds it; `None` for an
/// empty command or one the table does not know.
///
/// # Examples
/// ```
/// let get = redis::cmd("get").arg("k").clone();
/// assert_eq!(baseplate_hotkeys::command_of(&get).unwrap().name(), "GET");
/// assert!(baseplate_hotkeys::command_of(&redis::Cmd::new()).is_none());
/// ```
pub fn command_of(cmd: &redis::Cmd) -> Option<&'static CommandSpec> {
    match cmd.args_iter().next() {
        Some(redis::Arg::Simple(name)) => command(name),
        _ => None,
    }
}

/// Every command the tracker counts, in alphabetical order.
///
/// # Examples
/// ```
/// let names: Vec<&str> = baseplate_hotkeys::commands().map(|c| c.name()).collect();
/// assert!(names.contains(&"MSET"));
/// ```
pub fn commands() -> impl ExactSizeIterator<Item = CommandSpec> + Clone {
    TRACKED.iter().copied()
}

/// Every command the table knows, counted by the tracker or not, in alphabetical order.
///
/// # Examples
/// ```
/// use baseplate_hotkeys::{Blocking, all_commands};
///
/// let blocking = all_commands().filter(|c| c.blocking() != Blocking::Never);
/// assert!(blocking.map(|c| c.name()).any(|name| name == "XREAD"));
/// ```
pub fn all_commands() -> impl ExactSizeIterator<Item = CommandSpec> + Clone {
    TABLE.iter().copied()
}

impl CommandSpec {
    /// The command's name, upper case.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Where the keys the command reads are.
    pub fn reads(&self) -> KeyPositions {
        self.reads
    }

    /// Where the keys the command writes are.
    pub fn writes(&self) -> KeyPositions {
        self.writes
    }

    /// Whether the tracker counts the command: it reads or writes a key.
    pub const fn is_tracked(&self) -> bool {
        !matches!(self.reads, KeyPositions::None) || !matches!(self.writes, KeyPositions::None)
    }

    /// Where the command's first key is, which decides the node it runs on.
    ///
    /// # Examples
    /// ```
    /// use baseplate_hotkeys::{FirstKey, command};
    ///
    /// let args: [&[u8]; 5] = [b"ZUNIONSTORE", b"dest", b"2", b"a", b"b"];
    /// let first_key = command(args[0]).unwrap().first_key();
    /// assert_eq!(first_key, FirstKey::At(1));
    /// assert_eq!(first_key.find(&args), Some(&b"dest"[..]));
    /// ```
    pub fn first_key(&self) -> FirstKey {
        self.first_key
    }

    /// Whether the command may hold its connection waiting for data.
    pub fn blocking(&self) -> Blocking {
        self.blocking
    }

    /// Whether the command runs a script or a function (`EVAL`, `EVALSHA`, `FCALL` and their `_RO`
    /// forms): its keys are the `numkeys` after its second argument, and they must share a slot.
    pub fn is_script(&self) -> bool {
        self.script
    }

    /// Whether a client may cache the command's reply until the server says its key changed:
    /// redis-rs 1.8's client-side cache caches it, it reads one key (its first argument) and
    /// writes none, and its reply depends on that key's value and its arguments alone (unlike
    /// `TTL`'s, `SRANDMEMBER`'s or a `SCAN` cursor's).
    ///
    /// # Examples
    /// ```
    /// use baseplate_hotkeys::command;
    ///
    /// assert!(command(b"HGETALL").unwrap().is_cacheable());
    /// assert!(!command(b"TTL").unwrap().is_cacheable());
    /// ```
    pub fn is_cacheable(&self) -> bool {
        self.cacheable
    }

    const fn blocks(mut self, blocking: Blocking) -> Self {
        self.blocking = blocking;
        self
    }

    const fn runs_a_script(mut self) -> Self {
        self.script = true;
        self
    }
}

impl FirstKey {
    /// The first key of `args`, where `args[0]` is the command name; `None` when it is absent.
    ///
    /// # Examples
    /// ```
    /// use baseplate_hotkeys::FirstKey;
    ///
    /// let args: [&[u8]; 6] = [b"XREAD", b"COUNT", b"1", b"STREAMS", b"s", b"0"];
    /// assert_eq!(FirstKey::AfterStreams.find(&args), Some(&b"s"[..]));
    /// assert_eq!(FirstKey::AfterNumKeysAt(1).find(&[b"ZUNION", b"0"]), None);
    /// ```
    pub fn find<'a>(self, args: &[&'a [u8]]) -> Option<&'a [u8]> {
        let at = |i: usize| args.get(i).copied();
        match self {
            Self::Keyless => None,
            Self::At(i) => at(i),
            Self::AfterNumKeysAt(i) => {
                let n: usize = std::str::from_utf8(at(i)?).ok()?.parse().ok()?;
                if n > 0 { at(i + 1) } else { None }
            }
            Self::AfterStreams => {
                let streams = args
                    .iter()
                    .position(|a| a.eq_ignore_ascii_case(b"STREAMS"))?;
                at(streams + 1)
            }
        }
    }
}

impl Blocking {
    /// Whether a command with these arguments, its name first, blocks.
    ///
    /// # Examples
    /// ```
    /// use baseplate_hotkeys::Blocking;
    ///
    /// let args: [&[u8]; 6] = [b"XREAD", b"BLOCK", b"100", b"STREAMS", b"s", b"$"];
    /// assert!(Blocking::WithBlockOption.blocks(args));
    /// // A stream named BLOCK is a key, not the option.
    /// let args: [&[u8]; 4] = [b"XREAD", b"STREAMS", b"BLOCK", b"0"];
    /// assert!(!Blocking::WithBlockOption.blocks(args));
    /// ```
    pub fn blocks<'a>(self, args: impl IntoIterator<Item = &'a [u8]>) -> bool {
        match self {
            Self::Never => false,
            Self::Always => true,
            Self::WithBlockOption => args
                .into_iter()
                .skip(1)
                .take_while(|arg| !arg.eq_ignore_ascii_case(b"STREAMS"))
                .any(|arg| arg.eq_ignore_ascii_case(b"BLOCK")),
        }
    }
}

impl KeyPositions {
    /// The keys at these positions of `args`, where `args[0]` is the command name.
    ///
    /// # Examples
    /// ```
    /// use baseplate_hotkeys::KeyPositions;
    ///
    /// let args: [&[u8]; 4] = [b"BLPOP", b"a", b"b", b"5"];
    /// let keys: Vec<&[u8]> = KeyPositions::AllButLast.keys(&args).collect();
    /// assert_eq!(keys, [&b"a"[..], b"b"]);
    /// ```
    pub fn keys<'a, 'b>(self, args: &'b [&'a [u8]]) -> impl Iterator<Item = &'a [u8]> + 'b {
        let len = args.len();
        let (start, end, step) = match self {
            Self::None => (0, 0, 1),
            Self::First => (1, 2, 1),
            Self::Second => (2, 3, 1),
            Self::FirstTwo => (1, 3, 1),
            Self::All => (1, len, 1),
            Self::FromSecond => (2, len, 1),
            Self::FromThird => (3, len, 1),
            Self::AllButLast => (1, len.saturating_sub(1), 1),
            // Only complete pairs: a key at `i` needs its value at `i + 1`.
            Self::Pairs => (1, len - (len.saturating_sub(1)) % 2, 2),
            Self::NumKeysAtFirst => numkeys_range(args, 1),
            Self::NumKeysAtSecond => numkeys_range(args, 2),
        };
        let end = end.min(len);
        args.get(start.min(end)..end)
            .unwrap_or_default()
            .iter()
            .step_by(step)
            .copied()
    }

    /// Where the first of these keys sits when it is there: its position, and the rule that finds it.
    /// Positions such as `1..last-1` and `1, 3, 5, ..` give argument 1 even for a command too short
    /// to have the key (`BLPOP key` without its timeout): the node serving it answers with the error.
    const fn first_key(self) -> Option<(usize, FirstKey)> {
        match self {
            Self::None => None,
            Self::First | Self::FirstTwo | Self::All | Self::AllButLast | Self::Pairs => {
                Some((1, FirstKey::At(1)))
            }
            Self::Second | Self::FromSecond => Some((2, FirstKey::At(2))),
            Self::FromThird => Some((3, FirstKey::At(3))),
            Self::NumKeysAtFirst => Some((2, FirstKey::AfterNumKeysAt(1))),
            Self::NumKeysAtSecond => Some((3, FirstKey::AfterNumKeysAt(2))),
        }
    }

    /// A short description of the positions, as the README's table shows it (`1`, `1..`, `numkeys@2`).
    pub fn describe(self) -> &'static str {
        match self {
            Self::None => "",
            Self::First => "1",
            Self::Second => "2",
            Self::FirstTwo => "1, 2",
            Self::All => "1..",
            Self::FromSecond => "2..",
            Self::FromThird => "3..",
            Self::AllButLast => "1..last-1",
            Self::Pairs => "1, 3, 5, ..",
            Self::NumKeysAtFirst => "numkeys@1",
            Self::NumKeysAtSecond => "numkeys@2",
        }
    }
}

impl fmt::Display for KeyPositions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// `(start, end, 1)` for the keys after a `numkeys` argument at `at`; empty when it is not a number.
fn numkeys_range(args: &[&[u8]], at: usize) -> (usize, usize, usize) {
    let numkeys = args
        .get(at)
        .and_then(|n| std::str::from_utf8(n).ok())
        .and_then(|n| n.parse::<usize>().ok());
    match numkeys {
        Some(n) => (at + 1, (at + 1).saturating_add(n), 1),
        None => (0, 0, 1),
    }
}

/// The longest name the lookup handles; every name in the table is shorter.
const MAX_NAME_LEN: usize = 24;

/// A name of at most [`MAX_NAME_LEN`] bytes, upper-cased, as three big-endian words padded with zero
/// bytes: comparing packed names compares the names byte by byte, with three integer comparisons
/// instead of a `memcmp` call, which makes the lookup several times faster.
type Packed = [u64; 3];

/// `name` upper-cased and packed; `None` if it is too long or holds a zero byte (which would be
/// indistinguishable from the padding, and is never part of a command name).
const fn pack_upper(name: &[u8]) -> Option<Packed> {
    if name.len() > MAX_NAME_LEN {
        return None;
    }
    let mut packed = [0_u64; 3];
    let mut i = 0;
    while i < name.len() {
        let byte = name[i].to_ascii_uppercase();
        if byte == 0 {
            return None;
        }
        packed[i / 8] |= (byte as u64) << (56 - 8 * (i % 8));
        i += 1;
    }
    Some(packed)
}

/// The table's names packed, in the table's (sorted) order, computed at compile time.
static PACKED: [Packed; TABLE.len()] = {
    let mut packed = [[0_u64; 3]; TABLE.len()];
    let mut i = 0;
    while i < TABLE.len() {
        packed[i] = match pack_upper(TABLE[i].name.as_bytes()) {
            Some(p) => p,
            None => panic!("a command name in the table is longer than MAX_NAME_LEN"),
        };
        i += 1;
    }
    packed
};

use KeyPositions::{
    All, AllButLast, First, FirstTwo, FromSecond, FromThird, None as No, NumKeysAtFirst,
    NumKeysAtSecond, Pairs, Second,
};

/// The rows the tracker counts, in the table's order, for [`commands`].
static TRACKED: [CommandSpec; tracked_len()] = {
    let mut tracked = [read("", No); tracked_len()];
    let (mut i, mut j) = (0, 0);
    while i < TABLE.len() {
        if TABLE[i].is_tracked() {
            tracked[j] = TABLE[i];
            j += 1;
        }
        i += 1;
    }
    tracked
};

const fn tracked_len() -> usize {
    let (mut i, mut len) = (0, 0);
    while i < TABLE.len() {
        if TABLE[i].is_tracked() {
            len += 1;
        }
        i += 1;
    }
    len
}

const fn read(name: &'static str, reads: KeyPositions) -> CommandSpec {
    both(name, reads, No)
}

/// A read of its first key whose reply may be cached (see [`CommandSpec::is_cacheable`]).
const fn cached(name: &'static str) -> CommandSpec {
    let mut spec = read(name, First);
    spec.cacheable = true;
    spec
}

const fn write(name: &'static str, writes: KeyPositions) -> CommandSpec {
    both(name, No, writes)
}

/// A command the tracker counts; its first key is the first of the keys it reads or writes.
const fn both(name: &'static str, reads: KeyPositions, writes: KeyPositions) -> CommandSpec {
    let first_key = match (reads.first_key(), writes.first_key()) {
        (Some((read_at, read_key)), Some((write_at, write_key))) => {
            if write_at <= read_at {
                write_key
            } else {
                read_key
            }
        }
        (Some((_, key)), None) | (None, Some((_, key))) => key,
        (None, None) => FirstKey::Keyless,
    };
    CommandSpec {
        name,
        reads,
        writes,
        first_key,
        blocking: Blocking::Never,
        script: false,
        cacheable: false,
    }
}

/// A command the tracker does not count, with the first key routing finds.
const fn routed(name: &'static str, first_key: FirstKey) -> CommandSpec {
    CommandSpec {
        name,
        reads: No,
        writes: No,
        first_key,
        blocking: Blocking::Never,
        script: false,
        cacheable: false,
    }
}

/// A server command that names no key.
const fn keyless(name: &'static str) -> CommandSpec {
    routed(name, FirstKey::Keyless)
}

/// The command table, sorted by name (a unit test checks the order `command` relies on).
///
/// The tracker counts the rows made with `read`, `cached`, `write` and `both`. The rows made with
/// `keyless` and `routed` are there for routing alone: the tracker does not count them (baseplate.py
/// does not), and none of them is a read that a replica may serve.
const TABLE: &[CommandSpec] = &[
    keyless("ACL"),
    write("APPEND", First),
    keyless("AUTH"),
    keyless("BGREWRITEAOF"),
    keyless("BGSAVE"),
    cached("BITCOUNT"),
    write("BITFIELD", First),
    cached("BITFIELD_RO"),
    both("BITOP", FromThird, Second),
    cached("BITPOS"),
    write("BLMOVE", FirstTwo).blocks(Blocking::Always),
    write("BLMPOP", NumKeysAtSecond).blocks(Blocking::Always),
    write("BLPOP", AllButLast).blocks(Blocking::Always),
    write("BRPOP", AllButLast).blocks(Blocking::Always),
    write("BRPOPLPUSH", FirstTwo).blocks(Blocking::Always),
    write("BZMPOP", NumKeysAtSecond).blocks(Blocking::Always),
    write("BZPOPMAX", AllButLast).blocks(Blocking::Always),
    write("BZPOPMIN", AllButLast).blocks(Blocking::Always),
    keyless("CLIENT"),
    keyless("CLUSTER"),
    keyless("COMMAND"),
    keyless("CONFIG"),
    both("COPY", First, Second),
    keyless("DBSIZE"),
    keyless("DEBUG"),
    write("DECR", First),
    write("DECRBY", First),
    write("DEL", All),
    keyless("DISCARD"),
    cached("DUMP"),
    keyless("ECHO"),
    // A script or function may write any key it is given, so only the read-only variants are
    // reads; the keys are the `numkeys` that follow the script (or its SHA1, or the function).
    write("EVAL", NumKeysAtSecond).runs_a_script(),
    write("EVALSHA", NumKeysAtSecond).runs_a_script(),
    read("EVALSHA_RO", NumKeysAtSecond).runs_a_script(),
    read("EVAL_RO", NumKeysAtSecond).runs_a_script(),
    keyless("EXEC"),
    read("EXISTS", All),
    write("EXPIRE", First),
    write("EXPIREAT", First),
    read("EXPIRETIME", First),
    write("FCALL", NumKeysAtSecond).runs_a_script(),
    read("FCALL_RO", NumKeysAtSecond).runs_a_script(),
    keyless("FLUSHALL"),
    keyless("FLUSHDB"),
    keyless("FUNCTION"),
    write("GEOADD", First),
    cached("GEODIST"),
    cached("GEOHASH"),
    cached("GEOPOS"),
    read("GEORADIUS", First),
    read("GEORADIUSBYMEMBER", First),
    read("GEORADIUSBYMEMBER_RO", First),
    read("GEORADIUS_RO", First),
    read("GEOSEARCH", First),
    both("GEOSEARCHSTORE", Second, First),
    cached("GET"),
    cached("GETBIT"),
    write("GETDEL", First),
    write("GETEX", First),
    cached("GETRANGE"),
    write("GETSET", First),
    write("HDEL", First),
    keyless("HELLO"),
    cached("HEXISTS"),
    cached("HGET"),
    cached("HGETALL"),
    write("HINCRBY", First),
    write("HINCRBYFLOAT", First),
    cached("HKEYS"),
    cached("HLEN"),
    cached("HMGET"),
    write("HMSET", First),
    read("HRANDFIELD", First),
    read("HSCAN", First),
    write("HSET", First),
    write("HSETNX", First),
    cached("HSTRLEN"),
    cached("HVALS"),
    write("INCR", First),
    write("INCRBY", First),
    write("INCRBYFLOAT", First),
    keyless("INFO"),
    keyless("KEYS"),
    keyless("LASTSAVE"),
    keyless("LATENCY"),
    read("LCS", FirstTwo),
    cached("LINDEX"),
    write("LINSERT", First),
    cached("LLEN"),
    write("LMOVE", FirstTwo),
    write("LMPOP", NumKeysAtFirst),
    keyless("LOLWUT"),
    write("LPOP", First),
    cached("LPOS"),
    write("LPUSH", First),
    write("LPUSHX", First),
    cached("LRANGE"),
    write("LREM", First),
    write("LSET", First),
    write("LTRIM", First),
    routed("MEMORY", FirstKey::At(2)),
    read("MGET", All),
    keyless("MIGRATE"),
    keyless("MODULE"),
    keyless("MONITOR"),
    write("MSET", Pairs),
    write("MSETNX", Pairs),
    keyless("MULTI"),
    routed("OBJECT", FirstKey::At(2)),
    write("PERSIST", First),
    write("PEXPIRE", First),
    write("PEXPIREAT", First),
    read("PEXPIRETIME", First),
    write("PFADD", First),
    read("PFCOUNT", All),
    both("PFMERGE", FromSecond, First),
    keyless("PING"),
    write("PSETEX", First),
    keyless("PSUBSCRIBE"),
    keyless("PSYNC"),
    read("PTTL", First),
    keyless("PUBLISH"),
    keyless("PUNSUBSCRIBE"),
    keyless("QUIT"),
    keyless("RANDOMKEY"),
    keyless("READONLY"),
    keyless("READWRITE"),
    write("RENAME", FirstTwo),
    write("RENAMENX", FirstTwo),
    keyless("REPLICAOF"),
    keyless("RESET"),
    write("RESTORE", First),
    keyless("ROLE"),
    write("RPOP", First),
    write("RPOPLPUSH", FirstTwo),
    write("RPUSH", First),
    write("RPUSHX", First),
    write("SADD", First),
    keyless("SAVE"),
    keyless("SCAN"),
    cached("SCARD"),
    keyless("SCRIPT"),
    read("SDIFF", All),
    both("SDIFFSTORE", FromSecond, First),
    keyless("SELECT"),
    write("SET", First),
    write("SETBIT", First),
    write("SETEX", First),
    write("SETNX", First),
    write("SETRANGE", First),
    keyless("SHUTDOWN"),
    read("SINTER", All),
    read("SINTERCARD", NumKeysAtFirst),
    both("SINTERSTORE", FromSecond, First),
    cached("SISMEMBER"),
    keyless("SLAVEOF"),
    keyless("SLOWLOG"),
    cached("SMEMBERS"),
    cached("SMISMEMBER"),
    write("SMOVE", FirstTwo),
    read("SORT_RO", First),
    write("SPOP", First),
    keyless("SPUBLISH"),
    read("SRANDMEMBER", First),
    write("SREM", First),
    read("SSCAN", First),
    cached("STRLEN"),
    keyless("SUBSCRIBE"),
    cached("SUBSTR"),
    read("SUNION", All),
    both("SUNIONSTORE", FromSecond, First),
    keyless("SWAPDB"),
    keyless("SYNC"),
    keyless("TIME"),
    read("TOUCH", All),
    read("TTL", First),
    cached("TYPE"),
    write("UNLINK", All),
    keyless("UNSUBSCRIBE"),
    keyless("UNWATCH"),
    keyless("WAIT"),
    write("XADD", First),
    write("XDEL", First),
    routed("XGROUP", FirstKey::At(2)),
    routed("XINFO", FirstKey::At(2)),
    read("XLEN", First),
    read("XRANGE", First),
    routed("XREAD", FirstKey::AfterStreams).blocks(Blocking::WithBlockOption),
    routed("XREADGROUP", FirstKey::AfterStreams).blocks(Blocking::WithBlockOption),
    read("XREVRANGE", First),
    write("XTRIM", First),
    write("ZADD", First),
    cached("ZCARD"),
    cached("ZCOUNT"),
    read("ZDIFF", NumKeysAtFirst),
    both("ZDIFFSTORE", NumKeysAtSecond, First),
    write("ZINCRBY", First),
    read("ZINTER", NumKeysAtFirst),
    read("ZINTERCARD", NumKeysAtFirst),
    both("ZINTERSTORE", NumKeysAtSecond, First),
    cached("ZLEXCOUNT"),
    write("ZMPOP", NumKeysAtFirst),
    cached("ZMSCORE"),
    write("ZPOPMAX", First),
    write("ZPOPMIN", First),
    read("ZRANDMEMBER", First),
    cached("ZRANGE"),
    cached("ZRANGEBYLEX"),
    cached("ZRANGEBYSCORE"),
    both("ZRANGESTORE", Second, First),
    cached("ZRANK"),
    write("ZREM", First),
    write("ZREMRANGEBYLEX", First),
    write("ZREMRANGEBYRANK", First),
    write("ZREMRANGEBYSCORE", First),
    cached("ZREVRANGE"),
    cached("ZREVRANGEBYLEX"),
    cached("ZREVRANGEBYSCORE"),
    cached("ZREVRANK"),
    read("ZSCAN", First),
    cached("ZSCORE"),
    read("ZUNION", NumKeysAtFirst),
    both("ZUNIONSTORE", NumKeysAtSecond, First),
];

#[cfg(test)]
mod tests;
