-- MCP tasks (extension io.modelcontextprotocol/tasks, SEP-2663): a tool call that runs in
-- the background, read with tasks/get on any node until it expires. A task runs in rounds
-- (one call of the tool each); between rounds it may wait for the client's input.
CREATE TABLE mcp_tasks (
    id                   TEXT PRIMARY KEY,
    organization_id      TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    -- Who made it ("api_key:<id>", "user:<id>"): only they see it.
    owner                TEXT NOT NULL,
    tool                 TEXT NOT NULL,
    -- The call (JSON: arguments, protocol_version, client_capabilities), for its rounds.
    request              TEXT NOT NULL,
    -- working | input_required | completed | failed | cancelled
    status               TEXT NOT NULL,
    status_message       TEXT,
    -- input_required (JSON): the requests still unanswered, by key; the answers given so
    -- far; the tool's sealed state for its next round.
    pending              TEXT,
    -- completed: the tool's result; failed: the JSON-RPC error object (JSON).
    outcome              TEXT,
    -- The node running the current round (working only).
    runner_node          TEXT,
    -- Bumped by every change, so that concurrent changes cannot overwrite each other.
    revision             BIGINT NOT NULL,
    created_at           TIMESTAMP NOT NULL,
    updated_at           TIMESTAMP NOT NULL,
    expires_at           TIMESTAMP NOT NULL
);
CREATE INDEX mcp_tasks_owner ON mcp_tasks (organization_id, owner, status);
CREATE INDEX mcp_tasks_runner ON mcp_tasks (runner_node, status);
CREATE INDEX mcp_tasks_expiry ON mcp_tasks (expires_at);
