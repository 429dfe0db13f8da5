//! What every transport-free service shares: the domain error (mapped to HTTP in
//! `http::errors`, the one place that does so) and cursor pagination.

use serde::Serialize;
use utoipa::ToSchema;

use crate::bus::ratelimit::Decision;
use crate::storage::StorageError;

/// What was wrong with one field of a request: the field's name as the caller wrote it
/// (`"name"`, `"auth.token_url"`) and a sentence saying what is wrong and what would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A field's value breaks its rules.
    #[error("{0}")]
    Invalid(FieldError),
    /// No credentials, or credentials that do not identify anyone.
    #[error("{0}")]
    Unauthenticated(String),
    /// The principal lacks the scope the action needs (its name, such as `contexts:write`).
    #[error("this needs the scope {0}")]
    MissingScope(&'static str),
    /// The principal may not do this, whatever its scopes.
    #[error("{0}")]
    Forbidden(String),
    /// Nothing by this id in the caller's organization (another tenant's object too).
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    /// `If-Match` named a version that is no longer current.
    #[error("{0}")]
    PreconditionFailed(String),
    /// A conditional write came without `If-Match`.
    #[error("{0}")]
    PreconditionRequired(String),
    #[error("{0}")]
    TooLarge(String),
    /// Well-formed, but the state of things does not allow it (a token budget, a limit).
    #[error("{0}")]
    Unprocessable(String),
    #[error("rate limit exceeded")]
    RateLimited(Decision),
    #[error("registration is closed")]
    RegistrationClosed,
    #[error(transparent)]
    Storage(StorageError),
    #[error("{0}")]
    Internal(String),
}

impl From<FieldError> for ServiceError {
    fn from(e: FieldError) -> Self {
        ServiceError::Invalid(e)
    }
}

impl From<StorageError> for ServiceError {
    /// A value the database cannot hold is the caller's to fix (422), on every path.
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Unrepresentable(message) => ServiceError::Unprocessable(message),
            e => ServiceError::Storage(e),
        }
    }
}

impl From<diesel::result::Error> for ServiceError {
    fn from(e: diesel::result::Error) -> Self {
        StorageError::from(e).into()
    }
}

impl ServiceError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        ServiceError::Invalid(FieldError::new(field, message))
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// Whether a storage error is a unique-constraint violation (a taken slug or email).
pub fn is_unique_violation(e: &ServiceError) -> bool {
    matches!(
        e,
        ServiceError::Storage(StorageError::Query(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _
        )))
    )
}

/// `?limit=&cursor=`: pages are in a stable order (newest first) and the cursor is the
/// last id of the previous page.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub limit: i64,
    pub after: Option<String>,
}

pub const DEFAULT_PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 200;

impl PageRequest {
    pub fn parse(limit: Option<i64>, cursor: Option<&str>) -> ServiceResult<Self> {
        let limit = limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ServiceError::invalid(
                "limit",
                format!("must be from 1 to {MAX_PAGE} (it is {limit})"),
            ));
        }
        // Cursors are the ids this API gives out: hyphenated UUIDs.
        let after = match cursor {
            None => None,
            Some(c) if c.len() == 36 && uuid::Uuid::parse_str(c).is_ok() => Some(c.to_string()),
            Some(c) => {
                return Err(ServiceError::invalid(
                    "cursor",
                    format!("{c:?} is not a cursor this API gave out"),
                ));
            }
        };
        Ok(Self { limit, after })
    }

    /// How many rows to fetch: one more than the page, to know whether another follows.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }

    /// Cuts rows fetched with [`Self::fetch`] into a page of `T`.
    pub fn page<R, T>(
        &self,
        mut rows: Vec<R>,
        id: impl Fn(&R) -> &str,
        into: impl FnMut(R) -> T,
    ) -> Page<T> {
        let more = rows.len() as i64 > self.limit;
        rows.truncate(self.limit as usize);
        let next_cursor = more
            .then(|| rows.last().map(|r| id(r).to_string()))
            .flatten();
        Page {
            items: rows.into_iter().map(into).collect(),
            next_cursor,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}
