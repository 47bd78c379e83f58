//! Tests of the value parsers, `Value`, and the `Timespan`, `Percent` and `Endpoint` types.

use std::time::Duration;

use serde::Deserialize;

use super::*;

#[track_caller]
fn assert_error<T: fmt::Debug>(result: Result<T, ValueError>, expected: &str) {
    match result {
        Ok(value) => panic!("expected the error {expected:?}, got {value:?}"),
        Err(error) => assert_eq!(error.to_string(), expected),
    }
}

#[test]
fn strings_must_not_be_empty() {
    assert_eq!(parse_string("x").unwrap(), "x");
    assert_eq!(parse_string(" spaced ").unwrap(), " spaced ");
    assert_error(parse_string(""), r#"invalid string "": no value specified"#);
}

#[test]
fn integers_follow_python_int() {
    for (text, expected) in [
        ("42", 42),
        (" -42 ", -42),
        ("+7", 7),
        ("007", 7),
        ("1_000", 1000),
        ("-0", 0),
        ("9223372036854775807", i64::MAX),
        ("-9223372036854775808", i64::MIN),
    ] {
        assert_eq!(parse_integer(text).unwrap(), expected, "{text:?}");
    }
}

#[test]
fn integer_errors() {
    for text in [
        "lots", "", " ", "1.5", "1e3", "1__0", "_1", "1_", "-", "+", "--1", "0x10", "١٢",
    ] {
        assert_error(
            parse_integer(text),
            &format!(
                "invalid integer \"{}\": expected a whole number in base 10",
                crate::error::Escaped(text)
            ),
        );
    }
    assert_error(
        parse_integer("9223372036854775808"),
        r#"invalid integer "9223372036854775808": out of range for i64 (-9223372036854775808 to 9223372036854775807)"#,
    );
    let huge = "9".repeat(60);
    assert_error(
        parse_integer(&huge),
        &format!("invalid integer \"{huge}\": too large"),
    );
}

#[test]
fn floats() {
    for (text, expected) in [
        ("0.01", 0.01),
        ("3", 3.0),
        ("-1e-3", -0.001),
        (" 2.5 ", 2.5),
        ("inf", f64::INFINITY),
    ] {
        assert_eq!(parse_float(text).unwrap(), expected, "{text:?}");
    }
    assert!(parse_float("nan").unwrap().is_nan());
    assert_error(
        parse_float("a lot"),
        r#"invalid float "a lot": expected a number"#,
    );
    assert_error(parse_float(""), r#"invalid float "": expected a number"#);
}

#[test]
fn booleans_are_true_or_false_in_any_case() {
    for (text, expected) in [
        ("true", true),
        ("True", true),
        ("TRUE", true),
        (" true ", true),
        ("false", false),
        ("FaLsE", false),
    ] {
        assert_eq!(parse_boolean(text).unwrap(), expected, "{text:?}");
    }
    for text in ["yes", "no", "1", "0", "on", "t", ""] {
        assert_error(
            parse_boolean(text),
            &format!("invalid boolean \"{text}\": expected true or false"),
        );
    }
}

#[test]
fn every_timespan_unit_singular_and_plural_in_any_case() {
    let cases = [
        ("1 millisecond", Duration::from_millis(1)),
        ("250 milliseconds", Duration::from_millis(250)),
        ("1 second", Duration::from_secs(1)),
        ("3 seconds", Duration::from_secs(3)),
        ("1 minute", Duration::from_secs(60)),
        ("2 minutes", Duration::from_secs(120)),
        ("1 hour", Duration::from_secs(3_600)),
        ("2 hours", Duration::from_secs(7_200)),
        ("1 day", Duration::from_secs(86_400)),
        ("2 days", Duration::from_secs(172_800)),
        ("3 SECONDS", Duration::from_secs(3)),
        ("3 Seconds", Duration::from_secs(3)),
        ("1 DAY", Duration::from_secs(86_400)),
        ("5 MilliSeconds", Duration::from_millis(5)),
        ("  3 \t seconds  ", Duration::from_secs(3)),
        ("0 seconds", Duration::ZERO),
        ("+3 seconds", Duration::from_secs(3)),
        ("1_000 milliseconds", Duration::from_secs(1)),
        // Python's `rstrip("s")` removes every trailing s.
        ("3 secondss", Duration::from_secs(3)),
        (
            "9223372036854775807 milliseconds",
            Duration::from_millis(9_223_372_036_854_775_807),
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(parse_timespan(text).unwrap(), expected, "{text:?}");
        assert_eq!(text.parse::<Timespan>().unwrap(), Timespan(expected));
    }
}

#[test]
fn timespan_errors() {
    let syntax = r#"expected "<count> <unit>", such as "3 seconds""#;
    let cases = [
        (
            "3 secnds",
            r#"invalid timespan "3 secnds": unknown unit "secnd""#.to_owned(),
        ),
        (
            "3 SECNDS",
            r#"invalid timespan "3 SECNDS": unknown unit "SECND""#.to_owned(),
        ),
        (
            "3 s",
            r#"invalid timespan "3 s": unknown unit """#.to_owned(),
        ),
        (
            "3 ms",
            r#"invalid timespan "3 ms": unknown unit "m""#.to_owned(),
        ),
        ("3", format!(r#"invalid timespan "3": {syntax}"#)),
        ("", format!(r#"invalid timespan "": {syntax}"#)),
        (
            "3 seconds ago",
            format!(r#"invalid timespan "3 seconds ago": {syntax}"#),
        ),
        (
            "three seconds",
            r#"invalid timespan "three seconds": invalid count "three""#.to_owned(),
        ),
        (
            "1.5 seconds",
            r#"invalid timespan "1.5 seconds": invalid count "1.5""#.to_owned(),
        ),
        (
            "-3 seconds",
            r#"invalid timespan "-3 seconds": must not be negative"#.to_owned(),
        ),
        (
            "9223372036854775807 days",
            r#"invalid timespan "9223372036854775807 days": too long"#.to_owned(),
        ),
        (
            "99999999999999999999 milliseconds",
            r#"invalid timespan "99999999999999999999 milliseconds": too long"#.to_owned(),
        ),
    ];
    for (text, expected) in cases {
        assert_error(parse_timespan(text), &expected);
    }
}

#[test]
fn timespans_display_in_the_largest_exact_unit() {
    let cases = [
        (Duration::from_secs(3), "3 seconds"),
        (Duration::from_secs(1), "1 second"),
        (Duration::from_secs(90), "90 seconds"),
        (Duration::from_secs(120), "2 minutes"),
        (Duration::from_secs(3_600), "1 hour"),
        (Duration::from_secs(172_800), "2 days"),
        (Duration::from_millis(1_500), "1500 milliseconds"),
        (Duration::from_millis(1), "1 millisecond"),
        (Duration::ZERO, "0 seconds"),
        (Duration::from_nanos(1_500), "1.5µs"),
    ];
    for (duration, expected) in cases {
        assert_eq!(Timespan(duration).to_string(), expected);
        if !expected.ends_with("µs") {
            assert_eq!(parse_timespan(expected).unwrap(), duration, "round trip");
        }
    }
}

#[test]
fn percents_are_fractions() {
    let cases = [
        ("37.2%", 0.372),
        ("0%", 0.0),
        ("100%", 1.0),
        ("44 %", 0.44),
        (" 50% ", 0.5),
        ("2.5%", 0.025),
    ];
    for (text, expected) in cases {
        let parsed = parse_percent(text).unwrap();
        assert!((parsed - expected).abs() < 1e-12, "{text:?}: {parsed}");
        assert_eq!(text.parse::<Percent>().unwrap().0, parsed);
    }
}

#[test]
fn percent_errors() {
    let syntax = r#"expected a percentage such as "37.2%""#;
    for text in ["0.5", "", "%", "abc%", "50", "%50"] {
        assert_error(
            parse_percent(text),
            &format!(r#"invalid percent "{text}": {syntax}"#),
        );
    }
    for text in ["101%", "-1%", "nan%", "inf%", "-inf%", "1e9%"] {
        assert_error(
            parse_percent(text),
            &format!(r#"invalid percent "{text}": must be between 0% and 100%"#),
        );
    }
}

#[test]
fn endpoints() {
    let inet = |host: &str, port| Endpoint::Inet {
        host: host.to_owned(),
        port,
    };
    let cases = [
        ("localhost:8125", inet("localhost", 8125), "localhost:8125"),
        ("127.0.0.1:0", inet("127.0.0.1", 0), "127.0.0.1:0"),
        (
            " 10.0.0.1:65535 ",
            inet("10.0.0.1", 65535),
            "10.0.0.1:65535",
        ),
        (":8080", inet("", 8080), ":8080"),
        ("[::1]:8125", inet("::1", 8125), "[::1]:8125"),
        (
            "[fe80::1%eth0]:80",
            inet("fe80::1%eth0", 80),
            "[fe80::1%eth0]:80",
        ),
        (
            "/var/run/statsd.sock",
            Endpoint::Unix("/var/run/statsd.sock".into()),
            "/var/run/statsd.sock",
        ),
        (
            "run/x.sock",
            Endpoint::Unix("run/x.sock".into()),
            "run/x.sock",
        ),
    ];
    for (text, expected, shown) in cases {
        let parsed = parse_endpoint(text).unwrap();
        assert_eq!(parsed, expected, "{text:?}");
        assert_eq!(parsed.to_string(), shown);
        assert_eq!(shown.parse::<Endpoint>().unwrap(), expected, "round trip");
    }
}

#[test]
fn endpoint_errors() {
    let cases = [
        ("", r#"invalid endpoint "": no endpoint specified"#),
        (
            "localhost",
            r#"invalid endpoint "localhost": no port specified, expected "host:port""#,
        ),
        (
            "localhost:",
            r#"invalid endpoint "localhost:": invalid port "", expected a number from 0 to 65535"#,
        ),
        (
            "localhost:65536",
            r#"invalid endpoint "localhost:65536": invalid port "65536", expected a number from 0 to 65535"#,
        ),
        (
            "localhost:-1",
            r#"invalid endpoint "localhost:-1": invalid port "-1", expected a number from 0 to 65535"#,
        ),
        (
            "localhost:http",
            r#"invalid endpoint "localhost:http": invalid port "http", expected a number from 0 to 65535"#,
        ),
        (
            "::1:8125",
            r#"invalid endpoint "::1:8125": an IPv6 address needs brackets, such as "[::1]:8125""#,
        ),
        (
            "[::1]",
            r#"invalid endpoint "[::1]": no port specified, expected "host:port""#,
        ),
        (
            "[::1:80",
            r#"invalid endpoint "[::1:80": missing "]" after the IPv6 address"#,
        ),
        (
            "[nope]:80",
            r#"invalid endpoint "[nope]:80": invalid IPv6 address "nope""#,
        ),
        (
            "local host:80",
            r#"invalid endpoint "local host:80": the host must not contain whitespace"#,
        ),
    ];
    for (text, expected) in cases {
        assert_error(parse_endpoint(text), expected);
    }
}

#[test]
fn value_conversions_and_accessors() {
    assert_eq!(Value::from("a"), Value::String("a".into()));
    assert_eq!(Value::from(String::from("a")), Value::String("a".into()));
    assert_eq!(Value::from(&String::from("a")), Value::String("a".into()));
    assert_eq!(Value::from(5_i64), Value::Integer(5));
    assert_eq!(Value::from(5_u32), Value::Integer(5));
    assert_eq!(Value::from(-5_i8), Value::Integer(-5));
    assert_eq!(Value::from(0.5_f64), Value::Float(0.5));
    assert_eq!(Value::from(0.5_f32), Value::Float(0.5));
    assert_eq!(Value::from(true), Value::Boolean(true));
    assert_eq!(
        Value::from(vec!["a", "b"]),
        Value::List(vec!["a".into(), "b".into()])
    );

    assert_eq!(Value::from("a").as_str(), Some("a"));
    assert_eq!(Value::from(1).as_list(), None);
    let names: Vec<_> = [
        Value::from("a"),
        Value::from(1),
        Value::from(1.5),
        Value::from(false),
        Value::from(vec![1]),
    ]
    .iter()
    .map(Value::type_name)
    .collect();
    assert_eq!(names, ["string", "integer", "float", "boolean", "list"]);
}

#[test]
fn values_display_and_debug_without_url_passwords() {
    let list = Value::from(vec![
        Value::from("redis://:pw@a"),
        Value::from(1),
        Value::from(2.5),
        Value::from(true),
    ]);
    assert_eq!(list.to_string(), "[redis://:***@a, 1, 2.5, true]");
    assert_eq!(
        format!("{list:?}"),
        r#"List([String("redis://:***@a"), Integer(1), Float(2.5), Boolean(true)])"#
    );
}

#[derive(Debug, Deserialize, PartialEq)]
struct Typed {
    span: Timespan,
    rate: Percent,
    endpoint: Endpoint,
}

#[test]
fn the_types_deserialise_with_other_deserializers_too() {
    let typed: Typed =
        toml::from_str("span = \"2 hours\"\nrate = \"50%\"\nendpoint = \"[::1]:1\"\n").unwrap();
    assert_eq!(
        typed,
        Typed {
            span: Timespan(Duration::from_secs(7_200)),
            rate: Percent(0.5),
            endpoint: Endpoint::Inet {
                host: "::1".into(),
                port: 1,
            },
        }
    );

    type Plain<'a> = serde::de::value::StrDeserializer<'a, serde::de::value::Error>;
    assert_eq!(
        Timespan::deserialize(Plain::new("1 minute")).unwrap(),
        Timespan(Duration::from_secs(60))
    );
    let error = Percent::deserialize(Plain::new("1")).unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"invalid percent "1": expected a percentage such as "37.2%""#
    );
    let error = toml::from_str::<Typed>("span = 3\nrate = \"1%\"\nendpoint = \"h:1\"\n")
        .unwrap_err()
        .message()
        .to_owned();
    assert!(
        error.contains("a timespan such as \"3 seconds\""),
        "{error}"
    );
}

#[test]
fn percent_and_timespan_convert_to_their_inner_types() {
    assert_eq!(f64::from(Percent(0.5)), 0.5);
    assert_eq!(
        Duration::from(Timespan(Duration::from_secs(1))),
        Duration::from_secs(1)
    );
}

/// Odd input must give an error or a value, never a panic.
#[test]
fn parsers_never_panic() {
    let mut inputs: Vec<String> = [
        "",
        " ",
        "\t\n",
        "%",
        "%%",
        "50%%",
        ":",
        "::",
        "[",
        "]",
        "[]:",
        "[:]:1",
        "[::1]:99999999999999999999999",
        "a:b:c",
        "/",
        "1e400",
        "1e400%",
        "-",
        "+",
        "_",
        "ünïcödé",
        "😀 seconds",
        "3 😀",
        "3 secondß",
        "3 ßeconds",
        "\u{0}",
        "-0",
        "NaN%",
        "-inf%",
        "9223372036854775807 seconds",
        "-9223372036854775808 seconds",
        "170141183460469231731687303715884105727 days",
        "340282366920938463463374607431768211456 days",
        "redis://:pw@host:6379",
        "[\u{0}]:1",
        "[😀]:😀",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    inputs.push("9".repeat(10_000));
    inputs.push(format!("{} seconds", "1".repeat(5_000)));

    // A small deterministic generator of strings from characters that matter to the parsers.
    let alphabet: Vec<char> = "0123456789 _-+.:%/[]smdhSeconiutay\u{e9}😀\t,"
        .chars()
        .collect();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..2_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = usize::try_from(state % 12).unwrap();
        let text: String = (0..len)
            .map(|i| {
                let index = (state >> (i * 5)) % alphabet.len() as u64;
                alphabet[usize::try_from(index).unwrap()]
            })
            .collect();
        inputs.push(text);
    }

    for text in &inputs {
        let results = [
            parse_string(text).err(),
            parse_integer(text).err(),
            parse_float(text).err(),
            parse_boolean(text).err(),
            parse_timespan(text).err(),
            parse_percent(text).err(),
            parse_endpoint(text).err(),
        ];
        for error in results.into_iter().flatten() {
            assert!(error.to_string().starts_with("invalid "), "{error}");
        }
    }
}
