//! The assignment engine's choice alone (no I/O): one task against 10,000 registered
//! agents (online, a few capabilities each, some busy, some with history), per strategy,
//! p50 and p99 over many choices. What `agents::dispatch` runs for each queued task.
//!
//!   cargo bench --bench agents_engine -- [AGENTS] [CHOICES]
//!
//! Prints JSON and ends by itself.

use std::time::{Duration, Instant};

use devmesh::agents::engine::{History, Needs, Snapshot, Tuning, choose};
use devmesh::agents::model::Strategy;
use devmesh::config::AgentsConfig;
use serde_json::json;

const CAPABILITIES: [&str; 8] = [
    "code_review",
    "security_scan",
    "k8s_deploy",
    "terraform",
    "incident_triage",
    "docs",
    "testing",
    "sql",
];

fn fleet(n: usize) -> Vec<Snapshot> {
    (0..n)
        .map(|i| {
            let caps = (0..3)
                .map(|k| {
                    let name = CAPABILITIES[(i * 7 + k * 3) % CAPABILITIES.len()];
                    (name.to_string(), ((i * 31 + k * 17) % 100) as f64 / 100.0)
                })
                .collect();
            Snapshot {
                id: format!("agent-{i:05}"),
                capabilities: caps,
                tags: vec![if i % 2 == 0 { "prod" } else { "dev" }.to_string()],
                load: (i % 4) as i32,
                capacity: 4,
                circuit_open: i % 97 == 0,
                half_open: false,
                expected_cost: (i % 50) as f64 / 100.0,
                history: (i % 3 != 0).then_some(History {
                    completed: (i % 40) as i64,
                    finished: 40,
                    latency_p50_ms: Some(100.0 + (i % 900) as f64),
                }),
                last_assigned_ms: Some(i as i64 * 13 % 100_000),
            }
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let agents = args.first().copied().unwrap_or(10_000);
    let choices = args.get(1).copied().unwrap_or(2_000);
    let fleet = fleet(agents);
    let config = AgentsConfig::default();
    let tuning = Tuning {
        weights: config.weights,
        exploration: config.exploration,
    };
    let needs = Needs {
        required: vec!["code_review".into(), "k8s_deploy".into()],
        preferred_tags: vec!["prod".into()],
        max_cost_usd: Some(0.4),
        ..Needs::default()
    };
    let mut results = serde_json::Map::new();
    for strategy in [
        Strategy::Auto,
        Strategy::RoundRobin,
        Strategy::LeastLoaded,
        Strategy::CapabilityMatch,
        Strategy::Performance,
        Strategy::Cost,
    ] {
        let mut samples = Vec::with_capacity(choices);
        let mut eligible_seen = 0;
        for i in 0..choices {
            let roll = (i % 100) as f64 / 100.0;
            let started = Instant::now();
            let decision = choose(&needs, strategy, &fleet, tuning, roll);
            samples.push(started.elapsed());
            if let Ok(d) = &decision {
                eligible_seen = d.candidates.len();
            }
            std::hint::black_box(decision).ok();
        }
        samples.sort();
        results.insert(
            strategy.as_str().to_string(),
            json!({ "p50_ms": percentile(&samples, 0.5), "p99_ms": percentile(&samples, 0.99), "top_candidates": eligible_seen }),
        );
    }
    println!(
        "{}",
        serde_json::to_string_pretty(
            &json!({ "agents": agents, "choices_per_strategy": choices, "results": results })
        )
        .unwrap()
    );
}
