//! Unit tests of the command table, command by command.

use super::*;

/// One invocation per command, as Redis documents it: `(command line, keys read, keys written)`, each a
/// space-separated list.
const EXAMPLES: &[(&str, &str, &str)] = &[
    ("APPEND k v", "", "k"),
    ("BITCOUNT k", "k", ""),
    ("BITFIELD k GET u8 0", "", "k"),
    ("BITFIELD_RO k GET u8 0", "k", ""),
    ("BITOP AND dst a b", "a b", "dst"),
    ("BITPOS k 1", "k", ""),
    ("BLMOVE src dst LEFT RIGHT 0", "", "src dst"),
    ("BLMPOP 0 2 a b LEFT COUNT 1", "", "a b"),
    ("BLPOP a b 0", "", "a b"),
    ("BRPOP a b 0", "", "a b"),
    ("BRPOPLPUSH src dst 0", "", "src dst"),
    ("BZMPOP 0 2 a b MIN", "", "a b"),
    ("BZPOPMAX a b 0", "", "a b"),
    ("BZPOPMIN a b 0", "", "a b"),
    ("COPY src dst REPLACE", "src", "dst"),
    ("DECR k", "", "k"),
    ("DECRBY k 2", "", "k"),
    ("DEL a b c", "", "a b c"),
    ("DUMP k", "k", ""),
    ("EVAL script 2 a b arg", "", "a b"),
    ("EVALSHA 8f3d1c 2 a b arg", "", "a b"),
    ("EVALSHA_RO 8f3d1c 1 a arg", "a", ""),
    ("EVAL_RO script 1 a arg", "a", ""),
    ("EXISTS a b", "a b", ""),
    ("EXPIRE k 10", "", "k"),
    ("EXPIREAT k 1700000000", "", "k"),
    ("EXPIRETIME k", "k", ""),
    ("FCALL f 2 a b arg", "", "a b"),
    ("FCALL_RO f 1 a arg", "a", ""),
    ("GEOADD k 13.4 52.5 berlin", "", "k"),
    ("GEODIST k a b", "k", ""),
    ("GEOHASH k a", "k", ""),
    ("GEOPOS k a", "k", ""),
    ("GEORADIUS k 15 37 200 km", "k", ""),
    ("GEORADIUSBYMEMBER k a 100 km", "k", ""),
    ("GEORADIUSBYMEMBER_RO k a 100 km", "k", ""),
    ("GEORADIUS_RO k 15 37 200 km", "k", ""),
    ("GEOSEARCH k FROMMEMBER a BYRADIUS 10 km", "k", ""),
    (
        "GEOSEARCHSTORE dst src FROMMEMBER a BYRADIUS 10 km",
        "src",
        "dst",
    ),
    ("GET k", "k", ""),
    ("GETBIT k 7", "k", ""),
    ("GETDEL k", "", "k"),
    ("GETEX k EX 10", "", "k"),
    ("GETRANGE k 0 3", "k", ""),
    ("GETSET k v", "", "k"),
    ("HDEL k f", "", "k"),
    ("HEXISTS k f", "k", ""),
    ("HGET k f", "k", ""),
    ("HGETALL k", "k", ""),
    ("HINCRBY k f 1", "", "k"),
    ("HINCRBYFLOAT k f 0.5", "", "k"),
    ("HKEYS k", "k", ""),
    ("HLEN k", "k", ""),
    ("HMGET k f g", "k", ""),
    ("HMSET k f v", "", "k"),
    ("HRANDFIELD k 2", "k", ""),
    ("HSCAN k 0", "k", ""),
    ("HSET k f v", "", "k"),
    ("HSETNX k f v", "", "k"),
    ("HSTRLEN k f", "k", ""),
    ("HVALS k", "k", ""),
    ("INCR k", "", "k"),
    ("INCRBY k 5", "", "k"),
    ("INCRBYFLOAT k 0.5", "", "k"),
    ("LCS a b", "a b", ""),
    ("LINDEX k 0", "k", ""),
    ("LINSERT k BEFORE p v", "", "k"),
    ("LLEN k", "k", ""),
    ("LMOVE src dst LEFT RIGHT", "", "src dst"),
    ("LMPOP 2 a b LEFT", "", "a b"),
    ("LPOP k", "", "k"),
    ("LPOS k v", "k", ""),
    ("LPUSH k v", "", "k"),
    ("LPUSHX k v", "", "k"),
    ("LRANGE k 0 -1", "k", ""),
    ("LREM k 0 v", "", "k"),
    ("LSET k 0 v", "", "k"),
    ("LTRIM k 0 9", "", "k"),
    ("MGET a b", "a b", ""),
    ("MSET a 1 b 2", "", "a b"),
    ("MSETNX a 1 b 2", "", "a b"),
    ("PERSIST k", "", "k"),
    ("PEXPIRE k 100", "", "k"),
    ("PEXPIREAT k 1700000000000", "", "k"),
    ("PEXPIRETIME k", "k", ""),
    ("PFADD k a", "", "k"),
    ("PFCOUNT a b", "a b", ""),
    ("PFMERGE dst a b", "a b", "dst"),
    ("PSETEX k 100 v", "", "k"),
    ("PTTL k", "k", ""),
    ("RENAME a b", "", "a b"),
    ("RENAMENX a b", "", "a b"),
    ("RESTORE k 0 payload", "", "k"),
    ("RPOP k", "", "k"),
    ("RPOPLPUSH src dst", "", "src dst"),
    ("RPUSH k v", "", "k"),
    ("RPUSHX k v", "", "k"),
    ("SADD k m", "", "k"),
    ("SCARD k", "k", ""),
    ("SDIFF a b", "a b", ""),
    ("SDIFFSTORE dst a b", "a b", "dst"),
    ("SET k v EX 10", "", "k"),
    ("SETBIT k 7 1", "", "k"),
    ("SETEX k 10 v", "", "k"),
    ("SETNX k v", "", "k"),
    ("SETRANGE k 0 v", "", "k"),
    ("SINTER a b", "a b", ""),
    ("SINTERCARD 2 a b LIMIT 5", "a b", ""),
    ("SINTERSTORE dst a b", "a b", "dst"),
    ("SISMEMBER k m", "k", ""),
    ("SMEMBERS k", "k", ""),
    ("SMISMEMBER k m n", "k", ""),
    ("SMOVE src dst m", "", "src dst"),
    ("SORT_RO k BY w", "k", ""),
    ("SPOP k", "", "k"),
    ("SRANDMEMBER k", "k", ""),
    ("SREM k m", "", "k"),
    ("SSCAN k 0", "k", ""),
    ("STRLEN k", "k", ""),
    ("SUBSTR k 0 3", "k", ""),
    ("SUNION a b", "a b", ""),
    ("SUNIONSTORE dst a b", "a b", "dst"),
    ("TOUCH a b", "a b", ""),
    ("TTL k", "k", ""),
    ("TYPE k", "k", ""),
    ("UNLINK a b", "", "a b"),
    ("XADD k * f v", "", "k"),
    ("XDEL k 1-0", "", "k"),
    ("XLEN k", "k", ""),
    ("XRANGE k - +", "k", ""),
    ("XREVRANGE k + -", "k", ""),
    ("XTRIM k MAXLEN 10", "", "k"),
    ("ZADD k 1 m", "", "k"),
    ("ZCARD k", "k", ""),
    ("ZCOUNT k 0 10", "k", ""),
    ("ZDIFF 2 a b WITHSCORES", "a b", ""),
    ("ZDIFFSTORE dst 2 a b", "a b", "dst"),
    ("ZINCRBY k 1 m", "", "k"),
    ("ZINTER 2 a b WEIGHTS 1 2", "a b", ""),
    ("ZINTERCARD 2 a b", "a b", ""),
    ("ZINTERSTORE dst 2 a b WEIGHTS 1 2", "a b", "dst"),
    ("ZLEXCOUNT k - +", "k", ""),
    ("ZMPOP 2 a b MIN", "", "a b"),
    ("ZMSCORE k m n", "k", ""),
    ("ZPOPMAX k", "", "k"),
    ("ZPOPMIN k", "", "k"),
    ("ZRANDMEMBER k", "k", ""),
    ("ZRANGE k 0 -1", "k", ""),
    ("ZRANGEBYLEX k - +", "k", ""),
    ("ZRANGEBYSCORE k 0 10", "k", ""),
    ("ZRANGESTORE dst src 0 -1", "src", "dst"),
    ("ZRANK k m", "k", ""),
    ("ZREM k m", "", "k"),
    ("ZREMRANGEBYLEX k - +", "", "k"),
    ("ZREMRANGEBYRANK k 0 1", "", "k"),
    ("ZREMRANGEBYSCORE k 0 1", "", "k"),
    ("ZREVRANGE k 0 -1", "k", ""),
    ("ZREVRANGEBYLEX k + -", "k", ""),
    ("ZREVRANGEBYSCORE k 10 0", "k", ""),
    ("ZREVRANK k m", "k", ""),
    ("ZSCAN k 0", "k", ""),
    ("ZSCORE k m", "k", ""),
    ("ZUNION 2 a b", "a b", ""),
    ("ZUNIONSTORE dst 2 a b AGGREGATE MAX", "a b", "dst"),
];

fn words(line: &str) -> Vec<&[u8]> {
    line.split_whitespace().map(str::as_bytes).collect()
}

type Keys<'a> = Vec<&'a [u8]>;

fn classified(line: &str) -> Option<(Keys<'_>, Keys<'_>)> {
    let args = words(line);
    let c = classify(&args)?;
    Some((c.reads, c.writes))
}

#[test]
fn every_command_classifies_its_documented_invocation() {
    for (line, reads, writes) in EXAMPLES {
        let (got_reads, got_writes) =
            classified(line).unwrap_or_else(|| panic!("{line}: not classified"));
        assert_eq!(got_reads, words(reads), "{line}: keys read");
        assert_eq!(got_writes, words(writes), "{line}: keys written");
    }
}

#[test]
fn every_table_entry_has_an_example_and_no_example_is_extra() {
    let examples: Vec<&str> = EXAMPLES
        .iter()
        .map(|(line, _, _)| line.split(' ').next().unwrap())
        .collect();
    let table: Vec<&str> = commands().map(|c| c.name()).collect();
    assert_eq!(examples, table);
}

#[test]
fn the_table_is_sorted_unique_and_upper_case() {
    for pair in PACKED.windows(2) {
        assert!(pair[0] < pair[1], "packed names keep the order");
    }
    for pair in TABLE.windows(2) {
        assert!(
            pair[0].name.as_bytes() < pair[1].name.as_bytes(),
            "{} must come before {}",
            pair[1].name,
            pair[0].name
        );
    }
    for spec in TABLE {
        assert!(spec.name.len() <= MAX_NAME_LEN, "{}", spec.name);
        assert_eq!(spec.name, spec.name.to_ascii_uppercase());
        // A row the tracker does not count is there for routing: it says something the rule for
        // unknown commands (the key is argument 1, never blocking) would get wrong.
        assert!(
            spec.is_tracked()
                || spec.first_key != FirstKey::At(1)
                || spec.blocking != Blocking::Never,
            "{} says nothing",
            spec.name
        );
        assert_eq!(command(spec.name.as_bytes()), Some(spec));
        let counted = command_spec(spec.name.as_bytes());
        assert_eq!(counted, spec.is_tracked().then_some(*spec), "{}", spec.name);
    }
    let tracked: Vec<CommandSpec> = TABLE
        .iter()
        .copied()
        .filter(CommandSpec::is_tracked)
        .collect();
    assert_eq!(commands().collect::<Vec<_>>(), tracked);
}

#[test]
fn baseplate_tables_are_covered_with_the_same_keys() {
    let single_reads = "BITCOUNT BITPOS GEODIST GEOHASH GEOPOS GEORADIUS GEORADIUSBYMEMBER GET GETBIT \
        GETRANGE HEXISTS HGET HGETALL HKEYS HLEN HMGET HSTRLEN HVALS LINDEX LLEN LRANGE PTTL SCARD \
        SISMEMBER SMEMBERS SRANDMEMBER STRLEN TTL ZCARD ZCOUNT ZRANGE ZSCORE";
    let multi_reads = "EXISTS MGET SDIFF SINTER SUNION";
    let single_writes = "EXPIRE EXPIREAT HINCRBY HINCRBYFLOAT HDEL HMSET HSET HSETNX LPUSH LREM LPOP \
        LSET LTRIM RPOP RPUSH SADD SET SETNX SPOP SREM ZADD ZINCRBY ZPOPMAX ZPOPMIN ZREM \
        ZREMRANGEBYLEX ZREMRANGEBYRANK ZREMRANGEBYSCORE";
    let cases = [
        (single_reads, KeyPositions::First, KeyPositions::None),
        (multi_reads, KeyPositions::All, KeyPositions::None),
        (single_writes, KeyPositions::None, KeyPositions::First),
        ("DEL", KeyPositions::None, KeyPositions::All),
        ("MSET MSETNX", KeyPositions::None, KeyPositions::Pairs),
    ];
    for (names, reads, writes) in cases {
        for name in names.split_whitespace() {
            let spec = command_spec(name.as_bytes()).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!((spec.reads(), spec.writes()), (reads, writes), "{name}");
        }
    }
}

#[test]
fn mset_takes_keys_of_complete_pairs_only() {
    let cases: [(&str, &str); 6] = [
        ("MSET", ""),
        ("MSET a", ""),
        ("MSET a 1", "a"),
        ("MSET a 1 b", "a"),
        ("MSET a 1 b 2", "a b"),
        ("MSETNX a 1 b 2 c", "a b"),
    ];
    for (line, writes) in cases {
        let (reads, got) = classified(line).unwrap();
        assert!(reads.is_empty(), "{line}");
        assert_eq!(got, words(writes), "{line}");
    }
    // A value that looks like a key is still a value.
    let (_, got) = classified("MSET a b b a").unwrap();
    assert_eq!(got, words("a b"));
}

#[test]
fn command_names_match_case_insensitively() {
    for name in ["get", "Get", "gEt", "GET"] {
        let line = format!("{name} k");
        let (reads, writes) = classified(&line).unwrap();
        assert_eq!((reads, writes), (words("k"), vec![]), "{name}");
    }
    assert_eq!(command_spec(b"zunionstore"), command_spec(b"ZUNIONSTORE"));
    // Keys, unlike names, keep their case.
    assert_eq!(classified("get Key").unwrap().0, words("Key"));
}

#[test]
fn binary_keys_are_returned_byte_for_byte() {
    let key: &[u8] = b"\xff\x00\xfe\n";
    let other: &[u8] = "ключ".as_bytes();
    let c = classify(&[b"MGET", key, other]).unwrap();
    assert_eq!(c.reads, [key, other]);
    let c = classify(&[b"SET", key, b"\x80"]).unwrap();
    assert_eq!(c.writes, [key]);
}

#[test]
fn unknown_empty_and_strange_names_are_not_classified() {
    assert_eq!(classify(&[]), None);
    assert_eq!(classified("PING"), None);
    assert_eq!(classified("CLUSTER INFO"), None);
    assert_eq!(classify(&[b""]), None);
    assert_eq!(classify(&[b"G\xc3\xa9T", b"k"]), None);
    assert_eq!(classify(&[&[b'A'; 1000][..], b"k"]), None);
    assert!(command_spec(&[b'Z'; MAX_NAME_LEN + 1]).is_none());
    // A zero byte must not pass for the padding of a shorter name.
    assert_eq!(classify(&[b"GET\0", b"k"]), None);
    assert_eq!(classify(&[b"\0GET", b"k"]), None);
}

#[test]
fn missing_arguments_yield_no_keys_rather_than_panicking() {
    for spec in commands() {
        for len in 0..4 {
            let mut args: Vec<&[u8]> = vec![spec.name.as_bytes()];
            args.extend(std::iter::repeat_n(&b"x"[..], len));
            let c = classify(&args).unwrap();
            assert!(
                c.reads.len() <= len && c.writes.len() <= len,
                "{}",
                spec.name
            );
        }
    }
    assert_eq!(classified("GET"), Some((vec![], vec![])));
    assert_eq!(classified("BLPOP"), Some((vec![], vec![])));
}

#[test]
fn numkeys_is_clamped_and_ignored_when_not_a_number() {
    assert_eq!(classified("ZUNION 5 a b").unwrap().0, words("a b"));
    assert_eq!(classified("ZUNION x a b").unwrap().0, words(""));
    assert_eq!(classified("ZUNION -1 a b").unwrap().0, words(""));
    assert_eq!(
        classified("ZUNION 18446744073709551615 a").unwrap().0,
        words("a")
    );
    assert_eq!(classified("ZUNIONSTORE d 0").unwrap(), (vec![], words("d")));
    assert_eq!(classified("LMPOP 1 a b LEFT").unwrap().1, words("a"));
}

#[test]
fn keyless_scripts_and_functions_have_no_keys() {
    for line in [
        "EVAL script 0 arg",
        "EVALSHA 8f3d1c 0",
        "FCALL f 0 arg",
        "FCALL_RO f",
    ] {
        assert_eq!(classified(line), Some((vec![], vec![])), "{line}");
    }
    // The arguments after the keys are not keys.
    assert_eq!(
        classified("evalsha 8f3d1c 1 k v1 v2").unwrap(),
        (vec![], words("k"))
    );
}

#[test]
fn duplicate_keys_are_reported_as_given() {
    assert_eq!(classified("MGET a a b").unwrap().0, words("a a b"));
}

#[test]
fn the_readme_table_is_the_classification_table() {
    let readme = include_str!("../../README.md");
    let start = "<!-- classification-table:start -->\n";
    let end = "<!-- classification-table:end -->";
    let from = readme.find(start).expect("table start marker") + start.len();
    let to = readme.find(end).expect("table end marker");
    let mut expected = String::from("| command | keys read | keys written |\n|---|---|---|\n");
    for spec in commands() {
        let cell = |p: KeyPositions| {
            if p == KeyPositions::None {
                String::new()
            } else {
                format!("`{}`", p.describe())
            }
        };
        expected.push_str(&format!(
            "| `{}` | {} | {} |\n",
            spec.name,
            cell(spec.reads),
            cell(spec.writes)
        ));
    }
    assert_eq!(
        &readme[from..to],
        expected,
        "README.md's table is stale; replace it with:\n{expected}"
    );
}

/// The position of each key of `keys` among `args`, told apart by address: `words` borrows every
/// argument from its own place in the line.
fn positions(args: &[&[u8]], keys: &[&[u8]]) -> Vec<usize> {
    keys.iter()
        .map(|key| {
            args.iter()
                .position(|arg| std::ptr::eq(*arg, *key))
                .unwrap()
        })
        .collect()
}

#[test]
fn a_counted_commands_first_key_is_the_first_key_it_reads_or_writes() {
    for (line, _, _) in EXAMPLES {
        let args = words(line);
        let c = classify(&args).unwrap();
        let mut counted = positions(&args, &c.reads);
        counted.extend(positions(&args, &c.writes));
        let first = counted.into_iter().min().map(|i| args[i]);
        let spec = command(args[0]).unwrap();
        assert_eq!(spec.first_key().find(&args), first, "{line}");
    }
}

#[test]
fn commands_the_tracker_does_not_count_still_have_their_first_key() {
    let cases = [
        ("OBJECT ENCODING k", "k"),
        ("MEMORY USAGE k", "k"),
        ("MEMORY STATS", ""),
        ("XINFO STREAM k", "k"),
        ("XGROUP CREATE k g $", "k"),
        ("XREAD COUNT 1 STREAMS k 0", "k"),
        ("xreadgroup GROUP g c BLOCK 10 STREAMS k >", "k"),
        ("XREAD COUNT 1", ""),
        ("PING", ""),
        ("PUBLISH k message", ""),
        ("CLUSTER KEYSLOT k", ""),
        ("WAIT 1 100", ""),
    ];
    for (line, first) in cases {
        let args = words(line);
        assert_eq!(classify(&args), None, "{line}: never counted");
        let spec = command(args[0]).unwrap_or_else(|| panic!("{line}: not in the table"));
        let first = words(first).first().copied();
        assert_eq!(spec.first_key().find(&args), first, "{line}");
    }
}

#[test]
fn pops_and_stream_reads_block_and_scripts_take_numkeys_after_their_second_argument() {
    let named = |keep: &dyn Fn(&CommandSpec) -> bool| -> Vec<&str> {
        TABLE.iter().filter(|s| keep(s)).map(|s| s.name).collect()
    };
    assert_eq!(
        named(&|s| s.blocking() == Blocking::Always),
        "BLMOVE BLMPOP BLPOP BRPOP BRPOPLPUSH BZMPOP BZPOPMAX BZPOPMIN"
            .split(' ')
            .collect::<Vec<_>>()
    );
    assert_eq!(
        named(&|s| s.blocking() == Blocking::WithBlockOption),
        ["XREAD", "XREADGROUP"]
    );
    assert_eq!(
        named(&|s| s.is_script()),
        [
            "EVAL",
            "EVALSHA",
            "EVALSHA_RO",
            "EVAL_RO",
            "FCALL",
            "FCALL_RO"
        ]
    );
    for spec in TABLE.iter().filter(|s| s.is_script()) {
        let keys = if spec.writes == KeyPositions::None {
            spec.reads
        } else {
            spec.writes
        };
        assert_eq!(keys, KeyPositions::NumKeysAtSecond, "{}", spec.name);
        assert_eq!(spec.first_key, FirstKey::AfterNumKeysAt(2), "{}", spec.name);
    }
    let blocks = |line: &str| {
        let args = words(line);
        command(args[0]).is_some_and(|spec| spec.blocking().blocks(args.iter().copied()))
    };
    assert!(blocks("BLPOP a 0"));
    assert!(blocks("XREAD COUNT 1 block 0 STREAMS s $"));
    assert!(!blocks("XREAD COUNT 1 STREAMS s 0"));
    assert!(!blocks("XREAD STREAMS BLOCK 0"));
    assert!(!blocks("LPOP a"));
    assert!(!blocks("WAIT 1 100"));
}

#[test]
fn the_readme_routing_list_is_the_command_table() {
    let readme = include_str!("../../README.md");
    let start = "<!-- routing-table:start -->\n";
    let end = "<!-- routing-table:end -->";
    let from = readme.find(start).expect("list start marker") + start.len();
    let to = readme.find(end).expect("list end marker");
    let names = |keep: &dyn Fn(&CommandSpec) -> bool| -> String {
        let names: Vec<String> = TABLE
            .iter()
            .filter(|s| keep(s))
            .map(|s| format!("`{}`", s.name))
            .collect();
        names.join(", ")
    };
    let mut expected = String::new();
    let mut line = |label: &str, keep: &dyn Fn(&CommandSpec) -> bool| {
        expected.push_str(&format!("- {label}: {}\n", names(keep)));
    };
    line("Block until data arrives or their timeout passes", &|s| {
        s.blocking == Blocking::Always
    });
    line("Block only with a `BLOCK` option before `STREAMS`", &|s| {
        s.blocking == Blocking::WithBlockOption
    });
    line("Run a script or function, keys at `numkeys@2`", &|s| {
        s.script
    });
    line("Not counted, no key", &|s| {
        !s.is_tracked() && s.first_key == FirstKey::Keyless
    });
    line("Not counted, first key at `2`", &|s| {
        !s.is_tracked() && s.first_key == FirstKey::At(2)
    });
    line("Not counted, first key after `STREAMS`", &|s| {
        !s.is_tracked() && s.first_key == FirstKey::AfterStreams
    });
    // Every row the tracker does not count is in one of the lines above.
    for spec in TABLE.iter().filter(|s| !s.is_tracked()) {
        assert!(
            matches!(
                spec.first_key,
                FirstKey::Keyless | FirstKey::At(2) | FirstKey::AfterStreams
            ),
            "{} needs a line of its own in the README",
            spec.name
        );
    }
    assert_eq!(
        &readme[from..to],
        expected,
        "README.md's routing list is stale; replace it with:\n{expected}"
    );
}
