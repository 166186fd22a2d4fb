//! Revoking a user's sign-ins and the web servers' shared keys.

use chrono::{TimeDelta, Utc};
use nightshift_store::{NewApiToken, NewSession, NewUser, Revoked, Role, Store};

use crate::common::both_backends;

both_backends!(
    revoking_access_ends_sessions_and_optionally_tokens,
    web_keys_are_created_once_and_shared,
);

async fn user_with_credentials(store: &Store, name: &str) -> i64 {
    let now = Utc::now();
    let user = store
        .create_user(&NewUser {
            username: name.to_owned(),
            password_hash: "$argon2id$test".to_owned(),
            role: Role::Operator,
            now,
        })
        .await
        .expect("create user");
    for i in 0..2 {
        store
            .create_session(&NewSession {
                token_hash: format!("session-{name}-{i}"),
                user_id: user.id,
                csrf_token: "csrf".to_owned(),
                ip: None,
                now,
                expires_at: now + TimeDelta::hours(1),
            })
            .await
            .expect("create session");
    }
    store
        .create_api_token(&NewApiToken {
            token_hash: format!("token-{name}"),
            user_id: user.id,
            name: "script".to_owned(),
            now,
            expires_at: None,
        })
        .await
        .expect("create token");
    user.id
}

async fn signed_in(store: &Store, name: &str) -> (bool, bool) {
    let now = Utc::now();
    let session = store
        .session_user(&format!("session-{name}-0"), now)
        .await
        .expect("session lookup")
        .is_some();
    let token = store
        .api_token_user(&format!("token-{name}"), now)
        .await
        .expect("token lookup")
        .is_some();
    (session, token)
}

async fn revoking_access_ends_sessions_and_optionally_tokens(store: Store) {
    let alice = user_with_credentials(&store, "alice").await;
    let bob = user_with_credentials(&store, "bob").await;
    let carol = user_with_credentials(&store, "carol").await;

    let revoked = store.revoke_access(alice, true).await.expect("revoke");
    assert_eq!(
        revoked,
        Revoked {
            sessions: 2,
            tokens: 1
        }
    );
    assert_eq!(signed_in(&store, "alice").await, (false, false));

    let revoked = store.revoke_access(bob, false).await.expect("revoke");
    assert_eq!(
        revoked,
        Revoked {
            sessions: 2,
            tokens: 0
        }
    );
    assert_eq!(signed_in(&store, "bob").await, (false, true), "tokens kept");

    // Other users keep theirs; revoking twice finds nothing.
    assert_eq!(signed_in(&store, "carol").await, (true, true));
    assert_eq!(
        store.revoke_access(alice, true).await.expect("revoke"),
        Revoked::default()
    );
    assert_eq!(store.list_api_tokens(carol).await.expect("list").len(), 1);
}

async fn web_keys_are_created_once_and_shared(store: Store) {
    let now = Utc::now();
    let first = store
        .web_key("login-csrf", "candidate-1", now)
        .await
        .expect("key");
    assert_eq!(first, "candidate-1");
    let second = store
        .web_key("login-csrf", "candidate-2", now)
        .await
        .expect("key");
    assert_eq!(second, "candidate-1", "the stored key wins");
    let other = store
        .web_key("another-purpose", "candidate-3", now)
        .await
        .expect("key");
    assert_eq!(other, "candidate-3");
}
