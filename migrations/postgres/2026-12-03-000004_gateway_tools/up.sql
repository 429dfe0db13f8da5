-- The tools gateway (DESIGN §5.5): HTTP APIs registered by an organization, each turned
-- into MCP tools from its API description.
CREATE TABLE gateway_tools (
    id                   TEXT PRIMARY KEY,
    organization_id      TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    -- Portable; the prefix of its MCP tool names, unique in the organization.
    name                 TEXT NOT NULL,
    base_url             TEXT NOT NULL,
    -- JSON: openapi_url, discovery hints, tags, filters, grouping, health check, limits.
    settings             TEXT NOT NULL,
    -- The organization's credential: its kind in clear, the value sealed
    -- ("dmsealed:v1:<key id>:..." under the organization's key).
    auth_kind            TEXT,
    auth_sealed          TEXT,
    -- An uploaded description (POST /tools with openapi, PUT /tools/{id}/openapi).
    document             TEXT,
    -- JSON: status (pending | running | ready | failed), what was tried, the outcome.
    discovery            TEXT NOT NULL,
    -- JSON: the converted API (format, servers, security schemes, operations).
    api                  TEXT,
    -- Bumped whenever the tools this row offers change.
    revision             BIGINT NOT NULL,
    -- JSON: the health checks' recent results and the circuit breaker.
    health               TEXT NOT NULL,
    created_at           TIMESTAMP NOT NULL,
    updated_at           TIMESTAMP NOT NULL
);
-- Case-insensitive: "GitHub" and "github" would confuse every model that reads both.
CREATE UNIQUE INDEX gateway_tools_name ON gateway_tools (organization_id, lower(name));

-- Where hosts of one kind serve their description, learned from discoveries that found
-- one: tried first for the next host of the same pattern.
CREATE TABLE gateway_learned_paths (
    organization_id      TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    -- The host with its first label made a wildcard ("*.example.com"), or the host itself
    -- when it has fewer than three labels.
    host_pattern         TEXT NOT NULL,
    path                 TEXT NOT NULL,
    updated_at           TIMESTAMP NOT NULL,
    PRIMARY KEY (organization_id, host_pattern)
);

-- A user's or an API key's own credential for a tool (pass-through), sealed.
CREATE TABLE gateway_credentials (
    tool_id              TEXT NOT NULL REFERENCES gateway_tools (id) ON DELETE CASCADE,
    organization_id      TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    -- "user:<id>" or "api_key:<id>".
    owner                TEXT NOT NULL,
    auth_kind            TEXT NOT NULL,
    auth_sealed          TEXT NOT NULL,
    updated_at           TIMESTAMP NOT NULL,
    PRIMARY KEY (tool_id, owner)
);
