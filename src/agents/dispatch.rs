//! Runs the engine over an organization's queued tasks and writes its choices. It runs
//! whenever a task is queued, an agent comes online or is activated, or a slot frees;
//! on one node, one round per organization at a time (a trigger during a round asks for
//! another, and waits for it); across nodes, rounds may overlap, and the assignment itself (one atomic
//! conditional write, `storage::assignments::assign_all`) keeps a task from being assigned twice
//! and an agent from going over capacity.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use super::engine::{self, History, Needs, Snapshot, Tuning};
use super::model::Strategy;
use super::tasks::{Spec, event_of};
use super::view::{statistics, stored_capabilities, stored_tags};
use super::{Agents, inbox_uri, task_uri};
use crate::context::Context as Node;
use crate::storage::StorageResult;
use crate::storage::agents::{self as agent_store, ALL_TYPES, AgentRow, StatsRow};
use crate::storage::assignments::{self, Assignment};
use crate::storage::tasks as store;

/// Queued tasks one round considers, highest priority first.
const ROUND: i64 = 500;

/// Which organizations have rounds running on this node, whether another was asked for
/// during the current one, and how many have finished (for callers waiting on the next).
#[derive(Default)]
pub struct Dispatcher {
    running: Mutex<HashMap<String, Org>>,
}

struct Org {
    again: bool,
    /// Rounds started so far; the one running is this number.
    started: u64,
    finished: tokio::sync::watch::Sender<u64>,
}

/// What a trigger does.
enum Entry {
    /// Run the rounds: nobody is.
    Run(tokio::sync::watch::Receiver<u64>),
    /// A round is running: the one after it covers this trigger; wait until it ends.
    Wait(tokio::sync::watch::Receiver<u64>, u64),
}

impl Dispatcher {
    fn enter(&self, org: &str) -> Entry {
        let mut running = self.running.lock().unwrap();
        match running.get_mut(org) {
            Some(state) => {
                state.again = true;
                Entry::Wait(state.finished.subscribe(), state.started + 1)
            }
            None => {
                let (finished, rx) = tokio::sync::watch::channel(0);
                running.insert(
                    org.to_string(),
                    Org {
                        again: false,
                        started: 0,
                        finished,
                    },
                );
                Entry::Run(rx)
            }
        }
    }

    /// Asks for another round of `org` (a round that lost a race).
    fn again(&self, org: &str) {
        if let Some(state) = self.running.lock().unwrap().get_mut(org) {
            state.again = true;
        }
    }

    /// Starts the next round's count; its number.
    fn start(&self, org: &str) -> u64 {
        let mut running = self.running.lock().unwrap();
        let state = running.get_mut(org).expect("a running organization");
        state.started += 1;
        state.again = false;
        state.started
    }

    /// Records a finished round; `true` when another was asked for, otherwise the
    /// organization is left.
    fn finish(&self, org: &str, round: u64) -> bool {
        let mut running = self.running.lock().unwrap();
        let Some(state) = running.get_mut(org) else {
            return false;
        };
        state.finished.send_replace(round);
        if state.again {
            return true;
        }
        running.remove(org);
        false
    }
}

/// Longest a trigger waits for the round that covers it; the rounds run on regardless.
const WAIT_FOR_ROUND: std::time::Duration = std::time::Duration::from_secs(5);

/// Assigns what can be assigned in `org` now. The caller waits until a round that began
/// after its call has ended (so that a task created while an agent is free comes back
/// assigned), at most [`WAIT_FOR_ROUND`]; rounds asked for meanwhile run in the
/// background, to their end even if the caller goes.
pub async fn run(node: &Node, agents: &std::sync::Arc<Agents>, org: &str) {
    let (mut finished, target) = match agents.dispatcher.enter(org) {
        Entry::Wait(rx, target) => (rx, target),
        Entry::Run(rx) => {
            let (agents, org) = (agents.clone(), org.to_string());
            node.runtime.spawn({
                let node = node.clone();
                async move {
                    loop {
                        let number = agents.dispatcher.start(&org);
                        if let Err(e) = round(&node, &agents, &org).await {
                            tracing::warn!(error = %e, organization = %org, "an assignment round failed; the sweep tries again");
                        }
                        if !agents.dispatcher.finish(&org, number) {
                            break;
                        }
                    }
                }
            });
            (rx, 1)
        }
    };
    let _ = tokio::time::timeout(WAIT_FOR_ROUND, finished.wait_for(|done| *done >= target)).await;
}

/// The expected cost of one task: the mean of what its finished tasks cost, else its
/// price for a task plus a thousand tokens.
fn expected_cost(agent: &AgentRow, all: Option<&StatsRow>) -> f64 {
    if let Some(s) = all {
        let finished = s.completed + s.failed;
        if finished > 0 {
            return s.cost_usd / finished as f64;
        }
    }
    agent.cost_per_task_usd.unwrap_or(0.0) + agent.cost_per_1k_tokens_usd.unwrap_or(0.0)
}

/// The engine's view of an agent at `now`.
pub fn snapshot(
    agent: &AgentRow,
    all: Option<&StatsRow>,
    threshold: u32,
    now: chrono::NaiveDateTime,
) -> Snapshot {
    let tripped = agent.consecutive_failures >= threshold as i32;
    let open = tripped && agent.circuit_open_until.is_some_and(|t| t > now);
    Snapshot {
        id: agent.id.clone(),
        capabilities: stored_capabilities(agent)
            .into_iter()
            .map(|c| (c.name, c.proficiency.unwrap_or(0.5)))
            .collect(),
        tags: stored_tags(agent),
        load: agent.load,
        capacity: agent.max_concurrent_tasks,
        circuit_open: open,
        half_open: tripped && !open,
        expected_cost: expected_cost(agent, all),
        history: None,
        last_assigned_ms: agent
            .last_assigned_at
            .map(|t| t.and_utc().timestamp_millis()),
    }
}

async fn round(node: &Node, agents: &Agents, org: &str) -> StorageResult<()> {
    // The queue first: a round with nothing queued (a slot freed, none waiting) reads no
    // agents.
    let queued = store::queued(&node.db, org, ROUND).await?;
    if queued.is_empty() {
        return Ok(());
    }
    let now = crate::storage::now();
    let rows = agent_store::online_active(&node.db, org, agents.online_after(now)).await?;
    let threshold = agents.config.breaker_failures;
    let mut fleet: Vec<Snapshot> = rows
        .iter()
        .map(|r| snapshot(r, None, threshold, now))
        .collect();
    // With no free slot, only tasks that never said why they wait are looked at (to say
    // it); the others wait as they said until a slot frees, which starts a round.
    let mut free = fleet.iter().any(Snapshot::can_take_one);
    if !free && queued.iter().all(|t| t.waiting_reason.is_some()) {
        return Ok(());
    }
    let types: Vec<String> = queued
        .iter()
        .map(|t| t.task_type.clone())
        .chain([ALL_TYPES.to_string()])
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    // Statistics only of the agents that can take a task: the others are not chosen.
    let ids: Vec<String> = fleet
        .iter()
        .filter(|a| a.can_take_one())
        .map(|a| a.id.clone())
        .collect();
    let stats = if ids.is_empty() {
        Vec::new()
    } else {
        agent_store::stats(&node.db, org, &ids, Some(&types)).await?
    };
    let by_key: HashMap<(&str, &str), &StatsRow> = stats
        .iter()
        .map(|s| ((s.agent_id.as_str(), s.task_type.as_str()), s))
        .collect();
    for (agent, row) in fleet.iter_mut().zip(&rows) {
        agent.expected_cost =
            expected_cost(row, by_key.get(&(row.id.as_str(), ALL_TYPES)).copied());
    }
    // Each agent's history per task type, worked out once a round (a p50 sorts).
    let histories: HashMap<(&str, &str), History> = by_key
        .iter()
        .map(|(key, s)| {
            let history = History {
                completed: s.completed,
                finished: s.completed + s.failed + s.timed_out,
                latency_p50_ms: statistics(s).latency_p50_ms,
            };
            (*key, history)
        })
        .collect();
    let tuning = Tuning {
        weights: agents.config.weights,
        exploration: agents.config.exploration,
    };
    // Where the round_robin rotations stand, read once a round needs them.
    let mut rotations: Option<HashMap<String, String>> = None;
    // The round's choices (and the strategy that made each), made in order and written
    // together.
    let mut planned: Vec<Assignment> = Vec::new();
    let mut strategies: Vec<Strategy> = Vec::new();
    for task in queued {
        if !free && task.waiting_reason.is_some() {
            continue;
        }
        let spec = Spec::parse(&task.spec);
        for agent in &mut fleet {
            agent.history = histories
                .get(&(agent.id.as_str(), task.task_type.as_str()))
                .copied();
        }
        let strategy = spec.strategy.unwrap_or(Strategy::Auto);
        // A pinned task, or one some agents rejected, takes no turn in the rotation.
        let rotates = task.pinned_agent_id.is_none() && spec.rejected_by.is_empty();
        let rotation = if strategy == Strategy::RoundRobin && rotates {
            if rotations.is_none() {
                rotations = Some(assignments::rotations(&node.db, org).await?);
            }
            Some(engine::rotation_key(&spec.required_capabilities))
        } else {
            None
        };
        let needs = Needs {
            required: spec.required_capabilities.clone(),
            preferred_tags: spec.preferred_tags.clone(),
            max_cost_usd: spec.max_cost_usd,
            pinned: task.pinned_agent_id.clone(),
            excluded: spec.rejected_by.clone(),
            rotation_after: rotation
                .as_ref()
                .and_then(|set| rotations.as_ref()?.get(set).cloned()),
        };
        let decision = match engine::choose(&needs, strategy, &fleet, tuning, rand::random::<f64>())
        {
            Ok(d) => d,
            Err(why) => {
                // Written only when it changed: a backlog waits without a write per round.
                let reason = why.reason();
                if task.waiting_reason.as_deref() != Some(reason.as_str()) {
                    store::set_waiting(&node.db, org, &task.id, &reason).await?;
                }
                continue;
            }
        };
        let now = crate::storage::now();
        let deadline = now + chrono::Duration::milliseconds(spec.assign_timeout_ms);
        let assignment = Assignment {
            task_id: task.id.clone(),
            agent_id: decision.agent_id.clone(),
            now,
            deadline,
            decision: serde_json::to_string(&decision).expect("decisions serialize"),
            breaker_failures: threshold as i32,
            event: event_of(
                &task.id,
                &task.organization_id,
                Some("queued"),
                "assigned",
                Some(&decision.agent_id),
                "system",
                Some(format!("chosen by {}", decision.strategy.as_str())),
            ),
            rotation: rotation.clone(),
        };
        // Counted as taken for the choices after it; written with the others below.
        if let (Some(set), Some(rotations)) = (rotation, rotations.as_mut()) {
            rotations.insert(set, decision.agent_id.clone());
        }
        if let Some(agent) = fleet.iter_mut().find(|a| a.id == decision.agent_id) {
            agent.load += 1;
            agent.last_assigned_ms = Some(now.and_utc().timestamp_millis());
        }
        free = fleet.iter().any(Snapshot::can_take_one);
        planned.push(assignment);
        strategies.push(decision.strategy);
    }
    if planned.is_empty() {
        return Ok(());
    }
    let made = assignments::assign_all(&node.db, org, &planned).await?;
    for ((assignment, strategy), made) in planned.iter().zip(strategies).zip(made) {
        if !made {
            // Another node took the slot or the task: look again with fresh numbers.
            agents.dispatcher.again(org);
            continue;
        }
        metrics::counter!("devmesh_tasks_assigned_total", "strategy" => strategy.as_str())
            .increment(1);
        super::announce(
            node,
            org,
            [
                inbox_uri(&assignment.agent_id),
                task_uri(&assignment.task_id),
            ],
        )
        .await;
    }
    Ok(())
}
