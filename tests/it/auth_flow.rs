//! Registration, login, refresh (with rotation and reuse detection), logout and lockout.

use serde_json::json;

use crate::helpers::{Shape, TestEnv};
use crate::rest::{PASSWORD, call, login, register};

for_shapes!([registration_login_refresh_logout, failed_logins_lock_an_account_without_telling_whether_it_exists, registration_can_be_closed]
    on sqlite => Sqlite, redis => PostgresRedis);

async fn registration_login_refresh_logout(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let acme = register(&app, "acme").await;
    assert!(acme.key.starts_with("dmk_"));

    // The key works and is an admin key of the new organization.
    let me = call(&app, "GET", "/api/v1/auth/me", Some(&acme.key), None).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["organization_id"], acme.org_id.as_str());
    assert_eq!(me.body["key_type"], "admin");

    // A taken slug is a conflict; bad values name their field.
    let again = json!({
        "organization_name": "Other", "organization_slug": "acme", "admin_email": "x@y.io",
        "admin_name": "X", "admin_password": PASSWORD,
    });
    let r = call(
        &app,
        "POST",
        "/api/v1/auth/register/organization",
        None,
        Some(&again),
    )
    .await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    for (field, value) in [
        ("organization_slug", json!("Bad Slug")),
        ("admin_email", json!("not-an-email")),
        ("admin_password", json!("short")),
    ] {
        let mut body = again.clone();
        body["organization_slug"] = json!("fresh-org");
        body[field] = value;
        let r = call(
            &app,
            "POST",
            "/api/v1/auth/register/organization",
            None,
            Some(&body),
        )
        .await;
        assert_eq!(r.status, 422, "{field}: {:?}", r.body);
        assert!(r.message().contains(field), "{}", r.message());
    }

    // Login: an access token that works, a refresh token.
    let tokens = login(&app, &acme.slug, &acme.email.to_uppercase(), PASSWORD).await;
    assert_eq!(tokens.status, 200, "{:?}", tokens.body);
    let access = tokens.body["access_token"].as_str().unwrap().to_string();
    let refresh1 = tokens.body["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(tokens.body["token_type"], "Bearer");
    assert!(tokens.body["expires_in"].as_i64().unwrap() > 800);
    let me = call(&app, "GET", "/api/v1/auth/me", Some(&access), None).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["actor_id"], acme.owner_id.as_str());
    assert_eq!(me.body["role"], "owner");
    let tampered = format!("{}x", access);
    let r = call(&app, "GET", "/api/v1/auth/me", Some(&tampered), None).await;
    assert_eq!(r.status, 401);

    // Refresh rotates: the new pair works, the old refresh token does not.
    let refresh = |token: String| {
        let app = &app;
        async move {
            call(
                app,
                "POST",
                "/api/v1/auth/refresh",
                None,
                Some(&json!({ "refresh_token": token })),
            )
            .await
        }
    };
    let r = refresh(refresh1.clone()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let refresh2 = r.body["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(refresh2, refresh1);
    let access2 = r.body["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        call(&app, "GET", "/api/v1/auth/me", Some(&access2), None)
            .await
            .status,
        200
    );

    // Reusing the old one is a theft signal: the whole family is revoked, refresh2 too.
    let r = refresh(refresh1.clone()).await;
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some());
    assert_eq!(refresh(refresh2).await.status, 401);

    // Logout revokes the login's refresh token.
    let fresh = login(&app, &acme.slug, &acme.email, PASSWORD).await;
    let refresh3 = fresh.body["refresh_token"].as_str().unwrap().to_string();
    let r = call(
        &app,
        "POST",
        "/api/v1/auth/logout",
        None,
        Some(&json!({ "refresh_token": refresh3 })),
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(refresh(refresh3).await.status, 401);

    // The audit log saw it, without secrets.
    let audit = call(
        &app,
        "GET",
        "/api/v1/audit?limit=200",
        Some(&acme.key),
        None,
    )
    .await;
    assert_eq!(audit.status, 200);
    let actions: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "organization.registered",
        "auth.login",
        "auth.refresh_reused",
        "auth.logout",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    let text = audit.body.to_string();
    assert!(!text.contains(&acme.key) && !text.contains(PASSWORD) && !text.contains(&refresh1));
}

async fn failed_logins_lock_an_account_without_telling_whether_it_exists(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let acme = register(&app, "acme").await;

    let wrong = login(&app, &acme.slug, &acme.email, "wrong password 123").await;
    let unknown = login(&app, &acme.slug, "nobody@acme.example.com", PASSWORD).await;
    assert_eq!((wrong.status, unknown.status), (401, 401));
    assert_eq!(
        wrong.body, unknown.body,
        "the same answer for a wrong password and no account"
    );

    for _ in 1..5 {
        assert_eq!(
            login(&app, &acme.slug, &acme.email, "wrong password 123")
                .await
                .status,
            401
        );
    }
    // Five failures: the right password is refused too, with the same answer.
    let locked = login(&app, &acme.slug, &acme.email, PASSWORD).await;
    assert_eq!(locked.status, 401);
    assert_eq!(locked.body, wrong.body);
    // The lock is per account: nothing tells the attacker it exists, and others log in.
    let r = call(
        &app,
        "POST",
        "/api/v1/users",
        Some(&acme.key),
        Some(&json!({ "email": "bob@acme.example.com", "name": "Bob", "password": PASSWORD })),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(
        login(&app, &acme.slug, "bob@acme.example.com", PASSWORD)
            .await
            .status,
        200
    );

    let audit = call(
        &app,
        "GET",
        "/api/v1/audit?action=auth.locked",
        Some(&acme.key),
        None,
    )
    .await;
    assert_eq!(
        audit.body["items"].as_array().unwrap().len(),
        1,
        "{:?}",
        audit.body
    );
    assert_eq!(audit.body["items"][0]["target_id"], acme.owner_id.as_str());
    let failed = call(
        &app,
        "GET",
        "/api/v1/audit?action=auth.login_failed&limit=3",
        Some(&acme.key),
        None,
    )
    .await;
    assert_eq!(failed.body["items"].as_array().unwrap().len(), 3);
    let next = failed.body["next_cursor"]
        .as_str()
        .expect("more pages")
        .to_string();
    let rest = call(
        &app,
        "GET",
        &format!("/api/v1/audit?action=auth.login_failed&cursor={next}"),
        Some(&acme.key),
        None,
    )
    .await;
    // 7 failures: five wrong passwords, one unknown account, one while locked.
    assert_eq!(
        rest.body["items"].as_array().unwrap().len(),
        4,
        "{:?}",
        rest.body
    );
}

async fn registration_can_be_closed(shape: Shape) {
    let mut env = TestEnv::new(shape).await;
    env.config.auth.open_registration = false;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let r = call(
        &app,
        "POST",
        "/api/v1/auth/register/organization",
        None,
        Some(&json!({
            "organization_name": "Acme", "organization_slug": "acme", "admin_email": "a@acme.io",
            "admin_name": "A", "admin_password": PASSWORD,
        })),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.code(), "registration_closed");
}
