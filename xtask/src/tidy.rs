//! Checks about the repository itself, run as ordinary tests (after rust-analyzer's `tidy.rs`).

use std::fs;
use std::path::{Path, PathBuf};

use xtask::workspace_root;

/// Every Rust file in the workspace, skipping build output.
fn rust_files() -> Vec<PathBuf> {
    files_ending_in(".rs")
}

/// Every file in the workspace whose name ends in `suffix`, skipping build output.
fn files_ending_in(suffix: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, suffix: &str, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    walk(&path, suffix, out);
                }
            } else if name.ends_with(suffix) {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(workspace_root(), suffix, &mut files);
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

/// The workspace's members, by their folders (each holds a `Cargo.toml`).
fn member_manifests() -> Vec<(String, String)> {
    let Ok(entries) = fs::read_dir(workspace_root()) else {
        return Vec::new();
    };
    let mut manifests: Vec<(String, String)> = entries
        .flatten()
        .filter(|entry| entry.path().is_dir())
        .filter_map(|entry| {
            let text = fs::read_to_string(entry.path().join("Cargo.toml")).ok()?;
            Some((entry.file_name().to_string_lossy().into_owned(), text))
        })
        .collect();
    manifests.sort();
    manifests
}

#[test]
fn every_workspace_dependency_is_used_by_a_member() {
    let root = fs::read_to_string(workspace_root().join("Cargo.toml")).expect("the root manifest");
    let declared: Vec<&str> = root
        .lines()
        .skip_while(|line| line.trim() != "[workspace.dependencies]")
        .skip(1)
        .take_while(|line| !line.trim_start().starts_with('['))
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once('=').map(|(name, _)| name.trim()))
        .filter(|name| !name.is_empty())
        .collect();
    assert!(declared.len() > 10, "parsed {declared:?}");
    let manifests = member_manifests();
    let unused: Vec<&&str> = declared
        .iter()
        .filter(|name| {
            !manifests.iter().any(|(_, text)| {
                text.lines().any(|line| {
                    let line = line.trim_start();
                    line.starts_with(&format!("{name}.workspace"))
                        || line.starts_with(&format!("{name} = {{ workspace"))
                })
            })
        })
        .collect();
    assert!(
        unused.is_empty(),
        "declared in [workspace.dependencies] but used by no member: {unused:?}"
    );
}

#[test]
fn every_markdown_file_the_code_and_docs_name_exists() {
    let mut files = rust_files();
    for name in ["README.md", "MIGRATING.md"] {
        files.push(workspace_root().join(name));
    }
    for (member, _) in member_manifests() {
        files.push(workspace_root().join(member).join("README.md"));
    }
    // Written by `cargo xtask bench`, under target/.
    let generated = ["report.md"];
    let existing: Vec<String> = files_ending_in(".md")
        .iter()
        .filter_map(|path| path.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    let mut missing = Vec::new();
    for file in &files {
        let Ok(text) = fs::read_to_string(file) else {
            continue;
        };
        let named = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')))
            .filter(|token| token.ends_with(".md") && token.len() > 3);
        for token in named {
            let name = token.rsplit('/').next().unwrap_or(token);
            if !existing.iter().any(|e| e == name) && !generated.contains(&name) {
                missing.push(format!("{}: {token}", relative(file)));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "names of files the repository does not have: {missing:?}"
    );
}
