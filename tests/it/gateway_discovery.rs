//! Discovery against real HTTP servers on loopback that serve the corpus's published
//! descriptions: the given URL, hinted and learned paths, the well-known paths, each
//! format, `$ref`s to files beside the document over HTTP, and what was tried when
//! nothing is found. The guard is on with loopback allowed, and proves its refusal with
//! the allowance off.

use std::path::PathBuf;

use devmesh::config::OutboundConfig;
use devmesh::gateway::ApiFormat;
use devmesh::gateway::discovery::{Request, discover};
use devmesh::gateway::document::Limits;
use devmesh::outbound::Outbound;
use reqwest::header::HeaderMap;
use url::Url;

use crate::upstream::{Files, Upstream};

fn corpus() -> PathBuf {
    crate::helpers::openapi_corpus()
}

fn loopback_allowed() -> Outbound {
    Outbound::new(&OutboundConfig {
        allow_private: true,
        ..OutboundConfig::default()
    })
}

async fn serving(aliases: &[(&str, &str)]) -> Upstream {
    Upstream::serving(Files {
        root: Some(corpus()),
        aliases: aliases
            .iter()
            .map(|(a, f)| (a.to_string(), f.to_string()))
            .collect(),
    })
    .await
}

fn request<'a>(
    base: &'a Url,
    openapi: Option<&'a Url>,
    custom: &'a [String],
    learned: &'a [String],
) -> Request<'a> {
    Request {
        base_url: base,
        openapi_url: openapi,
        custom_paths: custom,
        learned_paths: learned,
        headers: HeaderMap::new(),
        credential_headers: Vec::new(),
        prefix: "api",
        limits: Limits::default(),
    }
}

#[tokio::test]
async fn the_given_url_comes_first() {
    let upstream = serving(&[]).await;
    let base: Url = upstream.url("/").parse().unwrap();
    let given: Url = upstream.url("/files/vault-openapi.json").parse().unwrap();
    let found = discover(&loopback_allowed(), request(&base, Some(&given), &[], &[]))
        .await
        .unwrap();
    assert_eq!(found.url, given);
    assert_eq!(found.tried.len(), 1);
    assert_eq!(found.tried[0].outcome, "found");
    assert_eq!(found.api.operations.len(), 1049);

    // Told where it is, discovery looks nowhere else: a broken or missing document there
    // is the answer, even when a well-known path would have served another one.
    let aliased = serving(&[("/openapi.json", "vault-openapi.json")]).await;
    let base: Url = aliased.url("/").parse().unwrap();
    let missing_there: Url = aliased.url("/files/no-such.json").parse().unwrap();
    let not_found = discover(
        &loopback_allowed(),
        request(&base, Some(&missing_there), &[], &[]),
    )
    .await
    .unwrap_err();
    assert_eq!(not_found.tried.len(), 1, "{:?}", not_found.tried);
    assert!(not_found.tried[0].outcome.contains("HTTP 404"));
}

#[tokio::test]
async fn well_known_paths_in_each_format_with_what_was_tried_before() {
    // springdoc's path, serving YAML (OpenAPI 3.0.4).
    let upstream = serving(&[("/v3/api-docs", "petstore3-v3.yaml")]).await;
    let base: Url = upstream.url("/").parse().unwrap();
    let found = discover(&loopback_allowed(), request(&base, None, &[], &[]))
        .await
        .unwrap();
    assert_eq!(found.url.path(), "/v3/api-docs");
    assert_eq!(found.api.format, ApiFormat::Openapi3);
    assert_eq!(found.api.operations.len(), 19);
    let before: Vec<_> = found.tried.iter().map(|a| a.outcome.as_str()).collect();
    assert!(
        before.len() > 1
            && before[..before.len() - 1]
                .iter()
                .all(|o| o.contains("HTTP 404")),
        "{before:?}"
    );

    // Swagger 2.0 JSON at /swagger.json; SonarQube's own format at its path.
    let upstream = serving(&[("/swagger.json", "argocd-swagger.json")]).await;
    let base: Url = upstream.url("/").parse().unwrap();
    let found = discover(&loopback_allowed(), request(&base, None, &[], &[]))
        .await
        .unwrap();
    assert_eq!(found.api.format, ApiFormat::Swagger2);
    let upstream = serving(&[("/api/webservices/list", "sonarqube-webservices-list.json")]).await;
    let base: Url = upstream.url("/").parse().unwrap();
    let found = discover(&loopback_allowed(), request(&base, None, &[], &[]))
        .await
        .unwrap();
    assert_eq!(found.api.format, ApiFormat::SonarqubeWebservices);
    assert_eq!(found.api.operations.len(), 268);
}

#[tokio::test]
async fn hinted_and_learned_paths_come_before_the_well_known_ones() {
    let upstream = serving(&[
        ("/openapi.json", "petstore-v2.json"),
        ("/internal/spec", "uber-v2.yaml"),
        ("/learned/spec", "alertmanager-v2-swagger.yaml"),
    ])
    .await;
    let base: Url = upstream.url("/").parse().unwrap();
    let hinted = vec!["/internal/spec".to_string()];
    let learned = vec!["/learned/spec".to_string()];
    let found = discover(&loopback_allowed(), request(&base, None, &hinted, &learned))
        .await
        .unwrap();
    assert_eq!(found.url.path(), "/internal/spec");
    let found = discover(&loopback_allowed(), request(&base, None, &[], &learned))
        .await
        .unwrap();
    assert_eq!(found.url.path(), "/learned/spec");
    let found = discover(&loopback_allowed(), request(&base, None, &[], &[]))
        .await
        .unwrap();
    assert_eq!(found.url.path(), "/openapi.json");
}

#[tokio::test]
async fn references_to_files_beside_the_document_are_fetched_from_its_origin() {
    let upstream = serving(&[]).await;
    let base: Url = upstream.url("/").parse().unwrap();
    for (file, operations) in [
        ("/files/petstore-separate-v2/spec/swagger.yaml", 4),
        ("/files/redocly-openapi-starter/openapi.yaml", 12),
        ("/files/gitlab-legacy-multifile/openapi.yaml", 1),
    ] {
        let given: Url = upstream.url(file).parse().unwrap();
        let found = discover(&loopback_allowed(), request(&base, Some(&given), &[], &[]))
            .await
            .unwrap();
        assert_eq!(found.api.operations.len(), operations, "{file}");
    }
}

#[tokio::test]
async fn nothing_found_says_what_was_tried_and_the_guard_refuses_loopback() {
    let upstream = serving(&[("/openapi.json", "INDEX.md")]).await;
    let base: Url = upstream.url("/api/").parse().unwrap();
    let e = discover(&loopback_allowed(), request(&base, None, &[], &[]))
        .await
        .unwrap_err();
    // Each well-known path relative to the base and to the origin.
    assert!(
        e.tried.len() > devmesh::gateway::discovery::WELL_KNOWN.len(),
        "{}",
        e.tried.len()
    );
    assert!(e.tried.iter().any(|a| a.url.ends_with("/api/openapi.json")));
    assert!(e.to_string().starts_with("no API description found"), "{e}");

    let strict = Outbound::new(&OutboundConfig::default());
    let base: Url = upstream.url("/").parse().unwrap();
    let e = discover(&strict, request(&base, None, &[], &[]))
        .await
        .unwrap_err();
    assert_eq!(
        e.tried.len(),
        1,
        "a refused host is not tried again: {:?}",
        e.tried
    );
    assert!(e.tried[0].outcome.contains("loopback"), "{:?}", e.tried);
}
