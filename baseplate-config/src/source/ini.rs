//! INI text read as `baseplate-serve` reads a config file: Python's `configparser.RawConfigParser`
//! with its defaults, which are strict.
//!
//! - Lines end at `\n`, `\r\n` or a lone `\r` (Python's universal newlines); white space is what
//!   Python's `str.strip()` strips.
//! - `key = value` or `key: value`, split at the first `=` or `:`; key and value trimmed; keys
//!   lowercased (Python's `optionxform`, by Rust's Unicode tables: only letters added to Unicode
//!   after Python's own version lowercase differently), section names kept as written.
//! - A line whose first non-blank character is `#` or `;` is a comment; there are no inline
//!   comments, quotes or escapes.
//! - A line indented deeper than its key's line continues the key's value (joined with newlines);
//!   blank lines inside a value are kept, trailing ones dropped, comments skipped.
//! - `[name]` opens a section; text after its last `]` is ignored.
//! - Errors: a key set twice in a section (whatever its case), a section opened twice
//!   (`[DEFAULT]` may be), anything before the first section header, a line with no `=` or `:`,
//!   an empty key. Each names its line.
//!
//! Unlike Python, a UTF-8 byte order mark before the text is skipped (editors on Windows add one
//! silently, and it would otherwise hide the first section header), and a line starting with `[`
//! that is no header is an error (Python reads `[app:other` as the key `[app`).

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

/// Python's name for the section whose keys apply to every section.
pub(super) const DEFAULT_SECTION: &str = "DEFAULT";

/// One section: the line it opened on, and its keys.
#[derive(Debug)]
pub(super) struct Section {
    line: usize,
    keys: BTreeMap<String, Setting>,
}

impl Section {
    /// The section's keys (lowercase) and their values.
    pub(super) fn values(&self) -> impl Iterator<Item = (&str, String)> {
        self.keys
            .iter()
            .map(|(key, setting)| (key.as_str(), setting.value()))
    }
}

/// Reads every section of `text`; an error names its line.
pub(super) fn sections(text: &str) -> Result<BTreeMap<&str, Section>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut sections: BTreeMap<&str, Section> = BTreeMap::new();
    // The section being read, and the key whose value a deeper-indented line continues.
    let mut section: Option<&str> = None;
    let mut key: Option<String> = None;
    let mut key_indent = 0;
    for (index, line) in lines(text).enumerate() {
        let number = index + 1;
        let content = line.trim_matches(is_space);
        let continued = section
            .zip(key.as_deref())
            .and_then(|(section, key)| sections.get_mut(section)?.keys.get_mut(key));
        if content.is_empty() || content.starts_with(['#', ';']) {
            if content.is_empty()
                && let Some(setting) = continued
            {
                setting.lines.push(String::new());
            }
            continue;
        }
        let indent = line.chars().take_while(|&c| is_space(c)).count();
        if let Some(setting) = continued
            && indent > key_indent
        {
            setting.lines.push(content.to_owned());
            continue;
        }
        key_indent = indent;
        key = None;

        if let Some(header) = content.strip_prefix('[') {
            let Some(name) = header
                .rfind(']')
                .filter(|&end| end > 0)
                .map(|end| &header[..end])
            else {
                return Err(format!(
                    "line {number}: a line starting with \"[\" is not a section header, expected \
                     \"[name]\""
                ));
            };
            match sections.entry(name) {
                Entry::Occupied(earlier) if name != DEFAULT_SECTION => {
                    return Err(format!(
                        "line {number}: section [{name}] is opened again (first on line {})",
                        earlier.get().line
                    ));
                }
                Entry::Occupied(_) => {}
                Entry::Vacant(new) => {
                    new.insert(Section {
                        line: number,
                        keys: BTreeMap::new(),
                    });
                }
            }
            section = Some(name);
            continue;
        }

        // A line's text may be a secret (a value's next line not indented): errors name keys
        // only where a delimiter sets them apart.
        let Some(at) = content.find(['=', ':']) else {
            return Err(match section {
                Some(section) => format!(
                    "line {number} in [{section}]: expected \"key = value\" (a line continuing a \
                     value is indented deeper than its key)"
                ),
                None => format!("line {number}: text before the first [section] header"),
            });
        };
        let (name, value) = (
            content[..at].trim_end_matches(is_space),
            content[at + 1..].trim_start_matches(is_space),
        );
        let Some((section, keys)) =
            section.and_then(|section| Some((section, &mut sections.get_mut(section)?.keys)))
        else {
            return Err(format!(
                "line {number}: key \"{name}\" comes before the first [section] header"
            ));
        };
        if name.is_empty() {
            return Err(format!(
                "line {number}: a value in [{section}] has no key before its \"{}\"",
                &content[at..=at]
            ));
        }
        let name = name.to_lowercase();
        match keys.entry(name.clone()) {
            Entry::Occupied(earlier) => {
                return Err(format!(
                    "line {number}: key \"{name}\" in [{section}] is set again (first on line {})",
                    earlier.get().line
                ));
            }
            Entry::Vacant(new) => {
                new.insert(Setting {
                    line: number,
                    lines: vec![value.to_owned()],
                });
            }
        }
        key = Some(name);
    }
    Ok(sections)
}

/// One key's value as read so far: its lines, and the line the key was set on.
#[derive(Debug)]
struct Setting {
    line: usize,
    lines: Vec<String>,
}

impl Setting {
    /// The value: its lines joined with newlines, trailing blank ones dropped.
    fn value(&self) -> String {
        self.lines.join("\n").trim_end_matches(is_space).to_owned()
    }
}

/// The lines of `text` as Python reads a file in text mode: `\n`, `\r\n` and a lone `\r` each
/// end one.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = (!text.is_empty()).then_some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        let Some(end) = current.find(['\n', '\r']) else {
            rest = None;
            return Some(current);
        };
        let next = end
            + if current[end..].starts_with("\r\n") {
                2
            } else {
                1
            };
        rest = (next < current.len()).then(|| &current[next..]);
        Some(&current[..end])
    })
}

/// Whether Python's `str.strip()` strips `c`: Unicode's white space, and the four ASCII
/// separators (file, group, record, unit) Python counts as such.
fn is_space(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\u{1c}'..='\u{1f}')
}
