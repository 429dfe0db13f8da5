//! Configuration of what protects tenants' secrets and the operator's network: the
//! master key that seals credentials at rest, and the outbound client's SSRF guard.

use serde::{Deserialize, Serialize};

use super::types::{Duration, SecretString};

/// `[secrets]`: see `sealing` for the scheme.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// 32 random bytes in base64 (`openssl rand -base64 32`), or
    /// `DEVMESH_SECRETS__MASTER_KEY`. Unset: credentials cannot be stored (devmesh never
    /// makes one up, since losing it loses every sealed value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_key: Option<SecretString>,
    /// Earlier master keys, still able to open what they sealed: keep the old key here
    /// after changing `master_key`, run `devmesh secrets rotate`, then remove it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_master_keys: Vec<SecretString>,
}

/// `[outbound]`: the one HTTP client for requests made on a tenant's behalf.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundConfig {
    /// Allow loopback, private, link-local, unique-local and the other internal ranges.
    /// Only for a devmesh whose tenants are all trusted with the operator's network.
    pub allow_private: bool,
    /// Allow public addresses. Set to false to make `allow_cidrs` an egress allow-list:
    /// only the ranges it names (and internal ones with `allow_private`) are reached.
    pub allow_public: bool,
    /// Internal ranges allowed nonetheless, in CIDR notation (`10.20.0.0/16`,
    /// `fd00:1::/64`): the in-house services tenants may register.
    pub allow_cidrs: Vec<ipnet::IpNet>,
    /// Redirects followed per request, each checked again.
    pub max_redirects: u32,
    /// How long establishing a connection may take.
    pub connect_timeout: Duration,
    /// How long a whole request may take, redirects included, unless the caller sets its own.
    pub timeout: Duration,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self {
            allow_private: false,
            allow_public: true,
            allow_cidrs: Vec::new(),
            max_redirects: 5,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
        }
    }
}

/// `[gateway]`: the tools gateway's defaults and limits (DESIGN §5.5).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// How often the health checks look for tools whose check is due.
    pub health_tick: Duration,
    /// A tool's health check interval when its registration names none.
    pub health_interval: Duration,
    /// Failed checks in a row that open a tool's circuit (its calls then fail fast).
    pub failure_threshold: u32,
    /// The largest API description read, in bytes (each file of a multi-file one).
    pub max_document_bytes: usize,
    /// Files one description may span (the root and its `$ref`ed files).
    pub max_documents: usize,
    /// A call's timeout when the tool names none.
    pub call_timeout: Duration,
    /// The largest answer a call returns, in bytes, when the tool names none.
    pub max_response_bytes: usize,
    /// Tools (registered APIs) one organization may hold.
    pub max_tools: u32,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            health_tick: Duration::from_secs(10),
            health_interval: Duration::from_secs(60),
            failure_threshold: 3,
            max_document_bytes: 20 * 1024 * 1024,
            max_documents: 500,
            call_timeout: Duration::from_secs(30),
            max_response_bytes: 1024 * 1024,
            max_tools: 200,
        }
    }
}
