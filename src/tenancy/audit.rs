//! The audit log: who did what to which object, when, and how it ended. Details never hold
//! a secret; writing an entry never fails the action it records (a failure is logged).

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::context::Context;
use crate::service::{Page, PageRequest, ServiceResult};
use crate::storage::audit::{self as store, AuditFilter, AuditRow};
use crate::tenancy::scopes::Scope;
use crate::tenancy::{Principal, new_id, utc};

/// One action to record.
pub struct Event<'a> {
    pub organization_id: &'a str,
    pub actor_type: &'static str,
    pub actor_id: Option<&'a str>,
    pub action: &'static str,
    pub target: Option<(&'static str, &'a str)>,
    pub success: bool,
    pub details: Value,
    pub ip: Option<&'a str>,
}

impl<'a> Event<'a> {
    /// An action by `principal` that succeeded.
    pub fn by(principal: &'a Principal, action: &'static str) -> Self {
        Self {
            organization_id: &principal.organization_id,
            actor_type: principal.actor_type(),
            actor_id: Some(principal.actor_id()),
            action,
            target: None,
            success: true,
            details: Value::Object(Default::default()),
            ip: None,
        }
    }
    pub fn target(mut self, kind: &'static str, id: &'a str) -> Self {
        self.target = Some((kind, id));
        self
    }
    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

pub async fn record(ctx: &Context, event: Event<'_>) {
    let row = AuditRow {
        id: new_id(),
        organization_id: event.organization_id.to_string(),
        actor_type: event.actor_type.to_string(),
        actor_id: event.actor_id.map(str::to_string),
        action: event.action.to_string(),
        target_type: event.target.map(|(k, _)| k.to_string()),
        target_id: event.target.map(|(_, id)| id.to_string()),
        outcome: if event.success { "success" } else { "failure" }.to_string(),
        details: event.details.to_string(),
        ip: event.ip.map(str::to_string),
        created_at: crate::storage::now(),
    };
    if let Err(e) = store::insert(&ctx.db, &row).await {
        tracing::error!(error = %e, action = event.action, "cannot write an audit entry");
    }
}

/// An audit log entry as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    pub id: String,
    /// `user`, `api_key` or `anonymous` (a failed login).
    pub actor_type: String,
    pub actor_id: Option<String>,
    /// What happened, such as `auth.login`, `api_key.created`, `user.role_changed`.
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    /// `success` or `failure`.
    pub outcome: String,
    #[schema(value_type = Object)]
    pub details: Value,
    pub ip: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<AuditRow> for AuditEntry {
    fn from(r: AuditRow) -> Self {
        Self {
            id: r.id,
            actor_type: r.actor_type,
            actor_id: r.actor_id,
            action: r.action,
            target_type: r.target_type,
            target_id: r.target_id,
            outcome: r.outcome,
            details: serde_json::from_str(&r.details).unwrap_or(Value::Null),
            ip: r.ip,
            created_at: utc(r.created_at),
        }
    }
}

pub async fn list(
    ctx: &Context,
    principal: &Principal,
    filter: AuditFilter,
    page: PageRequest,
) -> ServiceResult<Page<AuditEntry>> {
    principal.require(Scope::AuditRead)?;
    let rows = store::list(
        &ctx.db,
        &principal.organization_id,
        &filter,
        page.after.as_deref(),
        page.fetch(),
    )
    .await?;
    Ok(page.page(rows, |r| &r.id, AuditEntry::from))
}
