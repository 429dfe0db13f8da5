//! `devmesh secrets`: what the master key protects.

use anyhow::bail;

use crate::config::Config;
use crate::sealing::Sealer;
use crate::storage::Db;

#[derive(Debug, clap::Subcommand)]
pub enum SecretsCommand {
    /// Re-seal every stored credential under the current secrets.master_key. Keep the
    /// old key in secrets.previous_master_keys while this runs; remove it afterwards.
    Rotate,
}

pub async fn run(config: Config, cmd: SecretsCommand) -> anyhow::Result<()> {
    match cmd {
        SecretsCommand::Rotate => {
            let sealer = Sealer::from_config(&config.secrets).map_err(anyhow::Error::msg)?;
            let db = Db::connect(&config)?;
            let done = crate::gateway::rotate::rotate(&db, &sealer)
                .await
                .map_err(anyhow::Error::msg)?;
            println!(
                "re-sealed {} credential(s); {} already under the current key; {} changed meanwhile (run again)",
                done.resealed, done.current, done.skipped
            );
            if !done.unreadable.is_empty() {
                for what in &done.unreadable {
                    eprintln!("devmesh: cannot open {what}");
                }
                bail!(
                    "{} credential(s) are sealed under a key that is not configured: add it to secrets.previous_master_keys and run again",
                    done.unreadable.len()
                );
            }
            Ok(())
        }
    }
}
