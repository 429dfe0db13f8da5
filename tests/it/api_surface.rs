//! The whole API surface, walked from its own OpenAPI document: every documented route is
//! served, each declares the scope it enforces, and no route lets one tenant reach
//! another's objects.

use serde_json::{Value, json};

use crate::helpers::{Shape, TestApp, TestEnv};
use crate::rest::{PASSWORD, Reply, Tenant, call_with, login, new_key, register};

for_shapes!([another_tenants_ids_are_not_found_on_any_route, every_route_enforces_the_scope_it_declares]
    on sqlite => Sqlite, redis => PostgresRedis);

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// Every operation of the document: (METHOD, path template, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if let Some(op) = item.get(method.to_lowercase()) {
                ops.push((method.to_string(), path.clone(), op.clone()));
            }
        }
    }
    ops
}

fn scope_of(op: &Value) -> Option<String> {
    op["security"][0]["bearer"][0].as_str().map(str::to_string)
}

/// A valid body for each route that takes one. A new route with a body needs a line here.
fn sample_body(method: &str, path: &str) -> Option<Value> {
    let unique = uuid::Uuid::now_v7().simple().to_string();
    let body = match (method, path) {
        ("POST", "/api/v1/auth/register/organization") => json!({
            "organization_name": "Sample", "organization_slug": format!("s{}", &unique[20..]),
            "admin_email": "a@sample.io", "admin_name": "A", "admin_password": PASSWORD,
        }),
        ("POST", "/api/v1/auth/login") => {
            json!({ "email": "a@b.io", "password": "x", "organization_slug": "none" })
        }
        ("POST", "/api/v1/auth/refresh") | ("POST", "/api/v1/auth/logout") => {
            json!({ "refresh_token": "dmr_none" })
        }
        ("POST", "/api/v1/auth/accept-invitation") => {
            json!({ "token": "dmi_none", "name": "N", "password": PASSWORD })
        }
        ("POST", "/api/v1/invitations") => {
            json!({ "email": format!("{unique}@invited.example.com") })
        }
        ("POST", "/api/v1/auth/password") => {
            json!({ "current_password": "wrong one", "new_password": "another good password" })
        }
        ("PATCH", "/api/v1/organization") => json!({ "name": "Renamed" }),
        ("POST", "/api/v1/users") => {
            json!({ "email": format!("{unique}@example.com"), "name": "U", "password": PASSWORD })
        }
        ("PATCH", "/api/v1/users/{id}") => json!({ "role": "viewer" }),
        ("POST", "/api/v1/api-keys") => json!({ "name": "k", "key_type": "agent", "scopes": [] }),
        ("POST", "/api/v1/contexts") => json!({ "name": "c" }),
        ("PATCH", "/api/v1/contexts/{id}") => json!({ "name": "renamed" }),
        ("POST", "/api/v1/contexts/{id}/items") => {
            json!({ "items": [{ "role": "user", "content": "hi" }] })
        }
        ("POST", "/api/v1/tools") => json!({
            "name": format!("t{}", &unique[24..]), "base_url": "http://localhost:9/",
            "openapi": tiny_description(),
        }),
        ("PATCH", "/api/v1/tools/{id}") => json!({ "tags": ["patched"] }),
        ("PUT", "/api/v1/tools/{id}/openapi") => tiny_description(),
        ("POST", "/api/v1/tools/{id}/execute") => json!({ "operation": "ping" }),
        ("PUT", "/api/v1/tools/{id}/credentials/me") => {
            json!({ "auth": { "type": "bearer", "token": "t" } })
        }
        ("POST", "/api/v1/agents") => json!({
            "name": format!("agent {unique}"), "capabilities": [{ "name": "code_review" }],
        }),
        ("PATCH", "/api/v1/agents/{id}") => json!({ "tags": ["patched"] }),
        ("POST", "/api/v1/agents/{id}/keys") => json!({ "name": "agent key" }),
        ("POST", "/api/v1/tasks") => {
            json!({ "title": "t", "required_capabilities": ["nobody_has_this"] })
        }
        ("POST", "/api/v1/tasks/{id}/cancel") | ("POST", "/api/v1/tasks/{id}/reject") => {
            json!({ "reason": "walked" })
        }
        ("POST", "/api/v1/tasks/{id}/progress") => json!({ "percent": 10 }),
        ("POST", "/api/v1/tasks/{id}/complete") => json!({ "output": { "ok": true } }),
        ("POST", "/api/v1/tasks/{id}/fail") => json!({ "error": "walked" }),
        _ => return None,
    };
    Some(body)
}

/// An API description of one operation, for tools registered without discovery.
fn tiny_description() -> Value {
    json!({
        "openapi": "3.0.3", "info": { "title": "tiny", "version": "1" },
        "paths": { "/ping": { "get": { "operationId": "ping", "responses": { "200": { "description": "pong" } } } } }
    })
}

async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    template: &str,
    op: &Value,
    credential: Option<&str>,
) -> Reply {
    let body = if op.get("requestBody").is_some() {
        Some(
            sample_body(method, template)
                .unwrap_or_else(|| panic!("add a sample body for {method} {template}")),
        )
    } else {
        None
    };
    call_with(
        app,
        method,
        path,
        credential,
        body.as_ref(),
        &[("If-Match", "*")],
    )
    .await
}

async fn document(app: &TestApp) -> Value {
    let r = app
        .http
        .get(app.api_url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Tenant A with one object of each kind.
struct Populated {
    tenant: Tenant,
    context: String,
    user: String,
    key: String,
    invitation: String,
    tool: String,
    agent: String,
    task: String,
}

impl Populated {
    /// The id of tenant A's object of the kind a route template takes.
    fn id_for(&self, template: &str) -> &str {
        let kinds = [
            ("/api/v1/contexts/", &self.context),
            ("/api/v1/users/", &self.user),
            ("/api/v1/api-keys/", &self.key),
            ("/api/v1/invitations/", &self.invitation),
            ("/api/v1/tools/", &self.tool),
            ("/api/v1/agents/", &self.agent),
            ("/api/v1/tasks/", &self.task),
        ];
        kinds
            .iter()
            .find(|(prefix, _)| template.starts_with(prefix))
            .map(|(_, id)| id.as_str())
            .unwrap_or_else(|| panic!("the walk does not know what kind of id {template} takes"))
    }
}

async fn populated_tenant(app: &TestApp) -> Populated {
    let a = register(app, "tenant-a").await;
    let post = |path: &'static str, body: Value| {
        let key = a.key.clone();
        async move {
            let r = call_with(app, "POST", path, Some(&key), Some(&body), &[]).await;
            assert_eq!(r.status, 201, "{path}: {:?}", r.body);
            r.body
        }
    };
    let context = post(
        "/api/v1/contexts",
        json!({ "name": "secret plans", "items": [{ "role": "user", "content": "A's words" }] }),
    )
    .await;
    let user = post(
        "/api/v1/users",
        json!({ "email": "member@a.io", "name": "M", "password": PASSWORD }),
    )
    .await;
    let invitation = post("/api/v1/invitations", json!({ "email": "invited@a.io" })).await;
    let (key, _) = new_key(app, &a, json!({ "name": "a's agent", "key_type": "agent" })).await;
    // A host name: the guard refuses it (loopback) if anything ever tries to reach it.
    let tool = post(
        "/api/v1/tools",
        json!({ "name": "tiny", "base_url": "http://localhost:9/", "openapi": tiny_description() }),
    )
    .await;
    let agent = post(
        "/api/v1/agents",
        json!({ "name": "a's reviewer", "capabilities": [{ "name": "code_review" }] }),
    )
    .await;
    let task = post(
        "/api/v1/tasks",
        json!({ "title": "a's task", "required_capabilities": ["code_review"] }),
    )
    .await;
    Populated {
        agent: agent["id"].as_str().unwrap().into(),
        task: task["id"].as_str().unwrap().into(),
        context: context["id"].as_str().unwrap().into(),
        user: user["id"].as_str().unwrap().into(),
        invitation: invitation["invitation"]["id"].as_str().unwrap().into(),
        key,
        tool: tool["id"].as_str().unwrap().into(),
        tenant: a,
    }
}

async fn another_tenants_ids_are_not_found_on_any_route(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let pop = populated_tenant(&app).await;
    let (a, ctx_id, user_id, key_id) = (&pop.tenant, &pop.context, &pop.user, &pop.key);
    let b = register(&app, "tenant-b").await;
    let b_jwt = login(&app, &b.slug, &b.email, PASSWORD).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let doc = document(&app).await;

    let mut walked = 0;
    for credential in [&b.key, &b_jwt] {
        for (method, template, op) in operations(&doc) {
            if !template.contains("{id}") {
                continue;
            }
            let path = template.replace("{id}", pop.id_for(&template));
            let r = send(&app, &method, &path, &template, &op, Some(credential)).await;
            assert_eq!(
                r.status, 404,
                "{method} {template} with another tenant's id: {:?}",
                r.body
            );
            assert_eq!(r.code(), "not_found");
            walked += 1;
        }
        // Lists never show another tenant's objects.
        for (method, template, op) in operations(&doc) {
            if method != "GET" || template.contains('{') || scope_of(&op).is_none() {
                continue;
            }
            let r = send(&app, &method, &template, &template, &op, Some(credential)).await;
            let text = r.body.to_string();
            for id in [
                ctx_id,
                user_id,
                key_id,
                &pop.invitation,
                &pop.tool,
                &pop.agent,
                &pop.task,
                &a.org_id,
            ] {
                assert!(
                    !text.contains(id.as_str()),
                    "{template} shows tenant A's {id}"
                );
            }
        }
    }
    assert!(walked >= 2 * 10, "walked {walked} routes");

    // Tenant A's objects are as they were.
    let ctx = call_with(
        &app,
        "GET",
        &format!("/api/v1/contexts/{ctx_id}"),
        Some(&a.key),
        None,
        &[],
    )
    .await;
    assert_eq!(ctx.body["name"], "secret plans");
    assert_eq!(ctx.body["items"].as_array().unwrap().len(), 1);
    let user = call_with(
        &app,
        "GET",
        &format!("/api/v1/users/{user_id}"),
        Some(&a.key),
        None,
        &[],
    )
    .await;
    assert_eq!(user.body["role"], "member");
    let key = call_with(
        &app,
        "GET",
        &format!("/api/v1/api-keys/{key_id}"),
        Some(&a.key),
        None,
        &[],
    )
    .await;
    assert!(key.body["revoked_at"].is_null());
    let org = call_with(&app, "GET", "/api/v1/organization", Some(&a.key), None, &[]).await;
    assert_eq!(org.body["name"], "Org tenant-a");
}

async fn every_route_enforces_the_scope_it_declares(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let pop = populated_tenant(&app).await;
    let (a, ctx_id) = (&pop.tenant, &pop.context);
    let doc = document(&app).await;
    let all: Vec<String> = doc["components"]["schemas"]["Scope"]["enum"]
        .as_array()
        .expect("the scopes are documented")
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert!(all.len() >= 9);

    let mut checked = 0;
    for (method, template, op) in operations(&doc) {
        let Some(scope) = scope_of(&op) else { continue };
        assert!(
            all.contains(&scope),
            "{template} names an unknown scope {scope}"
        );
        let real = if template.contains("{id}") {
            template.replace("{id}", pop.id_for(&template))
        } else {
            template.clone()
        };
        // Every scope but this one: refused, naming the scope, before anything happens.
        let others: Vec<&String> = all.iter().filter(|s| **s != scope).collect();
        let (_, without) = new_key(
            &app,
            a,
            json!({ "name": "without", "key_type": "admin", "scopes": others }),
        )
        .await;
        let r = send(&app, &method, &real, &template, &op, Some(&without)).await;
        assert_eq!(
            r.status, 403,
            "{method} {template} without {scope}: {:?}",
            r.body
        );
        assert_eq!(r.code(), "missing_scope");
        assert!(r.message().contains(&scope), "{}", r.message());

        // This scope alone gets past the check (on an id that does not exist, for routes
        // that take one, so that nothing real is changed).
        let (_, only) = new_key(
            &app,
            a,
            json!({ "name": "only", "key_type": "admin", "scopes": [scope] }),
        )
        .await;
        let missing = template.replace("{id}", &uuid::Uuid::now_v7().to_string());
        let r = send(&app, &method, &missing, &template, &op, Some(&only)).await;
        assert_ne!(
            r.code(),
            "missing_scope",
            "{method} {template} with {scope}: {:?}",
            r.body
        );
        assert_ne!(r.status, 401);
        checked += 1;
    }
    assert!(checked >= 19, "checked {checked} routes");

    // A user's role decides their scopes: a viewer reads contexts but cannot write them.
    let viewer = call_with(
        &app,
        "POST",
        "/api/v1/users",
        Some(&a.key),
        Some(
            &json!({ "email": "viewer@a.io", "name": "V", "role": "viewer", "password": PASSWORD }),
        ),
        &[],
    )
    .await;
    assert_eq!(viewer.status, 201);
    let jwt = login(&app, &a.slug, "viewer@a.io", PASSWORD).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let read = call_with(
        &app,
        "GET",
        &format!("/api/v1/contexts/{ctx_id}"),
        Some(&jwt),
        None,
        &[],
    )
    .await;
    assert_eq!(read.status, 200);
    let write = call_with(
        &app,
        "POST",
        "/api/v1/contexts",
        Some(&jwt),
        Some(&json!({ "name": "x" })),
        &[],
    )
    .await;
    assert_eq!(write.status, 403);
    assert!(write.message().contains("contexts:write"));
    // Promoted, the same token can write at once: scopes follow the current role.
    let r = call_with(
        &app,
        "PATCH",
        &format!("/api/v1/users/{}", viewer.body["id"].as_str().unwrap()),
        Some(&a.key),
        Some(&json!({ "role": "member" })),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let write = call_with(
        &app,
        "POST",
        "/api/v1/contexts",
        Some(&jwt),
        Some(&json!({ "name": "x" })),
        &[],
    )
    .await;
    assert_eq!(write.status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_is_served_and_described() {
    let env = TestEnv::new(Shape::Sqlite).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let doc = document(&app).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
    let ops = operations(&doc);
    assert!(ops.len() >= 28, "{} operations", ops.len());

    for (method, template, op) in &ops {
        // Documented ⇒ served: the router finds the route for this method.
        let path = template.replace("{id}", &uuid::Uuid::now_v7().to_string());
        let r = send(&app, method, &path, template, op, None).await;
        assert_ne!(
            r.status, 405,
            "{method} {template} is documented but not served"
        );
        assert!(
            !(r.status == 404 && r.message().starts_with("no route")),
            "{method} {template} is documented but not served"
        );
        // Each operation says what it answers, including its errors.
        let responses = op["responses"].as_object().unwrap();
        if scope_of(op).is_some() || op.get("security").is_some() {
            assert_eq!(r.status, 401, "{method} {template} needs credentials");
            for code in ["401", "403", "429"] {
                assert!(
                    responses.contains_key(code),
                    "{method} {template} documents {code}"
                );
            }
        }
        if op.get("requestBody").is_some() {
            for code in ["400", "413", "415"] {
                assert!(
                    responses.contains_key(code),
                    "{method} {template} documents {code}"
                );
            }
        }
        assert!(op["operationId"].is_string() && op["tags"][0].is_string());
    }

    // Methods a documented path does not take: 405 with Allow.
    for (template, item) in doc["paths"].as_object().unwrap() {
        let path = template.replace("{id}", "x");
        for method in METHODS {
            if item.get(method.to_lowercase()).is_some() {
                continue;
            }
            let r = call_with(&app, method, &path, None, None, &[]).await;
            assert_eq!(r.status, 405, "{method} {template}");
            let allow = r.header("allow").unwrap_or("");
            if template.starts_with("/api/") {
                assert!(
                    !allow.is_empty() && !allow.contains(method),
                    "{method} {template}: Allow {allow}"
                );
            }
        }
    }

    // The reference page is served by the binary itself and covers every route.
    let page = app
        .http
        .get(app.api_url("/api/v1/docs"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("<script"),
        "no scripts, nothing fetched from elsewhere"
    );
    for (_, template, _) in &ops {
        assert!(
            html.contains(template.as_str()),
            "{template} on the reference page"
        );
    }
    for scope in ["contexts:read", "api_keys:write", "audit:read"] {
        assert!(html.contains(scope));
    }
}
