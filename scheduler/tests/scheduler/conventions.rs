//! Conventions the compiler does not check: a function with more than three flags or
//! optional arguments takes a params struct, so no code silences clippy's
//! `too_many_arguments` lint.

use std::path::{Path, PathBuf};

/// The lint allowance, assembled so this file does not contain it.
const ALLOWANCE: &str = concat!("allow(clippy::", "too_many_arguments)");

/// The workspace's `.rs` files under `dir`, skipping build output and hidden folders.
fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with('.') || name == "target" || name == "node_modules" {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, found)?;
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
    Ok(())
}

#[test]
fn no_function_silences_too_many_arguments() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for crate_dir in [
        "core",
        "store",
        "scheduler",
        "worker",
        "web",
        "src",
        "tests",
    ] {
        rust_files(&root.join(crate_dir), &mut files)?;
    }
    assert!(files.len() > 20, "found only {} .rs files", files.len());
    let mut offenders = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file)?;
        for (number, line) in text.lines().enumerate() {
            if line.replace(' ', "").contains(ALLOWANCE) {
                offenders.push(format!("{}:{}", file.display(), number + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "give these functions a params struct instead of silencing the lint: {offenders:?}"
    );
    Ok(())
}
