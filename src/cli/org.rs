//! `devmesh org create`: registers an organization from the command line, against the
//! configured database, whatever `auth.open_registration` says, and prints its first
//! admin API key.

use std::io::BufRead;
use std::sync::Arc;

use anyhow::{Context as _, bail};

use crate::config::Config;
use crate::context::Context;
use crate::storage::migrations;
use crate::tenancy::registration::{self, Channel, Registration};

#[derive(Debug, clap::Subcommand)]
pub enum OrgCommand {
    /// Create an organization, its owner and a first admin API key (printed once)
    Create(CreateOpts),
}

#[derive(Debug, clap::Args)]
pub struct CreateOpts {
    /// The organization's name
    #[arg(long)]
    name: String,
    /// The organization's slug: 3 to 63 lowercase letters, digits and dashes
    #[arg(long)]
    slug: String,
    /// The owner's email
    #[arg(long)]
    admin_email: String,
    /// The owner's name
    #[arg(long)]
    admin_name: String,
    /// The owner's password; read from the first line of standard input when not given
    #[arg(long, env = "DEVMESH_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
}

pub async fn run(config: Config, cmd: OrgCommand) -> anyhow::Result<()> {
    let OrgCommand::Create(opts) = cmd;
    let password = match opts.admin_password {
        Some(p) => p,
        None => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("cannot read the password from standard input")?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    let target = config.database_target();
    if config.database.auto_migrate {
        migrations::run_pending(&target).await?;
    } else if migrations::pending_count(&target).await? > 0 {
        bail!(
            "migrations are pending and database.auto_migrate is off: run `devmesh migrate run` first"
        );
    }
    let ctx = Context::connect(Arc::new(config))?;
    let tenancy = crate::tenancy::TenancyState::new(&ctx.config);
    let result = registration::register(
        &ctx,
        &tenancy,
        Registration {
            organization_name: &opts.name,
            organization_slug: &opts.slug,
            admin_email: &opts.admin_email,
            admin_name: &opts.admin_name,
            admin_password: &password,
        },
        Channel::Cli,
    )
    .await;
    ctx.bus.close().await;
    let registered = result.map_err(|e| anyhow::anyhow!("{e}"))?;
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&registered)?);
    } else {
        println!(
            "organization {} ({}) created, id {}",
            registered.organization.name, registered.organization.slug, registered.organization.id
        );
        println!(
            "owner: {} <{}>, id {}",
            registered.user.name, registered.user.email, registered.user.id
        );
        println!("admin API key (shown only now; keep it safe):");
        println!("{}", registered.api_key.key);
    }
    Ok(())
}
