//! Prometheus metrics. One recorder per process; every listener's `/metrics` renders it.
//!
//! Names follow `devmesh_<area>_<what>_<unit>`:
//! - `devmesh_http_requests_total{listener,method,route,status}`
//! - `devmesh_http_request_duration_seconds{listener,method,route,status}` (histogram)
//! - `devmesh_db_pool_connections{state="max|open|idle|waiting"}`
//! - `devmesh_jobs_queue_depth{queue,state="ready|scheduled|running|dead"}`
//! - `devmesh_jobs_processed_total{queue,job,outcome}`, `devmesh_jobs_duration_seconds{queue,job}`
//! - `devmesh_nodes_marked_gone_total`
//! - `devmesh_build_info{version}` (always 1)

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const JOB_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_duration_seconds".into()),
                    LATENCY_BUCKETS,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("devmesh_jobs_duration_seconds".into()),
                        JOB_BUCKETS,
                    )
                })
                .expect("bucket lists are not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed, in which case ours renders nothing new.
            let _ = metrics::set_global_recorder(recorder);
            metrics::gauge!("devmesh_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            handle
        })
        .clone()
}

/// Housekeeping the exporter needs when its own HTTP listener is off.
pub async fn run_upkeep(shutdown: CancellationToken) {
    let handle = handle();
    let mut ticks = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => handle.run_upkeep(),
        }
    }
}
