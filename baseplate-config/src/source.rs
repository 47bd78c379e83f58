//! Where a `RawConfig` comes from: an INI section, a TOML document, and `$VAR` expansion.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::ConfigError;
use crate::value::Value;

mod ini;

/// Reads a config file as UTF-8 text.
pub(crate) fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Reads the keys of `section` (with those of `[DEFAULT]` under them) from INI text, the way
/// `baseplate-serve`'s `RawConfigParser` and `parser.items(section)` do.
pub(crate) fn ini_section(
    text: &str,
    section: &str,
    file: Option<&Path>,
) -> Result<BTreeMap<String, Value>, ConfigError> {
    let sections = ini::sections(text).map_err(|message| ConfigError::IniSyntax {
        file: file.map(Path::to_owned),
        message,
    })?;
    let Some(keys) = sections.get(section) else {
        return Err(ConfigError::SectionNotFound {
            file: file.map(Path::to_owned),
            section: section.to_owned(),
        });
    };
    let defaults = sections
        .get(ini::DEFAULT_SECTION)
        .filter(|_| section != ini::DEFAULT_SECTION);
    Ok(defaults
        .into_iter()
        .chain([keys])
        .flat_map(ini::Section::values)
        .map(|(key, value)| (key.to_owned(), Value::String(value)))
        .collect())
}

/// Reads a TOML document, flattened into dotted keys.
pub(crate) fn toml_document(
    text: &str,
    file: Option<&Path>,
) -> Result<BTreeMap<String, Value>, ConfigError> {
    let table = text
        .parse::<toml::Table>()
        .map_err(|error| toml_syntax_error(text, file, &error))?;
    let mut values = BTreeMap::new();
    flatten_table("", table, &mut values)?;
    Ok(values)
}

/// Describes a TOML syntax error by its message and position only: `toml`'s own `Display`
/// quotes the offending line, which may hold a password.
fn toml_syntax_error(text: &str, file: Option<&Path>, error: &toml::de::Error) -> ConfigError {
    let position = error.span().map(|span| {
        let before = text.get(..span.start).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    });
    ConfigError::TomlSyntax {
        file: file.map(Path::to_owned),
        line: position.map(|(line, _)| line),
        column: position.map(|(_, column)| column),
        message: error.message().trim_end().to_owned(),
    }
}

fn flatten_table(
    prefix: &str,
    table: toml::Table,
    values: &mut BTreeMap<String, Value>,
) -> Result<(), ConfigError> {
    for (key, value) in table {
        let full_key = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}.{key}")
        };
        let flat = match value {
            toml::Value::Table(table) => {
                flatten_table(&full_key, table, values)?;
                continue;
            }
            other => flat_value(&full_key, other)?,
        };
        // `a.b = 1` and `"a.b" = 2` are different TOML keys but the same flat key.
        if values.insert(full_key.clone(), flat).is_some() {
            return Err(ConfigError::Invalid {
                key: full_key,
                message: "defined twice (as a quoted key with a dot and as a dotted key)"
                    .to_owned(),
            });
        }
    }
    Ok(())
}

fn flat_value(key: &str, value: toml::Value) -> Result<Value, ConfigError> {
    Ok(match value {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::Integer(i),
        toml::Value::Float(x) => Value::Float(x),
        toml::Value::Boolean(b) => Value::Boolean(b),
        toml::Value::Datetime(datetime) => Value::String(datetime.to_string()),
        toml::Value::Array(items) => Value::List(
            items
                .into_iter()
                .map(|item| flat_value(key, item))
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(_) => {
            return Err(ConfigError::Invalid {
                key: key.to_owned(),
                message: "an array of tables has no flat form; use a table per item".to_owned(),
            });
        }
    })
}

/// Expands `$NAME` and `${NAME}` in a string value (and in the strings of a list).
pub(crate) fn expand_vars_in_value(value: &mut Value, lookup: &impl Fn(&str) -> Option<String>) {
    match value {
        Value::String(s) => {
            if let Some(expanded) = expand_vars(s, lookup) {
                *s = expanded;
            }
        }
        Value::List(items) => {
            for item in items {
                expand_vars_in_value(item, lookup);
            }
        }
        Value::Integer(_) | Value::Float(_) | Value::Boolean(_) => {}
    }
}

/// Python's `os.path.expandvars` on POSIX: `$NAME` (letters, digits, `_`) or `${ANYTHING}`,
/// replaced when the variable is set and left as written otherwise. Returns `None` when nothing
/// changes.
fn expand_vars(text: &str, lookup: &impl Fn(&str) -> Option<String>) -> Option<String> {
    if !text.contains('$') {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        let (name, written_len) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(close) => (&braced[..close], close + 2),
                None => ("", 0),
            }
        } else {
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..len], len)
        };
        // The standard library may reject (or, in old versions, panic on) such names.
        let expanded = if name.is_empty() || name.contains(['=', '\0']) {
            None
        } else {
            lookup(name)
        };
        match expanded {
            Some(expanded) => {
                out.push_str(&expanded);
                changed = true;
            }
            None => out.push_str(&rest[dollar..=dollar + written_len]),
        }
        rest = &rest[dollar + 1 + written_len..];
    }
    out.push_str(rest);
    changed.then_some(out)
}

#[cfg(test)]
mod tests;
