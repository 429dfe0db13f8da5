//! Users within an organization: create, list, roles and the owner rules, removal, own
//! password; the organization's profile.

use serde_json::json;

use crate::helpers::{Shape, TestEnv};
use crate::rest::{PASSWORD, call, login, register};

for_shapes!([users_roles_and_passwords] on sqlite => Sqlite, redis => PostgresRedis);

async fn users_roles_and_passwords(shape: Shape) {
    let env = TestEnv::new(shape).await;
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let acme = register(&app, "acme").await;
    let owner_jwt = login(&app, &acme.slug, &acme.email, PASSWORD).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_string();

    let new_user = |email: &str, role: &str| json!({ "email": email, "name": "Someone", "role": role, "password": PASSWORD });
    let r = call(
        &app,
        "POST",
        "/api/v1/users",
        Some(&acme.key),
        Some(&new_user("admin@acme.io", "admin")),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert!(r.body.get("password_hash").is_none() && !r.body.to_string().contains("argon2"));
    let admin_id = r.body["id"].as_str().unwrap().to_string();
    let r = call(
        &app,
        "POST",
        "/api/v1/users",
        Some(&acme.key),
        Some(&new_user("ADMIN@acme.io", "member")),
    )
    .await;
    assert_eq!(
        r.status, 409,
        "emails are unique in an organization, whatever their case"
    );
    let admin_jwt = login(&app, &acme.slug, "admin@acme.io", PASSWORD)
        .await
        .body["access_token"]
        .as_str()
        .unwrap()
        .to_string();

    // Only an owner makes owners; an admin key cannot either.
    for credential in [&admin_jwt, &acme.key] {
        let r = call(
            &app,
            "POST",
            "/api/v1/users",
            Some(credential),
            Some(&new_user("o2@acme.io", "owner")),
        )
        .await;
        assert_eq!(r.status, 403, "{:?}", r.body);
    }
    let r = call(
        &app,
        "PATCH",
        &format!("/api/v1/users/{}", acme.owner_id),
        Some(&admin_jwt),
        Some(&json!({ "role": "member" })),
    )
    .await;
    assert_eq!(r.status, 403);
    // The last owner stays an owner.
    let r = call(
        &app,
        "PATCH",
        &format!("/api/v1/users/{}", acme.owner_id),
        Some(&owner_jwt),
        Some(&json!({ "role": "admin" })),
    )
    .await;
    assert_eq!(r.status, 409);
    let r = call(
        &app,
        "DELETE",
        &format!("/api/v1/users/{}", acme.owner_id),
        Some(&owner_jwt),
        None,
    )
    .await;
    assert_eq!(r.status, 409);
    // The owner can hand ownership on.
    let r = call(
        &app,
        "PATCH",
        &format!("/api/v1/users/{admin_id}"),
        Some(&owner_jwt),
        Some(&json!({ "role": "owner" })),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["role"], "owner");

    let list = call(&app, "GET", "/api/v1/users?limit=1", Some(&acme.key), None).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    assert!(list.body["next_cursor"].is_string());

    // Changing one's own password: the old one stops working; keys cannot do it.
    let body = json!({ "current_password": PASSWORD, "new_password": "a brand new passphrase" });
    let r = call(
        &app,
        "POST",
        "/api/v1/auth/password",
        Some(&acme.key),
        Some(&body),
    )
    .await;
    assert_eq!(r.status, 403);
    let wrong =
        json!({ "current_password": "not it at all", "new_password": "a brand new passphrase" });
    let r = call(
        &app,
        "POST",
        "/api/v1/auth/password",
        Some(&admin_jwt),
        Some(&wrong),
    )
    .await;
    assert_eq!(r.status, 422);
    let r = call(
        &app,
        "POST",
        "/api/v1/auth/password",
        Some(&admin_jwt),
        Some(&body),
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(
        login(&app, &acme.slug, "admin@acme.io", PASSWORD)
            .await
            .status,
        401
    );
    assert_eq!(
        login(&app, &acme.slug, "admin@acme.io", "a brand new passphrase")
            .await
            .status,
        200
    );

    // Removing a user ends their access at once, even with a token still unexpired.
    let r = call(
        &app,
        "POST",
        "/api/v1/users",
        Some(&acme.key),
        Some(&new_user("temp@acme.io", "member")),
    )
    .await;
    let temp_id = r.body["id"].as_str().unwrap().to_string();
    let temp_jwt = login(&app, &acme.slug, "temp@acme.io", PASSWORD).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        call(&app, "GET", "/api/v1/contexts", Some(&temp_jwt), None)
            .await
            .status,
        200
    );
    assert_eq!(
        call(
            &app,
            "DELETE",
            &format!("/api/v1/users/{temp_id}"),
            Some(&acme.key),
            None
        )
        .await
        .status,
        204
    );
    assert_eq!(
        call(&app, "GET", "/api/v1/contexts", Some(&temp_jwt), None)
            .await
            .status,
        401
    );

    // The organization's profile; renaming is audited.
    let r = call(
        &app,
        "PATCH",
        "/api/v1/organization",
        Some(&acme.key),
        Some(&json!({ "name": "Acme Corp" })),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["slug"], "acme");
    let audit = call(&app, "GET", "/api/v1/audit", Some(&acme.key), None).await;
    let actions: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "organization.updated",
        "user.removed",
        "user.role_changed",
        "user.password_changed",
        "user.created",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    assert!(!audit.body.to_string().contains("brand new passphrase"));
}
