//! The assignment engine's choice, with no I/O: from a task's needs and a snapshot of the
//! agents, who is eligible and which one the task's strategy picks. `dispatch` feeds it
//! and writes its choice; `benches/agents_engine.rs` measures it over 10,000 agents.
//!
//! Eligible: active, online, every required capability, a free slot (one only, while the
//! circuit is half-open), circuit not open, expected cost within `max_cost_usd`, and the
//! pinned agent when the task names one. Then, by strategy:
//! - `round_robin`: the eligible agent assigned least recently (never first), which
//!   rotates over them however the set changes;
//! - `least_loaded`: the lowest share of slots in use, then the fewest tasks;
//! - `capability_match`: the highest mean proficiency on the required capabilities, then
//!   the most preferred tags;
//! - `performance`: the best score for the task's type: success rate smoothed as
//!   (completed + 1) / (finished + 2), less up to 0.2 for latency (the slowest median
//!   of the candidates loses 0.2); an agent with no history for the type scores as
//!   unknown, and the exploration share of choices goes to such agents;
//! - `cost`: the lowest expected cost (its mean cost per finished task when it has
//!   finished some, else `per_task_usd` + `per_1k_tokens_usd`);
//! - `auto`: the weighted sum (weights in `[agents.weights]`) of four parts from 0 to 1:
//!   capability match, free share of slots, performance, and cost (cheapest = 1).
//!
//! Ties go to the agent assigned least recently, then the lowest id.

use serde::Serialize;

use super::model::Strategy;
use crate::config::EngineWeights;

/// What a task asks of its agent.
#[derive(Debug, Clone, Default)]
pub struct Needs {
    pub required: Vec<String>,
    pub preferred_tags: Vec<String>,
    pub max_cost_usd: Option<f64>,
    pub pinned: Option<String>,
    /// Agents not to offer it to (they rejected it).
    pub excluded: Vec<String>,
    /// For `round_robin`: the agent the rotation of this task's capability set chose
    /// last ([`rotation_key`]); it goes on from the next agent by id, after the last
    /// one back to the first.
    pub rotation_after: Option<String>,
}

/// The capability set a `round_robin` rotation belongs to: the required capabilities,
/// sorted and joined by commas (`""` for none).
pub fn rotation_key(required: &[String]) -> String {
    let mut names: Vec<&str> = required.iter().map(String::as_str).collect();
    names.sort_unstable();
    names.dedup();
    names.join(",")
}

/// An agent as the engine sees it (already active and online).
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub id: String,
    /// (name, proficiency 0..1) of each capability.
    pub capabilities: Vec<(String, f64)>,
    pub tags: Vec<String>,
    pub load: i32,
    pub capacity: i32,
    /// Whether its circuit is open now; half-open when it has reached the failure
    /// threshold but is no longer open.
    pub circuit_open: bool,
    pub half_open: bool,
    /// Expected cost of one task, in US dollars.
    pub expected_cost: f64,
    /// For the task's type: (completed, finished) and the median latency.
    pub history: Option<History>,
    /// Milliseconds since the epoch; `None` if never assigned.
    pub last_assigned_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy)]
pub struct History {
    pub completed: i64,
    pub finished: i64,
    pub latency_p50_ms: Option<f64>,
}

/// Why no agent was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoAgent {
    /// No active, online agent has these capabilities.
    NoCapable(Vec<String>),
    /// Capable agents exist, but none is free, affordable or closed-circuit now.
    AllBusy { capable: usize },
    /// The pinned agent is not active and online, or lacks a capability.
    PinnedUnavailable(String),
    /// The online agents able to take it rejected it.
    AllRejected(usize),
}

impl NoAgent {
    /// What `GET /tasks/{id}` says of a task that waits.
    pub fn reason(&self) -> String {
        match self {
            NoAgent::NoCapable(caps) if caps.is_empty() => "no active agent is online".into(),
            NoAgent::NoCapable(caps) => {
                format!(
                    "no active agent online has capabilities [{}]",
                    caps.join(", ")
                )
            }
            NoAgent::AllBusy { capable } => format!(
                "{capable} capable agent(s) online, none with a free slot, a closed circuit and a cost within max_cost_usd"
            ),
            NoAgent::AllRejected(n) => {
                format!("{n} online agent(s) able to take it rejected it; it waits for another")
            }
            NoAgent::PinnedUnavailable(id) => {
                format!(
                    "the pinned agent {id} is not active and online with the required capabilities, \
                     or has no free slot, an open circuit or an expected cost within max_cost_usd"
                )
            }
        }
    }
}

/// One candidate's score in a decision.
#[derive(Debug, Clone, Serialize)]
pub struct Scored {
    pub agent_id: String,
    pub score: f64,
}

/// The engine's choice.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub agent_id: String,
    /// The strategy that decided (`auto` names itself).
    pub strategy: Strategy,
    /// The best candidates, best first (at most five), with their scores.
    pub candidates: Vec<Scored>,
    /// Whether an untried agent was picked to explore (`performance`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub explored: bool,
}

/// The engine's settings.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    pub weights: EngineWeights,
    pub exploration: f64,
}

fn proficiency_on(agent: &Snapshot, required: &[String]) -> f64 {
    if required.is_empty() {
        return 1.0;
    }
    let sum: f64 = required
        .iter()
        .map(|r| {
            agent
                .capabilities
                .iter()
                .find(|(n, _)| n == r)
                .map_or(0.0, |(_, p)| *p)
        })
        .sum();
    sum / required.len() as f64
}

fn has_all(agent: &Snapshot, required: &[String]) -> bool {
    required
        .iter()
        .all(|r| agent.capabilities.iter().any(|(n, _)| n == r))
}

fn tag_share(agent: &Snapshot, preferred: &[String]) -> f64 {
    if preferred.is_empty() {
        return 0.0;
    }
    let hits = preferred.iter().filter(|t| agent.tags.contains(t)).count();
    hits as f64 / preferred.len() as f64
}

fn free_share(agent: &Snapshot) -> f64 {
    let capacity = agent.capacity.max(1) as f64;
    (1.0 - agent.load as f64 / capacity).clamp(0.0, 1.0)
}

impl Snapshot {
    /// Whether the agent can take one more task now: a free slot (one task at most on a
    /// half-open circuit) and no open circuit.
    pub fn can_take_one(&self) -> bool {
        has_slot(self) && !self.circuit_open
    }
}

fn has_slot(agent: &Snapshot) -> bool {
    if agent.half_open {
        agent.load == 0
    } else {
        agent.load < agent.capacity
    }
}

/// The smoothed success rate, less the latency penalty; `None` without history.
fn performance(agent: &Snapshot, slowest_ms: f64) -> Option<f64> {
    let h = agent.history.filter(|h| h.finished > 0)?;
    let success = (h.completed as f64 + 1.0) / (h.finished as f64 + 2.0);
    let penalty = match (h.latency_p50_ms, slowest_ms > 0.0) {
        (Some(ms), true) => 0.2 * (ms / slowest_ms).clamp(0.0, 1.0),
        _ => 0.0,
    };
    Some(success - penalty)
}

/// Picks an agent for a task, or says why none. `roll` is a number in `0..1` that
/// decides exploration (random in production, fixed in tests).
pub fn choose(
    needs: &Needs,
    strategy: Strategy,
    agents: &[Snapshot],
    tuning: Tuning,
    roll: f64,
) -> Result<Decision, NoAgent> {
    let mut capable = 0usize;
    let mut rejected = 0usize;
    let mut eligible: Vec<&Snapshot> = Vec::new();
    for agent in agents {
        if needs.pinned.as_ref().is_some_and(|p| *p != agent.id) {
            continue;
        }
        if needs.excluded.contains(&agent.id) {
            rejected += 1;
            continue;
        }
        if !has_all(agent, &needs.required) {
            continue;
        }
        capable += 1;
        let affordable = needs
            .max_cost_usd
            .is_none_or(|max| agent.expected_cost <= max);
        if has_slot(agent) && !agent.circuit_open && affordable {
            eligible.push(agent);
        }
    }
    if eligible.is_empty() {
        return Err(match &needs.pinned {
            Some(id) => NoAgent::PinnedUnavailable(id.clone()),
            None if capable == 0 && rejected > 0 => NoAgent::AllRejected(rejected),
            None if capable == 0 => NoAgent::NoCapable(needs.required.clone()),
            None => NoAgent::AllBusy { capable },
        });
    }
    let slowest = eligible
        .iter()
        .filter_map(|a| a.history.and_then(|h| h.latency_p50_ms))
        .fold(0.0_f64, f64::max);
    let cheapest = eligible
        .iter()
        .map(|a| a.expected_cost)
        .fold(f64::INFINITY, f64::min);
    let dearest = eligible.iter().map(|a| a.expected_cost).fold(0.0, f64::max);
    let mut explored = false;
    if strategy == Strategy::Performance && roll < tuning.exploration {
        let untried: Vec<&Snapshot> = eligible
            .iter()
            .copied()
            .filter(|a| performance(a, slowest).is_none())
            .collect();
        if !untried.is_empty() {
            eligible = untried;
            explored = true;
        }
    }
    if strategy == Strategy::RoundRobin {
        return Ok(rotate(needs, eligible, strategy));
    }
    let score = |a: &Snapshot| -> f64 {
        match strategy {
            // Chosen by its rotation above, never scored.
            Strategy::RoundRobin => 0.0,
            Strategy::LeastLoaded => free_share(a) - a.load as f64 * 1e-6,
            Strategy::CapabilityMatch => {
                proficiency_on(a, &needs.required) + 1e-3 * tag_share(a, &needs.preferred_tags)
            }
            // Unknown agents score as a coin flip: below a proven one, above a bad one.
            Strategy::Performance => performance(a, slowest).unwrap_or(0.5),
            Strategy::Cost => -a.expected_cost,
            Strategy::Auto => {
                let w = tuning.weights;
                let cost_part = if dearest > cheapest {
                    1.0 - (a.expected_cost - cheapest) / (dearest - cheapest)
                } else {
                    1.0
                };
                let part = [
                    (w.capability, proficiency_on(a, &needs.required)),
                    (w.load, free_share(a)),
                    (w.performance, performance(a, slowest).unwrap_or(0.5)),
                    (w.cost, cost_part),
                ];
                let total: f64 = part.iter().map(|(w, _)| w).sum();
                part.iter().map(|(w, v)| w * v).sum::<f64>() / total
                    + 1e-3 * tag_share(a, &needs.preferred_tags)
            }
        }
    };
    let mut scored: Vec<(f64, &Snapshot)> = eligible.iter().map(|a| (score(a), *a)).collect();
    // Best first; ties to the least recently assigned, then the lowest id.
    scored.sort_by(|(sa, a), (sb, b)| {
        sb.total_cmp(sa)
            .then_with(|| {
                a.last_assigned_ms
                    .unwrap_or(i64::MIN)
                    .cmp(&b.last_assigned_ms.unwrap_or(i64::MIN))
            })
            .then_with(|| a.id.cmp(&b.id))
    });
    let candidates = scored
        .iter()
        .take(5)
        .map(|(s, a)| Scored {
            agent_id: a.id.clone(),
            score: (s * 1e6).round() / 1e6,
        })
        .collect();
    Ok(Decision {
        agent_id: scored[0].1.id.clone(),
        strategy,
        candidates,
        explored,
    })
}

/// `round_robin`'s choice: the eligible agents after the last one chosen, by id, then the
/// rest; the first five in that order are the candidates (scored 0, -1, ...). Linear in
/// the eligible agents: the first five are selected, not the whole order sorted.
fn rotate(needs: &Needs, mut eligible: Vec<&Snapshot>, strategy: Strategy) -> Decision {
    let last = needs.rotation_after.as_deref();
    let in_turn = |a: &&Snapshot, b: &&Snapshot| {
        let passed = |s: &Snapshot| last.is_some_and(|l| s.id.as_str() <= l);
        (passed(a), a.id.as_str()).cmp(&(passed(b), b.id.as_str()))
    };
    let k = eligible.len().min(5);
    if eligible.len() > k {
        eligible.select_nth_unstable_by(k - 1, in_turn);
    }
    let mut top = eligible[..k].to_vec();
    top.sort_by(in_turn);
    Decision {
        agent_id: top[0].id.clone(),
        strategy,
        candidates: top
            .iter()
            .enumerate()
            .map(|(i, a)| Scored {
                agent_id: a.id.clone(),
                score: -(i as f64),
            })
            .collect(),
        explored: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, caps: &[(&str, f64)]) -> Snapshot {
        Snapshot {
            id: id.into(),
            capabilities: caps.iter().map(|(n, p)| (n.to_string(), *p)).collect(),
            tags: Vec::new(),
            load: 0,
            capacity: 1,
            circuit_open: false,
            half_open: false,
            expected_cost: 0.0,
            history: None,
            last_assigned_ms: None,
        }
    }

    fn tuning() -> Tuning {
        Tuning {
            weights: crate::config::AgentsConfig::default().weights,
            exploration: 0.0,
        }
    }

    fn needs(required: &[&str]) -> Needs {
        Needs {
            required: required.iter().map(|s| s.to_string()).collect(),
            ..Needs::default()
        }
    }

    fn pick(n: &Needs, s: Strategy, fleet: &[Snapshot]) -> String {
        choose(n, s, fleet, tuning(), 0.99).unwrap().agent_id
    }

    #[test]
    fn filters_say_why_nobody_was_chosen() {
        let mut busy = agent("a", &[("review", 0.5)]);
        busy.load = 1;
        let fleet = vec![busy, agent("b", &[("deploy", 0.5)])];
        assert_eq!(
            choose(&needs(&["scan"]), Strategy::Auto, &fleet, tuning(), 0.5).unwrap_err(),
            NoAgent::NoCapable(vec!["scan".into()])
        );
        assert_eq!(
            choose(&needs(&["review"]), Strategy::Auto, &fleet, tuning(), 0.5).unwrap_err(),
            NoAgent::AllBusy { capable: 1 }
        );
        let mut pinned = needs(&[]);
        pinned.pinned = Some("a".into());
        assert!(matches!(
            choose(&pinned, Strategy::Auto, &fleet, tuning(), 0.5),
            Err(NoAgent::PinnedUnavailable(_))
        ));
        pinned.pinned = Some("b".into());
        assert_eq!(pick(&pinned, Strategy::Auto, &fleet), "b");
    }

    #[test]
    fn open_and_half_open_circuits() {
        let mut open = agent("a", &[]);
        open.circuit_open = true;
        let mut half = agent("b", &[]);
        half.half_open = true;
        half.capacity = 3;
        half.load = 1;
        let fleet = vec![open, half];
        assert!(choose(&needs(&[]), Strategy::Auto, &fleet, tuning(), 0.5).is_err());
        let mut fleet = fleet;
        fleet[1].load = 0;
        assert_eq!(pick(&needs(&[]), Strategy::Auto, &fleet), "b");
    }

    #[test]
    fn each_strategy_picks_what_it_should() {
        let mut a = agent("a", &[("review", 0.9)]);
        let mut b = agent("b", &[("review", 0.4)]);
        let mut c = agent("c", &[("review", 0.6)]);
        a.capacity = 4;
        a.load = 3;
        b.capacity = 4;
        b.load = 0;
        c.capacity = 4;
        c.load = 2;
        a.expected_cost = 0.5;
        b.expected_cost = 0.3;
        c.expected_cost = 0.05;
        a.last_assigned_ms = Some(3);
        b.last_assigned_ms = Some(1);
        c.last_assigned_ms = Some(2);
        a.history = Some(History {
            completed: 2,
            finished: 10,
            latency_p50_ms: Some(100.0),
        });
        c.history = Some(History {
            completed: 50,
            finished: 50,
            latency_p50_ms: Some(200.0),
        });
        let fleet = vec![a, b, c];
        let n = needs(&["review"]);
        assert_eq!(pick(&n, Strategy::CapabilityMatch, &fleet), "a");
        assert_eq!(pick(&n, Strategy::LeastLoaded, &fleet), "b");
        // Round robin goes on after the last one chosen.
        assert_eq!(pick(&n, Strategy::RoundRobin, &fleet), "a");
        let after_a = Needs {
            rotation_after: Some("a".into()),
            ..n.clone()
        };
        assert_eq!(pick(&after_a, Strategy::RoundRobin, &fleet), "b");
        assert_eq!(pick(&n, Strategy::Cost, &fleet), "c");
        assert_eq!(pick(&n, Strategy::Performance, &fleet), "c");
        // Exploration gives the untried agent its turn.
        let explore = Tuning {
            exploration: 0.5,
            ..tuning()
        };
        let d = choose(&n, Strategy::Performance, &fleet, explore, 0.1).unwrap();
        assert_eq!((d.agent_id.as_str(), d.explored), ("b", true));
        // A cost cap leaves only the cheap agent.
        let capped = Needs {
            max_cost_usd: Some(0.1),
            ..n.clone()
        };
        assert_eq!(pick(&capped, Strategy::CapabilityMatch, &fleet), "c");
        let d = choose(&n, Strategy::Auto, &fleet, tuning(), 0.5).unwrap();
        assert_eq!(d.candidates.len(), 3);
        assert!(d.candidates[0].score >= d.candidates[1].score);
    }

    #[test]
    fn round_robin_rotates() {
        let mut fleet: Vec<Snapshot> = ["c", "a", "b"].iter().map(|id| agent(id, &[])).collect();
        let mut n = needs(&[]);
        let mut order = Vec::new();
        for _ in 0..6 {
            let chosen = pick(&n, Strategy::RoundRobin, &fleet);
            n.rotation_after = Some(chosen.clone());
            order.push(chosen);
        }
        assert_eq!(order, ["a", "b", "c", "a", "b", "c"]);
        // A busy agent is passed over, and keeps no turn: the rotation goes on after it.
        fleet.iter_mut().find(|a| a.id == "b").unwrap().load = 1;
        n.rotation_after = Some("a".into());
        assert_eq!(pick(&n, Strategy::RoundRobin, &fleet), "c");
        // Each capability set rotates on its own.
        assert_eq!(
            rotation_key(&["review".into(), "code".into(), "review".into()]),
            "code,review"
        );
    }
}
