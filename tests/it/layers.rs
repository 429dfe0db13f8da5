//! The import graph has rooms, not one circle: infrastructure knows no capability, a
//! capability knows only the ones it builds on, and only `app` (and the commands above
//! it) knows them all. Read from the source itself, so that a new import across a wall
//! fails here, naming the file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What every part shares; none of it may name a capability or `app`.
const INFRASTRUCTURE: &[&str] = &[
    "bus",
    "config",
    "context",
    "decode",
    "events",
    "health",
    "http",
    "jobs",
    "nodes",
    "outbound",
    "sealing",
    "service",
    "storage",
    "telemetry",
];

/// Each capability and the capabilities it builds on (besides infrastructure).
const CAPABILITIES: &[(&str, &[&str])] = &[
    ("tenancy", &[]),
    ("contexts", &["tenancy"]),
    ("mcp", &["tenancy", "contexts"]),
    ("gateway", &["tenancy", "mcp"]),
    ("agents", &["tenancy", "mcp"]),
    ("api", &["tenancy", "contexts", "gateway", "agents"]),
    ("edge", &["mcp"]),
];

/// Wiring and commands: they may name anything.
const TOP: &[&str] = &["app", "cli", "lib", "main"];

/// The top-level modules each top-level module names with `crate::`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(&src).unwrap();
            let first = relative.components().next().unwrap().as_os_str();
            let module = first.to_str().unwrap().trim_end_matches(".rs").to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            let named = graph.entry(module.clone()).or_default();
            for (at, _) in text.match_indices("crate::") {
                let rest = &text[at + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    !name.is_empty() || !rest.starts_with('{'),
                    "{}: write `use crate::module::...` once per module, so the walls can be read",
                    relative.display()
                );
                if !name.is_empty() && name != module {
                    named.insert(name);
                }
            }
        }
    }
    graph
}

#[test]
fn infrastructure_knows_no_capability_and_capabilities_only_what_they_build_on() {
    let graph = imports();
    let known: BTreeSet<&str> = INFRASTRUCTURE
        .iter()
        .chain(CAPABILITIES.iter().map(|(c, _)| c))
        .chain(TOP)
        .copied()
        .collect();
    let mut breaches = Vec::new();
    for (module, named) in &graph {
        assert!(
            known.contains(module.as_str()),
            "src/{module} is in no room: add it to INFRASTRUCTURE or CAPABILITIES in tests/it/layers.rs"
        );
        if TOP.contains(&module.as_str()) {
            continue;
        }
        let builds_on: &[&str] = CAPABILITIES
            .iter()
            .find(|(c, _)| c == module)
            .map_or(&[], |(_, on)| on);
        for name in named {
            let allowed =
                INFRASTRUCTURE.contains(&name.as_str()) || builds_on.contains(&name.as_str());
            if !allowed && known.contains(name.as_str()) {
                breaches.push(format!("{module} -> {name}"));
            }
        }
    }
    assert!(
        breaches.is_empty(),
        "imports across a wall (infrastructure must not name a capability; a capability only those it builds on): {breaches:?}"
    );
}

#[test]
fn the_capabilities_build_on_each_other_without_a_circle() {
    // Kahn's algorithm over the declared rooms: every capability is placed.
    let mut placed: Vec<&str> = Vec::new();
    while placed.len() < CAPABILITIES.len() {
        let next = CAPABILITIES
            .iter()
            .find(|(c, on)| !placed.contains(c) && on.iter().all(|d| placed.contains(d)));
        let Some((c, _)) = next else {
            panic!("the capabilities build on each other in a circle: placed only {placed:?}");
        };
        placed.push(c);
    }
    assert_eq!(placed.first(), Some(&"tenancy"));
}
