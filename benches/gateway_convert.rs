//! Discovery and conversion of API descriptions, measured: reading (parse and `$ref`
//! files) and converting GitHub's REST description (`api.github.com.json` of the npm
//! package `@octokit/openapi`) and then every document of `../shared/corpus/openapi/`,
//! from files read in place. Prints, as JSON, the time of each (the best of RUNS) and the
//! process's peak resident memory after GitHub's and after the whole corpus.
//!
//!   cargo bench --bench gateway_convert -- [GITHUB_JSON] [RUNS]
//!
//! GITHUB_JSON defaults to `$DEVMESH_GITHUB_OPENAPI` (set by `scripts/test-tools.sh`); the
//! corpus is `$DEVMESH_CORPUS/openapi`, else `shared/corpus/openapi` beside the project.
//! It reads local files only and ends by itself.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use devmesh::gateway::convert;
use devmesh::gateway::document::{Directory, DocumentSet, Limits};
use serde_json::json;

/// Peak resident set size of this process, in MiB (Linux `VmHWM`).
fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

async fn convert_file(dir: &Directory, relative: &str) -> usize {
    let set = DocumentSet::load(dir.url(relative), dir, &Limits::default())
        .await
        .unwrap_or_else(|e| panic!("{relative}: {e}"));
    convert(&set, "bench")
        .unwrap_or_else(|e| panic!("{relative}: {e}"))
        .operations
        .len()
}

/// The corpus's root documents (multi-file descriptions by their roots; OpenSearch's 36).
fn corpus_roots(corpus: &Path) -> Vec<String> {
    let mut roots = Vec::new();
    for entry in std::fs::read_dir(corpus).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".json") || name.ends_with(".yaml") {
            roots.push(name);
        }
    }
    for multi in [
        "petstore-separate-v2/spec/swagger.yaml",
        "redocly-openapi-starter/openapi.yaml",
        "train-travel-v31/openapi.yaml",
        "gitlab-legacy-multifile/openapi.yaml",
    ] {
        roots.push(multi.to_string());
    }
    for entry in std::fs::read_dir(corpus.join("opensearch-multifile/namespaces")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        roots.push(format!("opensearch-multifile/namespaces/{name}"));
    }
    roots.sort();
    roots
}

async fn best_of<F, Fut>(runs: usize, mut work: F) -> (Duration, usize)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = usize>,
{
    let mut best = Duration::MAX;
    let mut count = 0;
    for _ in 0..runs {
        let started = Instant::now();
        count = work().await;
        best = best.min(started.elapsed());
    }
    (best, count)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let github = args
        .first()
        .cloned()
        .or_else(|| std::env::var("DEVMESH_GITHUB_OPENAPI").ok())
        .expect("give api.github.com.json's path, or source scripts/test-tools.sh");
    let runs: usize = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(3);
    let github = PathBuf::from(github);
    let github_dir = Directory::new(github.parent().unwrap()).unwrap();
    let github_file = github.file_name().unwrap().to_str().unwrap().to_string();
    let (github_time, github_ops) = best_of(runs, || convert_file(&github_dir, &github_file)).await;
    let github_peak = peak_mib();

    let corpus = match std::env::var("DEVMESH_CORPUS") {
        Ok(dir) => PathBuf::from(dir).join("openapi"),
        Err(_) => Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(|a| a.join("shared/corpus/openapi"))
            .find(|c| c.join("INDEX.md").is_file())
            .expect("set DEVMESH_CORPUS to the shared corpus directory, or keep the project beside ../shared"),
    };
    let dir = Directory::new(&corpus).unwrap();
    let roots = corpus_roots(&corpus);
    let (corpus_time, corpus_ops) = best_of(runs, || async {
        let mut total = 0;
        for root in &roots {
            total += convert_file(&dir, root).await;
        }
        total
    })
    .await;
    println!(
        "{}",
        json!({
            "github": { "operations": github_ops, "seconds": github_time.as_secs_f64(), "peak_rss_mib": github_peak },
            "corpus": { "documents": roots.len(), "operations": corpus_ops, "seconds": corpus_time.as_secs_f64(), "peak_rss_mib_overall": peak_mib() },
            "runs": runs,
        })
    );
}
