//! `devmesh config show`.

use std::process::ExitCode;

use crate::config::{LoadedConfig, render_with_sources};

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration and where each value came from (secrets masked)
    Show,
}

pub fn run(loaded: &LoadedConfig, cmd: &ConfigCommand) -> ExitCode {
    match cmd {
        ConfigCommand::Show => {
            match &loaded.file {
                Some(f) => println!("# configuration file: {}", f.display()),
                None => println!("# configuration file: none (./devmesh.toml not found)"),
            }
            print!("{}", render_with_sources(&loaded.config, &loaded.figment));
            ExitCode::SUCCESS
        }
    }
}
