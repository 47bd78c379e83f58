//! Warnings about a configuration that parses: `ConfigWarning`, and `UnknownKeys`, the choice
//! between warning about a key nothing reads and refusing it.

use std::fmt;

/// What [`ConfigView::parse_with`](crate::ConfigView::parse_with) does with a key under the prefix
/// that no field reads.
///
/// baseplate.py reads only the keys in its spec and ignores the others, so a config written for
/// a baseplate.py service may hold keys that mean nothing here (or a typo that meant something).
///
/// ```
/// use baseplate_config::{ConfigWarning, RawConfig, UnknownKeys};
///
/// #[derive(serde::Deserialize)]
/// struct Foo {
///     url: String,
/// }
///
/// let config: RawConfig = [("foo.url", "redis://x:1"), ("foo.ulr", "oops")].into_iter().collect();
/// let (foo, warnings) = config.parse_with::<Foo>("foo", UnknownKeys::Warn)?;
/// assert_eq!(foo.url, "redis://x:1");
/// assert_eq!(
///     warnings,
///     [ConfigWarning::UnknownKey { key: "foo.ulr".into(), suggestion: Some("foo.url".into()) }]
/// );
///
/// let error = config.parse_with::<Foo>("foo", UnknownKeys::Reject).err().unwrap();
/// assert_eq!(error.to_string(), "foo.ulr: unknown key; did you mean foo.url?");
/// # Ok::<(), baseplate_config::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UnknownKeys {
    /// Ignore the key, as baseplate.py does, and report it as a
    /// [`ConfigWarning::UnknownKey`] naming the nearest known key.
    #[default]
    Warn,
    /// Fail with [`ConfigError::UnknownKey`](crate::ConfigError::UnknownKey), naming the nearest
    /// known key: a strict mode for services that want a typo to stop them.
    Reject,
}

/// Something about a configuration that parsed, worth telling whoever wrote it; each is
/// complete on its own (`{}` names the full key) and is meant to be logged once, at start-up.
///
/// ```
/// use baseplate_config::ConfigWarning;
///
/// let warning = ConfigWarning::UnknownKey {
///     key: "foo.max_conections".into(),
///     suggestion: Some("foo.max_connections".into()),
/// };
/// assert_eq!(
///     warning.to_string(),
///     "foo.max_conections: unknown key, ignored; did you mean foo.max_connections?"
/// );
/// assert_eq!(warning.key(), "foo.max_conections");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigWarning {
    /// A key under the prefix that no field reads; it was ignored.
    UnknownKey {
        /// The full key as configured, such as `foo.max_conections`.
        key: String,
        /// The nearest known key, when one is close enough to be a likely typo.
        suggestion: Option<String>,
    },
    /// A key that was read, but does something its author may not expect (what baseplate.py
    /// would do differently with it, say).
    Note {
        /// The full key, such as `metrics.endpoint`.
        key: String,
        /// What to know about it.
        message: String,
    },
}

impl ConfigWarning {
    /// The full key the warning is about.
    ///
    /// ```
    /// use baseplate_config::ConfigWarning;
    ///
    /// let note = ConfigWarning::Note { key: "metrics.endpoint".into(), message: "unused".into() };
    /// assert_eq!(note.key(), "metrics.endpoint");
    /// ```
    #[must_use]
    pub fn key(&self) -> &str {
        match self {
            Self::UnknownKey { key, .. } | Self::Note { key, .. } => key,
        }
    }
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownKey { key, suggestion } => {
                write!(f, "{key}: unknown key, ignored")?;
                match suggestion {
                    Some(suggestion) => write!(f, "; did you mean {suggestion}?"),
                    None => Ok(()),
                }
            }
            Self::Note { key, message } => write!(f, "{key}: {message}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_displays_as_documented() {
        let unknown = ConfigWarning::UnknownKey {
            key: "foo.colour".into(),
            suggestion: None,
        };
        assert_eq!(unknown.to_string(), "foo.colour: unknown key, ignored");
        let note = ConfigWarning::Note {
            key: "metrics.endpoint".into(),
            message: "set, but nothing is sent".into(),
        };
        assert_eq!(
            note.to_string(),
            "metrics.endpoint: set, but nothing is sent"
        );
        assert_eq!(UnknownKeys::default(), UnknownKeys::Warn);
    }
}
