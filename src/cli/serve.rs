//! `devmesh serve` and `devmesh worker`.

use tokio_util::sync::CancellationToken;

use crate::app::Application;
use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct ServeOpts {
    /// Roles to run: `all`, or a comma-separated list of api, mcp, worker, indexer
    #[arg(long, value_name = "ROLES")]
    pub roles: Option<String>,
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    app.run(shutdown).await
}

/// Cancels `shutdown` on SIGTERM or SIGINT.
async fn stop_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "stop requested");
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("stop requested");
    }
    shutdown.cancel();
}
