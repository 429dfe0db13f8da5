//! The tools gateway's rows: registered HTTP APIs (`gateway_tools`), the description
//! paths learned per host pattern (`gateway_learned_paths`) and per-user credentials
//! (`gateway_credentials`). Credentials are stored sealed; this module never sees them
//! in clear.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::schema::{gateway_credentials, gateway_learned_paths, gateway_tools};
use super::{Db, StorageResult};
use crate::with_conn;

/// A registered tool without its two large columns (the converted API and an uploaded
/// document), which [`api_of`] and [`document_of`] read.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = gateway_tools)]
pub struct ToolRow {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub base_url: String,
    /// JSON (`gateway::registry::Settings`).
    pub settings: String,
    pub auth_kind: Option<String>,
    pub auth_sealed: Option<String>,
    /// JSON (`gateway::registry::DiscoveryState`).
    pub discovery: String,
    pub revision: i64,
    /// JSON (`gateway::health::Health`).
    pub health: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// A new tool, whole.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = gateway_tools)]
pub struct NewToolRow {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub base_url: String,
    pub settings: String,
    pub auth_kind: Option<String>,
    pub auth_sealed: Option<String>,
    pub document: Option<String>,
    pub discovery: String,
    pub api: Option<String>,
    pub revision: i64,
    pub health: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// Columns to change; `None` leaves one alone, `Some(None)` clears it.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = gateway_tools)]
pub struct ToolChanges {
    pub name: Option<String>,
    pub base_url: Option<String>,
    pub settings: Option<String>,
    pub auth_kind: Option<Option<String>>,
    pub auth_sealed: Option<Option<String>>,
    pub document: Option<Option<String>>,
    pub discovery: Option<String>,
    pub api: Option<Option<String>>,
    pub revision: Option<i64>,
    pub updated_at: Option<NaiveDateTime>,
}

/// What the MCP catalog needs of a tool: enough to build its MCP tools.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = gateway_tools)]
pub struct CatalogRow {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub base_url: String,
    pub settings: String,
    pub auth_sealed: Option<String>,
    pub revision: i64,
    pub health: String,
    pub api: Option<String>,
}

pub async fn insert(db: &Db, row: &NewToolRow) -> StorageResult<()> {
    with_conn!(db, [row], |conn| {
        diesel::insert_into(gateway_tools::table)
            .values(row)
            .execute(conn)
            .await?;
        Ok(())
    })
}

pub async fn get(db: &Db, org: &str, id: &str) -> StorageResult<Option<ToolRow>> {
    with_conn!(db, [org, id], |conn| {
        Ok(gateway_tools::table
            .filter(gateway_tools::organization_id.eq(org))
            .filter(gateway_tools::id.eq(id))
            .select(ToolRow::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// A page of the organization's tools by id, after `after`.
pub async fn list(
    db: &Db,
    org: &str,
    after: Option<&str>,
    limit: i64,
) -> StorageResult<Vec<ToolRow>> {
    with_conn!(db, [org, after], |conn| {
        let mut q = gateway_tools::table
            .filter(gateway_tools::organization_id.eq(org))
            .select(ToolRow::as_select())
            .order(gateway_tools::id.asc())
            .limit(limit)
            .into_boxed();
        if let Some(after) = after {
            q = q.filter(gateway_tools::id.gt(after.to_string()));
        }
        Ok(q.load(conn).await?)
    })
}

/// Every tool name of the organization, with its id.
pub async fn names(db: &Db, org: &str) -> StorageResult<Vec<(String, String)>> {
    with_conn!(db, [org], |conn| {
        Ok(gateway_tools::table
            .filter(gateway_tools::organization_id.eq(org))
            .select((gateway_tools::id, gateway_tools::name))
            .load(conn)
            .await?)
    })
}

/// Each tool's id, revision and health: what decides whether a cached catalog entry is
/// current.
pub async fn revisions(db: &Db, org: &str) -> StorageResult<Vec<(String, i64, String)>> {
    with_conn!(db, [org], |conn| {
        Ok(gateway_tools::table
            .filter(gateway_tools::organization_id.eq(org))
            .select((
                gateway_tools::id,
                gateway_tools::revision,
                gateway_tools::health,
            ))
            .order(gateway_tools::id.asc())
            .load(conn)
            .await?)
    })
}

/// The catalog rows of the given tools of an organization.
pub async fn catalog_rows(db: &Db, org: &str, ids: &[String]) -> StorageResult<Vec<CatalogRow>> {
    with_conn!(db, [org, ids], |conn| {
        Ok(gateway_tools::table
            .filter(gateway_tools::organization_id.eq(org))
            .filter(gateway_tools::id.eq_any(ids))
            .select(CatalogRow::as_select())
            .load(conn)
            .await?)
    })
}

/// The converted API (JSON), when discovery has produced one.
pub async fn api_of(db: &Db, org: &str, id: &str) -> StorageResult<Option<String>> {
    with_conn!(db, [org, id], |conn| {
        Ok(gateway_tools::table
            .filter(gateway_tools::organization_id.eq(org))
            .filter(gateway_tools::id.eq(id))
            .select(gateway_tools::api)
            .first::<Option<String>>(conn)
            .await
            .optional()?
            .flatten())
    })
}

/// Which of the given tools stand on an uploaded description (without reading it).
pub async fn uploaded(db: &Db, org: &str, ids: &[String]) -> StorageResult<Vec<String>> {
    with_conn!(db, [org, ids], |conn| {
        Ok(gateway_tools::table
            .filter(gateway_tools::organization_id.eq(org))
            .filter(gateway_tools::id.eq_any(ids))
            .filter(gateway_tools::document.is_not_null())
            .select(gateway_tools::id)
            .load(conn)
            .await?)
    })
}

/// The uploaded description, when there is one.
pub async fn document_of(db: &Db, org: &str, id: &str) -> StorageResult<Option<String>> {
    with_conn!(db, [org, id], |conn| {
        Ok(gateway_tools::table
            .filter(gateway_tools::organization_id.eq(org))
            .filter(gateway_tools::id.eq(id))
            .select(gateway_tools::document)
            .first::<Option<String>>(conn)
            .await
            .optional()?
            .flatten())
    })
}

/// Applies `changes`; false when the tool does not exist.
pub async fn update(db: &Db, org: &str, id: &str, changes: &ToolChanges) -> StorageResult<bool> {
    with_conn!(db, [org, id, changes], |conn| {
        let n = diesel::update(
            gateway_tools::table
                .filter(gateway_tools::organization_id.eq(org))
                .filter(gateway_tools::id.eq(id)),
        )
        .set(changes)
        .execute(conn)
        .await?;
        Ok(n > 0)
    })
}

/// Applies `changes` only if the tool's discovery is still the one a job started from
/// (compare-and-set on the discovery column): a discovery overtaken by a newer
/// registration change does not overwrite it. False when it was overtaken.
pub async fn update_if_discovery(
    db: &Db,
    org: &str,
    id: &str,
    discovery: &str,
    changes: &ToolChanges,
) -> StorageResult<bool> {
    with_conn!(db, [org, id, discovery, changes], |conn| {
        let n = diesel::update(
            gateway_tools::table
                .filter(gateway_tools::organization_id.eq(org))
                .filter(gateway_tools::id.eq(id))
                .filter(gateway_tools::discovery.eq(discovery)),
        )
        .set(changes)
        .execute(conn)
        .await?;
        Ok(n > 0)
    })
}

pub async fn set_health(db: &Db, id: &str, health: &str) -> StorageResult<()> {
    with_conn!(db, [id, health], |conn| {
        diesel::update(gateway_tools::table.find(id))
            .set(gateway_tools::health.eq(health))
            .execute(conn)
            .await?;
        Ok(())
    })
}

/// Every tool of every organization: what the health checks and `secrets rotate` walk.
pub async fn all(db: &Db) -> StorageResult<Vec<ToolRow>> {
    with_conn!(db, |conn| {
        Ok(gateway_tools::table
            .select(ToolRow::as_select())
            .order(gateway_tools::id.asc())
            .load(conn)
            .await?)
    })
}

pub async fn delete(db: &Db, org: &str, id: &str) -> StorageResult<bool> {
    with_conn!(db, [org, id], |conn| {
        let n = diesel::delete(
            gateway_tools::table
                .filter(gateway_tools::organization_id.eq(org))
                .filter(gateway_tools::id.eq(id)),
        )
        .execute(conn)
        .await?;
        Ok(n > 0)
    })
}

/// The path hosts of this pattern served their description at, last time.
pub async fn learned_path(db: &Db, org: &str, pattern: &str) -> StorageResult<Option<String>> {
    with_conn!(db, [org, pattern], |conn| {
        Ok(gateway_learned_paths::table
            .filter(gateway_learned_paths::organization_id.eq(org))
            .filter(gateway_learned_paths::host_pattern.eq(pattern))
            .select(gateway_learned_paths::path)
            .first(conn)
            .await
            .optional()?)
    })
}

pub async fn learn_path(db: &Db, org: &str, pattern: &str, path: &str) -> StorageResult<()> {
    with_conn!(db, [org, pattern, path], |conn| {
        let now = super::now();
        diesel::insert_into(gateway_learned_paths::table)
            .values((
                gateway_learned_paths::organization_id.eq(org),
                gateway_learned_paths::host_pattern.eq(pattern),
                gateway_learned_paths::path.eq(path),
                gateway_learned_paths::updated_at.eq(now),
            ))
            .on_conflict((
                gateway_learned_paths::organization_id,
                gateway_learned_paths::host_pattern,
            ))
            .do_update()
            .set((
                gateway_learned_paths::path.eq(path),
                gateway_learned_paths::updated_at.eq(now),
            ))
            .execute(conn)
            .await?;
        Ok(())
    })
}

/// A principal's own sealed credential for a tool.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = gateway_credentials)]
pub struct CredentialRow {
    pub tool_id: String,
    pub organization_id: String,
    pub owner: String,
    pub auth_kind: String,
    pub auth_sealed: String,
    pub updated_at: NaiveDateTime,
}

pub async fn put_credential(db: &Db, row: &CredentialRow) -> StorageResult<()> {
    with_conn!(db, [row], |conn| {
        diesel::insert_into(gateway_credentials::table)
            .values(row)
            .on_conflict((gateway_credentials::tool_id, gateway_credentials::owner))
            .do_update()
            .set(row)
            .execute(conn)
            .await?;
        Ok(())
    })
}

pub async fn credential(
    db: &Db,
    org: &str,
    tool: &str,
    owner: &str,
) -> StorageResult<Option<CredentialRow>> {
    with_conn!(db, [org, tool, owner], |conn| {
        Ok(gateway_credentials::table
            .filter(gateway_credentials::organization_id.eq(org))
            .filter(gateway_credentials::tool_id.eq(tool))
            .filter(gateway_credentials::owner.eq(owner))
            .select(CredentialRow::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

pub async fn delete_credential(db: &Db, org: &str, tool: &str, owner: &str) -> StorageResult<bool> {
    with_conn!(db, [org, tool, owner], |conn| {
        let n = diesel::delete(
            gateway_credentials::table
                .filter(gateway_credentials::organization_id.eq(org))
                .filter(gateway_credentials::tool_id.eq(tool))
                .filter(gateway_credentials::owner.eq(owner)),
        )
        .execute(conn)
        .await?;
        Ok(n > 0)
    })
}

/// Every stored credential: what `secrets rotate` re-seals.
pub async fn all_credentials(db: &Db) -> StorageResult<Vec<CredentialRow>> {
    with_conn!(db, |conn| {
        Ok(gateway_credentials::table
            .select(CredentialRow::as_select())
            .load(conn)
            .await?)
    })
}

/// Replaces one sealed value by its re-sealed form, if it is still the value read.
pub async fn reseal_tool(db: &Db, id: &str, old: &str, new: &str) -> StorageResult<bool> {
    with_conn!(db, [id, old, new], |conn| {
        let n = diesel::update(
            gateway_tools::table
                .filter(gateway_tools::id.eq(id))
                .filter(gateway_tools::auth_sealed.eq(old)),
        )
        .set(gateway_tools::auth_sealed.eq(new))
        .execute(conn)
        .await?;
        Ok(n > 0)
    })
}

/// Replaces one sealed credential by its re-sealed form, if it is still the value read.
pub async fn reseal_credential(
    db: &Db,
    tool: &str,
    owner: &str,
    old: &str,
    new: &str,
) -> StorageResult<bool> {
    with_conn!(db, [tool, owner, old, new], |conn| {
        let n = diesel::update(
            gateway_credentials::table
                .filter(gateway_credentials::tool_id.eq(tool))
                .filter(gateway_credentials::owner.eq(owner))
                .filter(gateway_credentials::auth_sealed.eq(old)),
        )
        .set(gateway_credentials::auth_sealed.eq(new))
        .execute(conn)
        .await?;
        Ok(n > 0)
    })
}
