//! The HTTP listeners. Each role with a listener (mcp, api) gets an actix server on a
//! listener bound beforehand (port 0 works), with the shared middleware, error shapes and
//! system endpoints; the role's own routes are added by its module.

pub mod errors;
pub mod json;
pub mod middleware;
pub mod rate_limit;
pub mod system;
pub mod unread;

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};

use crate::context::Context;
use middleware::ListenerName;

/// Routes that make up one listener, beyond the system endpoints every listener serves,
/// with the state of the capabilities they belong to (as `web::Data`): `app` makes them.
pub type Routes = std::sync::Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>;

/// Shared settings for every app: body limits and their error answers.
pub fn configure_extractors(cfg: &mut web::ServiceConfig, body_limit: usize) {
    cfg.app_data(errors::payload_config(body_limit))
        .app_data(errors::query_config())
        .app_data(errors::path_config())
        .app_data(json::BodyLimit(body_limit));
}

/// How long a connection that the server closes lingers for its peer to read the answer.
const CLOSE_LINGER: std::time::Duration = std::time::Duration::from_millis(150);

/// Builds the server for one listener; it starts when the returned future is polled.
pub fn serve(
    listener: TcpListener,
    name: &'static str,
    routes: Routes,
    ctx: Context,
) -> std::io::Result<Server> {
    let http = &ctx.config.http;
    let workers = if http.workers == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        http.workers
    };
    let grace = ctx.config.shutdown.grace_period.get().as_secs().max(1);
    let body_limit = http.body_limit_bytes;
    let data = web::Data::new(ctx);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(ListenerName(name))
            .configure(|cfg| configure_extractors(cfg, body_limit))
            .wrap(actix_web::middleware::from_fn(
                rate_limit::rate_limit_headers,
            ))
            .wrap(actix_web::middleware::from_fn(unread::close_when_unread))
            .wrap(actix_web::middleware::from_fn(middleware::observe))
            .configure(system::configure)
            .configure(|cfg| routes(cfg))
            .default_service(web::to(errors::not_found))
    })
    .workers(workers)
    // After an answer that closes the connection (a body refused for its size), how long
    // the peer has to read it before the connection goes; actix-http reads and discards
    // what the peer still sends meanwhile (1 s by default).
    .client_disconnect_timeout(CLOSE_LINGER)
    .disable_signals()
    .shutdown_timeout(grace)
    .listen(listener)?
    .run();
    Ok(server)
}
