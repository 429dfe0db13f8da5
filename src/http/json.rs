//! `StrictJson<T>`: a JSON body extractor whose errors name the field. An unknown field
//! (the request types deny them) or a value of the wrong type is a 400 that says which
//! field, where, and what was expected.

use std::ops::Deref;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_LENGTH;
use actix_web::{FromRequest, HttpMessage, HttpRequest, mime, web};
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use serde_json::Value;

use super::errors::ApiError;
use crate::decode::DecodeError;

pub struct StrictJson<T>(pub T);

/// The largest body a listener reads (`http.body_limit_bytes`).
#[derive(Clone, Copy)]
pub struct BodyLimit(pub usize);

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the body is larger than the limit of {limit} bytes"),
    )
}

impl<T> Deref for StrictJson<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> StrictJson<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

/// Parses a JSON body into `T`, with errors that name the field (see [`crate::decode`]).
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // Every body of this API is an object: serde would also read a struct from an array
    // of its fields in order, which no client means.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') && serde_json::from_slice::<Value>(body).is_ok() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "the body must be a JSON object",
        ));
    }
    crate::decode::from_slice(body).map_err(|e| match e {
        DecodeError::Data { .. } => ApiError::bad_request("invalid_body", e.to_string()),
        DecodeError::Syntax(inner) => ApiError::bad_request(
            "malformed_json",
            format!("the body is not valid JSON: {inner}"),
        ),
    })
}

impl<T: DeserializeOwned + 'static> FromRequest for StrictJson<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let is_json = req.mime_type().ok().flatten().is_some_and(|m| {
            m.type_() == mime::APPLICATION
                && (m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON))
        });
        let limit = req.app_data::<BodyLimit>().map_or(1024 * 1024, |l| l.0);
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        let req = req.clone();
        Box::pin(async move {
            if !is_json {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "the body must be JSON, sent with Content-Type: application/json",
                )
                .into());
            }
            if let Some(length) = declared.filter(|l| *l > limit) {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("the body is {length} bytes; the limit is {limit} bytes"),
                )
                .into());
            }
            let mut body = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| {
                    ApiError::bad_request("invalid_body", format!("cannot read the body: {e}"))
                })?;
                if body.len() + chunk.len() > limit {
                    super::unread::leave_unread(&req, payload);
                    return Err(too_large(limit).into());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(StrictJson(parse(&body)?))
        })
    }
}
