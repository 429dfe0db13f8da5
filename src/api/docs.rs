//! The API describes itself: the OpenAPI document, and a reference page rendered from it
//! by the server (no script, no CDN: it works offline).

use actix_web::{HttpResponse, get};

use super::{openapi, reference};

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(tag = "docs", responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
#[get("/api/v1/openapi.json")]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(openapi::document_text())
}

/// The API reference, as a web page.
#[utoipa::path(tag = "docs", responses((status = 200, description = "The API reference", content_type = "text/html")))]
#[get("/api/v1/docs")]
pub async fn reference_page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(reference::page())
}
