//! Admin commands against the configured database and bus: job queues and nodes.

use anyhow::bail;

use crate::bus::Bus;
use crate::config::Config;
use crate::storage::{Db, nodes};

#[derive(Debug, clap::Subcommand)]
pub enum JobsCommand {
    /// Jobs per queue: ready, scheduled, running, dead
    Depth,
    /// List the dead letters of a queue, most recent first (JSON lines)
    Dead {
        /// The queue
        #[arg(long, default_value = "default")]
        queue: String,
        /// How many to show
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Put a dead job back on its queue, with its attempts reset
    Replay {
        /// The queue
        #[arg(long, default_value = "default")]
        queue: String,
        /// The job's id
        id: String,
    },
}

pub async fn run_jobs(config: Config, cmd: JobsCommand) -> anyhow::Result<()> {
    let db = Db::connect(&config)?;
    let bus = Bus::connect(&config, db.clone())?;
    let result = async {
        match cmd {
            JobsCommand::Depth => {
                println!(
                    "{:<16} {:>8} {:>10} {:>8} {:>8}",
                    "queue", "ready", "scheduled", "running", "dead"
                );
                for queue in config.jobs.concurrency.keys() {
                    let d = bus.queue.depth(queue).await?;
                    println!(
                        "{queue:<16} {:>8} {:>10} {:>8} {:>8}",
                        d.ready, d.scheduled, d.running, d.dead
                    );
                }
            }
            JobsCommand::Dead { queue, limit } => {
                for job in bus.queue.dead_letters(&queue, limit).await? {
                    println!("{}", serde_json::to_string(&job)?);
                }
            }
            JobsCommand::Replay { queue, id } => {
                if !bus.queue.replay(&queue, &id).await? {
                    bail!("no dead job {id} in queue {queue}");
                }
                println!("replayed {id}: back on queue {queue}");
            }
        }
        Ok(())
    }
    .await;
    bus.close().await;
    result
}

pub async fn run_nodes(config: Config) -> anyhow::Result<()> {
    let db = Db::connect(&config)?;
    println!(
        "{:<38} {:<20} {:<8} {:<22} {:<10} last seen",
        "id", "name", "version", "roles", "status"
    );
    for n in nodes::list(&db).await? {
        println!(
            "{:<38} {:<20} {:<8} {:<22} {:<10} {}",
            n.id,
            n.name,
            n.version,
            n.roles,
            n.status,
            n.last_seen_at.and_utc().to_rfc3339()
        );
    }
    Ok(())
}
