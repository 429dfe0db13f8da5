-- Agents and tasks (DESIGN §5.4): the agents an organization registers, the tasks it
-- hands them, each task's transitions, and each agent's statistics.
CREATE TABLE agents (
    id                      TEXT PRIMARY KEY,
    organization_id         TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name                    TEXT NOT NULL,
    description             TEXT NOT NULL,
    -- JSON: [{"name", "version", "proficiency"}].
    capabilities            TEXT NOT NULL,
    -- The capability names and the tags, each between spaces (" a b "), for filters.
    capability_names        TEXT NOT NULL,
    tags                    TEXT NOT NULL,
    model                   TEXT,
    cost_per_task_usd       DOUBLE PRECISION,
    cost_per_1k_tokens_usd  DOUBLE PRECISION,
    max_concurrent_tasks    INTEGER NOT NULL,
    metadata                TEXT NOT NULL,
    -- pending | active | suspended | retired
    status                  TEXT NOT NULL,
    -- Tasks assigned to it or running on it; changed only with the task's transition.
    load                    INTEGER NOT NULL,
    -- The last sign of life (a heartbeat, or a connection held open).
    last_seen_at            TIMESTAMP,
    last_assigned_at        TIMESTAMP,
    -- The circuit breaker: failures in a row; open until this time once they reach the
    -- threshold, then half-open (one trial task).
    consecutive_failures    INTEGER NOT NULL,
    circuit_open_until      TIMESTAMP,
    created_at              TIMESTAMP NOT NULL,
    updated_at              TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX agents_name ON agents (organization_id, lower(name));

-- Per agent and per task type ("*" for all types), updated as tasks finish.
CREATE TABLE agent_stats (
    agent_id                TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    organization_id         TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    task_type               TEXT NOT NULL,
    completed               BIGINT NOT NULL,
    failed                  BIGINT NOT NULL,
    timed_out               BIGINT NOT NULL,
    -- Milliseconds from start to finish: an exponentially weighted mean, and the most
    -- recent ones (JSON array) for the median.
    latency_ewma_ms         DOUBLE PRECISION,
    recent_latencies_ms     TEXT NOT NULL,
    cost_usd                DOUBLE PRECISION NOT NULL,
    updated_at              TIMESTAMP NOT NULL,
    PRIMARY KEY (agent_id, task_type)
);

CREATE TABLE tasks (
    id                      TEXT PRIMARY KEY,
    organization_id         TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    title                   TEXT NOT NULL,
    task_type               TEXT NOT NULL,
    description             TEXT NOT NULL,
    input                   TEXT NOT NULL,
    -- JSON: what routing reads (required_capabilities, preferred_tags, strategy,
    -- max_cost_usd) and the task's limits (timeout_ms, assign_timeout_ms).
    spec                    TEXT NOT NULL,
    -- 0 low, 1 normal, 2 high, 3 critical.
    priority                INTEGER NOT NULL,
    max_attempts            INTEGER NOT NULL,
    attempts                INTEGER NOT NULL,
    idempotency_key         TEXT,
    -- SHA-256 of the creating request, to tell a repeat from a reuse of the key.
    request_hash            TEXT NOT NULL,
    context_id              TEXT,
    parent_id               TEXT,
    pinned_agent_id         TEXT,
    -- queued | assigned | running | completed | failed | cancelled | timed_out
    status                  TEXT NOT NULL,
    agent_id                TEXT,
    -- When the current state runs out: accepting once assigned, finishing once running.
    deadline_at             TIMESTAMP,
    -- JSON: {"percent", "message"}, the agent's last report.
    progress                TEXT,
    output                  TEXT,
    -- JSON: {"message", "retryable"}.
    error                   TEXT,
    -- JSON: the engine's last decision (strategy, candidates' scores).
    decision                TEXT,
    -- Why a queued task waits, when it does.
    waiting_reason          TEXT,
    created_by              TEXT NOT NULL,
    -- Bumped by every change: a transition starts by bumping it, which locks the row.
    version                 BIGINT NOT NULL,
    created_at              TIMESTAMP NOT NULL,
    assigned_at             TIMESTAMP,
    started_at              TIMESTAMP,
    finished_at             TIMESTAMP,
    updated_at              TIMESTAMP NOT NULL
);
-- Idempotency keys are the creator's own: one caller cannot reach another's task by its key.
CREATE UNIQUE INDEX tasks_idempotency ON tasks (organization_id, created_by, idempotency_key);
CREATE INDEX tasks_queue ON tasks (organization_id, status, priority, id);
CREATE INDEX tasks_agent ON tasks (agent_id, status);
CREATE INDEX tasks_deadline ON tasks (status, deadline_at);

-- Every transition of a task: when, from what to what, by whom, why.
CREATE TABLE task_events (
    id                      TEXT PRIMARY KEY,
    task_id                 TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    organization_id         TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    from_status             TEXT,
    to_status               TEXT NOT NULL,
    agent_id                TEXT,
    -- "user:<id>", "api_key:<id>" or "system".
    actor                   TEXT NOT NULL,
    reason                  TEXT,
    at                      TIMESTAMP NOT NULL
);
CREATE INDEX task_events_task ON task_events (task_id, id);

-- A key of type agent acts as one agent.
ALTER TABLE api_keys ADD COLUMN agent_id TEXT;
