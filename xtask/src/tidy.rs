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
fn nothing_cites_files_outside_the_repository() {
    let outside = ["DEVELOPERS.md", "../shared/"];
    let mut files = rust_files();
    for name in ["README.md", "MIGRATING.md"] {
        files.push(workspace_root().join(name));
    }
    for (member, _) in member_manifests() {
        files.push(workspace_root().join(member).join("README.md"));
    }
    let citing: Vec<String> = files
        .iter()
        .filter(|file| {
            fs::read_to_string(file).is_ok_and(|text| outside.iter().any(|o| text.contains(o)))
        })
        .map(|file| relative(file))
        .collect();
    // This file names them to look for them.
    let citing: Vec<&String> = citing.iter().filter(|f| !f.ends_with("tidy.rs")).collect();
    assert!(citing.is_empty(), "{citing:?}");
}
