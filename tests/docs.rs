//! The documents agree with the code: the TypeScript `ErrorCode` union and
//! PROTOCOL.md's table of codes list exactly `ErrorCode::ALL`, and every
//! path in the README's layout section exists.

use std::collections::BTreeSet;
use std::path::Path;
use tidesync::error_code::Origin;
use tidesync::ErrorCode;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn all_codes() -> BTreeSet<String> {
    ErrorCode::ALL
        .iter()
        .map(|c| c.as_str().to_string())
        .collect()
}

#[test]
fn the_typescript_error_code_union_lists_every_code() {
    let dts = read("src/web/tidesync.d.ts");
    let start = dts
        .find("export type ErrorCode =")
        .expect("the .d.ts declares ErrorCode");
    let body = &dts[start..];
    let body = &body[..body.find(';').expect("the union ends")];
    let declared: BTreeSet<String> = body
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    assert_eq!(
        declared,
        all_codes(),
        "src/web/tidesync.d.ts ErrorCode must list ErrorCode::ALL"
    );
}

#[test]
fn protocol_md_tables_every_code_with_its_meaning() {
    let doc = read("PROTOCOL.md");
    let start = doc
        .find("### Every code")
        .expect("PROTOCOL.md has an '### Every code' section");
    let section = &doc[start..];
    let section = &section[..section[4..].find("\n## ").map_or(section.len(), |i| i + 4)];
    let mut listed = BTreeSet::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let wire = cells[1].trim_matches('`');
        let code = ErrorCode::parse(wire).unwrap_or_else(|| panic!("{wire} is not a code"));
        let from = match code.origin() {
            Origin::Server => "server",
            Origin::Client => "client",
        };
        let expected = format!("| `{wire}` | {from} | {} |", code.meaning());
        assert_eq!(line, expected, "PROTOCOL.md row for {wire}");
        listed.insert(wire.to_string());
    }
    assert_eq!(listed, all_codes(), "PROTOCOL.md lists ErrorCode::ALL");
}

#[test]
fn every_path_in_the_readme_layout_exists() {
    let readme = read("README.md");
    let start = readme
        .find("## Layout")
        .expect("README has a layout section");
    let section = &readme[start..];
    let block = section
        .split("```")
        .nth(1)
        .expect("the layout is a code block");
    let mut checked = 0;
    let mut dir = String::new();
    for line in block.lines().filter(|l| !l.trim().is_empty()) {
        let indent = line.len() - line.trim_start().len();
        // Entries are `name  description`; continuation lines are indented
        // further and hold only words.
        let first = line.split_whitespace().next().unwrap_or("");
        let looks_like_path = first.ends_with('/') || first.contains('.');
        if !looks_like_path || indent > 2 {
            continue;
        }
        // `a.rs b.rs c.rs` lists several files of the current directory.
        let names: Vec<&str> = line
            .trim_start()
            .split("  ")
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        for name in names {
            let path = if indent == 0 {
                dir = if name.ends_with('/') {
                    name.to_string()
                } else {
                    String::new()
                };
                name.to_string()
            } else {
                format!("{dir}{name}")
            };
            let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(&path);
            assert!(
                full.exists(),
                "README layout names {path}, which does not exist"
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "the layout names the tree ({checked} paths)");
}
