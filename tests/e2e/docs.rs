//! The README and the code comments tell the truth about the repository:
//! the Layout table names every crate once and only paths that exist, no
//! comment cites a document the repository does not have, and the screening
//! file table names every instrument's columns and codings.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).expect("README.md")
}

/// The rows of the Markdown table that follows `heading`, as cells.
fn table_after(text: &str, heading: &str) -> Vec<Vec<String>> {
    let start = text.find(heading).unwrap_or_else(|| panic!("no {heading}"));
    text[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

fn unquote(cell: &str) -> &str {
    cell.trim_matches('`')
}

#[test]
fn the_layout_table_lists_every_crate_once_and_only_what_exists() {
    let rows = table_after(&readme(), "## Layout");
    let mut seen = BTreeSet::new();
    for row in &rows {
        let path = unquote(&row[0]).trim_end_matches('/');
        assert!(seen.insert(path.to_string()), "{path} listed twice");
        assert!(root().join(path).exists(), "{path} does not exist");
        assert!(!row[1].contains("not yet wired"), "stale row: {row:?}");
    }
    for entry in std::fs::read_dir(root().join("crates")).expect("crates/") {
        let name = entry.expect("entry").file_name();
        let path = format!("crates/{}", name.to_string_lossy());
        assert!(seen.contains(&path), "{path} missing from the Layout table");
    }
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if path.is_dir() {
            if !matches!(name.as_deref(), Some("target" | ".git" | ".tools")) {
                sources(&path, out);
            }
        } else if path.extension().is_some_and(|e| {
            ["rs", "toml", "md", "sh", "proto", "service"].contains(&&*e.to_string_lossy())
        }) {
            out.push(path);
        }
    }
}

#[test]
fn no_file_cites_a_design_document_the_repository_does_not_have() {
    let mut files = Vec::new();
    for dir in ["crates", "deploy", "proto", "scripts", "tests"] {
        sources(&root().join(dir), &mut files);
    }
    files.push(root().join("README.md"));
    let missing = "DESIGN".to_string() + ".md";
    for file in files {
        if file.ends_with("tests/e2e/docs.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            !text.contains(&missing),
            "{} cites {missing}, which is not in the repository",
            file.display()
        );
    }
}

#[test]
fn the_readme_names_every_instruments_columns_and_codings() {
    let text = readme();
    let rows = table_after(&text, "| instrument (`--instrument`) |");
    for instrument in sanyu_screening::catalogue().instruments() {
        let row = rows
            .iter()
            .find(|row| {
                sanyu_screening::instrument(unquote(&row[0]))
                    .is_ok_and(|found| found.id() == instrument.id())
            })
            .unwrap_or_else(|| panic!("no README row for {}", instrument.name()));
        let columns = format!("{} {}", row[1], row[2]);
        let keys: Vec<String> = instrument.items().iter().map(|i| i.key.clone()).collect();
        let numbered: Vec<u32> = keys.iter().filter_map(|k| k.parse().ok()).collect();
        let last = numbered.iter().max().expect("numbered items");
        assert!(
            columns.contains(&format!("`item_1`…`item_{last}`")),
            "{}: {columns}",
            instrument.name()
        );
        for key in keys.iter().filter(|k| k.parse::<u32>().is_err()) {
            assert!(
                columns.contains(&format!("item_{key}")),
                "{}: {key}",
                instrument.name()
            );
        }
        for key in instrument.optional_items() {
            assert!(
                columns.contains(&format!("item_{key}")),
                "{}: {key}",
                instrument.name()
            );
        }
        for coding in instrument.codings() {
            assert!(
                row[3].contains(&format!("`{coding}`")),
                "{}: coding {coding} not named",
                instrument.name()
            );
        }
    }
}

/// sqlx 0.9.0 opened PostgreSQL sockets without `TCP_NODELAY` (a ~40 ms stall
/// per large statement over TLS; README, design notes); 0.9.1 sets it. The
/// README's TLS advice depends on never going back.
#[test]
fn sqlx_is_a_release_that_sets_tcp_nodelay() {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).expect("Cargo.lock");
    let mut versions = lock
        .split("[[package]]")
        .filter(|p| p.contains("\nname = \"sqlx-core\"\n"))
        .filter_map(|p| p.split("\nversion = \"").nth(1)?.split('"').next())
        .map(|v| {
            v.split('.')
                .map(|n| n.parse::<u32>().unwrap_or(0))
                .collect::<Vec<_>>()
        })
        .peekable();
    assert!(versions.peek().is_some(), "sqlx-core not in Cargo.lock");
    for v in versions {
        assert!(v >= vec![0, 9, 1], "sqlx-core {v:?} lacks TCP_NODELAY");
    }
}
