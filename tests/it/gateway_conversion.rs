//! API descriptions into tools, over the real published documents of
//! `../shared/corpus/openapi/` (read in place): every one converts, with the number of
//! operations its INDEX.md counts, portable unique names and input schemas that are valid
//! JSON Schema; and hostile documents get a clear error or a documented cut.

use std::path::PathBuf;

use devmesh::gateway::document::{Directory, DocumentError, DocumentSet, Limits};
use devmesh::gateway::{Api, ApiFormat, convert, naming};
use serde_json::json;

fn corpus() -> PathBuf {
    crate::helpers::openapi_corpus()
}

async fn load(dir: &Directory, relative: &str) -> DocumentSet {
    DocumentSet::load(dir.url(relative), dir, &Limits::default())
        .await
        .unwrap_or_else(|e| panic!("{relative}: {e}"))
}

async fn api_of(relative: &str, prefix: &str) -> Api {
    let dir = Directory::new(corpus()).unwrap();
    let set = load(&dir, relative).await;
    convert(&set, prefix).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// What a client would check of every tool: a portable, unique name; an input schema
/// that is an object schema and compiles as JSON Schema 2020-12; path parameters that are
/// required arguments.
fn check_tools(file: &str, api: &Api) {
    let mut seen = std::collections::HashSet::new();
    for op in &api.operations {
        assert!(
            naming::is_portable(&op.name),
            "{file}: {:?} is not portable",
            op.name
        );
        assert!(seen.insert(op.name.clone()), "{file}: {} twice", op.name);
        assert_eq!(op.input_schema["type"], "object", "{file} {}", op.name);
        if let Err(e) = jsonschema::validator_for(&op.input_schema) {
            panic!("{file} {}: the input schema does not compile: {e}", op.name);
        }
        let required = op.input_schema["required"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for p in op
            .parameters
            .iter()
            .filter(|p| p.location == devmesh::gateway::operations::Location::Path)
        {
            assert!(
                required.contains(&json!(p.argument)),
                "{file} {}: path parameter {} not required",
                op.name,
                p.name
            );
        }
    }
}

#[tokio::test]
async fn every_corpus_document_converts_with_its_operations() {
    // (document, operations as INDEX.md counts them)
    let documents: &[(&str, usize)] = &[
        ("airflow-v1-openapi.yaml", 89),
        ("alertmanager-v2-swagger.yaml", 9),
        ("argocd-swagger.json", 106),
        ("callback-example-v3.json", 1),
        ("casdoor-swagger.json", 235),
        ("discord-v31.json", 242),
        ("docker-engine-swagger.yaml", 108),
        ("freee-invoice-ja.yaml", 42),
        ("gitea-swagger-v1.json", 485),
        ("gitlab-legacy-multifile/openapi.yaml", 1),
        ("grafana-api-merged.json", 295),
        ("harness-ng-openapi.yaml", 33),
        ("immich-openapi.json", 254),
        ("jenkins-swaggy.yaml", 58),
        ("jira-platform-v3.json", 468),
        ("kubernetes-swagger.json", 1123),
        ("non-oauth-scopes-v31.yaml", 1),
        ("pagerduty-rest-v3.json", 465),
        ("petstore-expanded-v3.yaml", 4),
        ("petstore-separate-v2/spec/swagger.yaml", 4),
        ("petstore-v2.json", 3),
        ("petstore3-v3.yaml", 19),
        ("prowlarr-openapi.json", 129),
        ("redocly-openapi-starter/openapi.yaml", 12),
        ("slack-web-v2.json", 174),
        ("sonarqube-v2-openapi.json", 25),
        ("sonarqube-webservices-list.json", 268),
        ("train-travel-v31/openapi.yaml", 7),
        ("uber-v2.yaml", 5),
        ("vault-openapi.json", 1049),
        ("webhook-example-v31.yaml", 0),
    ];
    for (file, operations) in documents {
        let api = api_of(file, "api").await;
        assert_eq!(api.operations.len(), *operations, "{file}");
        check_tools(file, &api);
    }

    // OpenSearch has no single root: 36 partial documents, 715 operations together.
    let dir = Directory::new(corpus()).unwrap();
    let mut total = 0;
    let mut roots: Vec<_> = std::fs::read_dir(corpus().join("opensearch-multifile/namespaces"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    roots.sort();
    assert_eq!(roots.len(), 36);
    for root in roots {
        let file = format!("opensearch-multifile/namespaces/{root}");
        let set = load(&dir, &file).await;
        let api = convert(&set, "opensearch").unwrap();
        check_tools(&file, &api);
        total += api.operations.len();
    }
    assert_eq!(total, 715);
}

#[tokio::test]
async fn swagger_2_reads_as_openapi_3() {
    let api = api_of("petstore-v2.json", "petstore").await;
    assert_eq!(api.format, ApiFormat::Swagger2);
    assert_eq!(api.servers, ["http://petstore.swagger.io/v1"]);
    let names: Vec<_> = api.operations.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "petstore_listPets",
            "petstore_createPets",
            "petstore_showPetById"
        ]
    );
    let list = &api.operations[0];
    assert!(list.hints.read_only && !list.hints.destructive);
    assert_eq!(list.input_schema["properties"]["limit"]["type"], "integer");
    assert_eq!(list.input_schema["properties"]["limit"]["format"], "int32");
    assert!(list.input_schema.get("required").is_none());
    let show = &api.operations[2];
    assert_eq!(show.input_schema["required"], json!(["petId"]));
    assert_eq!(show.parameters[0].style, "simple");

    // Multi-file Swagger: parameters and schemas from files beside the root.
    let api = api_of("petstore-separate-v2/spec/swagger.yaml", "pets").await;
    let find = api
        .operations
        .iter()
        .find(|o| o.method == "GET" && o.path == "/pets")
        .unwrap();
    let tags = &find.input_schema["properties"]["tags"];
    assert_eq!(tags["type"], "array", "{tags}");
    assert!(
        find.parameters
            .iter()
            .any(|p| p.name == "tags" && p.style == "form")
    );
    let create = api.operations.iter().find(|o| o.method == "POST").unwrap();
    assert_eq!(create.body.as_ref().unwrap().media_type, "application/json");
    let pet = &create.input_schema["properties"]["body"]["allOf"][0];
    assert_eq!(
        pet["required"],
        json!(["id", "name"]),
        "{}",
        create.input_schema
    );

    // A Swagger `type: file` form field is a file argument of a multipart body.
    let api = api_of("gitea-swagger-v1.json", "gitea").await;
    let upload = api
        .operations
        .iter()
        .find(|o| o.operation_id.as_deref() == Some("issueCreateIssueAttachment"))
        .unwrap();
    assert_eq!(
        upload.body.as_ref().unwrap().media_type,
        "multipart/form-data"
    );
    let attachment = &upload.input_schema["properties"]["body"]["properties"]["attachment"];
    assert_eq!(
        attachment["required"],
        json!(["content_base64"]),
        "{attachment}"
    );
    assert_eq!(
        upload.input_schema["properties"]["index"]["type"],
        "integer"
    );
}

#[tokio::test]
async fn openapi_3_schemas_are_made_json_schema() {
    // 3.0: nullable, readOnly left out of inputs, allOf composition inlined.
    let api = api_of("petstore-expanded-v3.yaml", "pets").await;
    let add = api
        .operations
        .iter()
        .find(|o| o.operation_id.as_deref() == Some("addPet"))
        .unwrap();
    let body = &add.input_schema["properties"]["body"];
    assert_eq!(body["required"], json!(["name"]), "{body}");
    assert_eq!(add.body.as_ref().unwrap().argument, "body");
    let delete = api
        .operations
        .iter()
        .find(|o| o.method == "DELETE")
        .unwrap();
    assert!(delete.hints.destructive && delete.hints.idempotent);

    // 3.1: `type` arrays kept; recursive schemas cut, not expanded forever.
    let api = api_of("discord-v31.json", "discord").await;
    let text = serde_json::to_string(&api.operations).unwrap();
    assert!(text.contains("\"null\""));

    // Kubernetes: 1,123 operations, bodies that would run to hundreds of thousands of
    // subschemas cut at the documented bound.
    let api = api_of("kubernetes-swagger.json", "k8s").await;
    let largest = api
        .operations
        .iter()
        .map(|o| serde_json::to_string(&o.input_schema).unwrap().len())
        .max()
        .unwrap();
    assert!(largest < 4_000_000, "{largest}");
}

#[tokio::test]
async fn sonarqube_web_services_become_operations() {
    let api = api_of("sonarqube-webservices-list.json", "sonar").await;
    assert_eq!(api.format, ApiFormat::SonarqubeWebservices);
    let search = api
        .operations
        .iter()
        .find(|o| o.path == "/api/issues/search")
        .expect("api/issues/search");
    assert_eq!(search.method, "GET");
    assert!(search.hints.read_only);
    assert!(
        search
            .parameters
            .iter()
            .all(|p| p.location == devmesh::gateway::operations::Location::Query)
    );
    let severities = &search.input_schema["properties"]["severities"];
    assert!(severities.is_object(), "{}", search.input_schema);
    let post = api.operations.iter().find(|o| o.method == "POST").unwrap();
    assert_eq!(
        post.body.as_ref().unwrap().media_type,
        "application/x-www-form-urlencoded"
    );
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) {
    std::fs::write(dir.path().join(name), text).unwrap();
}

async fn convert_text(text: &str) -> Result<Api, String> {
    let dir = tempfile::tempdir().unwrap();
    write(&dir, "api.yaml", text);
    let source = Directory::new(dir.path()).unwrap();
    let set = DocumentSet::load(source.url("api.yaml"), &source, &Limits::default())
        .await
        .map_err(|e| e.to_string())?;
    convert(&set, "t").map_err(|e| e.to_string())
}

#[tokio::test]
async fn hostile_documents_get_a_clear_error_or_a_documented_cut() {
    // Invalid YAML, and something that is not a description.
    let e = convert_text("openapi: 3.0.0\npaths: {a: [}\n")
        .await
        .unwrap_err();
    assert!(e.contains("neither JSON nor YAML"), "{e}");
    let e = convert_text("{\"hello\": \"world\"}").await.unwrap_err();
    assert!(e.contains("not an API description"), "{e}");

    // 10,000 levels of nesting, in JSON and in YAML.
    let deep_json = format!(
        "{{\"openapi\":\"3.0.0\",\"x\":{}{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let e = convert_text(&deep_json).await.unwrap_err();
    assert!(e.contains("recursion limit") || e.contains("depth"), "{e}");
    let deep_yaml = format!(
        "openapi: 3.0.0\nx: {}{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let e = convert_text(&deep_yaml).await.unwrap_err();
    assert!(e.contains("YAML"), "{e}");

    // A document over the size limit.
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir,
        "big.json",
        &format!("{{\"openapi\":\"3.0.0\",\"x\":\"{}\"}}", "a".repeat(2048)),
    );
    let source = Directory::new(dir.path()).unwrap();
    let small = Limits {
        max_bytes: 1024,
        ..Limits::default()
    };
    let e = DocumentSet::load(source.url("big.json"), &source, &small)
        .await
        .unwrap_err();
    assert!(matches!(e, DocumentError::TooLarge(_, 1024)), "{e}");

    // A `$ref` loop, a `$ref` to /etc/passwd and to another host, duplicate and
    // 200-character operationIds, non-ASCII everywhere.
    let long_id = "x".repeat(200);
    let text = format!(
        r##"
openapi: 3.1.0
info: {{ title: "Ünïcödé ✓", version: "1" }}
paths:
  /loop:
    post:
      operationId: same
      requestBody:
        content:
          application/json:
            schema: {{ $ref: "#/components/schemas/Node" }}
  /etc:
    get:
      operationId: same
      parameters:
        - {{ name: p, in: query, schema: {{ $ref: "file:///etc/passwd" }} }}
        - {{ name: q, in: query, schema: {{ $ref: "http://169.254.169.254/latest/meta-data#/x" }} }}
  /long/{{ключ}}:
    get:
      operationId: "{long_id}"
      summary: "日本語の説明"
      parameters:
        - {{ name: ключ, in: path, required: true, schema: {{ type: string }} }}
components:
  schemas:
    Node:
      type: object
      properties:
        next: {{ $ref: "#/components/schemas/Node" }}
        self: {{ $ref: "#/components/schemas/Loop1" }}
    Loop1: {{ $ref: "#/components/schemas/Loop2" }}
    Loop2: {{ $ref: "#/components/schemas/Loop1" }}
"##
    );
    let api = convert_text(&text).await.unwrap();
    assert_eq!(api.title.as_deref(), Some("Ünïcödé ✓"));
    // Names go in path order (then method order), so the same description always
    // gives the same names.
    let by_path = |p: &str| {
        api.operations
            .iter()
            .find(|o| o.path.starts_with(p))
            .unwrap()
    };
    assert_eq!(by_path("/etc").name, "t_same");
    assert_eq!(by_path("/loop").name, "t_same_2");
    assert_eq!(by_path("/long").name.len(), naming::MAX_LEN);
    for op in &api.operations {
        assert!(naming::is_portable(&op.name));
        jsonschema::validator_for(&op.input_schema).unwrap();
    }
    assert!(
        by_path("/loop")
            .cuts
            .iter()
            .any(|c| c.contains("contains itself"))
    );
    let dangling: Vec<_> = api
        .dangling
        .iter()
        .map(|(r, why)| format!("{r} {why}"))
        .collect();
    assert!(
        dangling
            .iter()
            .any(|d| d.contains("/etc/passwd") && d.contains("outside")),
        "{dangling:?}"
    );
    assert!(
        dangling
            .iter()
            .any(|d| d.contains("169.254.169.254") && d.contains("outside")),
        "{dangling:?}"
    );
    let etc = by_path("/etc");
    assert!(
        etc.input_schema["properties"]["p"]["description"]
            .as_str()
            .unwrap()
            .contains("cut")
    );
    let long = by_path("/long");
    assert_eq!(long.description, "日本語の説明");
    assert_eq!(long.input_schema["required"], json!(["ключ"]));
}

#[tokio::test]
async fn githubs_rest_description_converts() {
    let path = std::env::var("DEVMESH_GITHUB_OPENAPI").expect(
        "DEVMESH_GITHUB_OPENAPI names api.github.com.json of the npm package @octokit/openapi; scripts/test-tools.sh installs it",
    );
    let path = PathBuf::from(path);
    let dir = Directory::new(path.parent().unwrap()).unwrap();
    let set = load(&dir, path.file_name().unwrap().to_str().unwrap()).await;
    let api = convert(&set, "github").unwrap();
    assert_eq!(api.format, ApiFormat::Openapi3);
    assert_eq!(api.servers, ["https://api.github.com"]);
    assert!(api.operations.len() > 1000, "{}", api.operations.len());
    check_tools("api.github.com.json", &api);
    // A snapshot of one well-known operation: name, annotations, arguments.
    let get_repo = api
        .operations
        .iter()
        .find(|o| o.operation_id.as_deref() == Some("repos/get"))
        .unwrap();
    assert_eq!(get_repo.name, "github_repos_get");
    assert_eq!(
        (get_repo.method.as_str(), get_repo.path.as_str()),
        ("GET", "/repos/{owner}/{repo}")
    );
    assert!(get_repo.hints.read_only);
    assert_eq!(get_repo.input_schema["required"], json!(["owner", "repo"]));
    assert_eq!(
        get_repo.input_schema["properties"]["owner"]["type"],
        "string"
    );
    let create_issue = api
        .operations
        .iter()
        .find(|o| o.operation_id.as_deref() == Some("issues/create"))
        .unwrap();
    let body = &create_issue.input_schema["properties"]["body"];
    assert!(body["properties"]["title"].is_object(), "{body}");
    assert!(
        body["required"]
            .as_array()
            .unwrap()
            .contains(&json!("title"))
    );
    assert_eq!(
        create_issue.body.as_ref().unwrap().media_type,
        "application/json"
    );
    let list_issues = api
        .operations
        .iter()
        .find(|o| o.operation_id.as_deref() == Some("issues/list-for-repo"))
        .unwrap();
    let state = &list_issues.input_schema["properties"]["state"];
    assert_eq!(state["enum"], json!(["open", "closed", "all"]), "{state}");
    assert_eq!(state["default"], "open");
}
