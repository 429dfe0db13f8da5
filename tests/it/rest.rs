//! A small client for the REST API: calls with credentials, and tenants to call as.

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::helpers::TestApp;

pub const PASSWORD: &str = "correct horse battery staple";

/// An answer: status, headers and the JSON body (`Null` when there is none).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }
}

pub async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    credential: Option<&str>,
    body: Option<&Value>,
) -> Reply {
    call_with(app, method, path, credential, body, &[]).await
}

pub async fn call_with(
    app: &TestApp,
    method: &str,
    path: &str,
    credential: Option<&str>,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> Reply {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = app.http.request(method, app.api_url(path));
    if let Some(c) = credential {
        req = req.bearer_auth(c);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.expect("the API answers");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// An organization registered over the API, with its owner and first admin key.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub slug: String,
    pub org_id: String,
    pub owner_id: String,
    pub email: String,
    pub key: String,
}

pub async fn register(app: &TestApp, slug: &str) -> Tenant {
    let email = format!("owner@{slug}.example.com");
    let r = call(
        app,
        "POST",
        "/api/v1/auth/register/organization",
        None,
        Some(&json!({
            "organization_name": format!("Org {slug}"),
            "organization_slug": slug,
            "admin_email": email,
            "admin_name": "Owner",
            "admin_password": PASSWORD,
        })),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    Tenant {
        slug: slug.to_string(),
        org_id: r.body["organization"]["id"].as_str().unwrap().into(),
        owner_id: r.body["user"]["id"].as_str().unwrap().into(),
        email,
        key: r.body["api_key"]["key"].as_str().unwrap().into(),
    }
}

/// A new key of `tenant`: `(id, secret)`.
pub async fn new_key(app: &TestApp, tenant: &Tenant, body: Value) -> (String, String) {
    let r = call(
        app,
        "POST",
        "/api/v1/api-keys",
        Some(&tenant.key),
        Some(&body),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    (
        r.body["api_key"]["id"].as_str().unwrap().into(),
        r.body["key"].as_str().unwrap().into(),
    )
}

/// Logs in; returns the whole answer.
pub async fn login(app: &TestApp, slug: &str, email: &str, password: &str) -> Reply {
    call(
        app,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(&json!({ "email": email, "password": password, "organization_slug": slug })),
    )
    .await
}
