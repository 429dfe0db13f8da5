//! The `?limit=&cursor=` query parameters every list takes.

use serde::Deserialize;
use utoipa::IntoParams;

use crate::service::{PageRequest, ServiceResult};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<uuid::Uuid>)]
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn page(&self) -> ServiceResult<PageRequest> {
        PageRequest::parse(self.limit, self.cursor.as_deref())
    }
}
