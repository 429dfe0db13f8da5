//! A converted operation's request, as a real server receives it: each parameter style
//! and body type built from a tool's arguments (from real descriptions: Swagger's
//! petstore, GitHub-like paths) and sent through the outbound client to a loopback
//! server that echoes what it got; and the answers mapped back.

use devmesh::config::OutboundConfig;
use devmesh::gateway::operations::{Body, Hints, Location, Operation, Parameter};
use devmesh::gateway::request::build;
use devmesh::gateway::response::{Answer, to_result};
use devmesh::outbound::{Outbound, OutboundRequest};
use serde_json::{Map, Value, json};

use crate::upstream::Upstream;

fn param(name: &str, location: Location, style: &str, explode: bool) -> Parameter {
    Parameter {
        name: name.into(),
        location,
        argument: name.into(),
        required: location == Location::Path,
        style: style.into(),
        explode,
    }
}

fn operation(
    method: &str,
    path: &str,
    parameters: Vec<Parameter>,
    body: Option<Body>,
) -> Operation {
    Operation {
        name: "t_op".into(),
        operation_id: None,
        method: method.into(),
        path: path.into(),
        description: String::new(),
        tags: vec![],
        deprecated: false,
        parameters,
        body,
        input_schema: json!({"type": "object"}),
        hints: Hints {
            read_only: false,
            destructive: false,
            idempotent: false,
        },
        cuts: vec![],
    }
}

async fn send(upstream: &Upstream, op: &Operation, args: Value) -> Value {
    let base = upstream.url("/").parse().unwrap();
    let Value::Object(args) = args else { panic!() };
    let built = build(op, &base, &args).unwrap();
    let outbound = Outbound::new(&OutboundConfig {
        allow_private: true,
        ..OutboundConfig::default()
    });
    let mut request = OutboundRequest::get(built.url);
    request.method = built.method;
    request.headers = built.headers;
    request.body = built.body;
    let answer = outbound.send(request).await.unwrap();
    assert_eq!(answer.status(), 200);
    answer.json().await.unwrap()
}

#[tokio::test]
async fn parameters_go_where_and_how_the_description_says() {
    let upstream = Upstream::start().await;
    // Path parameters are percent-encoded (a slash, a space, non-ASCII, a dot path).
    let base: url::Url = upstream.url("/").parse().unwrap();
    let with_path = operation(
        "GET",
        "/echo/{owner}/{repo}",
        vec![
            param("owner", Location::Path, "simple", false),
            param("repo", Location::Path, "simple", false),
        ],
        None,
    );
    let mut args = Map::new();
    args.insert("owner".into(), json!("a/b c"));
    args.insert("repo".into(), json!("日本"));
    let built = build(&with_path, &base, &args).unwrap();
    assert_eq!(built.url.path(), "/echo/a%2Fb%20c/%E6%97%A5%E6%9C%AC");
    // The base URL's own path is kept (GitHub Enterprise's `/api/v3`).
    let enterprise: url::Url = "https://ghe.example.com/api/v3/".parse().unwrap();
    let built = build(&with_path, &enterprise, &args).unwrap();
    assert_eq!(
        built.url.path(),
        "/api/v3/echo/a%2Fb%20c/%E6%97%A5%E6%9C%AC"
    );

    // Path styles (OpenAPI 3.1, 4.8.12.4.3): label and matrix, exploded and not, every
    // value still percent-encoded.
    let styled = operation(
        "GET",
        "/echo/{l}/{le}/{m}/{me}",
        vec![
            param("l", Location::Path, "label", false),
            param("le", Location::Path, "label", true),
            param("m", Location::Path, "matrix", false),
            param("me", Location::Path, "matrix", true),
        ],
        None,
    );
    let mut args = Map::new();
    args.insert("l".into(), json!(["a", "b/c"]));
    args.insert("le".into(), json!(["a", "b"]));
    args.insert("m".into(), json!(["x", "y?"]));
    args.insert("me".into(), json!(["x", "y"]));
    let built = build(&styled, &base, &args).unwrap();
    assert_eq!(built.url.path(), "/echo/.a,b%2Fc/.a.b/;m=x,y%3F/;me=x;me=y");
    // An empty path parameter would name another path: refused.
    let mut empty = Map::new();
    empty.insert("owner".into(), json!(""));
    empty.insert("repo".into(), json!("r"));
    assert!(
        build(&with_path, &base, &empty)
            .unwrap_err()
            .0
            .contains("empty")
    );

    // Query styles: form exploded and not, space- and pipe-delimited, deepObject.
    let styles = operation(
        "GET",
        "/echo",
        vec![
            param("tags", Location::Query, "form", true),
            param("ids", Location::Query, "form", false),
            param("words", Location::Query, "spaceDelimited", false),
            param("pipes", Location::Query, "pipeDelimited", false),
            param("filter", Location::Query, "deepObject", true),
            param("limit", Location::Query, "form", true),
            param("absent", Location::Query, "form", true),
        ],
        None,
    );
    let echoed = send(
        &upstream,
        &styles,
        json!({ "tags": ["a", "b"], "ids": [1, 2], "words": ["x", "y"], "pipes": ["p", "q"], "filter": { "state": "open" }, "limit": 5, "absent": null }),
    )
    .await;
    let query = echoed["query"].as_str().unwrap();
    assert_eq!(
        query, "tags=a&tags=b&ids=1%2C2&words=x+y&pipes=p%7Cq&filter%5Bstate%5D=open&limit=5",
        "{echoed}"
    );

    // Headers and cookies.
    let headers = operation(
        "GET",
        "/echo",
        vec![
            param("X-Request-Id", Location::Header, "simple", false),
            param("session", Location::Cookie, "form", false),
        ],
        None,
    );
    let mut op = headers.clone();
    op.parameters[0].argument = "X-Request-Id".into();
    let echoed = send(
        &upstream,
        &op,
        json!({ "X-Request-Id": "r-1", "session": "s 1" }),
    )
    .await;
    assert_eq!(echoed["headers"]["x-request-id"], "r-1");
    assert_eq!(echoed["headers"]["cookie"], "session=s%201");
    // A line break cannot travel in a header: refused before any request.
    let mut args = Map::new();
    args.insert("X-Request-Id".into(), json!("a\r\nInjected: yes"));
    let e = build(&op, &base, &args).unwrap_err();
    assert!(e.to_string().contains("cannot be sent in a header"), "{e}");
}

#[tokio::test]
async fn bodies_are_sent_as_json_form_and_multipart() {
    let upstream = Upstream::start().await;
    let body = |media: &str| {
        Some(Body {
            media_type: media.into(),
            argument: "body".into(),
            required: true,
        })
    };

    let json_op = operation("POST", "/echo", vec![], body("application/json"));
    let echoed = send(
        &upstream,
        &json_op,
        json!({ "body": { "title": "Bug", "labels": ["x"] } }),
    )
    .await;
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["headers"]["content-type"], "application/json");
    let sent: Value = serde_json::from_str(echoed["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent, json!({ "title": "Bug", "labels": ["x"] }));

    let form_op = operation(
        "POST",
        "/echo",
        vec![],
        body("application/x-www-form-urlencoded"),
    );
    let echoed = send(
        &upstream,
        &form_op,
        json!({ "body": { "project": "my app", "severities": ["MAJOR", "MINOR"] } }),
    )
    .await;
    assert_eq!(
        echoed["body"],
        "project=my+app&severities=MAJOR&severities=MINOR"
    );

    let multipart_op = operation("POST", "/echo", vec![], body("multipart/form-data"));
    let echoed = send(
        &upstream,
        &multipart_op,
        json!({ "body": { "note": "hello", "file": { "content_base64": "aGk=", "filename": "a.txt", "media_type": "text/plain" } } }),
    )
    .await;
    let content_type = echoed["headers"]["content-type"].as_str().unwrap();
    assert!(
        content_type.starts_with("multipart/form-data; boundary="),
        "{content_type}"
    );
    let sent = echoed["body"].as_str().unwrap();
    assert!(sent.contains("name=\"note\"\r\n\r\nhello\r\n"), "{sent}");
    assert!(
        sent.contains("filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nhi\r\n"),
        "{sent}"
    );

    // A required body that is missing never reaches the server.
    let e = build(&json_op, &upstream.url("/").parse().unwrap(), &Map::new()).unwrap_err();
    assert!(e.to_string().contains("required"), "{e}");
}

#[tokio::test]
async fn answers_become_tool_results() {
    let upstream = Upstream::start().await;
    let outbound = Outbound::new(&OutboundConfig {
        allow_private: true,
        ..OutboundConfig::default()
    });
    // A JSON answer is structured content; a 404 a tool error with its status.
    for (path, status, is_error) in [("/echo", 200, false), ("/missing", 404, true)] {
        let response = outbound
            .send(OutboundRequest::get(upstream.url(path).parse().unwrap()))
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status);
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response.bytes().await.unwrap();
        let result = to_result(&Answer {
            status,
            content_type: content_type.as_deref(),
            body: &body,
            truncated: false,
            limit: 1024,
            operation: "GET /thing",
        });
        assert_eq!(result["isError"], is_error, "{result}");
        if !is_error {
            assert_eq!(result["structuredContent"]["path"], "/echo");
        } else {
            assert!(
                result["content"][0]["text"]
                    .as_str()
                    .unwrap()
                    .contains("HTTP 404")
            );
        }
    }
}

#[tokio::test]
async fn each_credential_kind_reaches_the_api_and_stays_sealed_elsewhere() {
    use base64::Engine as _;
    use devmesh::gateway::credentials::Credential;
    use devmesh::sealing::Sealer;

    let upstream = Upstream::start().await;
    let outbound = Outbound::new(&OutboundConfig {
        allow_private: true,
        ..OutboundConfig::default()
    });
    let kinds = [
        json!({ "type": "bearer", "token": "tok-secret-1" }),
        json!({ "type": "api_key", "location": "header", "name": "X-API-Key", "value": "key-secret-2" }),
        json!({ "type": "api_key", "location": "query", "name": "private_token", "value": "key-secret-3" }),
        json!({ "type": "api_key", "location": "cookie", "name": "immich_access_token", "value": "key-secret-4" }),
        json!({ "type": "basic", "username": "admin", "password": "pw-secret-5" }),
        json!({ "type": "headers", "headers": { "X-Vault-Token": "hvs-secret-6" } }),
    ];
    let sealer = Sealer::from_config(&devmesh::config::SecretsConfig {
        master_key: Some(devmesh::config::SecretString::new(
            base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
        )),
        previous_master_keys: vec![],
    })
    .unwrap();
    for kind in kinds {
        let credential: Credential = serde_json::from_value(kind.clone()).unwrap();
        // Sealed at rest, and opened again as the same credential.
        let plain = serde_json::to_vec(&credential).unwrap();
        let sealed = sealer.seal("org-1", "tool:1:auth", &plain).unwrap();
        let opened: Credential =
            serde_json::from_slice(&sealer.open("org-1", "tool:1:auth", &sealed).unwrap()).unwrap();
        assert_eq!(opened, credential);
        let debug = format!("{credential:?}");
        assert!(!debug.contains("secret"), "{debug}");
        assert!(!sealed.0.contains("secret"));

        let mut request = OutboundRequest::get(upstream.url("/echo").parse().unwrap());
        request.credential_headers = credential
            .apply(&mut request.headers, &mut request.url)
            .unwrap();
        let echoed: Value = outbound.send(request).await.unwrap().json().await.unwrap();
        let headers = &echoed["headers"];
        match credential.kind() {
            "bearer" => assert_eq!(headers["authorization"], "Bearer tok-secret-1"),
            "basic" => assert_eq!(
                headers["authorization"],
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode("admin:pw-secret-5")
                )
            ),
            "headers" => assert_eq!(headers["x-vault-token"], "hvs-secret-6"),
            _ => {
                let sent = echoed.to_string();
                assert!(
                    sent.contains("key-secret-2")
                        || sent.contains("private_token=key-secret-3")
                        || sent.contains("immich_access_token=key-secret-4"),
                    "{kind}: {echoed}"
                );
            }
        }
    }
    // A credential that cannot travel in a header says so, without the secret.
    let bad: Credential =
        serde_json::from_value(json!({ "type": "bearer", "token": "x\r\nsecret" })).unwrap();
    let mut url: url::Url = upstream.url("/echo").parse().unwrap();
    let e = bad
        .apply(&mut reqwest::header::HeaderMap::new(), &mut url)
        .unwrap_err();
    assert!(
        e.to_string().contains("the bearer token cannot be sent"),
        "{e}"
    );
    assert!(!e.to_string().contains("secret"), "{e}");
    assert!(!e.to_string().contains("x\r\n"));
}
