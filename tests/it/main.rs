//! Black-box tests: the real application on port 0 against real SQLite, PostgreSQL and Redis.

#[macro_use]
mod helpers;

mod agents;
mod api_keys;
mod api_surface;
mod auth_flow;
mod bus_contract;
mod cancellation;
mod cli;
mod contexts;
mod edge;
mod faults;
mod gateway_calls;
mod gateway_clients;
mod gateway_conversion;
mod gateway_credentials;
mod gateway_discovery;
mod gateway_input;
mod gateway_tools;
mod http_errors;
mod input_required;
mod job_runner;
mod layers;
mod mcp;
mod mcp_client;
mod mcp_interop;
mod migrations;
mod outbound;
mod postgres_tls;
mod process;
mod queue_contract;
mod rate_limits;
mod rest;
mod revocation;
mod services;
mod strict_bodies;
mod system;
mod tasks;
mod upstream;
mod users;
mod ws;
mod ws_client;
