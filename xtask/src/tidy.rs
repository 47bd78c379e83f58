//! Checks about the repository itself, run as ordinary tests (after rust-analyzer's `tidy.rs`).

use std::fs;
use std::path::{Path, PathBuf};

use xtask::workspace_root;

/// Every Rust file in the workspace, skipping build output.
fn rust_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    walk(&path, out);
                }
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(workspace_root(), &mut files);
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(workspace_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let files = rust_files();
    assert!(files.len() > 5, "the walk found too few files: {files:?}");
    let missing: Vec<String> = files
        .iter()
        .filter(|path| {
            let text = fs::read_to_string(path).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .map(|path| relative(path))
        .collect();
    assert!(missing.is_empty(), "files without a `//!` doc: {missing:?}");
}

#[test]
fn no_test_is_ignored_or_expected_to_panic() {
    // Built from pieces so that this file does not match itself.
    let forbidden = [concat!("#[", "ignore"), concat!("#[", "should_panic")];
    let offenders: Vec<String> = rust_files()
        .iter()
        .filter(|path| {
            let text = fs::read_to_string(path).unwrap_or_default();
            forbidden.iter().any(|attribute| text.contains(attribute))
        })
        .map(|path| relative(path))
        .collect();
    assert!(
        offenders.is_empty(),
        "ignored or should_panic tests: {offenders:?}"
    );
}

#[test]
fn every_crate_folder_is_named_after_its_package_and_uses_workspace_lints() {
    let manifest = fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
    let members: Vec<&str> = manifest
        .lines()
        .skip_while(|line| !line.starts_with("members"))
        .skip(1)
        .take_while(|line| !line.starts_with(']'))
        .map(|line| line.trim().trim_matches(|c| c == '"' || c == ','))
        .collect();
    assert!(members.len() >= 7, "members not found: {members:?}");
    for member in members {
        let crate_manifest =
            fs::read_to_string(workspace_root().join(member).join("Cargo.toml")).unwrap();
        assert!(
            crate_manifest.contains(&format!("name = \"{member}\"")),
            "{member}/Cargo.toml does not name the package {member}"
        );
        assert!(
            crate_manifest.contains("[lints]\nworkspace = true"),
            "{member}/Cargo.toml does not use the workspace lints"
        );
    }
}
