//! The tools gateway: any HTTP API as MCP tools (DESIGN §5.5).
//!
//! This part finds API descriptions, reads them and converts them:
//! - [`discovery`]: from a base URL to its description, through the SSRF guard;
//! - [`document`]: documents within limits, JSON or YAML, with the files their `$ref`s
//!   reach;
//! - [`operations`]: OpenAPI 3.0/3.1 and Swagger 2.0 operations in one model;
//! - [`sonarqube`]: SonarQube's `api/webservices/list`, the first non-OpenAPI format;
//! - [`schema`]: input schemas (JSON Schema 2020-12) with `$ref`s inlined and cuts;
//! - [`naming`]: portable, unique, stable tool names;
//! - [`credentials`]: how a tool authenticates, applied to its requests;
//! - [`request`]: a tool's arguments into its operation's HTTP request;
//! - [`response`]: the upstream's answer into a `CallToolResult`.
//!
//! And serves them:
//! - [`registry`]: registering, changing and removing tools (`/api/v1/tools`), by the
//!   rules of [`validate`], their rows' JSON in [`stored`], their credentials
//!   [`sealed`], a principal's own in [`own_credentials`]; [`model`] the shapes the API
//!   takes and gives;
//! - [`discover_job`]: discovery as a background job with visible progress;
//! - [`offer`] and [`filters`]: which MCP tools a registered API offers;
//! - [`provider`]: the MCP provider, with each organization's tools cached per
//!   generation; [`execute`] runs one call; [`oauth`] the client-credentials tokens;
//! - [`health`]: the health checks and each tool's circuit breaker;
//! - [`rotate`]: re-sealing every credential under a new master key.

pub mod credentials;
pub mod discover_job;
pub mod discovery;
pub mod document;
pub mod execute;
pub mod filters;
pub mod health;
pub mod model;
pub mod naming;
pub mod oauth;
pub mod offer;
pub mod operations;
pub mod own_credentials;
pub mod provider;
pub mod registry;
pub mod request;
pub mod response;
pub mod rotate;
pub mod schema;
pub mod sealed;
pub mod sonarqube;
pub mod stored;
pub mod validate;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{Config, GatewayConfig};
use crate::outbound::Outbound;
use crate::sealing::Sealer;

use document::DocumentSet;
use operations::Operation;

/// The tools gateway's state on a node.
pub struct Gateway {
    pub config: GatewayConfig,
    /// The one client for discovery, calls and health checks (the SSRF guard).
    pub outbound: Outbound,
    pub sealer: Sealer,
    pub tokens: oauth::Tokens,
    /// Each organization's MCP tools, as last built.
    pub catalogs: provider::Catalogs,
}

impl Gateway {
    pub fn new(config: &Config) -> Arc<Self> {
        Arc::new(Self {
            config: config.gateway.clone(),
            outbound: Outbound::new(&config.outbound),
            // Checked when the configuration was loaded.
            sealer: Sealer::from_config(&config.secrets).unwrap_or_else(|e| panic!("{e}")),
            tokens: oauth::Tokens::default(),
            catalogs: provider::Catalogs::default(),
        })
    }

    /// The document limits discovery and uploads enforce.
    pub fn limits(&self) -> document::Limits {
        document::Limits {
            max_bytes: self.config.max_document_bytes,
            max_documents: self.config.max_documents,
        }
    }
}

/// The name of the generation that moves whenever an organization's tools change
/// (`bus::generation`): every node's cached catalog of that organization goes stale.
pub fn generation(organization_id: &str) -> String {
    format!("gateway-tools-{organization_id}")
}

/// The formats devmesh reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApiFormat {
    /// OpenAPI 3.0.x or 3.1.x.
    Openapi3,
    /// Swagger 2.0 (OpenAPI 2.0).
    Swagger2,
    /// SonarQube's `api/webservices/list`.
    SonarqubeWebservices,
}

/// An API as its description tells it: what it is, where it is served, its operations.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Api {
    pub format: ApiFormat,
    /// The version the document declares (`3.1.0`, `2.0`), when it does.
    pub spec_version: Option<String>,
    pub title: Option<String>,
    pub version: Option<String>,
    /// Server URLs the description gives, variables filled with their defaults; relative
    /// ones are relative to the tool's base URL.
    pub servers: Vec<String>,
    /// `components.securitySchemes` (3.x) or `securityDefinitions` (2.0), as written.
    pub security_schemes: Value,
    pub operations: Vec<Operation>,
    /// External references not followed, and why.
    pub dangling: Vec<(String, String)>,
}

/// Why a document is not a description devmesh can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversionError {
    #[error(
        "the document is not an API description devmesh reads: it has no `openapi: 3.x`, no \
         `swagger: \"2.0\"` and no SonarQube `webServices` list{0}"
    )]
    UnknownFormat(String),
}

/// Reads the API of a description; tool names start with `prefix`.
pub fn convert(set: &DocumentSet, prefix: &str) -> Result<Api, ConversionError> {
    let root = set.root_document();
    let declared = |key: &str| match root.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let info = |key: &str| {
        root.get("info")
            .and_then(|i| i.get(key))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let (format, spec_version) = if let Some(v) = declared("openapi").filter(|v| v.starts_with('3'))
    {
        (ApiFormat::Openapi3, Some(v))
    } else if let Some(v) = declared("swagger").filter(|v| v.starts_with('2')) {
        (ApiFormat::Swagger2, Some(v))
    } else if sonarqube::is_webservices_list(root) {
        (ApiFormat::SonarqubeWebservices, None)
    } else {
        let hint = match declared("openapi").or_else(|| declared("swagger")) {
            Some(v) => format!(" (it declares version {v:?})"),
            None => String::new(),
        };
        return Err(ConversionError::UnknownFormat(hint));
    };
    let operations = match format {
        ApiFormat::Openapi3 => operations::read(set, prefix, false),
        ApiFormat::Swagger2 => operations::read(set, prefix, true),
        ApiFormat::SonarqubeWebservices => sonarqube::read(root, prefix),
    };
    let security_schemes = match format {
        ApiFormat::Openapi3 => root.pointer("/components/securitySchemes").cloned(),
        ApiFormat::Swagger2 => root.get("securityDefinitions").cloned(),
        ApiFormat::SonarqubeWebservices => None,
    }
    .unwrap_or(Value::Null);
    Ok(Api {
        format,
        spec_version,
        title: info("title"),
        version: info("version"),
        servers: servers(root, format),
        security_schemes,
        operations,
        dangling: set.dangling.clone(),
    })
}

fn servers(root: &Value, format: ApiFormat) -> Vec<String> {
    match format {
        ApiFormat::Openapi3 => root
            .get("servers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| {
                let mut url = s.get("url")?.as_str()?.to_string();
                if let Some(vars) = s.get("variables").and_then(Value::as_object) {
                    for (name, var) in vars {
                        if let Some(d) = var.get("default").and_then(Value::as_str) {
                            url = url.replace(&format!("{{{name}}}"), d);
                        }
                    }
                }
                Some(url)
            })
            .collect(),
        ApiFormat::Swagger2 => {
            let base_path = root.get("basePath").and_then(Value::as_str).unwrap_or("");
            match root.get("host").and_then(Value::as_str) {
                Some(host) => {
                    let scheme = root
                        .get("schemes")
                        .and_then(Value::as_array)
                        .and_then(|s| {
                            s.iter()
                                .filter_map(Value::as_str)
                                .find(|s| *s == "https")
                                .or_else(|| s.first().and_then(Value::as_str))
                        })
                        .unwrap_or("https");
                    vec![format!("{scheme}://{host}{base_path}")]
                }
                None if !base_path.is_empty() => vec![base_path.to_string()],
                None => Vec::new(),
            }
        }
        ApiFormat::SonarqubeWebservices => Vec::new(),
    }
}
