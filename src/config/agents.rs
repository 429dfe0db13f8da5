//! `[agents]`: presence, task defaults and limits, the assignment engine's weights and
//! the agents' circuit breakers (DESIGN §5.4).

use serde::{Deserialize, Serialize};

use super::Duration;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsConfig {
    /// How often an agent that polls should heartbeat; a connected agent's connection
    /// renews its presence this often. An agent is offline once two intervals pass
    /// without a sign of life.
    pub heartbeat_interval: Duration,
    /// How often the sweep looks for tasks past their deadlines and for assigned tasks
    /// of agents gone offline (a recurring job, on whichever worker node takes it).
    pub sweep_interval: Duration,
    /// A task's time to finish once started, when it names none.
    pub default_timeout: Duration,
    /// A task's time to be accepted once assigned, when it names none.
    pub default_assign_timeout: Duration,
    /// Attempts a task gets when it names none.
    pub default_max_attempts: u32,
    /// The largest task `input` and `output`, in bytes of JSON.
    pub max_input_bytes: usize,
    /// The longest `wait` of `GET /agents/{id}/tasks/next`.
    pub max_wait: Duration,
    /// Failures or timeouts in a row that open an agent's circuit.
    pub breaker_failures: u32,
    /// How long an open circuit stays open before it lets one trial task through.
    pub breaker_cooldown: Duration,
    /// The share of `performance` choices given to an agent with no history for the
    /// task's type, so that new agents get tried (0 to 1).
    pub exploration: f64,
    /// The weights of the `auto` strategy's score.
    pub weights: EngineWeights,
}

/// `auto` scores each eligible agent as the weighted sum of four parts, each from 0 to
/// 1: capability match (mean proficiency on the required capabilities), load (free
/// share of its slots), performance (smoothed success rate for the task's type, less a
/// latency penalty) and cost (cheapest expected cost scores 1).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineWeights {
    pub capability: f64,
    pub load: f64,
    pub performance: f64,
    pub cost: f64,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(15),
            sweep_interval: Duration::from_secs(5),
            default_timeout: Duration::from_secs(3600),
            default_assign_timeout: Duration::from_secs(60),
            default_max_attempts: 3,
            max_input_bytes: 256 * 1024,
            max_wait: Duration::from_secs(60),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(60),
            exploration: 0.1,
            weights: EngineWeights {
                capability: 0.35,
                load: 0.25,
                performance: 0.3,
                cost: 0.1,
            },
        }
    }
}
