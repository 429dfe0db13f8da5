//! `/health`, `/ready` and `/metrics`, served by every listener.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::json;

use super::errors::method_not_allowed;
use crate::context::Context;
use crate::health;
use crate::storage::PoolUsage;
use crate::telemetry::metrics as telemetry;

pub fn configure(cfg: &mut web::ServiceConfig) {
    for (path, handler) in [
        ("/health", web::get().to(live)),
        ("/ready", web::get().to(ready)),
        ("/metrics", web::get().to(metrics)),
    ] {
        cfg.service(
            web::resource(path)
                .route(handler)
                .default_service(web::to(method_not_allowed)),
        );
    }
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "system", responses((status = 200, description = "The process answers, with its version and node")))]
pub async fn live(ctx: web::Data<Context>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "version": ctx.node.version,
        "node": { "id": ctx.node.id, "name": ctx.node.name, "roles": ctx.node.roles.to_string() },
    }))
}

/// Readiness: 200 when every dependency answers, else 503 naming the one that does not.
#[utoipa::path(get, path = "/ready", tag = "system", responses(
    (status = 200, description = "Database (and Redis, when configured) answer"),
    (status = 503, description = "A dependency does not answer; the body names it"),
))]
pub async fn ready(ctx: web::Data<Context>) -> HttpResponse {
    let report = health::readiness(
        &ctx.health,
        &ctx.db,
        &ctx.bus,
        ctx.config.http.ready_timeout.get(),
    )
    .await;
    let status = if report.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    HttpResponse::build(status).json(report)
}

/// Prometheus metrics, in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "system", responses((status = 200, description = "Metrics", content_type = "text/plain")))]
pub async fn metrics(ctx: web::Data<Context>) -> HttpResponse {
    record_pool(ctx.db.usage());
    record_queue_depths(&ctx).await;
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(telemetry::handle().render())
}

fn record_pool(usage: PoolUsage) {
    for (state, n) in [
        ("max", usage.max),
        ("open", usage.open),
        ("idle", usage.idle),
        ("waiting", usage.waiting),
    ] {
        metrics::gauge!("devmesh_db_pool_connections", "state" => state).set(n as f64);
    }
}

/// Depth of every configured queue, sampled at scrape time (skipped if the bus is slow).
async fn record_queue_depths(ctx: &Context) {
    let timeout = Duration::from_secs(1);
    for queue in ctx.config.jobs.concurrency.keys() {
        let Ok(Ok(depth)) = tokio::time::timeout(timeout, ctx.bus.queue.depth(queue)).await else {
            continue;
        };
        for (state, n) in [
            ("ready", depth.ready),
            ("scheduled", depth.scheduled),
            ("running", depth.running),
            ("dead", depth.dead),
        ] {
            metrics::gauge!("devmesh_jobs_queue_depth", "queue" => queue.clone(), "state" => state)
                .set(n as f64);
        }
    }
}
