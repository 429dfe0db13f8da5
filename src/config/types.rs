//! Value types of the configuration tree: each parses its own text form and says what it expected.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use serde::de::{self, Unexpected, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A span of time written as `250ms`, `30s`, `5m`, `2h`, `1d` or a plain number of seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub const fn from_secs(s: u64) -> Self {
        Self(std::time::Duration::from_secs(s))
    }
    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }
    pub fn get(self) -> std::time::Duration {
        self.0
    }
}

const DURATION_EXPECTED: &str = "a duration such as \"250ms\", \"30s\", \"5m\", \"1h\" or \"1d\"";

impl FromStr for Duration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits.parse().map_err(|_| DURATION_EXPECTED.to_string())?;
        let ms = match unit.trim() {
            "ms" => Some(n),
            "" | "s" => n.checked_mul(1_000),
            "m" => n.checked_mul(60_000),
            "h" => n.checked_mul(3_600_000),
            "d" => n.checked_mul(86_400_000),
            _ => return Err(DURATION_EXPECTED.to_string()),
        };
        ms.map(Self::from_millis)
            .ok_or_else(|| DURATION_EXPECTED.to_string())
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        match ms {
            0 => write!(f, "0s"),
            ms if ms % 86_400_000 == 0 => write!(f, "{}d", ms / 86_400_000),
            ms if ms % 3_600_000 == 0 => write!(f, "{}h", ms / 3_600_000),
            ms if ms % 60_000 == 0 => write!(f, "{}m", ms / 60_000),
            ms if ms % 1_000 == 0 => write!(f, "{}s", ms / 1_000),
            ms => write!(f, "{ms}ms"),
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(DURATION_EXPECTED)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Ok(Duration::from_secs(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                u64::try_from(v)
                    .map(Duration::from_secs)
                    .map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                v.parse()
                    .map_err(|_| E::invalid_value(Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(V)
    }
}

/// A listen address (`host:port`); port 0 picks a free port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenAddr(pub SocketAddr);

impl Serialize for ListenAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map(ListenAddr).map_err(|_| {
            de::Error::invalid_value(
                Unexpected::Str(&s),
                &"an address such as \"127.0.0.1:8080\"",
            )
        })
    }
}

/// What a node does. `all` is every role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Api,
    Mcp,
    Worker,
    Indexer,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Api, Role::Mcp, Role::Worker, Role::Indexer];
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::Mcp => "mcp",
            Role::Worker => "worker",
            Role::Indexer => "indexer",
        }
    }
}

/// A non-empty set of roles, written `all` or as a comma-separated list such as `api,mcp`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Roles(Vec<Role>);

const ROLES_EXPECTED: &str = "\"all\" or a comma-separated list of api, mcp, worker, indexer";

impl Roles {
    pub fn all() -> Self {
        Self(Role::ALL.to_vec())
    }
    pub fn has(&self, role: Role) -> bool {
        self.0.contains(&role)
    }
    pub fn iter(&self) -> impl Iterator<Item = Role> + '_ {
        self.0.iter().copied()
    }
}

impl FromStr for Roles {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut roles = Vec::new();
        for part in s.split(',').map(str::trim) {
            match part {
                "all" => roles.extend(Role::ALL),
                "api" => roles.push(Role::Api),
                "mcp" => roles.push(Role::Mcp),
                "worker" => roles.push(Role::Worker),
                "indexer" => roles.push(Role::Indexer),
                _ => return Err(ROLES_EXPECTED.to_string()),
            }
        }
        roles.sort();
        roles.dedup();
        if roles.is_empty() {
            return Err(ROLES_EXPECTED.to_string());
        }
        Ok(Self(roles))
    }
}

impl fmt::Display for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.len() == Role::ALL.len() {
            return f.write_str("all");
        }
        let names: Vec<_> = self.0.iter().map(|r| r.as_str()).collect();
        f.write_str(&names.join(","))
    }
}

impl Serialize for Roles {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Roles {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Roles;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(ROLES_EXPECTED)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Roles, E> {
                v.parse()
                    .map_err(|_| E::invalid_value(Unexpected::Str(v), &self))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Roles, A::Error> {
                let mut parts = Vec::new();
                while let Some(p) = seq.next_element::<String>()? {
                    parts.push(p);
                }
                let joined = parts.join(",");
                joined
                    .parse()
                    .map_err(|_| de::Error::invalid_value(Unexpected::Str(&joined), &self))
            }
        }
        d.deserialize_any(V)
    }
}

/// A connection URL that may carry a password: printed and serialized with the password masked.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }
    /// The URL itself, password included: only for handing to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn scheme(&self) -> &str {
        self.0.split_once("://").map(|(s, _)| s).unwrap_or("")
    }
    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return self.0.clone();
        };
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let Some((userinfo, host)) = authority.rsplit_once('@') else {
            return self.0.clone();
        };
        let user = match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***"),
            None => userinfo.to_string(),
        };
        format!("{scheme}://{user}@{host}{tail}")
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for SecretUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SecretUrl)
    }
}

/// A secret value (a signing key, a password): shown as `***` wherever it is printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself: only for handing to the code that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for SecretString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SecretString)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_units_and_plain_seconds() {
        assert_eq!(
            "250ms".parse::<Duration>().unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!("30s".parse::<Duration>().unwrap(), Duration::from_secs(30));
        assert_eq!("5m".parse::<Duration>().unwrap(), Duration::from_secs(300));
        assert_eq!("2h".parse::<Duration>().unwrap(), Duration::from_secs(7200));
        assert_eq!(
            "1d".parse::<Duration>().unwrap(),
            Duration::from_secs(86_400)
        );
        assert_eq!(Duration::from_secs(2 * 86_400).to_string(), "2d");
        assert_eq!("12".parse::<Duration>().unwrap(), Duration::from_secs(12));
        assert!("ten seconds".parse::<Duration>().is_err());
        assert!("10w".parse::<Duration>().is_err());
        assert!("".parse::<Duration>().is_err());
        assert_eq!(Duration::from_millis(1500).to_string(), "1500ms");
        assert_eq!(Duration::from_secs(120).to_string(), "2m");
    }

    #[test]
    fn roles_parse_lists_and_all() {
        let r: Roles = "mcp, api".parse().unwrap();
        assert!(r.has(Role::Api) && r.has(Role::Mcp) && !r.has(Role::Worker));
        assert_eq!(r.to_string(), "api,mcp");
        assert_eq!("all".parse::<Roles>().unwrap(), Roles::all());
        assert!("api,web".parse::<Roles>().is_err());
        assert!("".parse::<Roles>().is_err());
    }

    #[test]
    fn secret_urls_mask_the_password_only() {
        let u =
            SecretUrl::new("postgres://devmesh:hunter2@db.internal:5432/devmesh?sslmode=require");
        assert_eq!(
            u.redacted(),
            "postgres://devmesh:***@db.internal:5432/devmesh?sslmode=require"
        );
        assert!(!format!("{u:?}").contains("hunter2"));
        assert_eq!(
            SecretUrl::new("redis://127.0.0.1:6379").redacted(),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            SecretUrl::new("redis://:pw@h:1/0").redacted(),
            "redis://:***@h:1/0"
        );
        assert_eq!(u.scheme(), "postgres");
    }
}
