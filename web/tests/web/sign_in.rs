//! Sign-in hardening: throttling with growing delays (429 + `Retry-After`, in the audit
//! log), `next=` that cannot leave the site, login CSRF tokens only the server can make,
//! credentials changes that end old sessions and tokens, and look-alike user names.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Method, StatusCode};
use axum::Router;
use nightshift_store::{AuditFilter, AuditRecord, Store};
use nightshift_web::{app, AppState, LoginThrottleSettings, ThrottlePolicy, WebSettings};
use serde_json::json;

use crate::common::{both_backends, fixture, get, send, Auth, Fixture, Reply, PASSWORD};

both_backends!(
    failed_sign_ins_are_throttled_with_retry_after,
    a_successful_sign_in_resets_the_account,
    one_address_is_throttled_across_user_names,
    next_only_leads_to_paths_on_this_site,
    login_csrf_tokens_must_come_from_the_server,
    a_new_password_or_role_ends_sessions_and_tokens,
    disable_then_enable_does_not_revive_sessions,
    look_alike_user_names_are_refused_in_the_ui,
);

/// The login form's CSRF token, from the cookie the login page sets.
async fn login_token(app: &Router) -> String {
    let page = get(app, "/login", Auth::None).await;
    assert_eq!(page.status, StatusCode::OK);
    let cookie = page
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("nightshift_login_csrf="))
        .expect("login csrf cookie");
    let token = cookie.split(';').next().unwrap_or_default().to_owned();
    assert!(page.text().contains(&token), "the form carries the token");
    token
}

/// Posts the login form with `cookie` and `field` as the CSRF token, from `ip`.
async fn post_login(
    app: &Router,
    fields: &str,
    cookie: &str,
    field: &str,
    ip: Option<&str>,
) -> Reply {
    let mut req = axum::http::Request::builder()
        .method(Method::POST)
        .uri("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, format!("nightshift_login_csrf={cookie}"))
        .body(Body::from(format!("{fields}&csrf={field}")))
        .expect("request");
    if let Some(ip) = ip {
        let addr: SocketAddr = format!("[{ip}]:4000")
            .parse()
            .or_else(|_| format!("{ip}:4000").parse())
            .expect("address");
        req.extensions_mut().insert(ConnectInfo(addr));
    }
    send(app, req).await
}

/// Signs in as `user` with `password` with a fresh, valid login token.
async fn sign_in(app: &Router, user: &str, password: &str, ip: Option<&str>) -> Reply {
    let token = login_token(app).await;
    let fields = format!(
        "username={user}&password={}&next=%2Fdags",
        password.replace(' ', "+")
    );
    post_login(app, &fields, &token, &token, ip).await
}

/// The audit entries of `action`, newest first.
async fn audit(store: &Store, action: &str) -> Vec<AuditRecord> {
    let filter = AuditFilter {
        action: Some(action.to_owned()),
        ..AuditFilter::default()
    };
    store.list_audit(&filter).await.expect("audit")
}

async fn audit_count(store: &Store, action: &str) -> usize {
    audit(store, action).await.len()
}

/// A web server whose first wait is a minute (so no test races the clock), with the
/// default free failures per account and `address_free` per address.
fn patient_app(store: &Store, address_free: u32) -> Router {
    let minute = std::time::Duration::from_secs(60);
    let login_throttle = LoginThrottleSettings {
        account: ThrottlePolicy {
            base_delay: minute,
            ..ThrottlePolicy::ACCOUNT
        },
        address: ThrottlePolicy {
            free_failures: address_free,
            base_delay: minute,
            ..ThrottlePolicy::ADDRESS
        },
    };
    app(AppState {
        store: store.clone(),
        settings: WebSettings {
            login_throttle,
            ..WebSettings::default()
        },
        metrics: None,
        login: Default::default(),
    })
}

fn retry_after(reply: &Reply) -> u64 {
    reply
        .headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("Retry-After in {:?}", reply.headers))
}

/// The reported attack: many wrong passwords in a row. After the free failures each
/// attempt waits longer; while it waits, even the right password is refused with a 429.
async fn failed_sign_ins_are_throttled_with_retry_after(store: Store) {
    let f = fixture(store).await;
    let app = patient_app(&f.store, 100);
    let free = ThrottlePolicy::ACCOUNT.free_failures;
    for i in 0..=free {
        let reply = sign_in(&app, "otto", "wrong password", None).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    for _ in 0..3 {
        let reply = sign_in(&app, "otto", PASSWORD, None).await;
        assert_eq!(
            reply.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            reply.text()
        );
        assert!((1..=60).contains(&retry_after(&reply)));
        assert!(reply.text().contains("Too many failed sign-ins"));
        assert!(
            reply.headers.get_all(header::SET_COOKIE).iter().all(|v| v
                .to_str()
                .is_ok_and(|v| !v.starts_with("nightshift_session="))),
            "no session"
        );
    }
    // Another account is not affected.
    let reply = sign_in(&app, "vera", PASSWORD, None).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());

    assert_eq!(
        audit_count(&f.store, "login.failed").await,
        free as usize + 1
    );
    assert_eq!(
        audit_count(&f.store, "login.throttled").await,
        1,
        "one entry per wait, however often it is hammered"
    );
    let entry = audit(&f.store, "login.throttled").await.remove(0);
    assert_eq!(entry.details["username"], "otto");
    assert_eq!(entry.details["by"], "account");
}

async fn a_successful_sign_in_resets_the_account(store: Store) {
    let f = fixture(store).await;
    let app = patient_app(&f.store, 100);
    let free = ThrottlePolicy::ACCOUNT.free_failures;
    for _ in 0..free - 1 {
        let reply = sign_in(&app, "otto", "wrong password", None).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let reply = sign_in(&app, "otto", PASSWORD, None).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    // A fresh budget: as many free failures again.
    for i in 0..=free {
        let reply = sign_in(&app, "otto", "wrong password", None).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let reply = sign_in(&app, "otto", "wrong password", None).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
}

/// One client trying many user names is slowed down by its address (IPv6 by /64).
async fn one_address_is_throttled_across_user_names(store: Store) {
    let f = fixture(store).await;
    let app = patient_app(&f.store, 3);
    let attacker = "2001:db8:1:2::10";
    for name in ["ada", "otto", "vera", "root"] {
        let reply = sign_in(&app, name, "guess", Some(attacker)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{name}");
    }
    // Same /64, another name: refused before the password is checked.
    let reply = sign_in(&app, "nina", PASSWORD, Some("2001:db8:1:2::99")).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&reply) >= 1);
    // Everyone else signs in.
    let reply = sign_in(&app, "otto", PASSWORD, Some("192.0.2.7")).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    let entry = audit(&f.store, "login.throttled").await.remove(0);
    assert_eq!(entry.details["by"], "address");
    assert_eq!(entry.ip.as_deref(), Some("2001:db8:1:2::99"));
}

async fn next_only_leads_to_paths_on_this_site(store: Store) {
    let f = fixture(store).await;
    // The reported bypass: a tab between the slashes, which browsers drop.
    for (next, expected) in [
        ("%2F%09%2Fevil.example%2Fphish", "/"),
        ("%2F%0A%2Fevil.example", "/"),
        ("%2F%5Cevil.example", "/"),
        ("%2F%2Fevil.example", "/"),
        ("%2F%252F%252Fevil.example", "/"),
        ("https%3A%2F%2Fevil.example", "/"),
        ("%2Fdags%2Fnightly%3Foffset%3D0", "/dags/nightly?offset=0"),
    ] {
        let page = f.get(&format!("/login?next={next}"), Auth::None).await;
        let field = format!(r#"name="next" value="{}""#, expected.replace('/', "&#x2f;"));
        let text = page.text();
        assert!(
            text.contains(&field) || text.contains(&format!(r#"name="next" value="{expected}""#)),
            "{next}: {text}"
        );
        let token = login_token(&f.app).await;
        let fields = format!(
            "username=otto&password={}&next={next}",
            PASSWORD.replace(' ', "+")
        );
        let reply = post_login(&f.app, &fields, &token, &token, None).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{next}");
        assert_eq!(reply.location(), Some(expected), "{next}");
    }
}

async fn login_csrf_tokens_must_come_from_the_server(store: Store) {
    let f = fixture(store).await;
    let fields = format!(
        "username=otto&password={}&next=%2Fdags",
        PASSWORD.replace(' ', "+")
    );
    // A pair the attacker made up, however well-formed, is refused.
    let made_up = "1700000000.0123456789abcdef.0123456789abcdef";
    for token in ["attacker-chosen", made_up] {
        let reply = post_login(&f.app, &fields, token, token, None).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{token}");
    }
    // A server's token with its signature changed, or cookie and field that differ.
    let token = login_token(&f.app).await;
    let mut tampered = token.clone();
    let last = if tampered.ends_with('0') { '1' } else { '0' };
    tampered.pop();
    tampered.push(last);
    let reply = post_login(&f.app, &fields, &tampered, &tampered, None).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let other = login_token(&f.app).await;
    let reply = post_login(&f.app, &fields, &token, &other, None).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(audit_count(&f.store, "login.failed").await, 0);

    // A token from another web server on the same database is good (the key is shared).
    let other_server = app(AppState {
        store: f.store.clone(),
        settings: WebSettings::default(),
        metrics: None,
        login: Default::default(),
    });
    let reply = post_login(&other_server, &fields, &token, &token, None).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
}

/// PATCHes the user `name` as the admin, which must succeed.
async fn patch_user(f: &Fixture, name: &str, body: serde_json::Value) {
    let reply = f.admin_patch_user(name, &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{name}: {}", reply.text());
}

/// Whether the fixture session and API token of `user` (ada, otto or vera) still work.
async fn signed_in(f: &Fixture, user: &str) -> (bool, bool) {
    let (session, token) = match user {
        "ada" => (&f.admin_session, &f.admin),
        "otto" => (&f.operator_session, &f.operator),
        "vera" => (&f.viewer_session, &f.viewer),
        _ => panic!("no fixture user {user}"),
    };
    let page = f.get("/dags", Auth::Session(session, false)).await;
    let api = f.get("/api/v1/dags", Auth::Bearer(token)).await;
    (page.status == StatusCode::OK, api.status == StatusCode::OK)
}

async fn a_new_password_or_role_ends_sessions_and_tokens(store: Store) {
    let f = fixture(store).await;
    assert_eq!(signed_in(&f, "otto").await, (true, true));

    // A new password through the API: otto's session and token end.
    patch_user(&f, "otto", json!({"password": "a brand new one"})).await;
    assert_eq!(signed_in(&f, "otto").await, (false, false));
    let entry = audit(&f.store, "user.update").await.remove(0);
    assert_eq!(
        entry.details["revoked"],
        json!({"sessions": 1, "tokens": 1})
    );

    // A new role in the UI, keeping tokens: vera's session ends, her token stays.
    let page = f
        .get("/admin/users", Auth::Session(&f.admin_session, false))
        .await;
    assert!(
        page.text().contains(r#"name="keep_tokens""#),
        "the forms offer it"
    );
    assert_eq!(signed_in(&f, "vera").await, (true, true));
    let form = "role=operator&keep_tokens=on";
    let reply = f.admin_post("/admin/users/vera/role", form).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    assert_eq!(signed_in(&f, "vera").await, (false, true));

    // A password reset in the UI ends everything; the admin's own access is untouched.
    let form = "password=another+new+one";
    let reply = f.admin_post("/admin/users/vera/password", form).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    let api = f.get("/api/v1/dags", Auth::Bearer(&f.viewer)).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    assert_eq!(signed_in(&f, "ada").await, (true, true));

    // Setting the role a user already has changes nothing and ends nothing.
    patch_user(&f, "ada", json!({"role": "admin"})).await;
    assert_eq!(signed_in(&f, "ada").await, (true, true));
}

async fn disable_then_enable_does_not_revive_sessions(store: Store) {
    let f = fixture(store).await;
    for disabled in [true, false] {
        patch_user(&f, "otto", json!({ "disabled": disabled })).await;
    }
    assert_eq!(
        signed_in(&f, "otto").await,
        (false, false),
        "the old session and token stay dead"
    );
    // Otto signs in again with his password.
    let reply = sign_in(&f.app, "otto", PASSWORD, None).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());

    // A session left from before this rule (the account disabled behind the web
    // server's back) does not come back when the account is enabled.
    f.store
        .set_user_disabled("vera", true)
        .await
        .expect("disable");
    assert_eq!(signed_in(&f, "vera").await, (false, false));
    patch_user(&f, "vera", json!({"disabled": false})).await;
    assert_eq!(
        signed_in(&f, "vera").await,
        (false, true),
        "enabling ends old sessions; tokens (never revoked here) work again"
    );
}

async fn look_alike_user_names_are_refused_in_the_ui(store: Store) {
    let f = fixture(store).await;
    // `admin` with a zero-width space, with a Cyrillic `а`, with a fullwidth `ａ`.
    for encoded in ["admin%E2%80%8B", "%D0%B0dmin", "%EF%BD%81dmin"] {
        let form = format!("username={encoded}&role=admin&password=long+enough+pw");
        let reply = f.admin_post("/admin/users", &form).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{encoded}");
        assert!(reply.text().contains("only ASCII letters"), "{encoded}");
    }
    let users = f.store.list_users().await.expect("users");
    assert_eq!(users.len(), 3, "{users:?}");
}
