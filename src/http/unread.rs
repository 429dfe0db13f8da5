//! Bodies refused before their end (for their size): the answer closes the connection
//! rather than reading on (RFC 9112 section 9.6 lets a server close; a chunked body may
//! never end).
//!
//! The HTTP/1.1 dispatcher (actix-http) reads a dropped chunked body to its end before
//! it reads the next request, which for an endless body is forever. A body that is still
//! held when the answer has been written makes it close the connection instead; so a
//! handler that refuses a body hands it to [`leave_unread`], and [`close_when_unread`]
//! keeps it, inside the answer's body, until that answer is out.

use std::any::Any;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::HttpMessage;
use actix_web::body::{BodySize, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web::Bytes;

/// Held only to be dropped later.
struct UnreadBody(#[allow(dead_code)] Box<dyn Any>);

/// Keeps a refused request body (`web::Payload` or `dev::Payload`) unread: the answer to
/// this request then closes the connection.
pub fn leave_unread(req: &actix_web::HttpRequest, payload: impl Any) {
    req.extensions_mut().insert(UnreadBody(Box::new(payload)));
}

/// Middleware: an answer to a request whose body was left unread holds that body until
/// it is written, and says `Connection: close`.
pub async fn close_when_unread<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B, Holding<B>>>, actix_web::Error> {
    let mut res = next.call(req).await?;
    let unread = res.request().extensions_mut().remove::<UnreadBody>();
    let Some(unread) = unread else {
        return Ok(res.map_into_left_body());
    };
    res.response_mut()
        .head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    Ok(res
        .map_body(|_, body| Holding {
            body: Box::pin(body),
            _unread: unread,
        })
        .map_into_right_body())
}

/// An answer's body, holding the request body it left unread until it is dropped.
pub struct Holding<B> {
    body: Pin<Box<B>>,
    _unread: UnreadBody,
}

impl<B: MessageBody> MessageBody for Holding<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        self.get_mut().body.as_mut().poll_next(cx)
    }
}
