//! The crate's errors: `ConfigError` for reading and parsing a config, `ValueError` for one value.
//!
//! Every message is complete on its own (`{}` shows the key, the value and the reason), and
//! values inside messages are already redacted (see [`crate::secret`]), so an error can be
//! logged as is.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::secret;

/// Why a configuration could not be read or parsed.
///
/// Errors about a key name the full key, prefix included (`foo.timeout`), and show the bad value
/// with secrets redacted:
///
/// ```text
/// foo.timeout: invalid timespan "3 secnds": unknown unit "secnd"
/// foo.url: required but not set
/// foo.max_conections: unknown key; did you mean foo.max_connections?
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A config file could not be read (it does not exist, is not readable, or is not UTF-8).
    #[error("cannot read config file {}: {source}", .path.display())]
    Io {
        /// The file that was read.
        path: PathBuf,
        /// Why reading it failed.
        #[source]
        source: std::io::Error,
    },

    /// The INI text is malformed.
    #[error("invalid INI{}: {message}", in_file(.file.as_deref()))]
    IniSyntax {
        /// The file, when the text came from one.
        file: Option<PathBuf>,
        /// What is wrong, with the line number when known.
        message: String,
    },

    /// The INI text has no such section.
    #[error("section [{section}] not found{}", in_file(.file.as_deref()))]
    SectionNotFound {
        /// The file, when the text came from one.
        file: Option<PathBuf>,
        /// The section that was asked for, such as `app:main`.
        section: String,
    },

    /// The TOML text is malformed.
    #[error("invalid TOML{}{}: {message}", in_file(.file.as_deref()), at_position(*.line, *.column))]
    TomlSyntax {
        /// The file, when the text came from one.
        file: Option<PathBuf>,
        /// The 1-based line of the error, when known.
        line: Option<usize>,
        /// The 1-based column (in characters) of the error, when known.
        column: Option<usize>,
        /// What is wrong (never a copy of the text, which may hold secrets).
        message: String,
    },

    /// A required key has no value (it is missing or empty).
    #[error("{key}: required but not set")]
    Missing {
        /// The full key, such as `foo.url`.
        key: String,
    },

    /// A key under the prefix matches no field of the struct being parsed.
    #[error("{key}: unknown key{}", did_you_mean(.suggestion.as_deref()))]
    UnknownKey {
        /// The full key as configured, such as `foo.max_conections`.
        key: String,
        /// The nearest known key, when one is close enough to be a likely typo.
        suggestion: Option<String>,
    },

    /// A value could not be parsed as the type its field asks for.
    #[error("{key}: {error}")]
    InvalidValue {
        /// The full key, such as `foo.timeout`.
        key: String,
        /// The type, the (redacted) value and the reason.
        error: ValueError,
    },

    /// Something about a key, or a group of keys, is invalid in a way that has no single value to
    /// show (for example a struct-level check of a type's own `Deserialize` impl).
    #[error("{}", keyed(key, message))]
    Invalid {
        /// The full key or prefix, such as `foo.pool`; empty for the whole config.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// The full key this error is about, if it is about a key.
    ///
    /// # Examples
    ///
    /// ```
    /// use baseplate_config::RawConfig;
    ///
    /// #[derive(serde::Deserialize, Debug)]
    /// struct Foo {
    ///     url: String,
    /// }
    ///
    /// let error = RawConfig::new().parse::<Foo>("foo").unwrap_err();
    /// assert_eq!(error.key(), Some("foo.url"));
    /// ```
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Missing { key }
            | Self::UnknownKey { key, .. }
            | Self::InvalidValue { key, .. }
            | Self::Invalid { key, .. } => Some(key),
            Self::Io { .. }
            | Self::IniSyntax { .. }
            | Self::SectionNotFound { .. }
            | Self::TomlSyntax { .. } => None,
        }
    }
}

/// Why one value could not be parsed as a type: the type's name, the value (with URL passwords
/// redacted) and the reason.
///
/// It displays as `invalid timespan "3 secnds": unknown unit "secnd"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {type_name} \"{}\": {reason}", Escaped(.value))]
pub struct ValueError {
    type_name: &'static str,
    value: String,
    reason: String,
}

impl ValueError {
    /// Builds an error about `value`, hiding any URL password in it.
    pub(crate) fn new(type_name: &'static str, value: &str, reason: impl Into<String>) -> Self {
        Self {
            type_name,
            value: secret::redact_url(value).into_owned(),
            reason: secret::redact_url(&reason.into()).into_owned(),
        }
    }

    /// Hides the value (and what the reason quotes of it) when `key` names a secret.
    pub(crate) fn redacted_for(mut self, key: &str) -> Self {
        if secret::is_secret_key(key) {
            self.reason = secret::redact_message(key, Some(&self.value), &self.reason);
            self.value = secret::REDACTED.to_owned();
        }
        self
    }

    /// The name of the type the value was parsed as, such as `timespan` or `integer`.
    ///
    /// # Examples
    ///
    /// ```
    /// let error = baseplate_config::value::parse_timespan("3 secnds").unwrap_err();
    /// assert_eq!(error.type_name(), "timespan");
    /// ```
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// The value that failed to parse, with secrets redacted.
    ///
    /// # Examples
    ///
    /// ```
    /// let error = baseplate_config::value::parse_integer("redis://:pw@host").unwrap_err();
    /// assert_eq!(error.value(), "redis://:***@host");
    /// ```
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Why it failed, such as `unknown unit "secnd"`.
    ///
    /// # Examples
    ///
    /// ```
    /// let error = baseplate_config::value::parse_timespan("3 secnds").unwrap_err();
    /// assert_eq!(error.reason(), "unknown unit \"secnd\"");
    /// ```
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// Shows a value between double quotes: `"` and `\` are escaped, and so are control characters
/// (a multi-line value stays on one line).
pub(crate) struct Escaped<'a>(pub(crate) &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                c if c.is_control() => write!(f, "{}", c.escape_default())?,
                c => write!(f, "{c}")?,
            }
        }
        Ok(())
    }
}

fn in_file(file: Option<&Path>) -> String {
    match file {
        Some(path) => format!(" in {}", path.display()),
        None => String::new(),
    }
}

fn at_position(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(" at line {line}, column {column}"),
        (Some(line), None) => format!(" at line {line}"),
        _ => String::new(),
    }
}

fn did_you_mean(suggestion: Option<&str>) -> String {
    match suggestion {
        Some(suggestion) => format!("; did you mean {suggestion}?"),
        None => String::new(),
    }
}

fn keyed(key: &str, message: &str) -> String {
    if key.is_empty() {
        message.to_owned()
    } else {
        format!("{key}: {message}")
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn every_variant_displays_as_documented() {
        let io = ConfigError::Io {
            path: PathBuf::from("/etc/app.ini"),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        };
        assert_eq!(io.to_string(), "cannot read config file /etc/app.ini: gone");
        assert!(io.source().is_some());

        let ini = ConfigError::IniSyntax {
            file: Some(PathBuf::from("a.ini")),
            message: "line 3: bad".into(),
        };
        assert_eq!(ini.to_string(), "invalid INI in a.ini: line 3: bad");
        let ini = ConfigError::IniSyntax {
            file: None,
            message: "line 3: bad".into(),
        };
        assert_eq!(ini.to_string(), "invalid INI: line 3: bad");

        let section = ConfigError::SectionNotFound {
            file: Some(PathBuf::from("a.ini")),
            section: "app:main".into(),
        };
        assert_eq!(section.to_string(), "section [app:main] not found in a.ini");

        let toml = ConfigError::TomlSyntax {
            file: None,
            line: Some(2),
            column: Some(5),
            message: "oops".into(),
        };
        assert_eq!(toml.to_string(), "invalid TOML at line 2, column 5: oops");
        let toml = ConfigError::TomlSyntax {
            file: Some(PathBuf::from("a.toml")),
            line: Some(2),
            column: None,
            message: "oops".into(),
        };
        assert_eq!(toml.to_string(), "invalid TOML in a.toml at line 2: oops");

        let missing = ConfigError::Missing {
            key: "foo.url".into(),
        };
        assert_eq!(missing.to_string(), "foo.url: required but not set");
        assert_eq!(missing.key(), Some("foo.url"));

        let unknown = ConfigError::UnknownKey {
            key: "foo.x".into(),
            suggestion: None,
        };
        assert_eq!(unknown.to_string(), "foo.x: unknown key");

        let invalid = ConfigError::InvalidValue {
            key: "foo.n".into(),
            error: ValueError::new("integer", "x", "nope"),
        };
        assert_eq!(invalid.to_string(), r#"foo.n: invalid integer "x": nope"#);
        assert!(invalid.source().is_none(), "the message already holds it");

        let whole = ConfigError::Invalid {
            key: String::new(),
            message: "bad".into(),
        };
        assert_eq!(whole.to_string(), "bad");
        assert_eq!(io.key(), None);
    }

    #[test]
    fn values_are_escaped_and_redacted() {
        let error = ValueError::new("string", "a \"b\"\n\\c", "r");
        assert_eq!(error.to_string(), r#"invalid string "a \"b\"\n\\c": r"#);

        let error = ValueError::new("endpoint", "redis://:pw@h", "see redis://:pw@h");
        assert_eq!(
            error.to_string(),
            r#"invalid endpoint "redis://:***@h": see redis://:***@h"#
        );

        let error = ValueError::new("timespan", "3 secnds", "unknown unit \"secnd\"")
            .redacted_for("foo.token");
        assert_eq!(
            error.to_string(),
            r#"invalid timespan "***": unknown unit "***""#
        );
        assert!(!format!("{error:?}").contains("secnd"));
    }
}
