//! # devmesh
//!
//! AI agent orchestration for DevOps teams, in one executable.
//!
//! ## Layout
//!
//! - [`config`]: the typed configuration tree and how it is loaded and shown.
//! - [`storage`]: SQLite or PostgreSQL behind one set of storage functions; migrations.
//! - [`bus`]: job queue, pub/sub, cache and counters, in-process or on Redis.
//! - [`jobs`]: the job trait, the runner that drains queues, and the platform's own jobs.
//! - [`nodes`]: this node's identity and heartbeat in the node registry.
//! - [`service`]: the domain error and pagination every service shares.
//! - [`decode`]: JSON into typed values (request bodies, tool arguments), as JSON Schema reads numbers.
//! - [`tenancy`]: organizations, users, API keys, sessions, scopes and the audit log.
//! - [`contexts`]: conversation contexts shared by agents, the first tenant resource.
//! - [`events`]: changes within a tenant, told to every node over the bus.
//! - [`sealing`]: credentials sealed at rest under per-organization keys.
//! - [`outbound`]: the one outbound HTTP client, with the SSRF guard.
//! - [`agents`]: agents and tasks: the registry, presence, the assignment engine, delivery.
//! - [`gateway`]: the tools gateway: API descriptions read and converted into tools.
//! - [`mcp`]: the MCP endpoints (`/mcp`, `/ws`), their catalog and providers.
//! - [`edge`]: `devmesh edge`, MCP over stdio forwarded to a devmesh server.
//! - [`api`]: the REST API (`/api/v1`), its OpenAPI document and reference page.
//! - [`http`]: the listeners, their shared middleware, errors and system endpoints.
//! - [`telemetry`]: logs and Prometheus metrics.
//! - [`app`]: wires the capabilities into a running node and shuts it down gracefully;
//!   below it, infrastructure knows no capability (`tests/it/layers.rs` checks).
//! - [`cli`]: the `devmesh` command line.

pub mod agents;
pub mod api;
pub mod app;
pub mod bus;
pub mod cli;
pub mod config;
pub mod context;
pub mod contexts;
pub mod decode;
pub mod edge;
pub mod events;
pub mod gateway;
pub mod health;
pub mod http;
pub mod jobs;
pub mod mcp;
pub mod nodes;
pub mod outbound;
pub mod sealing;
pub mod service;
pub mod storage;
pub mod telemetry;
pub mod tenancy;
