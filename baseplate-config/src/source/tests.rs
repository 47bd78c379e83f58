//! Tests of the INI and TOML sources, read from text and from files, and of `$VAR` expansion.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::{ConfigError, RawConfig, Value};

/// A file under the temporary directory, with a name unique to this process and call, removed
/// when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(extension: &str, contents: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "baseplate-config-test-{}-{}.{extension}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, contents).unwrap();
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn strings(config: &RawConfig) -> Vec<(&str, &str)> {
    config
        .iter()
        .map(|(key, value)| (key, value.as_str().unwrap()))
        .collect()
}

#[test]
fn ini_handles_crlf_and_a_byte_order_mark() {
    let text = "\u{feff}[app:main]\r\nA = 1\r\nb = 2\r\n  more\r\n";
    let config = RawConfig::from_ini_str(text, "app:main").unwrap();
    assert_eq!(strings(&config), [("a", "1"), ("b", "2\nmore")]);
}

#[test]
fn ini_errors() {
    let cases = [
        (
            "[app:main]\na = 1\n",
            "App:Main",
            "section [App:Main] not found",
        ),
        ("", "app:main", "section [app:main] not found"),
        (
            "a = 1\n[app:main]\n",
            "app:main",
            "invalid INI: line 1: key \"a\" comes before the first [section] header",
        ),
        (
            "flag\n[app:main]\n",
            "app:main",
            "invalid INI: line 1: text before the first [section] header",
        ),
        (
            "[app:main]\nfoo.flag\n",
            "app:main",
            "invalid INI: line 2 in [app:main]: expected \"key = value\" (a line continuing a value is indented deeper than its key)",
        ),
        (
            "[DEFAULT]\nflag\n[app:main]\n",
            "app:main",
            "invalid INI: line 2 in [DEFAULT]: expected \"key = value\" (a line continuing a value is indented deeper than its key)",
        ),
        (
            "[app:main\na = 1\n",
            "app:main",
            "invalid INI: line 1: a line starting with \"[\" is not a section header, expected \"[name]\"",
        ),
        (
            "[app:main]\n[]\n",
            "app:main",
            "invalid INI: line 2: a line starting with \"[\" is not a section header, expected \"[name]\"",
        ),
        (
            "[app:main]\n= 1\n",
            "app:main",
            "invalid INI: line 2: a value in [app:main] has no key before its \"=\"",
        ),
        (
            "[app:main]\nfoo.url = a\nfoo.timeout = 1 second\nFoo.URL: b\n",
            "app:main",
            "invalid INI: line 4: key \"foo.url\" in [app:main] is set again (first on line 2)",
        ),
        (
            "[app:main]\na = 1\n\n[app:main]\nb = 2\n",
            "app:main",
            "invalid INI: line 4: section [app:main] is opened again (first on line 1)",
        ),
    ];
    for (text, section, expected) in cases {
        let error = RawConfig::from_ini_str(text, section).unwrap_err();
        assert_eq!(error.to_string(), expected, "{text:?}");
    }
}

#[test]
fn ini_errors_never_show_a_value() {
    // A secret whose continuation lost its indent, one written before any header, one after a
    // stray bracket.
    for text in [
        "[app:main]\nvault.token =\ns3cr3t-t0ken\n",
        "s3cr3t-t0ken\n[app:main]\n",
        "[app:main]\n[s3cr3t-t0ken\n",
        "[app:main\nvault.token = s3cr3t-t0ken\n",
    ] {
        let error = RawConfig::from_ini_str(text, "app:main").unwrap_err();
        assert!(!format!("{error} {error:?}").contains("s3cr3t"), "{error}");
    }
}

#[test]
fn ini_files() {
    let file = TempFile::new(
        "ini",
        "[app:main]\nfoo.url = redis://h:1\n[app:alt]\nx = y\n",
    );
    let config = RawConfig::from_ini_file(&file.0).unwrap();
    assert_eq!(strings(&config), [("foo.url", "redis://h:1")]);
    let alt = RawConfig::from_ini_file_section(&file.0, "app:alt").unwrap();
    assert_eq!(strings(&alt), [("x", "y")]);

    let error = RawConfig::from_ini_file_section(&file.0, "app:nope").unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("section [app:nope] not found in {}", file.0.display())
    );
    assert!(matches!(
        error,
        ConfigError::SectionNotFound { ref section, .. } if section == "app:nope"
    ));

    let bad = TempFile::new("ini", "x = 1\n");
    assert_eq!(
        RawConfig::from_ini_file(&bad.0).unwrap_err().to_string(),
        format!(
            "invalid INI in {}: line 1: key \"x\" comes before the first [section] header",
            bad.0.display()
        )
    );
}

#[test]
fn missing_files_are_errors_naming_the_path() {
    let path = std::env::temp_dir().join(format!(
        "baseplate-config-test-{}-does-not-exist.ini",
        std::process::id()
    ));
    for error in [
        RawConfig::from_ini_file(&path).unwrap_err(),
        RawConfig::from_toml_file(&path).unwrap_err(),
    ] {
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("cannot read config file {}: ", path.display())),
            "{message}"
        );
        assert!(
            matches!(&error, ConfigError::Io { path: p, source } if *p == path && source.kind() == std::io::ErrorKind::NotFound)
        );
    }
}

#[test]
fn toml_is_flattened_into_dotted_keys() {
    let text = r#"
top = "level"

[foo]
url = "redis://cache:7000"
max_connections = 10
rate = 0.5
read_from_replicas = true
replicas = ["a", "b"]
ports = [1, 2]
matrix = [[1], [2, 3]]
inline = { a = 1, b = { c = "deep" } }
when = 1979-05-27T07:32:00Z
dotted.key = "d"
"quoted.key" = "q"
empty = []

[foo.pool]
size = 5
"#;
    let config = RawConfig::from_toml_str(text).unwrap();
    let pairs: Vec<(&str, &Value)> = config.iter().collect();
    let expected: Vec<(&str, Value)> = vec![
        ("foo.dotted.key", "d".into()),
        ("foo.empty", Value::List(vec![])),
        ("foo.inline.a", 1.into()),
        ("foo.inline.b.c", "deep".into()),
        (
            "foo.matrix",
            Value::List(vec![vec![1].into(), vec![2, 3].into()]),
        ),
        ("foo.max_connections", 10.into()),
        ("foo.pool.size", 5.into()),
        ("foo.ports", vec![1, 2].into()),
        ("foo.quoted.key", "q".into()),
        ("foo.rate", 0.5.into()),
        ("foo.read_from_replicas", true.into()),
        ("foo.replicas", vec!["a", "b"].into()),
        ("foo.url", "redis://cache:7000".into()),
        ("foo.when", "1979-05-27T07:32:00Z".into()),
        ("top", "level".into()),
    ];
    let expected: Vec<(&str, &Value)> = expected.iter().map(|(k, v)| (*k, v)).collect();
    assert_eq!(pairs, expected);
}

#[test]
fn toml_errors() {
    let error = RawConfig::from_toml_str("[[servers]]\nhost = \"a\"\n").unwrap_err();
    assert_eq!(
        error.to_string(),
        "servers: an array of tables has no flat form; use a table per item"
    );
    let error = RawConfig::from_toml_str("foo.list = [1, { a = 1 }]\n").unwrap_err();
    assert_eq!(
        error.to_string(),
        "foo.list: an array of tables has no flat form; use a table per item"
    );
    let error = RawConfig::from_toml_str("\"a.b\" = 1\n[a]\nb = 2\n").unwrap_err();
    assert_eq!(
        error.to_string(),
        "a.b: defined twice (as a quoted key with a dot and as a dotted key)"
    );

    // The position is given, but never the offending text: it may hold a password.
    let error = RawConfig::from_toml_str("ok = 1\npassword = \"hunter2\nnext = 2\n").unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("invalid TOML at line 2, column "),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
    assert!(!format!("{error:?}").contains("hunter2"));

    let error = RawConfig::from_toml_str("a = 1\na = 2\n").unwrap_err();
    assert!(
        matches!(
            error,
            ConfigError::TomlSyntax {
                line: Some(2),
                column: Some(1),
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn toml_files() {
    let file = TempFile::new("toml", "[foo]\nurl = \"redis://h:1\"\n");
    let config = RawConfig::from_toml_file(&file.0).unwrap();
    assert_eq!(strings(&config), [("foo.url", "redis://h:1")]);

    let bad = TempFile::new("toml", "[foo\n");
    let message = RawConfig::from_toml_file(&bad.0).unwrap_err().to_string();
    assert!(
        message.starts_with(&format!(
            "invalid TOML in {} at line 1, column ",
            bad.0.display()
        )),
        "{message}"
    );
}

#[test]
fn variables_expand_as_python_expandvars_does() {
    let lookup = |name: &str| match name {
        "HOST" => Some("cache".to_owned()),
        "EMPTY" => Some(String::new()),
        "A B" => Some("spaced".to_owned()),
        _ => None,
    };
    let cases = [
        ("redis://$HOST:7000", "redis://cache:7000"),
        ("redis://${HOST}:7000", "redis://cache:7000"),
        ("$HOST$HOST", "cachecache"),
        ("x${EMPTY}y", "xy"),
        ("${A B}", "spaced"),
        ("$UNSET and ${UNSET}", "$UNSET and ${UNSET}"),
        ("pa$$word", "pa$$word"),
        ("cost: 5$", "cost: 5$"),
        ("${unclosed", "${unclosed"),
        ("${}", "${}"),
        ("${A=B}", "${A=B}"),
        ("$HOST-1", "cache-1"),
        ("$HOSTNAME_NOT_SET", "$HOSTNAME_NOT_SET"),
        ("ünï$HOST€", "ünïcache€"),
    ];
    let mut config: RawConfig = cases
        .iter()
        .enumerate()
        .map(|(i, (text, _))| (format!("k{i:02}"), *text))
        .collect();
    config.insert("list", vec!["$HOST", "b"]);
    config.insert("number", 5);
    config.expand_vars_with(lookup);
    for (i, (text, expected)) in cases.iter().enumerate() {
        assert_eq!(
            config.get(&format!("k{i:02}")).and_then(Value::as_str),
            Some(*expected),
            "{text:?}"
        );
    }
    assert_eq!(config.get("list"), Some(&vec!["cache", "b"].into()));
    assert_eq!(config.get("number"), Some(&5.into()));
}

#[test]
fn expand_env_vars_reads_the_process_environment() {
    let (name, value) = std::env::vars()
        .find(|(name, _)| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .expect("a test runs with some environment variable (PATH, CARGO_*)");
    let mut config = RawConfig::new();
    config.insert("a", format!("<${{{name}}}>"));
    config.expand_env_vars();
    assert_eq!(config.get("a"), Some(&Value::String(format!("<{value}>"))));
}
