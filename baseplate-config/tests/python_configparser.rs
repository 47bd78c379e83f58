//! INI files read as baseplate.py 2.7.1's `baseplate-serve` reads them: every `*.ini` under
//! `fixtures/configparser/` gives the `[app:main]` keys and values Python gave, or fails where
//! Python failed, with the same kind of error at the same line (`fixtures/configparser/capture.py`
//! wrote what Python did). Each fixture has one error at most: the reader stops at the first,
//! where Python reports a line it cannot read only at the end of the file (so a key set twice
//! further down is the error it names).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;

use baseplate_config::{ConfigError, RawConfig};
use serde_json::Value as Json;

#[test]
fn ini_files_read_as_baseplate_py_reads_them() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/configparser");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "ini"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{files:?}");

    for file in files {
        let expected: Json = serde_json::from_str(
            &std::fs::read_to_string(file.with_extension("expected.json")).unwrap(),
        )
        .unwrap();
        let name = file.display();
        let read = RawConfig::from_ini_file(&file);
        match (expected.get("app"), read) {
            (Some(app), Ok(config)) => {
                let python: BTreeMap<&str, &str> = app
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(key, value)| (key.as_str(), value.as_str().unwrap()))
                    .collect();
                let rust: BTreeMap<&str, &str> = config
                    .iter()
                    .map(|(key, value)| (key, value.as_str().unwrap()))
                    .collect();
                assert_eq!(rust, python, "{name}");
            }
            (None, Err(error)) => {
                let python = expected["error"].as_str().unwrap();
                match (python, &error) {
                    ("NoSectionError", ConfigError::SectionNotFound { .. }) => {}
                    (_, ConfigError::IniSyntax { message, .. }) => {
                        let line = expected["line"].as_u64().unwrap();
                        let kinds: &[&str] = match python {
                            "DuplicateOptionError" => &["is set again"],
                            "DuplicateSectionError" => &["is opened again"],
                            "MissingSectionHeaderError" => &["before the first [section] header"],
                            "ParsingError" => &[
                                "expected \"key = value\"",
                                "has no key",
                                "is not a section header",
                            ],
                            other => panic!("{name}: no counterpart for Python's {other}"),
                        };
                        let at_line = [format!("line {line}: "), format!("line {line} in ")];
                        assert!(
                            at_line.iter().any(|at| message.starts_with(at))
                                && kinds.iter().any(|kind| message.contains(kind)),
                            "{name}: Python's {python} was on line {line}; ours: {error}"
                        );
                    }
                    _ => panic!("{name}: Python raised {python}; ours: {error}"),
                }
            }
            (Some(_), Err(error)) => panic!("{name}: Python read it; ours failed: {error}"),
            (None, Ok(config)) => panic!(
                "{name}: Python raised {}; ours read {:?}",
                expected["error"],
                config.keys().collect::<Vec<_>>()
            ),
        }
    }
}
