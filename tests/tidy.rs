//! The house rules, checked mechanically (after rust-analyzer's `tidy.rs`): every Rust file
//! says what it is for in a `//!` line; SQL text names no task or run state (states are
//! bound as parameters); no source file grows past 1,000 lines before its tests; no test
//! is `#[ignore]`d; no `unwrap()` or `expect(` outside tests, where it would turn outside
//! input into a panic; no function silences clippy's `too_many_arguments`; and the shared
//! test kit is only ever a dev-dependency.

use std::path::{Path, PathBuf};

use nightshift_core::state::{RunState, TaskState};

/// Files of the workspace's own source, relative to the repository root.
fn rust_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if path.is_dir() {
                // Build output, dependencies and generated files are not ours to tidy.
                if !matches!(
                    name,
                    "target" | ".git" | "node_modules" | "artifacts" | "corpus" | "coverage"
                ) {
                    stack.push(path);
                }
            } else if name.ends_with(".rs") {
                out.push(path.strip_prefix(root).expect("under root").to_path_buf());
            }
        }
    }
    out.sort();
    assert!(out.len() > 100, "found only {} Rust files", out.len());
    out
}

fn read(path: &Path) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// Test code: integration tests, benchmarks, fuzz targets, and `tests.rs` modules.
fn is_test_file(path: &Path) -> bool {
    let text = path.to_string_lossy();
    text.starts_with("tests/")
        || text.starts_with("benches/")
        || text.starts_with("fuzz/")
        // the shared test kit: a dev-dependency only
        || text.starts_with("testkit/")
        || text.contains("/tests/")
        || text.ends_with("/tests.rs")
}

/// The lines of a source file before its `#[cfg(test)]` module (the whole file if none).
fn non_test_lines(source: &str) -> Vec<&str> {
    source
        .lines()
        .take_while(|line| line.trim() != "#[cfg(test)]")
        .collect()
}

/// Fails listing every offence, so one run shows all of them.
fn report(rule: &str, offences: Vec<String>) {
    assert!(offences.is_empty(), "{rule}:\n  {}", offences.join("\n  "));
}

#[test]
fn every_file_starts_with_a_module_doc() {
    let offences = rust_files()
        .into_iter()
        .filter(|path| !read(path).starts_with("//!"))
        .map(|path| path.display().to_string())
        .collect();
    report("files without a `//!` first line", offences);
}

#[test]
fn no_source_file_is_over_1000_lines() {
    let offences = rust_files()
        .into_iter()
        .filter(|path| !is_test_file(path))
        .filter_map(|path| {
            let lines = non_test_lines(&read(&path)).len();
            (lines > 1000).then(|| {
                format!(
                    "{}: {lines} lines; split it along its seams",
                    path.display()
                )
            })
        })
        .collect();
    report("source files over 1,000 lines (tests excluded)", offences);
}

#[test]
fn no_test_is_ignored() {
    let mut offences = Vec::new();
    for path in rust_files() {
        for (n, line) in read(&path).lines().enumerate() {
            if line.trim_start().starts_with("#[ignore") {
                offences.push(format!("{}:{}", path.display(), n + 1));
            }
        }
    }
    report(
        "ignored tests (a test that never runs cannot fail)",
        offences,
    );
}

#[test]
fn no_unwrap_or_expect_outside_tests() {
    let mut offences = Vec::new();
    for path in rust_files().into_iter().filter(|p| !is_test_file(p)) {
        let source = read(&path);
        for (n, line) in non_test_lines(&source).into_iter().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            if code.contains(".unwrap()") || code.contains(".expect(") {
                offences.push(format!("{}:{}: {}", path.display(), n + 1, code));
            }
        }
    }
    report(
        "unwrap()/expect( outside tests (return an error that names what failed)",
        offences,
    );
}

#[test]
fn sql_text_names_no_state() {
    // States are bound as parameters (or, where a partial index needs a literal, written
    // with `TaskState::…as_str()` in a `format!`), never typed into SQL text, so renaming
    // a state cannot leave a query behind.
    let mut offences = Vec::new();
    for path in rust_files()
        .into_iter()
        .filter(|p| p.starts_with("store/src"))
    {
        let source = read(&path);
        for (n, line) in non_test_lines(&source).into_iter().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            let states = TaskState::ALL
                .iter()
                .map(|s| s.as_str())
                .chain(RunState::ALL.iter().map(|s| s.as_str()));
            for state in states {
                if code.contains(&format!("'{state}'")) {
                    offences.push(format!("{}:{}: {}", path.display(), n + 1, code));
                }
            }
        }
    }
    report("state literals in SQL text", offences);
}

#[test]
fn no_function_silences_too_many_arguments() {
    // More than three flags or optional arguments take a params struct. The allowance is
    // assembled so this file does not contain it.
    let allowance = concat!("allow(clippy::", "too_many_arguments)");
    let mut offences = Vec::new();
    for path in rust_files() {
        for (n, line) in read(&path).lines().enumerate() {
            if line.replace(' ', "").contains(allowance) {
                offences.push(format!("{}:{}", path.display(), n + 1));
            }
        }
    }
    report(
        "functions silencing too_many_arguments (give them a params struct)",
        offences,
    );
}

/// The lines of a `Cargo.toml` that make `nightshift-testkit` a dependency outside
/// `[dev-dependencies]` (and the workspace's own list of its members).
fn testkit_outside_dev_dependencies(manifest: &str) -> Vec<String> {
    let mut section = "";
    let mut offences = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if line.starts_with("nightshift-testkit")
            && !matches!(section, "[dev-dependencies]" | "[workspace.dependencies]")
        {
            offences.push(format!("{section} {line}"));
        }
    }
    offences
}

#[test]
fn testkit_is_only_a_dev_dependency() {
    // The check itself can fail: a normal or build dependency on the kit is caught.
    let bad = "[dependencies]\nnightshift-testkit.workspace = true\n\
               [build-dependencies]\nnightshift-testkit = { path = \"../testkit\" }\n";
    assert_eq!(testkit_outside_dev_dependencies(bad).len(), 2);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = read(Path::new("Cargo.toml"));
    let members: Vec<&str> = workspace
        .lines()
        .find_map(|line| line.trim().strip_prefix("members = ["))
        .expect("the workspace lists its members")
        .split('"')
        .skip(1)
        .step_by(2)
        .collect();
    assert!(members.contains(&"testkit"), "members: {members:?}");
    let mut offences = Vec::new();
    for dir in std::iter::once("").chain(members) {
        let path = root.join(dir).join("Cargo.toml");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for offence in testkit_outside_dev_dependencies(&text) {
            offences.push(format!("{}: {offence}", path.display()));
        }
    }
    report(
        "nightshift-testkit outside [dev-dependencies] (test fixtures must not ship)",
        offences,
    );
}
