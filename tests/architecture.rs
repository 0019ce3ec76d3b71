//! The crate graph as `cargo metadata` reports it, checked against the codemap of
//! docs/architecture.md: a crate may depend only on the gridwatch crates its row
//! allows; rumqttd stays inside the broker crate; anyhow only in the binary.
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Normal (not dev or build) dependencies of every workspace package, by package name.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(ROOT)
        .output()
        .expect("running cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata's JSON");
    metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|package| {
            let normal = package["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().expect("name").to_string())
                .collect();
            (package["name"].as_str().expect("name").to_string(), normal)
        })
        .collect()
}

/// The codemap's rows: crate → the gridwatch crates it may depend on.
fn codemap() -> BTreeMap<String, BTreeSet<String>> {
    let doc = std::fs::read_to_string(Path::new(ROOT).join("docs/architecture.md")).expect("docs/architecture.md");
    let section = doc
        .split("\n## Codemap")
        .nth(1)
        .expect("docs/architecture.md has a ## Codemap section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter(|line| line.starts_with("| `gridwatch"))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let name = cells[0].trim_matches('`').to_string();
            let allowed = cells
                .last()
                .expect("a may-depend-on cell")
                .split(',')
                .map(|d| d.trim().trim_matches('`'))
                .filter(|d| !d.is_empty() && *d != "—")
                .map(|d| format!("gridwatch-{d}"))
                .collect();
            (name, allowed)
        })
        .collect()
}

#[test]
fn every_crate_depends_only_on_what_the_codemap_allows() {
    let codemap = codemap();
    let dependencies = dependencies();
    let mut wrong = Vec::new();
    for (package, deps) in &dependencies {
        let Some(allowed) = codemap.get(package) else {
            wrong.push(format!("{package} has no row in the codemap of docs/architecture.md"));
            continue;
        };
        for dep in deps.iter().filter(|d| d.starts_with("gridwatch")) {
            if !allowed.contains(dep) {
                wrong.push(format!(
                    "{package} depends on {dep}, which its codemap row does not allow"
                ));
            }
        }
    }
    for name in codemap.keys().filter(|name| !dependencies.contains_key(*name)) {
        wrong.push(format!("the codemap names {name}, which is not a workspace crate"));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn rumqttd_stays_inside_the_broker_crate_and_anyhow_inside_the_binary() {
    let dependencies = dependencies();
    let users = |dep: &str| -> BTreeSet<&str> {
        dependencies
            .iter()
            .filter(|(_, deps)| deps.contains(dep))
            .map(|(package, _)| package.as_str())
            .collect()
    };
    assert_eq!(users("rumqttd"), BTreeSet::from(["gridwatch-broker"]));
    assert_eq!(users("anyhow"), BTreeSet::from(["gridwatch"]));
}

#[test]
fn the_codemap_is_read_as_written() {
    // A table the parser silently misread would let anything through.
    let codemap = codemap();
    assert!(codemap.len() >= 12, "codemap rows: {codemap:?}");
    assert!(codemap["gridwatch-protocol"].is_empty());
    assert!(codemap["gridwatch-ingest"].contains("gridwatch-storage"));
}

#[test]
fn every_test_the_invariants_name_exists() {
    let doc = std::fs::read_to_string(Path::new(ROOT).join("docs/architecture.md")).expect("docs/architecture.md");
    let invariants = doc.split("\n## Invariants").nth(1).expect("an Invariants section");
    let invariants = invariants.split("\n## ").next().unwrap_or(invariants);
    // Test names are sentences: backticked snake_case with several words.
    let named: BTreeSet<&str> = invariants
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|word| word.matches('_').count() >= 3 && word.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        .collect();
    assert!(named.len() >= 10, "test names found: {named:?}");
    let mut sources = String::new();
    collect_rust(Path::new(ROOT), &mut sources);
    let missing: Vec<&&str> = named
        .iter()
        .filter(|name| !sources.contains(&format!("fn {name}(")) && !sources.contains(&format!("    {name},")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/architecture.md names tests that do not exist: {missing:?}"
    );
}

fn collect_rust(dir: &Path, into: &mut String) {
    for entry in std::fs::read_dir(dir).expect("a readable directory").flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() && name != "target" && !name.to_string_lossy().starts_with('.') {
            collect_rust(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
        }
    }
}
