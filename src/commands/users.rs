//! `nightshift users create|reset-password|list` and `nightshift tokens create`: the
//! people and scripts that may use the web UI and the REST API.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::{bail, Context};
use chrono::Utc;
use nightshift_store::{NewUser, Role, Store, StoreError};
use nightshift_web::{
    check_password, check_username, create_api_token, generate_password, hash_password,
};
use serde_json::json;

use super::common::{audit, table, time, Actor, Target};
use crate::cli::{Output, TokensCommand, UserRole, UsersCommand};

pub async fn users(
    store: &Store,
    actor: &Actor,
    command: UsersCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        UsersCommand::Create {
            username,
            role,
            password_stdin,
        } => {
            check_username(&username)?;
            let (password, generated, password_hash) = new_password(password_stdin).await?;
            let user = NewUser {
                username: username.clone(),
                password_hash,
                role: role.into(),
                now: Utc::now(),
            };
            match store.create_user(&user).await {
                Ok(user) => {
                    let details = json!({ "user": user.username, "role": user.role });
                    audit(store, actor, "user.create", Target::default(), details).await?;
                    eprintln!("created user {:?} with role {}", user.username, user.role);
                    if generated {
                        // The only time it is shown: alone on stdout, so scripts can read it.
                        eprintln!("its generated password (shown once):");
                        println!("{password}");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(StoreError::Conflict { .. }) => {
                    bail!("user {username:?} already exists")
                }
                Err(err) => Err(err).context("creating the user"),
            }
        }
        UsersCommand::ResetPassword {
            username,
            password_stdin,
            keep_tokens,
        } => reset_password(store, actor, &username, password_stdin, keep_tokens).await,
        UsersCommand::List { output } => {
            let users = store.list_users().await?;
            match output {
                Output::Table => {
                    let mut t = table(&["USERNAME", "ROLE", "CREATED", "DISABLED"]);
                    for u in &users {
                        t.add_row([
                            u.username.clone(),
                            u.role.to_string(),
                            time(Some(u.created_at)),
                            u.disabled.to_string(),
                        ]);
                    }
                    println!("{t}");
                }
                Output::Json => {
                    let json: Vec<_> = users
                        .iter()
                        .map(|u| {
                            json!({
                                "username": u.username,
                                "role": u.role.as_str(),
                                "created_at": u.created_at,
                                "disabled": u.disabled,
                            })
                        })
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&json)?);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Sets a new password and revokes the user's sessions (and tokens unless kept).
/// The password from standard input (`--password-stdin`) or a generated one, whether it
/// was generated (so it is printed once), and its hash (computed off the runtime).
async fn new_password(password_stdin: bool) -> anyhow::Result<(String, bool, String)> {
    let given = if password_stdin {
        Some(read_password(std::io::stdin().lock())?)
    } else {
        None
    };
    let generated = given.is_none();
    let password = given.unwrap_or_else(generate_password);
    let to_hash = password.clone();
    let password_hash = tokio::task::spawn_blocking(move || hash_password(&to_hash))
        .await
        .context("hashing the password")??;
    Ok((password, generated, password_hash))
}

async fn reset_password(
    store: &Store,
    actor: &Actor,
    username: &str,
    password_stdin: bool,
    keep_tokens: bool,
) -> anyhow::Result<ExitCode> {
    let Some(user) = store.get_user_by_name(username).await? else {
        bail!("no user {username:?} (`nightshift users list` shows them)");
    };
    let (password, generated, password_hash) = new_password(password_stdin).await?;
    store
        .set_user_password_hash(&user.username, &password_hash)
        .await
        .context("storing the new password")?;
    let revoked = store
        .revoke_access(user.id, !keep_tokens)
        .await
        .context("ending the user's sessions and tokens")?;
    let details = json!({
        "user": user.username,
        "password_changed": true,
        "revoked": revoked,
    });
    audit(store, actor, "user.update", Target::default(), details).await?;
    eprintln!(
        "new password for user {:?}; ended {} browser session(s) and {} API token(s)",
        user.username, revoked.sessions, revoked.tokens
    );
    if generated {
        // The only time it is shown: alone on stdout, so scripts can read it.
        eprintln!("its generated password (shown once):");
        println!("{password}");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn tokens(
    store: &Store,
    actor: &Actor,
    command: TokensCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        TokensCommand::Create { username, name } => {
            let secret = create_api_token(store, &username, &name, None)
                .await
                .with_context(|| format!("creating API token {name:?} for user {username:?}"))?;
            let details = json!({ "user": username, "name": name });
            audit(store, actor, "token.create", Target::default(), details).await?;
            eprintln!(
                "API token {name:?} for user {username:?} (shown once; send it as `Authorization: Bearer <token>`):"
            );
            println!("{secret}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The first line of `input`, without its line ending; it must be a password the web
/// server accepts too (at least 8 characters).
fn read_password(mut input: impl BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        bail!("--password-stdin: standard input had no password on its first line");
    }
    if let Err(err) = check_password(&password) {
        bail!("--password-stdin: {err}");
    }
    Ok(password)
}

impl From<UserRole> for Role {
    fn from(role: UserRole) -> Role {
        match role {
            UserRole::Viewer => Role::Viewer,
            UserRole::Operator => Role::Operator,
            UserRole::Admin => Role::Admin,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_read_from_the_first_line() {
        fn check(input: &str, expected: Result<&str, &str>) {
            let got = read_password(input.as_bytes()).map_err(|e| e.to_string());
            assert_eq!(
                got.as_deref().map_err(String::as_str),
                expected,
                "input {input:?}"
            );
        }
        let empty = "--password-stdin: standard input had no password on its first line";
        check("s3cret-pw\n", Ok("s3cret-pw"));
        check("s3cret-pw\r\nignored\n", Ok("s3cret-pw"));
        check("with space \n", Ok("with space "));
        check("no newline", Ok("no newline"));
        check("\n", Err(empty));
        check("", Err(empty));
        check(
            "s3cret\n",
            Err("--password-stdin: a password needs at least 8 characters; this one has 6"),
        );
        check(
            "1234567\r\n",
            Err("--password-stdin: a password needs at least 8 characters; this one has 7"),
        );
        check(
            "ééééééé\n",
            Err("--password-stdin: a password needs at least 8 characters; this one has 7"),
        );
    }

    #[test]
    fn user_names_are_checked() {
        fn check(name: &str, ok: bool) {
            assert_eq!(check_username(name).is_ok(), ok, "{name:?}");
        }
        check("alice", true);
        check("on-call.bot@example", true);
        check("", false);
        check("two words", false);
        check("tab\there", false);
        check(&"x".repeat(65), false);
        check(&"é".repeat(64), false);
        check("admin\u{200b}", false);
        check("\u{430}dmin", false);
    }
}
