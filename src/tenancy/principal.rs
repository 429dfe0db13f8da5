//! Who is making a request: a signed-in user or an API key, always inside one organization.

use crate::config::{Quota, RateLimitConfig};
use crate::service::{ServiceError, ServiceResult};
use crate::tenancy::scopes::{KeyType, Role, Scope, ScopeSet};

#[derive(Debug, Clone)]
pub enum Actor {
    User {
        id: String,
        role: Role,
    },
    ApiKey {
        id: String,
        key_type: KeyType,
        /// The agent a key of type `agent` acts as, when it is bound to one.
        agent_id: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct Principal {
    pub organization_id: String,
    pub actor: Actor,
    pub scopes: ScopeSet,
    /// This principal's own rate limit, when it has one (a key's `rate_limit`).
    pub quota: Option<Quota>,
    /// When its credential expires (UTC): a key's `expires_at`, an access token's `exp`.
    pub expires_at: Option<chrono::NaiveDateTime>,
}

impl Principal {
    /// Ok when the principal holds `scope`; otherwise 403 naming it.
    pub fn require(&self, scope: Scope) -> ServiceResult<()> {
        if self.scopes.contains(scope) {
            Ok(())
        } else {
            Err(ServiceError::MissingScope(scope.as_str()))
        }
    }

    pub fn actor_type(&self) -> &'static str {
        match self.actor {
            Actor::User { .. } => "user",
            Actor::ApiKey { .. } => "api_key",
        }
    }

    pub fn actor_id(&self) -> &str {
        match &self.actor {
            Actor::User { id, .. } | Actor::ApiKey { id, .. } => id,
        }
    }

    /// The agent this principal acts as: an agent key bound to one.
    pub fn agent_id(&self) -> Option<&str> {
        match &self.actor {
            Actor::ApiKey {
                agent_id: Some(id), ..
            } => Some(id),
            _ => None,
        }
    }

    /// `user:<id>` or `api_key:<id>`: how records name who acted.
    pub fn actor_label(&self) -> String {
        format!("{}:{}", self.actor_type(), self.actor_id())
    }

    /// The signed-in user, for what only a person may do (changing their password).
    pub fn user(&self) -> ServiceResult<(&str, Role)> {
        match &self.actor {
            Actor::User { id, role } => Ok((id, *role)),
            Actor::ApiKey { .. } => Err(ServiceError::Forbidden(
                "only a signed-in user can do this, not an API key".into(),
            )),
        }
    }

    /// The buckets a request by this principal is charged to.
    pub fn rate_buckets(&self, limits: &RateLimitConfig) -> Vec<(String, Quota)> {
        vec![
            (
                format!("{}:{}", self.actor_type(), self.actor_id()),
                self.quota.unwrap_or(limits.key),
            ),
            (format!("org:{}", self.organization_id), limits.organization),
        ]
    }
}
