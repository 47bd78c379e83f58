//! Command classification: which arguments of a Redis command are keys it reads and keys it writes.
//!
//! The table is baseplate.py's (`SINGLE_KEY_READ_COMMANDS` and friends) plus the common commands it
//! missed. A command that modifies a key counts as a write of that key even when it also returns the
//! value (`GETSET`, `GETDEL`, `INCR`), following Redis's own `write` command flag; commands that read some
//! keys and write others (`COPY`, `SUNIONSTORE`, `ZUNIONSTORE`, `BITOP`) say so per key. Scripts and
//! functions (`EVAL`, `EVALSHA`, `FCALL`) write the keys they are given; their `_RO` forms read them.

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

/// One row of the classification table: a command and where its read and written keys are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommandSpec {
    name: &'static str,
    reads: KeyPositions,
    writes: KeyPositions,
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

/// The table row for a command name, matched case-insensitively; `None` if the command is not tracked.
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
    let packed = pack_upper(name)?;
    PACKED
        .binary_search(&packed)
        .ok()
        .and_then(|i| TABLE.get(i).copied())
}

/// Every command the tracker knows, in alphabetical order.
///
/// # Examples
/// ```
/// let names: Vec<&str> = baseplate_hotkeys::commands().map(|c| c.name()).collect();
/// assert!(names.contains(&"MSET"));
/// ```
pub fn commands() -> impl ExactSizeIterator<Item = CommandSpec> + Clone {
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

const fn read(name: &'static str, reads: KeyPositions) -> CommandSpec {
    CommandSpec {
        name,
        reads,
        writes: No,
    }
}

const fn write(name: &'static str, writes: KeyPositions) -> CommandSpec {
    CommandSpec {
        name,
        reads: No,
        writes,
    }
}

const fn both(name: &'static str, reads: KeyPositions, writes: KeyPositions) -> CommandSpec {
    CommandSpec {
        name,
        reads,
        writes,
    }
}

/// The classification table, sorted by name (a unit test checks the order `command_spec` relies on).
const TABLE: &[CommandSpec] = &[
    write("APPEND", First),
    read("BITCOUNT", First),
    write("BITFIELD", First),
    read("BITFIELD_RO", First),
    both("BITOP", FromThird, Second),
    read("BITPOS", First),
    write("BLMOVE", FirstTwo),
    write("BLMPOP", NumKeysAtSecond),
    write("BLPOP", AllButLast),
    write("BRPOP", AllButLast),
    write("BRPOPLPUSH", FirstTwo),
    write("BZMPOP", NumKeysAtSecond),
    write("BZPOPMAX", AllButLast),
    write("BZPOPMIN", AllButLast),
    both("COPY", First, Second),
    write("DECR", First),
    write("DECRBY", First),
    write("DEL", All),
    read("DUMP", First),
    // A script or function may write any key it is given, so only the read-only variants are
    // reads; the keys are the `numkeys` that follow the script (or its SHA1, or the function).
    write("EVAL", NumKeysAtSecond),
    write("EVALSHA", NumKeysAtSecond),
    read("EVALSHA_RO", NumKeysAtSecond),
    read("EVAL_RO", NumKeysAtSecond),
    read("EXISTS", All),
    write("EXPIRE", First),
    write("EXPIREAT", First),
    read("EXPIRETIME", First),
    write("FCALL", NumKeysAtSecond),
    read("FCALL_RO", NumKeysAtSecond),
    write("GEOADD", First),
    read("GEODIST", First),
    read("GEOHASH", First),
    read("GEOPOS", First),
    read("GEORADIUS", First),
    read("GEORADIUSBYMEMBER", First),
    read("GEORADIUSBYMEMBER_RO", First),
    read("GEORADIUS_RO", First),
    read("GEOSEARCH", First),
    both("GEOSEARCHSTORE", Second, First),
    read("GET", First),
    read("GETBIT", First),
    write("GETDEL", First),
    write("GETEX", First),
    read("GETRANGE", First),
    write("GETSET", First),
    write("HDEL", First),
    read("HEXISTS", First),
    read("HGET", First),
    read("HGETALL", First),
    write("HINCRBY", First),
    write("HINCRBYFLOAT", First),
    read("HKEYS", First),
    read("HLEN", First),
    read("HMGET", First),
    write("HMSET", First),
    read("HRANDFIELD", First),
    read("HSCAN", First),
    write("HSET", First),
    write("HSETNX", First),
    read("HSTRLEN", First),
    read("HVALS", First),
    write("INCR", First),
    write("INCRBY", First),
    write("INCRBYFLOAT", First),
    read("LCS", FirstTwo),
    read("LINDEX", First),
    write("LINSERT", First),
    read("LLEN", First),
    write("LMOVE", FirstTwo),
    write("LMPOP", NumKeysAtFirst),
    write("LPOP", First),
    read("LPOS", First),
    write("LPUSH", First),
    write("LPUSHX", First),
    read("LRANGE", First),
    write("LREM", First),
    write("LSET", First),
    write("LTRIM", First),
    read("MGET", All),
    write("MSET", Pairs),
    write("MSETNX", Pairs),
    write("PERSIST", First),
    write("PEXPIRE", First),
    write("PEXPIREAT", First),
    read("PEXPIRETIME", First),
    write("PFADD", First),
    read("PFCOUNT", All),
    both("PFMERGE", FromSecond, First),
    write("PSETEX", First),
    read("PTTL", First),
    write("RENAME", FirstTwo),
    write("RENAMENX", FirstTwo),
    write("RESTORE", First),
    write("RPOP", First),
    write("RPOPLPUSH", FirstTwo),
    write("RPUSH", First),
    write("RPUSHX", First),
    write("SADD", First),
    read("SCARD", First),
    read("SDIFF", All),
    both("SDIFFSTORE", FromSecond, First),
    write("SET", First),
    write("SETBIT", First),
    write("SETEX", First),
    write("SETNX", First),
    write("SETRANGE", First),
    read("SINTER", All),
    read("SINTERCARD", NumKeysAtFirst),
    both("SINTERSTORE", FromSecond, First),
    read("SISMEMBER", First),
    read("SMEMBERS", First),
    read("SMISMEMBER", First),
    write("SMOVE", FirstTwo),
    read("SORT_RO", First),
    write("SPOP", First),
    read("SRANDMEMBER", First),
    write("SREM", First),
    read("SSCAN", First),
    read("STRLEN", First),
    read("SUBSTR", First),
    read("SUNION", All),
    both("SUNIONSTORE", FromSecond, First),
    read("TOUCH", All),
    read("TTL", First),
    read("TYPE", First),
    write("UNLINK", All),
    write("XADD", First),
    write("XDEL", First),
    read("XLEN", First),
    read("XRANGE", First),
    read("XREVRANGE", First),
    write("XTRIM", First),
    write("ZADD", First),
    read("ZCARD", First),
    read("ZCOUNT", First),
    read("ZDIFF", NumKeysAtFirst),
    both("ZDIFFSTORE", NumKeysAtSecond, First),
    write("ZINCRBY", First),
    read("ZINTER", NumKeysAtFirst),
    read("ZINTERCARD", NumKeysAtFirst),
    both("ZINTERSTORE", NumKeysAtSecond, First),
    read("ZLEXCOUNT", First),
    write("ZMPOP", NumKeysAtFirst),
    read("ZMSCORE", First),
    write("ZPOPMAX", First),
    write("ZPOPMIN", First),
    read("ZRANDMEMBER", First),
    read("ZRANGE", First),
    read("ZRANGEBYLEX", First),
    read("ZRANGEBYSCORE", First),
    both("ZRANGESTORE", Second, First),
    read("ZRANK", First),
    write("ZREM", First),
    write("ZREMRANGEBYLEX", First),
    write("ZREMRANGEBYRANK", First),
    write("ZREMRANGEBYSCORE", First),
    read("ZREVRANGE", First),
    read("ZREVRANGEBYLEX", First),
    read("ZREVRANGEBYSCORE", First),
    read("ZREVRANK", First),
    read("ZSCAN", First),
    read("ZSCORE", First),
    read("ZUNION", NumKeysAtFirst),
    both("ZUNIONSTORE", NumKeysAtSecond, First),
];

#[cfg(test)]
mod tests;
