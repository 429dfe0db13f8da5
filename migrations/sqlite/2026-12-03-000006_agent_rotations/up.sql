-- Where round_robin stands for each capability set of an organization: the agent it
-- chose last (rotation goes on from the next agent by id). Shared by every node, so the
-- rotation is cluster-wide.
CREATE TABLE agent_rotations (
    organization_id         TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    -- The task's required capabilities, sorted and joined by commas ("" for none).
    capabilities            TEXT NOT NULL,
    last_agent_id           TEXT NOT NULL,
    updated_at              TIMESTAMP NOT NULL,
    PRIMARY KEY (organization_id, capabilities)
);
