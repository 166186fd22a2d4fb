//! The admins' pages: pools and users managed through the forms, each change audited;
//! and everyone's own API tokens on the administration page.

use axum::http::StatusCode;
use nightshift_store::Store;
use nightshift_web::verify_password;

use crate::common::{both_backends, fixture, open_session, unescape, Auth, Fixture};

both_backends!(
    admin_manages_pools_through_forms,
    admin_manages_users_through_forms,
    anyone_manages_their_own_api_tokens,
);

async fn audit_actions(f: &Fixture, actor: &str) -> Vec<String> {
    let all = f.audit().await.into_iter();
    all.filter(|a| a.actor == actor).map(|a| a.action).collect()
}

async fn admin_manages_pools_through_forms(store: Store) {
    let f = fixture(store).await;
    let admin = Auth::Session(&f.admin_session, false);

    let reply = f
        .admin_done("/admin/pools", "name=warehouse&slots=4&description=the+dwh")
        .await;
    assert_eq!(reply.location(), Some("/admin/pools"));
    let pool = f.pool("warehouse").await.expect("the pool");
    assert_eq!((pool.slots, pool.description.as_str()), (4, "the dwh"));
    let page = f.get("/admin/pools", admin).await;
    assert_eq!(page.status, StatusCode::OK);
    let text = unescape(&page.text());
    assert!(
        text.contains("warehouse") && text.contains("the dwh"),
        "{text}"
    );
    assert!(text.contains(r#"action="/admin/pools/warehouse/delete""#));
    assert!(
        !text.contains(r#"action="/admin/pools/default_pool/delete""#),
        "the default pool cannot be deleted, so it has no button"
    );

    // Mistakes show the page again with the message and a 4xx.
    // (the form's fields, the HTTP status, what the message says)
    for (fields, status, message) in [
        ("name=warehouse&slots=1", 409, "already exists"),
        ("name=x&slots=many", 400, "whole number"),
        ("name=x&slots=-1", 400, "0 or more"),
        ("name=two+words&slots=1", 400, "no spaces"),
        ("name=&slots=1", 400, "1 to 256 characters"),
    ] {
        let reply = f.admin_post("/admin/pools", fields).await;
        assert_eq!(reply.status.as_u16(), status, "{fields}: {}", reply.text());
        let text = reply.text();
        assert!(text.contains(message), "{fields}: {text}");
        assert!(text.contains("New pool"), "the form is shown again");
    }
    assert!(f.pool("x").await.is_none());

    f.admin_done("/admin/pools/warehouse", "slots=8&description=bigger")
        .await;
    let pool = f.pool("warehouse").await.expect("the pool");
    assert_eq!((pool.slots, pool.description.as_str()), (8, "bigger"));
    let reply = f.admin_post("/admin/pools/nope", "slots=8").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);

    // Viewers and operators are refused; so is a post without the CSRF token.
    for session in [&f.viewer_session, &f.operator_session] {
        let reply = f
            .post_as(session, "/admin/pools/warehouse/delete", "")
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
        let reply = f
            .post_as(session, "/admin/pools", "name=sneaky&slots=1")
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
        assert!(reply.text().contains("needs the admin role"));
    }
    let reply = f
        .post_form("/admin/pools/warehouse/delete", admin, "")
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(reply.text().contains("CSRF"));
    let reply = f
        .post_form("/admin/pools/warehouse/delete", admin, "csrf=wrong")
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(f.pool("warehouse").await.is_some());
    assert!(f.pool("sneaky").await.is_none());

    f.admin_done("/admin/pools/warehouse/delete", "").await;
    assert!(f.pool("warehouse").await.is_none());
    let reply = f.admin_post("/admin/pools/default_pool/delete", "").await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert!(
        reply.text().contains("cannot be deleted"),
        "{}",
        reply.text()
    );

    assert_eq!(
        audit_actions(&f, "ada").await,
        ["pool.delete", "pool.update", "pool.create"],
        "newest first, only what was done"
    );
    let entries = f.audit().await;
    assert_eq!(entries[1].details["slots"], 8);
    assert_eq!(entries[2].details["pool"], "warehouse");
}

async fn admin_manages_users_through_forms(store: Store) {
    let f = fixture(store).await;
    let admin = Auth::Session(&f.admin_session, false);

    let page = f.get("/admin/users", admin).await;
    assert_eq!(page.status, StatusCode::OK);
    let text = unescape(&page.text());
    for name in ["ada", "otto", "vera", "New user"] {
        assert!(text.contains(name), "{name}: {text}");
    }
    assert!(
        !text.contains(r#"action="/admin/users/ada/disabled""#),
        "no button to disable oneself"
    );

    // Create with a chosen password, and with a generated one shown once.
    f.admin_done(
        "/admin/users",
        "username=nina&role=operator&password=long+enough+pw",
    )
    .await;
    let nina = f.user("nina").await;
    assert_eq!(nina.role.as_str(), "operator");
    assert!(verify_password(&nina.password_hash, "long enough pw"));
    let reply = f
        .admin_post("/admin/users", "username=gen&role=viewer&password=")
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let text = reply.text();
    let marker = r#"<code class="token">"#;
    let start = text.find(marker).expect("the generated password is shown") + marker.len();
    let password = &text[start..start + text[start..].find('<').expect("end")];
    assert!(password.len() >= 16, "{password}");
    let generated = f.user("gen").await;
    assert!(verify_password(&generated.password_hash, password));
    assert!(
        !f.get("/admin/users", admin).await.text().contains(password),
        "shown once"
    );

    // (the new user's name, role and password, the HTTP status, what the message says)
    for (name, role, password, status, message) in [
        ("nina", "viewer", "long+enough+pw", 409, "nina"),
        ("two+words", "viewer", "long+enough+pw", 400, "no spaces"),
        ("x", "god", "long+enough+pw", 400, "god"),
        ("x", "viewer", "short", 400, "at least 8 characters"),
    ] {
        let fields = format!("username={name}&role={role}&password={password}");
        let reply = f.admin_post("/admin/users", &fields).await;
        assert_eq!(reply.status.as_u16(), status, "{fields}: {}", reply.text());
        assert!(reply.text().contains(message), "{fields}: {}", reply.text());
    }
    assert!(f.store.get_user_by_name("x").await.expect("get").is_none());

    // Change a role, disable and enable, reset a password.
    f.admin_done("/admin/users/nina/role", "role=admin").await;
    let nina = f.user("nina").await;
    assert_eq!(nina.role.as_str(), "admin");
    f.admin_done(
        "/admin/users/vera/disabled",
        "disabled=true&keep_tokens=true",
    )
    .await;
    assert!(f.user("vera").await.disabled);
    let reply = f.get("/api/v1/dags", Auth::Bearer(&f.viewer)).await;
    reply.problem(StatusCode::UNAUTHORIZED);
    let reply = f
        .get("/dags", Auth::Session(&f.viewer_session, false))
        .await;
    assert_eq!(
        reply.status,
        StatusCode::SEE_OTHER,
        "a disabled user is signed out"
    );
    assert!(f
        .get("/admin/users", admin)
        .await
        .text()
        .contains("disabled"));
    f.admin_done("/admin/users/vera/disabled", "disabled=false")
        .await;
    let reply = f.get("/api/v1/dags", Auth::Bearer(&f.viewer)).await;
    assert_eq!(reply.status, StatusCode::OK);

    f.admin_done("/admin/users/otto/password", "password=a+new+password")
        .await;
    let otto = f.user("otto").await;
    assert!(verify_password(&otto.password_hash, "a new password"));
    let reply = f
        .admin_post("/admin/users/otto/password", "password=")
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.text().contains("Password of <strong>otto</strong>"));
    let otto = f.user("otto").await;
    assert!(!verify_password(&otto.password_hash, "a new password"));
    // Refused, and nothing changes: (path, fields, HTTP status)
    for (path, fields, status) in [
        ("/admin/users/vera/disabled", "disabled=maybe", 400),
        ("/admin/users/otto/password", "password=short", 400),
        ("/admin/users/nobody/role", "role=viewer", 404),
    ] {
        let reply = f.admin_post(path, fields).await;
        assert_eq!(reply.status.as_u16(), status, "{path} {fields}");
    }

    // An admin cannot lock themself out.
    let reply = f
        .admin_post("/admin/users/ada/disabled", "disabled=true")
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert!(reply.text().contains("ask another admin"));
    let reply = f.admin_post("/admin/users/ada/role", "role=viewer").await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    let ada = f.user("ada").await;
    assert_eq!((ada.role.as_str(), ada.disabled), ("admin", false));

    // Viewers and operators are refused; so is a post without the CSRF token. (Their
    // sessions ended when their disabled flag and password changed above: sign in again.)
    for (name, session) in [("vera", &f.viewer_session), ("otto", &f.operator_session)] {
        open_session(&f.store, f.user(name).await.id, session).await;
        let reply = f
            .post_as(session, "/admin/users/vera/role", "role=admin")
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{name}");
    }
    let reply = f
        .post_form("/admin/users/vera/role", admin, "role=admin")
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(reply.text().contains("CSRF"));
    let vera = f.user("vera").await;
    assert_eq!(vera.role.as_str(), "viewer");

    let mut actions = audit_actions(&f, "ada").await;
    actions.reverse();
    assert_eq!(
        actions,
        [
            "user.create",
            "user.create",
            "user.update",
            "user.update",
            "user.update",
            "user.update",
            "user.update",
        ]
    );
    let entries = f.audit().await;
    assert_eq!(entries[0].details["password_changed"], true);
    assert!(
        !entries
            .iter()
            .any(|e| e.details.to_string().contains("a new password")),
        "passwords never reach the audit log"
    );
}

async fn anyone_manages_their_own_api_tokens(store: Store) {
    let f = fixture(store).await;
    let viewer = Auth::Session(&f.viewer_session, false);
    let csrf = &f.viewer_session.csrf;

    let reply = f
        .post_form("/admin/tokens", viewer, &format!("name=ci&csrf={csrf}"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let text = reply.text();
    let marker = r#"<code class="token">"#;
    let start = text.find(marker).expect("the new token is shown") + marker.len();
    let token = text[start..start + 64].to_owned();
    let reply = f.get("/api/v1/version", Auth::Bearer(&token)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = f
        .post_form("/admin/tokens", viewer, &format!("name=+&csrf={csrf}"))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);

    let vera = f.user("vera").await;
    let tokens = f.store.list_api_tokens(vera.id).await.expect("tokens");
    let ci = tokens.iter().find(|t| t.name == "ci").expect("ci token");
    // Someone else's token cannot be revoked from here.
    let otto = f.user("otto").await;
    let otto_token = f.store.list_api_tokens(otto.id).await.expect("tokens")[0].id;
    let reply = f
        .post_form(
            &format!("/admin/tokens/{otto_token}/delete"),
            viewer,
            &format!("csrf={csrf}"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = f
        .post_form(&format!("/admin/tokens/{}/delete", ci.id), viewer, "")
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "no CSRF token");
    let reply = f
        .post_form(
            &format!("/admin/tokens/{}/delete", ci.id),
            viewer,
            &format!("csrf={csrf}"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    f.get("/api/v1/version", Auth::Bearer(&token))
        .await
        .problem(StatusCode::UNAUTHORIZED);
    f.get("/api/v1/version", Auth::Bearer(&f.operator))
        .await
        .json();
    assert_eq!(
        audit_actions(&f, "vera").await,
        ["token.delete", "token.create"]
    );
}
