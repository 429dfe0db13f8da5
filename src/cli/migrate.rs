//! `devmesh migrate run|status|revert`, against the configured database.

use crate::config::Config;
use crate::storage::migrations;

#[derive(Debug, clap::Subcommand)]
pub enum MigrateCommand {
    /// Apply every pending migration
    Run,
    /// List migrations and whether each is applied
    Status,
    /// Revert the most recently applied migration
    Revert,
}

pub async fn run(config: Config, cmd: MigrateCommand) -> anyhow::Result<()> {
    let target = config.database_target();
    match cmd {
        MigrateCommand::Run => {
            let applied = migrations::run_pending(&target).await?;
            if applied.is_empty() {
                println!("nothing to apply: the schema is current");
            }
            for version in applied {
                println!("applied {version}");
            }
        }
        MigrateCommand::Status => {
            for m in migrations::status(&target).await? {
                println!(
                    "{:<8} {}",
                    if m.applied { "applied" } else { "pending" },
                    m.name
                );
            }
        }
        MigrateCommand::Revert => match migrations::revert_last(&target).await? {
            Some(version) => println!("reverted {version}"),
            None => println!("nothing to revert: no migration is applied"),
        },
    }
    Ok(())
}
