//! Tests of parsing keys into structs: every supported type, defaults, nesting, maps, unknown
//! keys, every error message, and secret redaction.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Deserialize;

use super::nearest;
use crate::{ConfigError, Endpoint, Percent, RawConfig, Timespan, Value};

fn config<V: Into<Value>>(pairs: impl IntoIterator<Item = (&'static str, V)>) -> RawConfig {
    pairs.into_iter().collect()
}

#[track_caller]
fn parse_error<T: for<'de> Deserialize<'de> + std::fmt::Debug>(
    config: &RawConfig,
    prefix: &str,
) -> String {
    match config.parse::<T>(prefix) {
        Ok(value) => panic!("expected an error, parsed {value:?}"),
        Err(error) => error.to_string(),
    }
}

/// The settings of baseplate's Redis Cluster client, as a service declares them.
#[derive(Debug, Deserialize, PartialEq)]
struct Cluster {
    url: String,
    #[serde(default = "default_max_connections")]
    max_connections: u32,
    timeout: Option<Duration>,
    socket_connect_timeout: Option<Duration>,
    #[serde(default = "default_true")]
    read_from_replicas: bool,
    #[serde(default)]
    track_key_reads_sample_rate: f64,
    #[serde(default)]
    track_key_writes_sample_rate: f64,
}

fn default_max_connections() -> u32 {
    50
}

fn default_true() -> bool {
    true
}

#[test]
fn a_client_config_with_defaults() {
    let cluster: Cluster = config([("foo.url", "redis://cache:7000")])
        .parse("foo")
        .unwrap();
    assert_eq!(
        cluster,
        Cluster {
            url: "redis://cache:7000".into(),
            max_connections: 50,
            timeout: None,
            socket_connect_timeout: None,
            read_from_replicas: true,
            track_key_reads_sample_rate: 0.0,
            track_key_writes_sample_rate: 0.0,
        }
    );

    let cluster: Cluster = config([
        ("foo.url", "redis://cache:7000"),
        ("foo.max_connections", " 99 "),
        ("foo.timeout", "3 seconds"),
        ("foo.socket_connect_timeout", "250 milliseconds"),
        ("foo.read_from_replicas", "False"),
        ("foo.track_key_reads_sample_rate", "0.01"),
        ("foo.track_key_writes_sample_rate", "1"),
        ("other.key", "ignored: not under foo"),
    ])
    .parse("foo")
    .unwrap();
    assert_eq!(
        cluster,
        Cluster {
            url: "redis://cache:7000".into(),
            max_connections: 99,
            timeout: Some(Duration::from_secs(3)),
            socket_connect_timeout: Some(Duration::from_millis(250)),
            read_from_replicas: false,
            track_key_reads_sample_rate: 0.01,
            track_key_writes_sample_rate: 1.0,
        }
    );
}

#[test]
fn empty_values_are_not_set() {
    let cluster: Cluster = config([
        ("foo.url", "redis://cache:7000"),
        ("foo.max_connections", ""),
        ("foo.timeout", ""),
        ("foo.read_from_replicas", ""),
    ])
    .parse("foo")
    .unwrap();
    assert_eq!(cluster.max_connections, 50);
    assert_eq!(cluster.timeout, None);
    assert!(cluster.read_from_replicas);

    assert_eq!(
        parse_error::<Cluster>(&config([("foo.url", "")]), "foo"),
        "foo.url: required but not set"
    );
}

#[test]
fn the_documented_error_messages() {
    let base = [("foo.url", "redis://cache:7000")];
    let cases = [
        (
            ("foo.timeout", "3 secnds"),
            r#"foo.timeout: invalid timespan "3 secnds": unknown unit "secnd""#,
        ),
        (
            ("foo.max_conections", "10"),
            "foo.max_conections: unknown key; did you mean foo.max_connections?",
        ),
        (
            ("foo.max_connections", "lots"),
            r#"foo.max_connections: invalid integer "lots": expected a whole number in base 10"#,
        ),
        (
            ("foo.max_connections", "99999999999"),
            r#"foo.max_connections: invalid integer "99999999999": out of range for u32 (0 to 4294967295)"#,
        ),
        (
            ("foo.max_connections", "-1"),
            r#"foo.max_connections: invalid integer "-1": out of range for u32 (0 to 4294967295)"#,
        ),
        (
            ("foo.read_from_replicas", "yes"),
            r#"foo.read_from_replicas: invalid boolean "yes": expected true or false"#,
        ),
        (
            ("foo.track_key_reads_sample_rate", "a lot"),
            r#"foo.track_key_reads_sample_rate: invalid float "a lot": expected a number"#,
        ),
        (("foo.colour", "blue"), "foo.colour: unknown key"),
        (("foo.timeout.extra", "1"), "foo.timeout.extra: unknown key"),
        (
            ("foo.timout", "1 second"),
            "foo.timout: unknown key; did you mean foo.timeout?",
        ),
        (
            ("foo.ulr", "x"),
            "foo.ulr: unknown key; did you mean foo.url?",
        ),
        (("foo.bogus", ""), "foo.bogus: unknown key"),
    ];
    for ((key, value), expected) in cases {
        let mut raw: RawConfig = base.into_iter().collect();
        raw.insert(key, value);
        assert_eq!(
            parse_error::<Cluster>(&raw, "foo"),
            expected,
            "{key} = {value}"
        );
    }
    assert_eq!(
        parse_error::<Cluster>(&RawConfig::new(), "foo"),
        "foo.url: required but not set"
    );
}

#[test]
fn a_key_below_a_scalar_is_unknown() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Foo {
        timeout: Duration,
    }
    let raw = config([("foo.timeout", "1 second"), ("foo.timeout.extra", "1")]);
    assert_eq!(
        parse_error::<Foo>(&raw, "foo"),
        "foo.timeout.extra: unknown key"
    );
}

#[derive(Debug, Deserialize, PartialEq)]
struct Pool {
    size: u32,
    #[serde(default)]
    timeout: Option<Duration>,
}

#[derive(Debug, Deserialize, PartialEq)]
struct WithPool {
    url: String,
    pool: Pool,
    replica_pool: Option<Pool>,
}

#[test]
fn nested_structs_read_dotted_keys() {
    let parsed: WithPool = config([
        ("foo.url", "x"),
        ("foo.pool.size", "3"),
        ("foo.pool.timeout", "2 minutes"),
    ])
    .parse("foo")
    .unwrap();
    assert_eq!(
        parsed,
        WithPool {
            url: "x".into(),
            pool: Pool {
                size: 3,
                timeout: Some(Duration::from_secs(120)),
            },
            replica_pool: None,
        }
    );

    let parsed: WithPool = config([
        ("foo.url", "x"),
        ("foo.pool.size", "3"),
        ("foo.replica_pool.size", "4"),
    ])
    .parse("foo")
    .unwrap();
    assert_eq!(
        parsed.replica_pool,
        Some(Pool {
            size: 4,
            timeout: None
        })
    );

    // Through nested views, errors still name the full key.
    let raw = config([("app.foo.url", "x"), ("app.foo.pool.size", "big")]);
    assert_eq!(
        raw.prefix("app")
            .prefix("foo")
            .parse::<WithPool>()
            .unwrap_err()
            .to_string(),
        r#"app.foo.pool.size: invalid integer "big": expected a whole number in base 10"#
    );
    assert_eq!(
        raw.prefix("app.foo.pool")
            .parse::<Pool>()
            .unwrap_err()
            .to_string(),
        r#"app.foo.pool.size: invalid integer "big": expected a whole number in base 10"#
    );
}

#[test]
fn nested_struct_errors() {
    let cases: [(Vec<(&'static str, &'static str)>, &str); 6] = [
        (
            vec![("foo.url", "x"), ("foo.pool.sise", "3")],
            "foo.pool.sise: unknown key; did you mean foo.pool.size?",
        ),
        (
            vec![("foo.url", "x"), ("foo.pol.size", "3")],
            "foo.pol.size: unknown key; did you mean foo.pool.size?",
        ),
        (vec![("foo.url", "x")], "foo.pool: required but not set"),
        (
            vec![("foo.url", "x"), ("foo.pool.timeout", "1 second")],
            "foo.pool.size: required but not set",
        ),
        (
            vec![
                ("foo.url", "x"),
                ("foo.pool", "big"),
                ("foo.pool.size", "1"),
            ],
            r#"foo.pool: invalid value "big": expected keys under foo.pool.*, not a value"#,
        ),
        (
            vec![
                ("foo.url", "x"),
                ("foo.pool.size", "1"),
                ("foo.replica_pool.size", ""),
            ],
            "foo.replica_pool.size: required but not set",
        ),
    ];
    for (pairs, expected) in cases {
        assert_eq!(
            parse_error::<WithPool>(&config(pairs.clone()), "foo"),
            expected,
            "{pairs:?}"
        );
    }
}

#[test]
fn every_integer_width_is_range_checked() {
    #[derive(Debug, Deserialize, PartialEq)]
    struct Ints {
        a: i8,
        b: i16,
        c: i32,
        d: i64,
        e: i128,
        f: u8,
        g: u16,
        h: u32,
        i: u64,
        j: u128,
        k: usize,
        l: isize,
    }
    let parsed: Ints = config([
        ("n.a", "-128"),
        ("n.b", "32767"),
        ("n.c", "-2147483648"),
        ("n.d", "9223372036854775807"),
        ("n.e", "-170141183460469231731687303715884105728"),
        ("n.f", "255"),
        ("n.g", "65535"),
        ("n.h", "4294967295"),
        ("n.i", "18446744073709551615"),
        ("n.j", "170141183460469231731687303715884105727"),
        ("n.k", "0"),
        ("n.l", "-1"),
    ])
    .parse("n")
    .unwrap();
    assert_eq!(parsed.a, i8::MIN);
    assert_eq!(parsed.d, i64::MAX);
    assert_eq!(parsed.e, i128::MIN);
    assert_eq!(parsed.i, u64::MAX);
    assert_eq!(parsed.j, i128::MAX as u128);
    assert_eq!(parsed.l, -1);

    let bad = |key: &'static str, value: &'static str| {
        let mut raw = config([
            ("n.a", "0"),
            ("n.b", "0"),
            ("n.c", "0"),
            ("n.d", "0"),
            ("n.e", "0"),
            ("n.f", "0"),
            ("n.g", "0"),
            ("n.h", "0"),
            ("n.i", "0"),
            ("n.j", "0"),
            ("n.k", "0"),
            ("n.l", "0"),
        ]);
        raw.insert(key, value);
        parse_error::<Ints>(&raw, "n")
    };
    assert_eq!(
        bad("n.a", "128"),
        r#"n.a: invalid integer "128": out of range for i8 (-128 to 127)"#
    );
    assert_eq!(
        bad("n.f", "-1"),
        r#"n.f: invalid integer "-1": out of range for u8 (0 to 255)"#
    );
    assert_eq!(
        bad("n.i", "18446744073709551616"),
        r#"n.i: invalid integer "18446744073709551616": out of range for u64 (0 to 18446744073709551615)"#
    );
    assert_eq!(
        bad("n.j", "-1"),
        r#"n.j: invalid integer "-1": out of range for u128 (0 to 170141183460469231731687303715884105727)"#
    );
    assert_eq!(
        bad("n.e", "170141183460469231731687303715884105728"),
        r#"n.e: invalid integer "170141183460469231731687303715884105728": too large"#
    );
}

#[test]
fn scalars_of_every_kind() {
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        Slow,
        Medium,
    }
    #[derive(Debug, Deserialize, PartialEq)]
    struct Port(u16);
    #[derive(Debug, Deserialize, PartialEq)]
    struct All {
        text: String,
        c: char,
        f32: f32,
        f64: f64,
        flag: bool,
        span: Timespan,
        rate: Percent,
        endpoint: Endpoint,
        unix: Option<Endpoint>,
        mode: Mode,
        port: Port,
        unit: (),
        bytes: serde_bytes_like::Bytes,
    }
    let parsed: All = config([
        ("x.text", "hello world"),
        ("x.c", "é"),
        ("x.f32", "0.5"),
        ("x.f64", "-1e-3"),
        ("x.flag", "TRUE"),
        ("x.span", "1 day"),
        ("x.rate", "37.5%"),
        ("x.endpoint", "[::1]:8125"),
        ("x.unix", "/run/statsd.sock"),
        ("x.mode", "medium"),
        ("x.port", "6379"),
        ("x.unit", "anything"),
        ("x.bytes", "abc"),
    ])
    .parse("x")
    .unwrap();
    assert_eq!(
        parsed,
        All {
            text: "hello world".into(),
            c: 'é',
            f32: 0.5,
            f64: -0.001,
            flag: true,
            span: Timespan(Duration::from_secs(86_400)),
            rate: Percent(0.375),
            endpoint: Endpoint::Inet {
                host: "::1".into(),
                port: 8125
            },
            unix: Some(Endpoint::Unix("/run/statsd.sock".into())),
            mode: Mode::Medium,
            port: Port(6379),
            unit: (),
            bytes: serde_bytes_like::Bytes(b"abc".to_vec()),
        }
    );
}

/// A type that deserialises from bytes, to exercise `deserialize_bytes`.
mod serde_bytes_like {
    use std::fmt;

    use serde::de::{Deserialize, Deserializer, Error, Visitor};

    #[derive(Debug, PartialEq)]
    pub(super) struct Bytes(pub(super) Vec<u8>);

    impl<'de> Deserialize<'de> for Bytes {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct BytesVisitor;
            impl Visitor<'_> for BytesVisitor {
                type Value = Bytes;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E: Error>(self, bytes: &[u8]) -> Result<Bytes, E> {
                    Ok(Bytes(bytes.to_vec()))
                }
            }
            deserializer.deserialize_byte_buf(BytesVisitor)
        }
    }
}

#[test]
fn scalar_errors() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        Slow,
        Medium,
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct One {
        c: Option<char>,
        f: Option<f32>,
        rate: Option<Percent>,
        endpoint: Option<Endpoint>,
        timeout: Option<Duration>,
        span: Option<Timespan>,
        mode: Option<Mode>,
        text: Option<String>,
    }
    let cases = [
        (
            ("x.c", "ab"),
            r#"x.c: invalid character "ab": expected a single character"#,
        ),
        (
            ("x.f", "1e39"),
            r#"x.f: invalid float "1e39": out of range for f32"#,
        ),
        (
            ("x.rate", "50"),
            r#"x.rate: invalid percent "50": expected a percentage such as "37.2%""#,
        ),
        (
            ("x.rate", "150%"),
            r#"x.rate: invalid percent "150%": must be between 0% and 100%"#,
        ),
        (
            ("x.endpoint", "localhost"),
            r#"x.endpoint: invalid endpoint "localhost": no port specified, expected "host:port""#,
        ),
        (
            ("x.timeout", "3"),
            r#"x.timeout: invalid timespan "3": expected "<count> <unit>", such as "3 seconds""#,
        ),
        (
            ("x.span", "3 fortnights"),
            r#"x.span: invalid timespan "3 fortnights": unknown unit "fortnight""#,
        ),
        (
            ("x.mode", "fast"),
            "x.mode: invalid value \"fast\": unknown variant `fast`, expected `slow` or `medium`",
        ),
    ];
    for ((key, value), expected) in cases {
        assert_eq!(parse_error::<One>(&config([(key, value)]), "x"), expected);
    }

    let list = config([("x.text", Value::from(vec!["a", "b"]))]);
    assert_eq!(
        parse_error::<One>(&list, "x"),
        r#"x.text: invalid string "[a, b]": expected a single value, found a list"#
    );
}

#[test]
fn sequences_from_lists_and_comma_separated_strings() {
    #[derive(Debug, Deserialize, PartialEq)]
    struct Seqs {
        hosts: Vec<String>,
        ports: Vec<u16>,
        spans: Vec<Duration>,
        single: Vec<u32>,
        pair: (String, u16),
        nested: Vec<Vec<u8>>,
        maybe: Option<Vec<String>>,
    }
    let parsed: Seqs = config([
        ("s.hosts", Value::from("a, b,,c ,")),
        (
            "s.ports",
            Value::from(vec![Value::from(1), Value::from("2")]),
        ),
        ("s.spans", Value::from("1 second, 2 minutes")),
        ("s.single", Value::from(7)),
        ("s.pair", Value::from("localhost, 80")),
        ("s.nested", Value::from(vec![vec![1, 2], vec![3]])),
        ("s.maybe", Value::from("")),
    ])
    .parse("s")
    .unwrap();
    assert_eq!(
        parsed,
        Seqs {
            hosts: vec!["a".into(), "b".into(), "c".into()],
            ports: vec![1, 2],
            spans: vec![Duration::from_secs(1), Duration::from_secs(120)],
            single: vec![7],
            pair: ("localhost".into(), 80),
            nested: vec![vec![1, 2], vec![3]],
            maybe: None,
        }
    );
}

#[test]
fn sequence_errors_name_the_item() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Seqs {
        ports: Option<Vec<u16>>,
        pair: Option<(String, u16)>,
        hosts: Option<Vec<String>>,
    }
    assert_eq!(
        parse_error::<Seqs>(&config([("s.ports", "1, x")]), "s"),
        r#"s.ports[1]: invalid integer "x": expected a whole number in base 10"#
    );
    assert_eq!(
        parse_error::<Seqs>(&config([("s.ports", Value::from(vec![1, 70_000]))]), "s"),
        r#"s.ports[1]: invalid integer "70000": out of range for u16 (0 to 65535)"#
    );
    assert_eq!(
        parse_error::<Seqs>(&config([("s.hosts", ",, ,")]), "s"),
        r#"s.hosts: invalid list ",, ,": no values provided"#
    );
    assert_eq!(
        parse_error::<Seqs>(&config([("s.pair", "a")]), "s"),
        r#"s.pair: invalid value "a": invalid length 1, expected a tuple of size 2"#
    );
}

#[test]
fn maps_read_every_key_below_like_dict_of() {
    #[derive(Debug, Deserialize, PartialEq)]
    struct Country {
        population: u64,
        capital: String,
    }
    #[derive(Debug, Deserialize, PartialEq)]
    struct Dicts {
        population: HashMap<String, u64>,
        countries: BTreeMap<String, Country>,
        ports: BTreeMap<u16, String>,
    }
    let parsed: Dicts = config([
        ("d.population.br", "207645000"),
        ("d.population.cn", "1409517397"),
        ("d.countries.cn.population", "1409517397"),
        ("d.countries.cn.capital", "Beijing"),
        ("d.countries.id.population", "263447000"),
        ("d.countries.id.capital", "Jakarta"),
        ("d.ports.80", "http"),
        ("d.ports.443", "https"),
    ])
    .parse("d")
    .unwrap();
    assert_eq!(parsed.population["br"], 207_645_000);
    assert_eq!(parsed.population.len(), 2);
    assert_eq!(parsed.countries["id"].capital, "Jakarta");
    assert_eq!(parsed.ports[&443], "https");

    let map: HashMap<String, String> = config([("m.a", "1"), ("m.b", "2")]).parse("m").unwrap();
    assert_eq!(map.len(), 2);

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Ports {
        ports: BTreeMap<u16, String>,
        population: Option<HashMap<String, u64>>,
        tags: Option<HashMap<String, String>>,
    }
    let cases = [
        (
            ("d.ports.http", "80"),
            r#"d.ports.http: invalid integer "http": expected a whole number in base 10"#,
        ),
        (
            ("d.population.br", "many"),
            r#"d.population.br: invalid integer "many": expected a whole number in base 10"#,
        ),
        (("d.tags.a", ""), "d.tags.a: required but not set"),
        (("d.tags.a.b", "x"), "d.tags.a.b: unknown key"),
    ];
    for ((key, value), expected) in cases {
        let mut raw = config([("d.ports.1", "x")]);
        raw.insert(key, value);
        assert_eq!(parse_error::<Ports>(&raw, "d"), expected);
    }
    assert_eq!(
        parse_error::<Ports>(&config([("d.ports", "80")]), "d"),
        r#"d.ports: invalid value "80": expected keys under d.ports.*, not a value"#
    );
}

#[test]
fn rename_alias_and_defaults() {
    #[derive(Debug, Deserialize, PartialEq)]
    struct Renamed {
        #[serde(rename = "max-connections")]
        max_connections: u32,
        #[serde(alias = "connect_timeout")]
        socket_connect_timeout: Duration,
        #[serde(default)]
        plain_default: u8,
        #[serde(default = "seven")]
        fn_default: u8,
    }
    fn seven() -> u8 {
        7
    }
    let parsed: Renamed = config([("r.max-connections", "5"), ("r.connect_timeout", "1 hour")])
        .parse("r")
        .unwrap();
    assert_eq!(
        parsed,
        Renamed {
            max_connections: 5,
            socket_connect_timeout: Duration::from_secs(3_600),
            plain_default: 0,
            fn_default: 7,
        }
    );
    let parsed: Renamed = config([
        ("r.max-connections", "5"),
        ("r.socket_connect_timeout", "1 hour"),
        ("r.plain_default", "1"),
        ("r.fn_default", ""),
    ])
    .parse("r")
    .unwrap();
    assert_eq!((parsed.plain_default, parsed.fn_default), (1, 7));

    assert_eq!(
        parse_error::<Renamed>(
            &config([("r.max_connections", "5"), ("r.connect_timeout", "1 hour")]),
            "r"
        ),
        "r.max_connections: unknown key; did you mean r.max-connections?"
    );
    assert_eq!(
        parse_error::<Renamed>(
            &config([
                ("r.max-connections", "5"),
                ("r.connect_timeout", "1 hour"),
                ("r.socket_connect_timeout", "1 hour"),
            ]),
            "r"
        ),
        "r: duplicate field `socket_connect_timeout`"
    );
}

#[test]
fn errors_from_a_types_own_deserialize_carry_the_key_and_value() {
    #[derive(Debug, PartialEq)]
    struct Even(u32);
    impl<'de> Deserialize<'de> for Even {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            let n = u32::deserialize(deserializer)?;
            if n % 2 == 0 {
                Ok(Self(n))
            } else {
                Err(serde::de::Error::custom(format!("{n} is odd")))
            }
        }
    }
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(try_from = "RawRange")]
    struct Range {
        min: u32,
        max: u32,
    }
    #[derive(Deserialize)]
    struct RawRange {
        min: u32,
        max: u32,
    }
    impl TryFrom<RawRange> for Range {
        type Error = String;
        fn try_from(raw: RawRange) -> Result<Self, String> {
            if raw.min > raw.max {
                return Err(format!("min {} is above max {}", raw.min, raw.max));
            }
            Ok(Self {
                min: raw.min,
                max: raw.max,
            })
        }
    }
    #[derive(Debug, Deserialize, PartialEq)]
    struct Checked {
        n: Even,
        range: Range,
    }
    let parsed: Checked = config([("c.n", "4"), ("c.range.min", "1"), ("c.range.max", "2")])
        .parse("c")
        .unwrap();
    assert_eq!(parsed.n, Even(4));
    assert_eq!(parsed.range, Range { min: 1, max: 2 });

    assert_eq!(
        parse_error::<Checked>(
            &config([("c.n", "3"), ("c.range.min", "1"), ("c.range.max", "2")]),
            "c"
        ),
        r#"c.n: invalid value "3": 3 is odd"#
    );
    assert_eq!(
        parse_error::<Checked>(
            &config([("c.n", "2"), ("c.range.min", "5"), ("c.range.max", "2")]),
            "c"
        ),
        "c.range: min 5 is above max 2"
    );
}

#[test]
fn toml_values_keep_their_types() {
    let raw = RawConfig::from_toml_str(
        r#"
[foo]
url = "redis://cache:7000"
max_connections = 10
timeout = "3 seconds"
read_from_replicas = false
track_key_reads_sample_rate = 1
track_key_writes_sample_rate = 0.5
"#,
    )
    .unwrap();
    let cluster: Cluster = raw.parse("foo").unwrap();
    assert_eq!(cluster.max_connections, 10);
    assert!(!cluster.read_from_replicas);
    assert_eq!(cluster.track_key_reads_sample_rate, 1.0);
    assert_eq!(cluster.track_key_writes_sample_rate, 0.5);

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct AsText {
        name: String,
        flag: String,
        ratio: String,
    }
    let text: AsText = RawConfig::from_toml_str("name = 5\nflag = true\nratio = 0.25\n")
        .unwrap()
        .parse("")
        .unwrap();
    assert_eq!(
        (text.name.as_str(), text.flag.as_str(), text.ratio.as_str()),
        ("5", "true", "0.25")
    );

    let cases = [
        (
            "[foo]\nurl = \"x\"\nmax_connections = true\n",
            r#"foo.max_connections: invalid integer "true": expected a whole number in base 10"#,
        ),
        (
            "[foo]\nurl = \"x\"\nmax_connections = 1.5\n",
            r#"foo.max_connections: invalid integer "1.5": expected a whole number in base 10"#,
        ),
        (
            "[foo]\nurl = \"x\"\nmax_connections = -5\n",
            r#"foo.max_connections: invalid integer "-5": out of range for u32 (0 to 4294967295)"#,
        ),
        (
            "[foo]\nurl = \"x\"\nread_from_replicas = 1\n",
            r#"foo.read_from_replicas: invalid boolean "1": expected true or false"#,
        ),
        (
            "[foo]\nurl = \"x\"\ntrack_key_reads_sample_rate = true\n",
            r#"foo.track_key_reads_sample_rate: invalid float "true": expected a number"#,
        ),
        (
            "[foo]\nurl = \"x\"\ntimeout = 3\n",
            r#"foo.timeout: invalid timespan "3": expected "<count> <unit>", such as "3 seconds""#,
        ),
        (
            "[foo]\nurl = [\"a\"]\n",
            r#"foo.url: invalid string "[a]": expected a single value, found a list"#,
        ),
    ];
    for (text, expected) in cases {
        let raw = RawConfig::from_toml_str(text).unwrap();
        assert_eq!(parse_error::<Cluster>(&raw, "foo"), expected, "{text}");
    }
}

#[test]
fn the_root_and_optional_groups() {
    #[derive(Debug, Deserialize, PartialEq)]
    struct Root {
        a: u8,
        b: Option<u8>,
    }
    let root: Root = config([("a", "1")]).parse("").unwrap();
    assert_eq!(root, Root { a: 1, b: None });
    assert_eq!(
        parse_error::<Root>(&config([("a", "1"), ("c", "2")]), ""),
        "c: unknown key"
    );
    assert_eq!(
        parse_error::<Root>(&RawConfig::new(), ""),
        "a: required but not set"
    );

    let absent: Option<Root> = config([("other.a", "1")]).parse("foo").unwrap();
    assert_eq!(absent, None);
    let present: Option<Root> = config([("foo.a", "1")]).parse("foo").unwrap();
    assert_eq!(present, Some(Root { a: 1, b: None }));
}

#[test]
fn flatten_and_untagged_types_work() {
    #[derive(Debug, Deserialize, PartialEq)]
    struct Known {
        url: String,
    }
    #[derive(Debug, Deserialize, PartialEq)]
    struct Flattened {
        #[serde(flatten)]
        known: Known,
        #[serde(flatten)]
        rest: HashMap<String, String>,
    }
    let parsed: Flattened = config([("f.url", "x"), ("f.extra", "y")])
        .parse("f")
        .unwrap();
    assert_eq!(parsed.known.url, "x");
    assert_eq!(parsed.rest.get("extra").map(String::as_str), Some("y"));

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(untagged)]
    enum IntOrText {
        Int(i64),
        Text(String),
    }
    #[derive(Debug, Deserialize, PartialEq)]
    struct Untagged {
        a: IntOrText,
        b: IntOrText,
    }
    let parsed: Untagged = RawConfig::from_toml_str("a = 5\nb = \"five\"\n")
        .unwrap()
        .parse("")
        .unwrap();
    assert_eq!(parsed.a, IntOrText::Int(5));
    assert_eq!(parsed.b, IntOrText::Text("five".into()));
}

#[test]
fn secrets_never_appear_in_errors() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        Basic,
    }
    #[derive(Debug)]
    struct Echo;
    impl<'de> Deserialize<'de> for Echo {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            let text = String::deserialize(deserializer)?;
            Err(serde::de::Error::custom(format!("rejected {text}")))
        }
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Secrets {
        password: Option<u32>,
        api_token: Option<Kind>,
        client_secret: Option<Echo>,
        port: Option<u16>,
        url: Option<Echo>,
        timeout: Option<Duration>,
    }
    let cases = [
        (
            ("s.password", "hunter2"),
            r#"s.password: invalid integer "***": expected a whole number in base 10"#,
        ),
        (
            ("s.api_token", "hunter2"),
            "s.api_token: invalid value \"***\": unknown variant `***`, expected `***`",
        ),
        (
            ("s.client_secret", "hunter2"),
            r#"s.client_secret: invalid value "***": rejected ***"#,
        ),
        (
            ("s.port", "redis://:hunter2@cache"),
            r#"s.port: invalid integer "redis://:***@cache": expected a whole number in base 10"#,
        ),
        (
            ("s.url", "redis://user:hunter2@cache"),
            r#"s.url: invalid value "redis://user:***@cache": rejected redis://user:***@cache"#,
        ),
        (
            ("s.timeout", "redis://:hunter2@cache seconds"),
            r#"s.timeout: invalid timespan "redis://:***@cache seconds": invalid count "redis://:***@cache""#,
        ),
    ];
    for ((key, value), expected) in cases {
        let error = config([(key, value)]).parse::<Secrets>("s").unwrap_err();
        assert_eq!(error.to_string(), expected);
        assert!(!format!("{error:?}").contains("hunter2"), "{error:?}");
    }

    let error = config([("s.password", Value::from(vec!["hunter2"]))])
        .parse::<Secrets>("s")
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"s.password: invalid integer "***": expected a whole number in base 10"#
    );
}

#[test]
fn error_keys_and_variants() {
    let error = config([("foo.url", "x"), ("foo.max_conections", "1")])
        .parse::<Cluster>("foo")
        .unwrap_err();
    assert!(matches!(
        &error,
        ConfigError::UnknownKey { key, suggestion: Some(s) }
            if key == "foo.max_conections" && s == "foo.max_connections"
    ));
    assert_eq!(error.key(), Some("foo.max_conections"));

    let error = config([("foo.url", "x"), ("foo.timeout", "soon")])
        .parse::<Cluster>("foo")
        .unwrap_err();
    let ConfigError::InvalidValue { key, error } = error else {
        panic!("expected InvalidValue");
    };
    assert_eq!(key, "foo.timeout");
    assert_eq!(error.type_name(), "timespan");
    assert_eq!(error.value(), "soon");
}

#[test]
fn suggestions_only_for_close_names() {
    let fields = [
        "url",
        "max_connections",
        "timeout",
        "socket_timeout",
        "socket_connect_timeout",
        "read_from_replicas",
    ];
    let cases = [
        ("max_conections", Some("max_connections")),
        ("max_connection", Some("max_connections")),
        ("MAX_CONNECTIONS", Some("max_connections")),
        ("timout", Some("timeout")),
        ("ulr", Some("url")),
        ("read_from_replica", Some("read_from_replicas")),
        ("socket_conect_timeout", Some("socket_connect_timeout")),
        ("colour", None),
        ("pool_size", None),
        ("", None),
        ("x", None),
        ("😀", None),
    ];
    for (unknown, expected) in cases {
        assert_eq!(nearest(unknown, &fields), expected, "{unknown:?}");
    }
    assert_eq!(nearest("anything", &[]), None);
}

/// Odd values in every field must give an error or a value, never a panic.
#[test]
fn parsing_never_panics() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Everything {
        s: Option<String>,
        i: Option<i64>,
        u: Option<u8>,
        f: Option<f32>,
        b: Option<bool>,
        d: Option<Duration>,
        p: Option<Percent>,
        e: Option<Endpoint>,
        v: Option<Vec<u16>>,
        c: Option<char>,
        m: Option<HashMap<String, u8>>,
        n: Option<Pool>,
    }
    let odd: Vec<Value> = [
        "",
        " ",
        "\n",
        "%",
        ":",
        "::",
        "[",
        "]",
        ",",
        ",,",
        "1e400",
        "-",
        "ünï",
        "😀",
        "\u{0}",
        "9999999999999999999999999999999999999999",
        "-1",
        "3 seconds",
        "50%",
        "h:1",
        "redis://:pw@h",
    ]
    .iter()
    .map(|s| Value::from(*s))
    .chain([
        Value::Integer(i64::MIN),
        Value::Integer(i64::MAX),
        Value::Float(f64::NAN),
        Value::Float(f64::INFINITY),
        Value::Float(-0.0),
        Value::Boolean(true),
        Value::List(vec![]),
        Value::List(vec![Value::List(vec![Value::from("x")])]),
    ])
    .collect();
    let keys = [
        "z.s",
        "z.i",
        "z.u",
        "z.f",
        "z.b",
        "z.d",
        "z.p",
        "z.e",
        "z.v",
        "z.c",
        "z.m",
        "z.m.k",
        "z.n",
        "z.n.size",
        "z.n.timeout",
        "z.n.size.x",
        "z",
        "z.",
        "z..",
        "z.s.",
    ];
    for key in keys {
        for value in &odd {
            let mut raw = RawConfig::new();
            raw.insert(key, value.clone());
            if let Err(error) = raw.parse::<Everything>("z") {
                assert!(!error.to_string().is_empty());
            }
            let _ = raw.parse::<HashMap<String, String>>("z");
            let _ = raw.parse::<Option<Vec<String>>>("z");
            let _ = raw.parse::<Everything>("");
        }
    }
}

#[test]
fn unknown_keys_are_warnings_when_asked() {
    use crate::{ConfigWarning, UnknownKeys};

    let raw = config([
        ("foo.url", "x"),
        ("foo.max_conections", "5"),
        ("foo.retry_on_timeout", "true"),
        ("foo.timeout", "1 second"),
        ("foo.timeout.extra", "1"),
        ("foo.pool.size", "3"),
        ("foo.pool.sise", "4"),
        ("foo.pol.size", "5"),
    ]);
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Strict {
        url: String,
        timeout: Duration,
        pool: Pool,
    }
    let (parsed, warnings) = raw.parse_with::<Strict>("foo", UnknownKeys::Warn).unwrap();
    assert_eq!(
        (parsed.url.as_str(), parsed.timeout, parsed.pool.size),
        ("x", Duration::from_secs(1), 3)
    );
    let shown: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "foo.max_conections: unknown key, ignored",
            "foo.pol.size: unknown key, ignored; did you mean foo.pool.size?",
            "foo.retry_on_timeout: unknown key, ignored",
            "foo.pool.sise: unknown key, ignored; did you mean foo.pool.size?",
            "foo.timeout.extra: unknown key, ignored",
        ]
    );
    // `max_conections` is close to no field of this struct; with the cluster's fields it is.
    let (_, warnings) = raw.parse_with::<Cluster>("foo", UnknownKeys::Warn).unwrap();
    assert_eq!(
        warnings[0],
        ConfigWarning::UnknownKey {
            key: "foo.max_conections".into(),
            suggestion: Some("foo.max_connections".into()),
        }
    );

    // Strict mode is `parse`: the first unknown key is the error.
    assert_eq!(
        raw.parse_with::<Strict>("foo", UnknownKeys::Reject)
            .unwrap_err()
            .to_string(),
        "foo.max_conections: unknown key"
    );
    let (_, none) = config([("foo.url", "x")])
        .parse_with::<Cluster>("foo", UnknownKeys::Warn)
        .unwrap();
    assert!(none.is_empty());
    // Other errors stay errors.
    assert_eq!(
        config([("foo.ulr", "x")])
            .parse_with::<Cluster>("foo", UnknownKeys::Warn)
            .unwrap_err()
            .to_string(),
        "foo.url: required but not set"
    );
}
