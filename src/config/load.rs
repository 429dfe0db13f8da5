//! Loading: the layers, the environment mapping, and errors that name the key and the source.

use std::fmt;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};

use super::Config;

/// Values given on the command line; they override every other layer.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub roles: Option<String>,
}

/// The validated configuration together with the layers it came from.
pub struct LoadedConfig {
    pub config: Config,
    pub figment: Figment,
    pub file: Option<PathBuf>,
}

/// A configuration problem: the key, the value found, what was expected, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn invalid(key: &str, value: String, expected: &str) -> Self {
        Self {
            key: key.to_string(),
            message: format!("invalid value {value}: expected {expected}"),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "`{}`: {}", self.key, self.message)
        }
    }
}

const DEFAULT_FILE: &str = "devmesh.toml";
pub(super) const DEFAULT_SOURCE: &str = "built-in default";
pub(super) const FLAG_SOURCE: &str = "command-line flag";
const ENV_PREFIX: &str = "DEVMESH_";
/// Top-level keys that are plain values rather than sections (set as `DEVMESH_DATA_DIR`).
const TOP_LEVEL_VALUES: &[&str] = &["data_dir"];

/// Builds the layered configuration and validates it.
pub fn load(overrides: &Overrides) -> Result<LoadedConfig, Vec<ConfigError>> {
    let file = match &overrides.config_file {
        Some(path) if !path.is_file() => {
            return Err(vec![ConfigError {
                key: String::new(),
                message: format!(
                    "configuration file {} does not exist or is not a file",
                    path.display()
                ),
            }]);
        }
        Some(path) => Some(path.clone()),
        None => Some(PathBuf::from(DEFAULT_FILE)).filter(|p| p.is_file()),
    };

    let mut figment = Figment::from(Named(
        DEFAULT_SOURCE,
        Serialized::defaults(Config::default()),
    ));
    if let Some(path) = &file {
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment.merge(environment());
    if let Some(dir) = &overrides.data_dir {
        figment = figment.merge(Named(FLAG_SOURCE, Serialized::default("data_dir", dir)));
    }
    if let Some(roles) = &overrides.roles {
        figment = figment.merge(Named(FLAG_SOURCE, Serialized::default("node.roles", roles)));
    }

    let config: Config = figment
        .extract()
        .map_err(|e| describe(e, file.as_deref()))?;
    config.validate()?;
    Ok(LoadedConfig {
        config,
        figment,
        file,
    })
}

/// `DEVMESH_SECTION__KEY=value` sets `section.key`. Other `DEVMESH_*` variables
/// (such as the edge's `DEVMESH_API_KEY`) are not configuration and are left alone.
fn environment() -> Env {
    Env::prefixed(ENV_PREFIX)
        .filter(|key| {
            let key = key.as_str();
            key.contains("__") || TOP_LEVEL_VALUES.iter().any(|k| key.eq_ignore_ascii_case(k))
        })
        .split("__")
}

fn describe(error: figment::Error, file: Option<&Path>) -> Vec<ConfigError> {
    error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = match &e.metadata {
                Some(md) if md.name.contains("environment") => {
                    format!(" (from the environment variable {ENV_PREFIX}{})", env_name(&e.path))
                }
                Some(md) if md.name.contains("TOML") => match file {
                    Some(f) => format!(" (from {})", f.display()),
                    None => " (from the configuration file)".to_string(),
                },
                Some(md) if md.name == FLAG_SOURCE => " (from a command-line flag)".to_string(),
                _ => String::new(),
            };
            use figment::error::Kind;
            let message = match &e.kind {
                Kind::UnknownField(field, _) => {
                    format!("unknown key `{field}`{source}: see devmesh.toml.example for the keys there are")
                }
                // A secret's value is never printed, not even a wrong one.
                Kind::InvalidType(_, expected) | Kind::InvalidValue(_, expected)
                    if is_secret(&key) =>
                {
                    format!("invalid value{source}: expected {expected} (the value is a secret and is not shown)")
                }
                _ if is_secret(&key) => {
                    format!("invalid value{source} (the value is a secret and is not shown)")
                }
                kind => format!("{kind}{source}"),
            };
            ConfigError { key, message }
        })
        .collect()
}

/// Keys whose values are secrets (`SecretString`s; URLs redact their own passwords).
fn is_secret(key: &str) -> bool {
    key == "secrets" || key.starts_with("secrets.") || key == "auth.jwt_secret"
}

fn env_name(path: &[String]) -> String {
    path.iter()
        .map(|p| p.to_uppercase())
        .collect::<Vec<_>>()
        .join("__")
}

/// A provider under a name of ours, so that `config show` and errors can say where a value came from.
struct Named<P>(&'static str, P);

impl<P: figment::Provider> figment::Provider for Named<P> {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(self.0)
    }
    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        self.1.data()
    }
}
