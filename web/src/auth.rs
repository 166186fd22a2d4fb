//! Who is asking: Argon2 password hashes, browser sessions (cookie + per-session CSRF
//! token), API bearer tokens, the two middlewares that require one of them, and role
//! checks. Only SHA-256 hashes of session and API secrets are stored.

use std::net::SocketAddr;
use std::sync::LazyLock;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use nightshift_store::{NewApiToken, NewSession, NewUser, Role, Store, StoreError, User};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::AppState;

/// The cookie holding a browser session's secret.
pub const SESSION_COOKIE: &str = "nightshift_session";
/// The cookie holding the login form's CSRF token (before there is a session).
pub const LOGIN_CSRF_COOKIE: &str = "nightshift_login_csrf";
/// The header a browser session must send with state-changing API calls.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A password could not be hashed (never expected: the parameters are fixed).
#[derive(Debug, thiserror::Error)]
#[error("hashing the password: {0}")]
pub struct PasswordError(String);

/// Hashes a password with Argon2id and a random salt; returns the PHC string.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|err| PasswordError(err.to_string()))
}

/// Whether `password` matches the PHC string `hash` (false for a malformed hash).
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A hash to verify against when the user does not exist, so that a wrong user name
/// takes as long as a wrong password.
static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| hash_password("not a real password").unwrap_or_default());

/// Checks a user name and password (on a blocking thread: Argon2 is slow on purpose).
pub async fn check_login(
    store: &Store,
    username: &str,
    password: &str,
) -> Result<Option<User>, ApiError> {
    let user = store.get_user_by_name(username).await?;
    let hash = match &user {
        Some(user) => user.password_hash.clone(),
        None => DUMMY_HASH.clone(),
    };
    let password = password.to_owned();
    let matches = tokio::task::spawn_blocking(move || verify_password(&hash, &password))
        .await
        .map_err(ApiError::internal)?;
    Ok(user.filter(|user| matches && !user.disabled))
}

/// 32 random bytes as lowercase hex: session secrets, CSRF tokens, API tokens.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex(&bytes)
}

/// The SHA-256 of a secret, lowercase hex: what the database keeps.
pub fn secret_hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random password of 20 letters and digits (ambiguous ones like `0`/`O` left out).
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut bytes = [0u8; 20];
    OsRng.fill_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

/// Why [`ensure_admin`] or [`create_api_token`] failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// When there are no users yet, creates `admin` with a generated password and returns
/// (user name, password) so the caller can print it once; otherwise `None`.
pub async fn ensure_admin(store: &Store) -> Result<Option<(String, String)>, SetupError> {
    if store.count_users().await? > 0 {
        return Ok(None);
    }
    let password = generate_password();
    let user = NewUser {
        username: "admin".to_owned(),
        password_hash: hash_password(&password)?,
        role: Role::Admin,
        now: Utc::now(),
    };
    match store.create_user(&user).await {
        Ok(user) => Ok(Some((user.username, password))),
        // Another process created it at the same moment.
        Err(StoreError::Conflict { .. }) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// Creates an API token for `username` and returns its secret (shown once).
pub async fn create_api_token(
    store: &Store,
    username: &str,
    name: &str,
    expires_at: Option<DateTime<Utc>>,
) -> Result<String, SetupError> {
    let user = store
        .get_user_by_name(username)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            what: "user",
            key: username.to_owned(),
        })?;
    let secret = new_secret();
    store
        .create_api_token(&NewApiToken {
            token_hash: secret_hash(&secret),
            user_id: user.id,
            name: name.to_owned(),
            now: Utc::now(),
            expires_at,
        })
        .await?;
    Ok(secret)
}

/// Starts a browser session; returns (cookie secret, CSRF token).
pub async fn start_session(
    state: &AppState,
    user: &User,
    ip: Option<String>,
    now: DateTime<Utc>,
) -> Result<(String, String), StoreError> {
    let secret = new_secret();
    let csrf = new_secret();
    let ttl = chrono::TimeDelta::from_std(state.settings.session_ttl)
        .unwrap_or(chrono::TimeDelta::hours(12));
    state
        .store
        .create_session(&NewSession {
            token_hash: secret_hash(&secret),
            user_id: user.id,
            csrf_token: csrf.clone(),
            ip,
            now,
            expires_at: now + ttl,
        })
        .await?;
    Ok((secret, csrf))
}

/// The signed-in user of a request, put in its extensions by the auth middlewares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentUser {
    pub id: i64,
    pub username: String,
    pub role: Role,
    /// The session's CSRF token; `None` when authenticated by an API token.
    pub csrf: Option<String>,
    /// The client's address, for the audit log.
    pub ip: Option<String>,
}

fn rank(role: Role) -> u8 {
    match role {
        Role::Viewer => 0,
        Role::Operator => 1,
        Role::Admin => 2,
    }
}

impl CurrentUser {
    /// Ok when the user has `needed` or a stronger role.
    pub fn require(&self, needed: Role) -> Result<(), ApiError> {
        if rank(self.role) >= rank(needed) {
            Ok(())
        } else {
            Err(ApiError::Forbidden {
                needed,
                have: self.role,
            })
        }
    }

    pub fn can(&self, role: Role) -> bool {
        rank(self.role) >= rank(role)
    }

    fn from_user(user: User, csrf: Option<String>, ip: Option<String>) -> CurrentUser {
        CurrentUser {
            id: user.id,
            username: user.username,
            role: user.role,
            csrf,
            ip,
        }
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<CurrentUser>()
            .cloned()
            .ok_or(ApiError::Unauthorized)
    }
}

/// Declares an extractor for a signed-in user with at least one role: anyone weaker gets
/// a 403 before the handler's other extractors (path, query, body) run, so the answer to
/// a request one may not make does not depend on how well-formed it is.
macro_rules! role_extractor {
    ($(#[$doc:meta])* $name:ident => $role:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(pub CurrentUser);

        impl<S: Send + Sync> axum::extract::FromRequestParts<S> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut axum::http::request::Parts,
                state: &S,
            ) -> Result<Self, Self::Rejection> {
                let user = CurrentUser::from_request_parts(parts, state).await?;
                user.require($role)?;
                Ok($name(user))
            }
        }
    };
}

role_extractor!(
    /// A signed-in operator or admin.
    Operator => Role::Operator
);
role_extractor!(
    /// A signed-in admin.
    Admin => Role::Admin
);

/// Middleware for UI routes that need `role`: anyone weaker gets a 403 page before the
/// form is read. Goes inside [`page_auth`], which finds the user.
pub async fn require_page_role(State(role): State<Role>, req: Request, next: Next) -> Response {
    let allowed = req
        .extensions()
        .get::<CurrentUser>()
        .ok_or(ApiError::Unauthorized)
        .and_then(|user| user.require(role));
    match allowed {
        Ok(()) => next.run(req).await,
        Err(err) => crate::ui::error_page(err),
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, path `/`, Secure when configured.
pub fn set_cookie(state: &AppState, name: &str, value: &str, max_age_secs: i64) -> String {
    let secure = if state.settings.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}")
}

/// The client's IP address, when the server was started with connect info.
pub fn client_ip(req: &Request) -> Option<String> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
}

/// Equality that takes as long for any two strings of one length.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

async fn session_of(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<(User, String)>, ApiError> {
    let Some(secret) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let found = state
        .store
        .session_user(&secret_hash(secret), Utc::now())
        .await?;
    Ok(found.map(|s| (s.user, s.csrf_token)))
}

/// Requires an API token (`Authorization: Bearer …`) or a session cookie; a session must
/// also send its CSRF token in `X-CSRF-Token` on anything but GET/HEAD/OPTIONS.
pub async fn api_auth(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let ip = client_ip(&req);
    let method = req.method().clone();
    let headers = req.headers().clone();
    match authenticate_api(&state, &headers, &method, ip).await {
        Ok(user) => {
            req.extensions_mut().insert(user);
            next.run(req).await
        }
        Err(err) => err.into_response(),
    }
}

async fn authenticate_api(
    state: &AppState,
    headers: &HeaderMap,
    method: &Method,
    ip: Option<String>,
) -> Result<CurrentUser, ApiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    if let Some(token) = bearer {
        let user = state
            .store
            .api_token_user(&secret_hash(token.trim()), Utc::now())
            .await?
            .ok_or(ApiError::Unauthorized)?;
        return Ok(CurrentUser::from_user(user, None, ip));
    }
    let (user, csrf) = session_of(state, headers)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let sent = headers
            .get(CSRF_HEADER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        if !same_secret(sent, &csrf) {
            return Err(ApiError::Csrf);
        }
    }
    Ok(CurrentUser::from_user(user, Some(csrf), ip))
}

/// Requires a session cookie; without one, GET pages redirect to the login page (which
/// comes back here afterwards) and other requests get a 401 page.
pub async fn page_auth(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let ip = client_ip(&req);
    match session_of(&state, req.headers()).await {
        Ok(Some((user, csrf))) => {
            req.extensions_mut()
                .insert(CurrentUser::from_user(user, Some(csrf), ip));
            next.run(req).await
        }
        Ok(None) => {
            let back = req
                .uri()
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .to_owned();
            let target = format!("/login?next={}", crate::ui::urlencode(&back));
            if req.headers().contains_key("hx-request") {
                ([("hx-redirect", target)], ApiError::Unauthorized).into_response()
            } else {
                Redirect::to(&target).into_response()
            }
        }
        Err(err) => crate::ui::error_page(err),
    }
}

/// A form whose `csrf` field must match the session's CSRF token: every state-changing
/// UI form is read through this, so none can skip the check. The token is checked before
/// the rest of the form is read, so a forged post learns nothing about the form.
#[derive(Debug, Clone)]
pub struct CsrfForm<T> {
    pub user: CurrentUser,
    pub form: T,
}

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

/// Reads an urlencoded form body as `T` (extra fields, like `csrf`, are ignored).
async fn parse_form<T: DeserializeOwned>(body: &axum::body::Bytes) -> Result<T, Response> {
    let req = Request::builder()
        .method(Method::POST)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(axum::body::Body::from(body.clone()))
        .map_err(|err| crate::ui::error_page(ApiError::internal(err)))?;
    match axum::Form::<T>::from_request(req, &()).await {
        Ok(axum::Form(form)) => Ok(form),
        Err(rejection) => Err(crate::ui::error_page(ApiError::BadRequest(
            rejection.body_text(),
        ))),
    }
}

impl<T, S> FromRequest<S> for CsrfForm<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let user = req
            .extensions()
            .get::<CurrentUser>()
            .cloned()
            .ok_or_else(|| crate::ui::error_page(ApiError::Unauthorized))?;
        let axum::extract::RawForm(body) = axum::extract::RawForm::from_request(req, state)
            .await
            .map_err(|rejection| {
            crate::ui::error_page(ApiError::rejected(
                rejection.status(),
                rejection.body_text(),
            ))
        })?;
        let CsrfField { csrf } = parse_form(&body).await?;
        let expected = user.csrf.as_deref().unwrap_or_default();
        if expected.is_empty() || !same_secret(&csrf, expected) {
            return Err(crate::ui::error_page(ApiError::Csrf));
        }
        let form = parse_form(&body).await?;
        Ok(CsrfForm { user, form })
    }
}

/// The client's IP address as an extractor (`None` without connect info).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIp(pub Option<String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip().to_string()),
        ))
    }
}
