//! Tests of `RawConfig` and `ConfigView`: building, looking up, prefix views and redaction.

use super::*;

fn sample() -> RawConfig {
    [
        ("foo.url", "redis://:hunter2@cache:7000"),
        ("foo.pool.size", "3"),
        ("foo.pool.timeout", "1 second"),
        ("foo.password", "hunter2"),
        ("foobar", "not under foo"),
        ("foo", "the key foo itself"),
        ("fop.x", "after foo"),
        ("metrics.endpoint", "localhost:8125"),
    ]
    .into_iter()
    .collect()
}

#[test]
fn building_and_looking_up() {
    let mut config = RawConfig::new();
    assert!(config.is_empty());
    assert_eq!(config.insert("b", 1), None);
    assert_eq!(config.insert("a", "x"), None);
    assert_eq!(config.insert("b", true), Some(Value::Integer(1)));
    config.extend([("c", 2.5)]);
    assert_eq!(config.len(), 3);
    assert_eq!(config.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
    assert_eq!(config.get("b"), Some(&Value::Boolean(true)));
    assert_eq!(config.get("missing"), None);
    let pairs: Vec<_> = config.iter().map(|(k, v)| (k, v.type_name())).collect();
    assert_eq!(pairs, [("a", "string"), ("b", "boolean"), ("c", "float")]);

    let cloned = config.clone();
    assert_eq!(cloned, config);
    assert_eq!(RawConfig::default(), RawConfig::new());
}

#[test]
fn prefix_views_strip_the_prefix_and_nest() {
    let config = sample();
    let foo = config.prefix("foo");
    assert_eq!(
        foo.keys().collect::<Vec<_>>(),
        ["password", "pool.size", "pool.timeout", "url"]
    );
    assert_eq!(foo.get("pool.size"), Some(&Value::from("3")));
    assert_eq!(foo.get("foo"), None);
    assert_eq!(foo.full_key("url"), "foo.url");
    assert!(!foo.is_empty());

    let pool = foo.prefix("pool");
    assert_eq!(pool.keys().collect::<Vec<_>>(), ["size", "timeout"]);
    assert_eq!(pool.full_key("size"), "foo.pool.size");
    assert_eq!(pool.get("size"), Some(&Value::from("3")));
    assert_eq!(pool.path(), "foo.pool");

    // A trailing dot is the same prefix; an empty prefix is the same view.
    assert_eq!(
        config.prefix("foo.").keys().collect::<Vec<_>>(),
        foo.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        foo.prefix("").keys().collect::<Vec<_>>(),
        foo.keys().collect::<Vec<_>>()
    );
    assert_eq!(config.prefix("").keys().count(), config.len());
    assert_eq!(config.prefix("").full_key("foo"), "foo");
    assert_eq!(config.prefix("").path(), "");

    assert!(config.prefix("nothing").is_empty());
    assert!(foo.prefix("url").is_empty());
    assert!(
        config.prefix("fo").is_empty(),
        "prefixes match whole segments"
    );
}

#[test]
fn debug_never_shows_secrets() {
    let config = sample();
    let debug = format!("{config:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains(r#""foo.password": "***""#), "{debug}");
    assert!(
        debug.contains(r#""foo.url": "redis://:***@cache:7000""#),
        "{debug}"
    );
    assert!(debug.contains(r#""foo.pool.size": "3""#), "{debug}");

    let view = format!("{:?}", config.prefix("foo"));
    assert!(!view.contains("hunter2"), "{view}");
    assert!(view.contains(r#""password": "***""#), "{view}");

    let mut typed = RawConfig::new();
    typed.insert("a.token", 12345);
    typed.insert("a.count", 3);
    typed.insert("a.urls", vec!["redis://:pw@a"]);
    assert_eq!(
        format!("{typed:?}"),
        r#"{"a.count": Integer(3), "a.token": "***", "a.urls": List([String("redis://:***@a")])}"#
    );
}
