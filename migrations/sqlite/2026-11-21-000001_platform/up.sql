-- Every running devmesh node, kept current by its heartbeat.
CREATE TABLE nodes (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    roles         TEXT NOT NULL,
    version       TEXT NOT NULL,
    addresses     TEXT NOT NULL,
    status        TEXT NOT NULL,
    started_at    TIMESTAMP NOT NULL,
    last_seen_at  TIMESTAMP NOT NULL
);
CREATE INDEX nodes_status_last_seen ON nodes (status, last_seen_at);

-- The job queue of the shape without Redis.
CREATE TABLE jobs (
    id            TEXT PRIMARY KEY,
    queue         TEXT NOT NULL,
    kind          TEXT NOT NULL,
    payload       TEXT NOT NULL,
    status        TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL,
    run_at        TIMESTAMP NOT NULL,
    lease_id      TEXT,
    locked_by     TEXT,
    locked_until  TIMESTAMP,
    last_error    TEXT,
    created_at    TIMESTAMP NOT NULL,
    updated_at    TIMESTAMP NOT NULL
);
CREATE INDEX jobs_ready ON jobs (queue, status, run_at);
CREATE INDEX jobs_leased ON jobs (queue, status, locked_until);

-- Deduplication keys of recently enqueued jobs.
CREATE TABLE job_dedup (
    queue       TEXT NOT NULL,
    dedup_key   TEXT NOT NULL,
    job_id      TEXT NOT NULL,
    expires_at  TIMESTAMP NOT NULL,
    PRIMARY KEY (queue, dedup_key)
);
