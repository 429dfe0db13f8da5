//! The `devmesh` command line. Each subcommand is a small module with `run(config, opts)`.

mod admin;
mod config_cmd;
mod migrate;
mod org;
mod secrets;
mod serve;
mod work;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::config::{self, Overrides};

pub use crate::config::EXIT_CONFIG;

#[derive(Debug, Parser)]
#[command(
    name = "devmesh",
    version,
    about = "AI agent orchestration for DevOps teams",
    long_about = "AI agent orchestration for DevOps teams.\n\n\
        `devmesh serve` runs every role on one node with an SQLite database in the data directory. \
        Set database.url (PostgreSQL) and redis.url to run many nodes that share them.\n\n\
        Configuration comes from built-in defaults, then devmesh.toml (or --config), then \
        DEVMESH_SECTION__KEY environment variables (DEVMESH_MCP__LISTEN=0.0.0.0:9000), then flags. \
        `devmesh config show` prints the result and where each value came from."
)]
pub struct Cli {
    /// Configuration file [default: ./devmesh.toml when it exists]
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Data directory: the embedded database and this node's id [default: ./devmesh-data]
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run devmesh (every role on this node unless --roles says otherwise)
    Serve(serve::ServeOpts),
    /// Run the worker role only: a scale-out node that consumes job queues
    Worker,
    /// Apply, inspect or revert database migrations
    #[command(subcommand)]
    Migrate(migrate::MigrateCommand),
    /// Inspect the configuration
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Inspect job queues and replay dead letters
    #[command(subcommand)]
    Jobs(admin::JobsCommand),
    /// List the nodes in the node registry
    Nodes,
    /// MCP over stdio for IDEs (Claude Code, Cursor, VS Code), forwarded to a devmesh server
    Edge(crate::edge::EdgeOpts),
    /// Manage organizations (tenants)
    #[command(subcommand)]
    Org(org::OrgCommand),
    /// List, show and cancel tasks (a client of the REST API, with an API key)
    #[command(subcommand)]
    Tasks(work::TasksCommand),
    /// List and show agents (a client of the REST API, with an API key)
    #[command(subcommand)]
    Agents(work::AgentsCommand),
    /// Manage what the master key protects: re-seal credentials under a new key
    #[command(subcommand)]
    Secrets(secrets::SecretsCommand),
    /// Print a shell completion script, e.g. `devmesh completions bash > /etc/bash_completion.d/devmesh`
    Completions {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "devmesh",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }

    // The edge runs on a developer's machine: no configuration, data directory or database.
    let cli = match cli.command {
        Command::Edge(opts) => return crate::edge::main(opts),
        command => Cli { command, ..cli },
    };

    let roles = match &cli.command {
        Command::Serve(opts) => opts.roles.clone(),
        Command::Worker => Some("worker".to_string()),
        _ => None,
    };
    let overrides = Overrides {
        config_file: cli.config.clone(),
        data_dir: cli.data_dir.clone(),
        roles,
    };
    let loaded = match config::load(&overrides) {
        Ok(loaded) => loaded,
        Err(errors) => {
            for e in errors {
                eprintln!("devmesh: configuration error: {e}");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Command::Config(cmd) = &cli.command {
        return config_cmd::run(&loaded, cmd);
    }

    crate::telemetry::init_logs(&loaded.config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("devmesh: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = loaded.config;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(_) | Command::Worker => serve::run(config).await,
            Command::Migrate(cmd) => migrate::run(config, cmd).await,
            Command::Jobs(cmd) => admin::run_jobs(config, cmd).await,
            Command::Nodes => admin::run_nodes(config).await,
            Command::Org(cmd) => org::run(config, cmd).await,
            Command::Secrets(cmd) => secrets::run(config, cmd).await,
            Command::Tasks(cmd) => work::run_tasks(config, cmd).await,
            Command::Agents(cmd) => work::run_agents(config, cmd).await,
            Command::Config(_) | Command::Completions { .. } | Command::Edge(_) => {
                unreachable!("handled before the runtime starts")
            }
        }
    });
    // Blocking tasks stuck on an unreachable server must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "devmesh failed");
            eprintln!("devmesh: {e:#}");
            ExitCode::FAILURE
        }
    }
}
