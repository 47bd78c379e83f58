//! `RawConfig`, the flat key/value configuration, and `ConfigView`, the keys under one prefix.

use std::collections::BTreeMap;
use std::collections::btree_map;
use std::fmt;
use std::ops::Bound;
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::ConfigError;
use crate::secret;
use crate::source;
use crate::value::Value;
use crate::warning::{ConfigWarning, UnknownKeys};

/// The default INI section, the one PasteDeploy and baseplate services use for the app.
pub const DEFAULT_SECTION: &str = "app:main";

/// A flat configuration: dotted keys (`foo.url`) and their values, what baseplate.py calls
/// `RawConfig` (`dict(parser.items("app:main"))`).
///
/// Read it from an INI section ([`RawConfig::from_ini_file`]), from TOML
/// ([`RawConfig::from_toml_file`]) or from any iterator of pairs, then parse the keys under a
/// prefix into a struct with [`RawConfig::parse`].
///
/// `Debug` never shows a secret: a URL password is shown as `***`, and so is the whole value of a
/// key whose last segment contains `password`, `secret` or `token`.
///
/// ```
/// use baseplate_config::RawConfig;
///
/// let config: RawConfig = [("foo.url", "redis://:hunter2@cache:6379"), ("foo.password", "hunter2")]
///     .into_iter()
///     .collect();
/// let debug = format!("{config:?}");
/// assert!(!debug.contains("hunter2"));
/// assert_eq!(debug, r#"{"foo.password": "***", "foo.url": "redis://:***@cache:6379"}"#);
/// ```
#[derive(Clone, Default, PartialEq)]
pub struct RawConfig {
    values: BTreeMap<String, Value>,
}

impl RawConfig {
    /// An empty configuration.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = baseplate_config::RawConfig::new();
    /// assert!(config.is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the `[app:main]` section of an INI file, as `baseplate-serve` does.
    ///
    /// The syntax is Python's `configparser` (with baseplate's `RawConfigParser` settings):
    /// `key = value` or `key: value`; keys are lowercased; a line starting with `#` or `;` is a
    /// comment, but there are no inline comments (`a = x # y` has the value `x # y`); a value
    /// continues on following lines indented deeper than its key; no quotes or escapes are
    /// processed. Keys of a `[DEFAULT]` section apply to every section. A key set twice in a
    /// section (in any case) or a section opened twice is an error, as in Python.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Io`] naming the path when the file cannot be read,
    /// [`ConfigError::SectionNotFound`] naming the section and the file when it has no
    /// `[app:main]`, and [`ConfigError::IniSyntax`] naming the line when the text is malformed.
    ///
    /// # Examples
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("baseplate-config-doc-{}.ini", std::process::id()));
    /// std::fs::write(&path, "[app:main]\nfoo.url = redis://localhost:7000\n")?;
    /// let config = baseplate_config::RawConfig::from_ini_file(&path)?;
    /// assert_eq!(config.get("foo.url").and_then(|v| v.as_str()), Some("redis://localhost:7000"));
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_ini_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::from_ini_file_section(path, DEFAULT_SECTION)
    }

    /// Reads one section of an INI file (see [`RawConfig::from_ini_file`] for the syntax).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Io`] naming the path when the file cannot be read,
    /// [`ConfigError::SectionNotFound`] naming the section and the file when it is not there, and
    /// [`ConfigError::IniSyntax`] when the text is malformed.
    ///
    /// # Examples
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("baseplate-config-doc-s-{}.ini", std::process::id()));
    /// std::fs::write(&path, "[app:worker]\nqueue = jobs\n")?;
    /// let config = baseplate_config::RawConfig::from_ini_file_section(&path, "app:worker")?;
    /// assert_eq!(config.keys().collect::<Vec<_>>(), ["queue"]);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_ini_file_section(
        path: impl AsRef<Path>,
        section: &str,
    ) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = source::read_file(path)?;
        source::ini_section(&text, section, Some(path)).map(|values| Self { values })
    }

    /// Reads one section of INI text (see [`RawConfig::from_ini_file`] for the syntax).
    ///
    /// # Errors
    ///
    /// [`ConfigError::SectionNotFound`] when the section is not there, and
    /// [`ConfigError::IniSyntax`] when the text is malformed.
    ///
    /// # Examples
    ///
    /// ```
    /// let text = "
    /// [app:main]
    /// foo.timeout = 3 seconds
    /// foo.hosts =
    ///     a.example.com,
    ///     b.example.com
    /// ";
    /// let config = baseplate_config::RawConfig::from_ini_str(text, "app:main")?;
    /// assert_eq!(config.get("foo.timeout").and_then(|v| v.as_str()), Some("3 seconds"));
    /// assert_eq!(
    ///     config.get("foo.hosts").and_then(|v| v.as_str()),
    ///     Some("\na.example.com,\nb.example.com")
    /// );
    /// # Ok::<(), baseplate_config::ConfigError>(())
    /// ```
    pub fn from_ini_str(text: &str, section: &str) -> Result<Self, ConfigError> {
        source::ini_section(text, section, None).map(|values| Self { values })
    }

    /// Reads a TOML file, the whole document flattened into dotted keys.
    ///
    /// `[foo]` then `url = "..."` gives the key `foo.url`; nested tables nest further. Integers,
    /// floats and booleans keep their type, arrays become [`Value::List`], and datetimes become
    /// strings. An array of tables has no flat form and is an error.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Io`] naming the path when the file cannot be read,
    /// [`ConfigError::TomlSyntax`] with the position when the text is malformed, and
    /// [`ConfigError::Invalid`] for an array of tables or a key defined twice.
    ///
    /// # Examples
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("baseplate-config-doc-{}.toml", std::process::id()));
    /// std::fs::write(&path, "[foo]\nmax_connections = 10\n")?;
    /// let config = baseplate_config::RawConfig::from_toml_file(&path)?;
    /// assert_eq!(config.get("foo.max_connections"), Some(&10.into()));
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = source::read_file(path)?;
        source::toml_document(&text, Some(path)).map(|values| Self { values })
    }

    /// Reads TOML text, flattened into dotted keys (see [`RawConfig::from_toml_file`]).
    ///
    /// # Errors
    ///
    /// [`ConfigError::TomlSyntax`] with the position when the text is malformed, and
    /// [`ConfigError::Invalid`] for an array of tables or a key defined twice.
    ///
    /// # Examples
    ///
    /// ```
    /// use baseplate_config::{RawConfig, Value};
    ///
    /// let config = RawConfig::from_toml_str(
    ///     "[foo]\nurl = \"redis://localhost:7000\"\npool.size = 5\nreplicas = [\"a\", \"b\"]\n",
    /// )?;
    /// assert_eq!(config.keys().collect::<Vec<_>>(), ["foo.pool.size", "foo.replicas", "foo.url"]);
    /// assert_eq!(config.get("foo.pool.size"), Some(&Value::Integer(5)));
    /// # Ok::<(), baseplate_config::ConfigError>(())
    /// ```
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        source::toml_document(text, None).map(|values| Self { values })
    }

    /// Sets `key` to `value`, returning the value it replaces.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut config = baseplate_config::RawConfig::new();
    /// assert_eq!(config.insert("foo.max_connections", 10), None);
    /// assert_eq!(config.insert("foo.max_connections", "20"), Some(10.into()));
    /// ```
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Value>) -> Option<Value> {
        self.values.insert(key.into(), value.into())
    }

    /// The value of `key`, if it is set.
    ///
    /// # Examples
    ///
    /// ```
    /// let config: baseplate_config::RawConfig = [("foo.url", "redis://x:1")].into_iter().collect();
    /// assert!(config.get("foo.url").is_some());
    /// assert!(config.get("foo.timeout").is_none());
    /// ```
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.values.get(key)
    }

    /// Every key, in sorted order.
    ///
    /// # Examples
    ///
    /// ```
    /// let config: baseplate_config::RawConfig = [("b", "1"), ("a", "2")].into_iter().collect();
    /// assert_eq!(config.keys().collect::<Vec<_>>(), ["a", "b"]);
    /// ```
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// Every key and its value, in key order.
    ///
    /// # Examples
    ///
    /// ```
    /// let config: baseplate_config::RawConfig = [("a", "1")].into_iter().collect();
    /// let pairs: Vec<_> = config.iter().map(|(k, v)| (k, v.as_str())).collect();
    /// assert_eq!(pairs, [("a", Some("1"))]);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.values.iter().map(|(key, value)| (key.as_str(), value))
    }

    /// The number of keys.
    ///
    /// # Examples
    ///
    /// ```
    /// let config: baseplate_config::RawConfig = [("a", "1")].into_iter().collect();
    /// assert_eq!(config.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when no key is set.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(baseplate_config::RawConfig::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The keys under `prefix.`, with that prefix stripped; an empty `prefix` gives every key.
    ///
    /// # Examples
    ///
    /// ```
    /// let config: baseplate_config::RawConfig =
    ///     [("foo.url", "redis://x:1"), ("foo.pool.size", "3"), ("foobar", "no")].into_iter().collect();
    /// let foo = config.prefix("foo");
    /// assert_eq!(foo.keys().collect::<Vec<_>>(), ["pool.size", "url"]);
    /// assert_eq!(foo.full_key("url"), "foo.url");
    /// ```
    pub fn prefix(&self, prefix: &str) -> ConfigView<'_> {
        ConfigView::root(&self.values).prefix(prefix)
    }

    /// Parses the keys under `prefix.` into a `T`: `self.prefix(prefix).parse()`.
    ///
    /// See [`ConfigView::parse`] for how fields are read.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the full key: [`ConfigError::Missing`],
    /// [`ConfigError::UnknownKey`], [`ConfigError::InvalidValue`] or [`ConfigError::Invalid`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Foo {
    ///     timeout: Duration,
    /// }
    ///
    /// let config: baseplate_config::RawConfig = [("foo.timeout", "3 seconds")].into_iter().collect();
    /// let foo: Foo = config.parse("foo")?;
    /// assert_eq!(foo.timeout, Duration::from_secs(3));
    /// # Ok::<(), baseplate_config::ConfigError>(())
    /// ```
    pub fn parse<T: DeserializeOwned>(&self, prefix: &str) -> Result<T, ConfigError> {
        self.prefix(prefix).parse()
    }

    /// Parses the keys under `prefix.` into a `T`, with keys that no field reads handled as
    /// `unknown_keys` says: `self.prefix(prefix).parse_with(unknown_keys)`.
    ///
    /// See [`ConfigView::parse_with`].
    ///
    /// # Errors
    ///
    /// As [`RawConfig::parse`]; with [`UnknownKeys::Warn`], never [`ConfigError::UnknownKey`].
    ///
    /// # Examples
    ///
    /// ```
    /// use baseplate_config::{RawConfig, UnknownKeys};
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Foo {
    ///     url: String,
    /// }
    ///
    /// let config: RawConfig =
    ///     [("foo.url", "redis://x:1"), ("foo.retry_on_timeout", "true")].into_iter().collect();
    /// let (foo, warnings) = config.parse_with::<Foo>("foo", UnknownKeys::Warn)?;
    /// assert_eq!(foo.url, "redis://x:1");
    /// assert_eq!(warnings[0].to_string(), "foo.retry_on_timeout: unknown key, ignored");
    /// # Ok::<(), baseplate_config::ConfigError>(())
    /// ```
    pub fn parse_with<T: DeserializeOwned>(
        &self,
        prefix: &str,
        unknown_keys: UnknownKeys,
    ) -> Result<(T, Vec<ConfigWarning>), ConfigError> {
        self.prefix(prefix).parse_with(unknown_keys)
    }

    /// Expands environment variables in every string value, as `baseplate-serve`'s
    /// `EnvironmentInterpolation` does (Python's `os.path.expandvars`): `$NAME` and `${NAME}` are
    /// replaced by the variable's value, and left as they are when it is not set.
    ///
    /// This is not done when reading a file, so that a `$` in a password stays a `$` unless the
    /// service asks for expansion.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut config: baseplate_config::RawConfig =
    ///     [("foo.url", "redis://${BASEPLATE_CONFIG_DOC_UNSET}:7000")].into_iter().collect();
    /// config.expand_env_vars();
    /// // An unset variable stays as written.
    /// assert_eq!(
    ///     config.get("foo.url").and_then(|v| v.as_str()),
    ///     Some("redis://${BASEPLATE_CONFIG_DOC_UNSET}:7000")
    /// );
    /// ```
    pub fn expand_env_vars(&mut self) {
        self.expand_vars_with(|name| std::env::var(name).ok());
    }

    /// Expands `$NAME` and `${NAME}` in every string value with `lookup`.
    pub(crate) fn expand_vars_with(&mut self, lookup: impl Fn(&str) -> Option<String>) {
        for value in self.values.values_mut() {
            source::expand_vars_in_value(value, &lookup);
        }
    }
}

impl fmt::Debug for RawConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_redacted(f, self.iter())
    }
}

impl<K: Into<String>, V: Into<Value>> FromIterator<(K, V)> for RawConfig {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        Self {
            values: pairs
                .into_iter()
                .map(|(key, value)| (key.into(), value.into()))
                .collect(),
        }
    }
}

impl<K: Into<String>, V: Into<Value>> Extend<(K, V)> for RawConfig {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, pairs: I) {
        self.values.extend(
            pairs
                .into_iter()
                .map(|(key, value)| (key.into(), value.into())),
        );
    }
}

/// The keys of a [`RawConfig`] under one prefix, with the prefix stripped.
///
/// Made by [`RawConfig::prefix`]; views nest with [`ConfigView::prefix`]. Errors from
/// [`ConfigView::parse`] name full keys, prefix included.
#[derive(Clone)]
pub struct ConfigView<'a> {
    map: &'a BTreeMap<String, Value>,
    /// Empty, or the prefix followed by a dot (`foo.`).
    prefix: String,
}

impl<'a> ConfigView<'a> {
    /// A view of every key of `map`.
    pub(crate) fn root(map: &'a BTreeMap<String, Value>) -> Self {
        Self {
            map,
            prefix: String::new(),
        }
    }

    /// A view with no keys.
    pub(crate) fn empty() -> ConfigView<'static> {
        static EMPTY: BTreeMap<String, Value> = BTreeMap::new();
        ConfigView::root(&EMPTY)
    }

    /// The value of `key` (relative to this view), if it is set.
    ///
    /// # Examples
    ///
    /// ```
    /// let config: baseplate_config::RawConfig = [("foo.url", "redis://x:1")].into_iter().collect();
    /// assert!(config.prefix("foo").get("url").is_some());
    /// ```
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        if self.prefix.is_empty() {
            self.map.get(key)
        } else {
            self.map.get(&self.full_key(key))
        }
    }

    /// The keys under this view's prefix, with the prefix stripped, in sorted order.
    ///
    /// # Examples
    ///
    /// ```
    /// let config: baseplate_config::RawConfig =
    ///     [("foo.b", "1"), ("foo.a", "2"), ("bar.c", "3")].into_iter().collect();
    /// assert_eq!(config.prefix("foo").keys().collect::<Vec<_>>(), ["a", "b"]);
    /// ```
    pub fn keys(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.iter().map(|(key, _)| key)
    }

    /// The keys under this view's prefix, with the prefix stripped, and their values.
    ///
    /// # Examples
    ///
    /// ```
    /// let config: baseplate_config::RawConfig = [("foo.a", "1")].into_iter().collect();
    /// let pairs: Vec<_> = config.prefix("foo").iter().map(|(k, v)| (k, v.as_str())).collect();
    /// assert_eq!(pairs, [("a", Some("1"))]);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a Value)> + '_ {
        let range: btree_map::Range<'a, String, Value> = self
            .map
            .range::<str, _>((Bound::Included(self.prefix.as_str()), Bound::Unbounded));
        range.map_while(|(key, value)| Some((key.strip_prefix(self.prefix.as_str())?, value)))
    }

    /// A view of the keys under `prefix.` within this view; an empty `prefix` gives this view.
    ///
    /// A trailing dot in `prefix` is ignored, so `prefix("foo.")` is `prefix("foo")`.
    ///
    /// # Examples
    ///
    /// ```
    /// let config: baseplate_config::RawConfig = [("foo.pool.size", "3")].into_iter().collect();
    /// let pool = config.prefix("foo").prefix("pool");
    /// assert_eq!(pool.keys().collect::<Vec<_>>(), ["size"]);
    /// assert_eq!(pool.full_key("size"), "foo.pool.size");
    /// ```
    pub fn prefix(&self, prefix: &str) -> ConfigView<'a> {
        let prefix = prefix.strip_suffix('.').unwrap_or(prefix);
        let mut full = self.prefix.clone();
        if !prefix.is_empty() {
            full.push_str(prefix);
            full.push('.');
        }
        ConfigView {
            map: self.map,
            prefix: full,
        }
    }

    /// The full key of `key` (relative to this view), prefix included: what errors show.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = baseplate_config::RawConfig::new();
    /// assert_eq!(config.prefix("foo").full_key("timeout"), "foo.timeout");
    /// assert_eq!(config.prefix("").full_key("timeout"), "timeout");
    /// ```
    pub fn full_key(&self, key: &str) -> String {
        let mut full = String::with_capacity(self.prefix.len() + key.len());
        full.push_str(&self.prefix);
        full.push_str(key);
        full
    }

    /// True when no key is under this view's prefix.
    ///
    /// # Examples
    ///
    /// ```
    /// let config: baseplate_config::RawConfig = [("foo.url", "redis://x:1")].into_iter().collect();
    /// assert!(!config.prefix("foo").is_empty());
    /// assert!(config.prefix("bar").is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// Parses the keys under this view into a `T`, usually a `#[derive(Deserialize)]` struct.
    ///
    /// - Each field reads the key of its name (honouring `#[serde(rename)]` and
    ///   `#[serde(alias)]`); a nested struct reads dotted keys (`pool.size`), and a map
    ///   (`HashMap<String, T>`) reads every key under the field's name, like baseplate's `DictOf`.
    /// - Strings are parsed into what the field asks for: integers of every width (range
    ///   checked), floats, booleans (`true`/`false`, any case), [`std::time::Duration`] and
    ///   [`crate::Timespan`] (`3 seconds`), [`crate::Percent`] (`37.2%`), [`crate::Endpoint`],
    ///   unit enum variants by name, and `Vec<T>` from a list or a comma-separated string
    ///   (baseplate's `TupleOf`).
    /// - A key that is missing or empty is not set: an `Option<T>` field is `None`, a
    ///   `#[serde(default)]` field takes its default, and any other field is an error.
    /// - A key whose first segment matches no field is an error, with a suggestion when a field
    ///   name is close, even without `#[serde(deny_unknown_fields)]`. (A struct with a
    ///   `#[serde(flatten)]` field is read as a map, so this check does not apply to it.)
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the full key: [`ConfigError::Missing`],
    /// [`ConfigError::UnknownKey`], [`ConfigError::InvalidValue`] or [`ConfigError::Invalid`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// #[derive(serde::Deserialize, Debug)]
    /// struct Pool {
    ///     size: u32,
    ///     timeout: Option<Duration>,
    /// }
    ///
    /// let config: baseplate_config::RawConfig =
    ///     [("foo.pool.size", "3"), ("foo.pool.timeout", "")].into_iter().collect();
    /// let pool: Pool = config.prefix("foo").prefix("pool").parse()?;
    /// assert_eq!((pool.size, pool.timeout), (3, None));
    ///
    /// let error = config.prefix("foo").parse::<Pool>().unwrap_err();
    /// assert_eq!(error.to_string(), "foo.pool.size: unknown key");
    /// # Ok::<(), baseplate_config::ConfigError>(())
    /// ```
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        crate::de::from_view(self, UnknownKeys::Reject).map(|(parsed, _)| parsed)
    }

    /// Parses the keys under this view into a `T` as [`ConfigView::parse`] does, except for keys
    /// whose first segment matches no field: with [`UnknownKeys::Warn`] they are ignored, as
    /// baseplate.py ignores them, and each is returned as a [`ConfigWarning::UnknownKey`] naming
    /// the nearest known key; with [`UnknownKeys::Reject`] the first is an error, as in `parse`.
    ///
    /// # Errors
    ///
    /// As [`ConfigView::parse`]; with [`UnknownKeys::Warn`], never [`ConfigError::UnknownKey`].
    ///
    /// # Examples
    ///
    /// ```
    /// use baseplate_config::{RawConfig, UnknownKeys};
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Pool {
    ///     size: u32,
    /// }
    ///
    /// let config: RawConfig = [("foo.pool.size", "3"), ("foo.pool.sise", "4")].into_iter().collect();
    /// let (pool, warnings) = config.prefix("foo.pool").parse_with::<Pool>(UnknownKeys::Warn)?;
    /// assert_eq!(pool.size, 3);
    /// assert_eq!(
    ///     warnings[0].to_string(),
    ///     "foo.pool.sise: unknown key, ignored; did you mean foo.pool.size?"
    /// );
    /// # Ok::<(), baseplate_config::ConfigError>(())
    /// ```
    pub fn parse_with<T: DeserializeOwned>(
        &self,
        unknown_keys: UnknownKeys,
    ) -> Result<(T, Vec<ConfigWarning>), ConfigError> {
        crate::de::from_view(self, unknown_keys)
    }

    /// This view's prefix without its trailing dot (`foo.pool`), or empty for the root: the
    /// name of what the view configures, however its prefix was written.
    ///
    /// ```
    /// let config = baseplate_config::RawConfig::new();
    /// assert_eq!(config.prefix("foo.").path(), "foo");
    /// assert_eq!(config.prefix("cache").prefix("foo").path(), "cache.foo");
    /// ```
    pub fn path(&self) -> &str {
        self.prefix.strip_suffix('.').unwrap_or(&self.prefix)
    }
}

impl fmt::Debug for ConfigView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_redacted(f, self.iter())
    }
}

/// Formats key/value pairs as a map, with every value redacted as its key requires.
fn debug_redacted<'v>(
    f: &mut fmt::Formatter<'_>,
    pairs: impl Iterator<Item = (&'v str, &'v Value)>,
) -> fmt::Result {
    let mut map = f.debug_map();
    for (key, value) in pairs {
        match value {
            Value::String(s) => map.entry(&key, &secret::redact_for_key(key, s)),
            _ if secret::is_secret_key(key) => map.entry(&key, &secret::REDACTED),
            other => map.entry(&key, other),
        };
    }
    map.finish()
}

#[cfg(test)]
mod tests;
