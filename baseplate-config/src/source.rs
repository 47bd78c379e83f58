//! Where a `RawConfig` comes from: an INI section, a TOML document, and `$VAR` expansion.

use std::collections::BTreeMap;
use std::path::Path;

use configparser::ini::Ini;

use crate::error::ConfigError;
use crate::value::Value;

/// Python's name for the section whose keys apply to every section.
const PYTHON_DEFAULT_SECTION: &str = "DEFAULT";

/// Where `configparser` puts keys that come before any section header. Python rejects such keys;
/// a name no real section can have lets us find and reject them too.
const NO_SECTION: &str = "\u{0}baseplate-config: before the first section header";

/// Reads a config file as UTF-8 text.
pub(crate) fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Reads the keys of `section` (with those of `[DEFAULT]` under them) from INI text, the way
/// baseplate's `RawConfigParser` and `parser.items(section)` do.
pub(crate) fn ini_section(
    text: &str,
    section: &str,
    file: Option<&Path>,
) -> Result<BTreeMap<String, Value>, ConfigError> {
    let syntax_error = |message: String| ConfigError::IniSyntax {
        file: file.map(Path::to_owned),
        message,
    };

    let mut ini = Ini::new_cs();
    let mut options = ini.defaults();
    // Python's defaults: values continue on deeper-indented lines, and `#` or `;` start a
    // comment only at the start of a line, so `a = x # y` has the value `x # y`.
    options.multiline = true;
    options.enable_inline_comments = false;
    options.default_section = NO_SECTION.to_owned();
    ini.load_defaults(options);

    // Python's configparser does not skip a UTF-8 byte order mark either, but editors on Windows
    // add one silently and it would otherwise turn the first header into a key.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    ini.read(text.to_owned()).map_err(syntax_error)?;
    let sections = ini.get_map_ref();

    if let Some(key) = sections.get(NO_SECTION).and_then(|keys| keys.keys().next()) {
        return Err(syntax_error(format!(
            "key \"{key}\" comes before the first [section] header"
        )));
    }
    let Some(keys) = sections.get(section) else {
        return Err(ConfigError::SectionNotFound {
            file: file.map(Path::to_owned),
            section: section.to_owned(),
        });
    };

    let mut values = BTreeMap::new();
    let defaults = sections
        .get(PYTHON_DEFAULT_SECTION)
        .filter(|_| section != PYTHON_DEFAULT_SECTION);
    for (section_name, keys) in defaults
        .map(|defaults| (PYTHON_DEFAULT_SECTION, defaults))
        .into_iter()
        .chain([(section, keys)])
    {
        for (key, value) in keys {
            let Some(value) = value else {
                return Err(syntax_error(format!(
                    "key \"{key}\" in [{section_name}] has no value, expected \"{key} = <value>\""
                )));
            };
            values.insert(key.clone(), Value::String(value.clone()));
        }
    }
    Ok(values)
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
