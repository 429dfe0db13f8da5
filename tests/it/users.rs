//! Users within an organization: create, list, roles and the owner rules, removal, own
//! password; the organization's profile.

use serde_json::json;

use crate::helpers::{Shape, TestEnv};
use crate::rest::{PASSWORD, call, login, register};

for_shapes!([users_roles_and_passwords, invitations_are_accepted_once] on sqlite => Sqlite, redis => PostgresRedis);

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

async fn invitations_are_accepted_once(shape: Shape) {
    let mut env = TestEnv::new(shape).await;
    env.config.auth.invitation_ttl = devmesh::config::Duration::from_secs(2);
    let app = env.spawn_app().await;
    app.wait_ready().await;
    let acme = register(&app, "acme").await;
    let invite = |email: &str, role: &str| {
        let body = json!({ "email": email, "role": role });
        let (app, key) = (&app, acme.key.clone());
        async move { call(app, "POST", "/api/v1/invitations", Some(&key), Some(&body)).await }
    };
    let accept = |token: &str| {
        let body = json!({ "token": token, "name": "Dana", "password": PASSWORD });
        let app = &app;
        async move {
            call(
                app,
                "POST",
                "/api/v1/auth/accept-invitation",
                None,
                Some(&body),
            )
            .await
        }
    };

    let r = invite("Dana@Acme.io", "viewer").await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let token = r.body["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("dmi_"));
    let list = call(&app, "GET", "/api/v1/invitations", Some(&acme.key), None).await;
    assert_eq!(list.body["items"][0]["email"], "dana@acme.io");
    assert!(
        !list.body.to_string().contains(&token),
        "tokens are shown once"
    );

    // Accepting creates the account with the invited role and logs in.
    let r = accept(&token).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["user"]["role"], "viewer");
    assert_eq!(r.body["user"]["email"], "dana@acme.io");
    let jwt = r.body["access_token"].as_str().unwrap().to_string();
    let me = call(&app, "GET", "/api/v1/auth/me", Some(&jwt), None).await;
    assert_eq!(me.body["role"], "viewer");
    assert_eq!(
        login(&app, "acme", "dana@acme.io", PASSWORD).await.status,
        200
    );
    // Once only; and the email is now taken.
    assert_eq!(accept(&token).await.status, 401);
    assert_eq!(invite("dana@acme.io", "member").await.status, 409);

    // Revoked or expired invitations are refused; nothing is created.
    let revoked = invite("eve@acme.io", "member").await;
    let id = revoked.body["invitation"]["id"].as_str().unwrap();
    let r = call(
        &app,
        "DELETE",
        &format!("/api/v1/invitations/{id}"),
        Some(&acme.key),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.body["revoked_at"].is_string());
    assert_eq!(
        accept(revoked.body["token"].as_str().unwrap()).await.status,
        401
    );
    let late = invite("finn@acme.io", "member").await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(
        accept(late.body["token"].as_str().unwrap()).await.status,
        401
    );
    assert_eq!(
        login(&app, "acme", "eve@acme.io", PASSWORD).await.status,
        401
    );
    // Only an owner invites an owner; admin keys cannot.
    let r = invite("gus@acme.io", "owner").await;
    assert_eq!(r.status, 403);

    let audit = call(&app, "GET", "/api/v1/audit", Some(&acme.key), None).await;
    let actions: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "user.invited",
        "user.invitation_accepted",
        "user.invitation_revoked",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
}
