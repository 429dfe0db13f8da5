//! Scopes, user roles and API key types: what a principal may do.
//!
//! Every route names the one scope it needs. A user's scopes follow from their role; an
//! API key holds the scopes it was given, within what its type allows.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

macro_rules! scopes {
    ($($variant:ident = $name:literal, $admin:literal, $doc:literal;)*) => {
        /// A permission a route requires.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Scope { $( #[doc = $doc] $variant, )* }

        impl Scope {
            pub const ALL: &'static [Scope] = &[$(Scope::$variant),*];
            pub fn as_str(self) -> &'static str {
                match self { $(Scope::$variant => $name,)* }
            }
            /// Scopes that manage the organization itself; only admin keys and the owner
            /// and admin roles hold them.
            pub fn is_admin(self) -> bool {
                match self { $(Scope::$variant => $admin,)* }
            }
            pub fn description(self) -> &'static str {
                match self { $(Scope::$variant => $doc,)* }
            }
        }

        impl FromStr for Scope {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($name => Ok(Scope::$variant),)*
                    other => Err(format!(
                        "unknown scope {other:?}; the scopes are: {}",
                        [$($name),*].join(", ")
                    )),
                }
            }
        }
    };
}

scopes! {
    OrganizationRead = "organization:read", false, "Read the organization's profile.";
    OrganizationWrite = "organization:write", true, "Change the organization's profile.";
    UsersRead = "users:read", false, "List the organization's users.";
    UsersWrite = "users:write", true, "Create users, change their roles, remove them.";
    ApiKeysRead = "api_keys:read", true, "List API keys (never their secrets).";
    ApiKeysWrite = "api_keys:write", true, "Create and revoke API keys.";
    AuditRead = "audit:read", true, "Read the audit log.";
    ContextsRead = "contexts:read", false, "Read contexts and their items.";
    ContextsWrite = "contexts:write", false, "Create, change, append to and delete contexts.";
    ToolsRead = "tools:read", false, "List the organization's HTTP tools, their operations and health (never their credentials).";
    ToolsWrite = "tools:write", true, "Register, change, rediscover and remove HTTP tools and the organization's credentials for them.";
    AgentsRead = "agents:read", false, "List agents, their presence, load and statistics.";
    AgentsWrite = "agents:write", false, "Register, change, activate, suspend, retire and remove agents.";
    TasksRead = "tasks:read", false, "Read tasks and their events (an agent's key: only the tasks given to its agent).";
    TasksWrite = "tasks:write", false, "Create and cancel tasks.";
    TasksWork = "tasks:work", false, "As an agent: heartbeat, take, accept, reject, report on and finish the tasks given to it.";
    ToolsCall = "tools:call", false, "See and call the organization's HTTP tools (MCP tools/list and tools/call, POST /tools/{id}/execute) and keep one's own credential for them.";
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for Scope {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(Scope::ALL.iter().map(|s| s.as_str())))
            .description(Some(
                "A permission; see the API description for what each allows.",
            ))
            .into()
    }
}

impl ToSchema for Scope {}

/// A set of scopes, stored as space-separated names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet(BTreeSet<Scope>);

impl ScopeSet {
    pub fn all() -> Self {
        Self(Scope::ALL.iter().copied().collect())
    }
    pub fn of(scopes: &[Scope]) -> Self {
        Self(scopes.iter().copied().collect())
    }
    pub fn contains(&self, scope: Scope) -> bool {
        self.0.contains(&scope)
    }
    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }
    /// The scopes of `self` that `other` lacks.
    pub fn missing_from(&self, other: &ScopeSet) -> Vec<Scope> {
        self.0.difference(&other.0).copied().collect()
    }
    pub fn to_stored(&self) -> String {
        self.iter().map(Scope::as_str).collect::<Vec<_>>().join(" ")
    }
    /// Reads the stored form; unknown names (from a newer version) are skipped.
    pub fn from_stored(s: &str) -> Self {
        Self(
            s.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect(),
        )
    }
    pub fn to_vec(&self) -> Vec<Scope> {
        self.iter().collect()
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

/// A closed set of snake_case words (a role, a key type, a task status): serde, JSON
/// Schema, `as_str`, `from_stored` and `Display` from one list. The caller imports
/// `Serialize`, `Deserialize`, `ToSchema` and `std::fmt`.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),* }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }
            pub fn from_stored(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)* _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use string_enum;

string_enum! {
    /// A user's role in their organization.
    Role { Owner = "owner", Admin = "admin", Member = "member", Viewer = "viewer" }
}

string_enum! {
    /// What an API key is for; the type bounds the scopes it may hold.
    KeyType { Admin = "admin", Gateway = "gateway", Agent = "agent", User = "user" }
}

impl Role {
    pub fn scopes(self) -> ScopeSet {
        use Scope::*;
        match self {
            Role::Owner | Role::Admin => ScopeSet::all(),
            Role::Member => ScopeSet::of(&[
                OrganizationRead,
                UsersRead,
                ContextsRead,
                ContextsWrite,
                ToolsRead,
                ToolsCall,
                AgentsRead,
                AgentsWrite,
                TasksRead,
                TasksWrite,
            ]),
            Role::Viewer => ScopeSet::of(&[
                OrganizationRead,
                UsersRead,
                ContextsRead,
                ToolsRead,
                AgentsRead,
                TasksRead,
            ]),
        }
    }
}

impl KeyType {
    /// The scopes a key of this type gets when the request names none.
    pub fn default_scopes(self) -> ScopeSet {
        use Scope::*;
        match self {
            KeyType::Admin => ScopeSet::all(),
            KeyType::User => ScopeSet::of(&[
                OrganizationRead,
                UsersRead,
                ContextsRead,
                ContextsWrite,
                ToolsRead,
                ToolsCall,
                AgentsRead,
                TasksRead,
                TasksWrite,
            ]),
            KeyType::Agent => ScopeSet::of(&[
                ContextsRead,
                ContextsWrite,
                ToolsRead,
                ToolsCall,
                AgentsRead,
                TasksRead,
                TasksWrite,
                TasksWork,
            ]),
            KeyType::Gateway => ScopeSet::of(&[ContextsRead, ToolsRead, ToolsCall]),
        }
    }
    /// Whether a key of this type may hold `scope`.
    pub fn allows(self, scope: Scope) -> bool {
        self == KeyType::Admin || !scope.is_admin()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_names_round_trip_and_unknown_ones_are_named() {
        for s in Scope::ALL {
            assert_eq!(s.as_str().parse::<Scope>().unwrap(), *s);
        }
        let err = "contexts:delete".parse::<Scope>().unwrap_err();
        assert!(err.contains("contexts:delete") && err.contains("contexts:write"));
        let set = ScopeSet::of(&[Scope::ContextsWrite, Scope::ContextsRead]);
        assert_eq!(set.to_stored(), "contexts:read contexts:write");
        assert_eq!(ScopeSet::from_stored(&set.to_stored()), set);
    }

    #[test]
    fn roles_and_key_types_bound_scopes() {
        assert!(Role::Viewer.scopes().contains(Scope::ContextsRead));
        assert!(!Role::Viewer.scopes().contains(Scope::ContextsWrite));
        assert!(!Role::Member.scopes().contains(Scope::ApiKeysWrite));
        assert!(!KeyType::Agent.allows(Scope::AuditRead));
        assert!(KeyType::Admin.allows(Scope::AuditRead));
        for t in [KeyType::User, KeyType::Agent, KeyType::Gateway] {
            assert!(t.default_scopes().iter().all(|s| t.allows(s)));
        }
    }
}
