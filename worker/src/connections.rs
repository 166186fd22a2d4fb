//! Loading the worker's connections (IO: the environment and the connections file) and
//! resolving the connection a rendered task names.

use std::collections::BTreeMap;
use std::path::Path;

use nightshift_core::connection::{ConnectionError, Connections};
use nightshift_core::render::mask_fields;
use nightshift_core::template::mask_secrets;

use crate::kind::TaskKind;

/// Why the connections could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read the connections file {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] ConnectionError),
}

/// The connections of the connections file (if any) and of `NIGHTSHIFT_CONN_<NAME>`
/// variables in `env`; a variable wins over a file entry of the same name. `${VAR}` in
/// the file reads `env`.
pub fn load(env: &BTreeMap<String, String>, file: Option<&Path>) -> Result<Connections, LoadError> {
    let mut connections = Connections::new();
    if let Some(path) = file {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            file: display.clone(),
            source,
        })?;
        connections.merge(Connections::from_toml(&display, &text, env)?);
    }
    connections.merge(Connections::from_env(
        env.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )?);
    Ok(connections)
}

/// Why a task's connection cannot be attached; the try's fatal failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachError {
    #[error(
        "connection {name:?} is not defined on this worker (set NIGHTSHIFT_CONN_{} or add it to the connections file)",
        name.to_ascii_uppercase()
    )]
    Undefined { name: String },
    #[error("connection {name:?} is a {kind} connection; this task needs {wanted}")]
    WrongKind {
        name: String,
        kind: nightshift_core::connection::ConnectionKind,
        /// What the task takes, e.g. "an http or https connection".
        wanted: &'static str,
    },
}

/// Fills in the connection `kind` names from `connections`. The error (an unknown name,
/// or a connection of the wrong kind) is the try's fatal failure.
pub fn attach(kind: &mut TaskKind, connections: &Connections) -> Result<(), AttachError> {
    fn find(
        connections: &Connections,
        name: &str,
        fits: fn(&nightshift_core::connection::ConnectionKind) -> bool,
        wanted: &'static str,
    ) -> Result<nightshift_core::connection::Connection, AttachError> {
        let c = connections
            .get(name)
            .ok_or_else(|| AttachError::Undefined {
                name: name.to_owned(),
            })?;
        if !fits(&c.kind) {
            return Err(AttachError::WrongKind {
                name: name.to_owned(),
                kind: c.kind.clone(),
                wanted,
            });
        }
        Ok(c.clone())
    }
    use nightshift_core::connection::ConnectionKind as K;
    use nightshift_core::dag::SensorCheck;
    const DB: &str = "a postgres, mysql or sqlite connection";
    const HTTP: &str = "an http or https connection";
    match kind {
        TaskKind::Sql(spec) => {
            spec.connection = Some(find(
                connections,
                &spec.task.connection,
                K::is_database,
                DB,
            )?);
        }
        TaskKind::Http(spec) => {
            if let Some(name) = &spec.task.connection {
                spec.connection = Some(find(connections, name, K::is_http, HTTP)?);
            }
        }
        TaskKind::Sensor(spec) => match &spec.task.check {
            SensorCheck::Sql(t) => {
                spec.connection = Some(find(connections, &t.connection, K::is_database, DB)?);
            }
            SensorCheck::Http(t) => {
                if let Some(name) = &t.connection {
                    spec.connection = Some(find(connections, name, K::is_http, HTTP)?);
                }
            }
            SensorCheck::S3(_) => {}
        },
        TaskKind::Bigquery(spec) => {
            spec.connection = Some(find(
                connections,
                &spec.task.connection,
                K::is_bigquery,
                "a bigquery connection",
            )?);
        }
        _ => {}
    }
    Ok(())
}

/// `secrets` as the slice of `&str` the masking functions take.
pub(crate) fn refs(secrets: &[String]) -> Vec<&str> {
    secrets.iter().map(String::as_str).collect()
}

/// A finished try with the secrets masked in its error and output.
pub(crate) fn mask_finish(fin: crate::decide::Finish, secrets: &[String]) -> crate::decide::Finish {
    if secrets.is_empty() {
        return fin;
    }
    let refs = refs(secrets);
    crate::decide::Finish {
        error: fin.error.map(|e| mask_secrets(&e, &refs)),
        output: fin.output.map(|o| mask_fields(&o, &refs)),
        ..fin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attach_error_names_the_connection_and_what_was_wanted() {
        let env = BTreeMap::from([(
            "NIGHTSHIFT_CONN_API".to_owned(),
            "https://api.invalid".to_owned(),
        )]);
        let connections = load(&env, None).expect("loads");
        let sql = |connection: &str| {
            TaskKind::Sql(Box::new(crate::kind::SqlSpec::new(
                nightshift_core::dag::SqlTask {
                    connection: connection.into(),
                    source: nightshift_core::dag::SqlSource::Sql("SELECT 1".into()),
                    parameters: Default::default(),
                    transaction: false,
                },
            )))
        };
        let err = attach(&mut sql("warehouse"), &connections).expect_err("undefined");
        assert_eq!(
            err,
            AttachError::Undefined {
                name: "warehouse".into()
            }
        );
        assert!(
            err.to_string().contains("NIGHTSHIFT_CONN_WAREHOUSE"),
            "{err}"
        );
        let err = attach(&mut sql("api"), &connections).expect_err("not a database");
        assert_eq!(
            err,
            AttachError::WrongKind {
                name: "api".into(),
                kind: nightshift_core::connection::ConnectionKind::Https,
                wanted: "a postgres, mysql or sqlite connection",
            }
        );
    }

    #[test]
    fn env_wins_over_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("connections.toml");
        std::fs::write(
            &file,
            "warehouse = \"postgres://etl:${PW}@db/dwh\"\napi = \"https://api.invalid\"",
        )
        .expect("write");
        let env = BTreeMap::from([
            ("PW".to_owned(), "pw-1".to_owned()),
            (
                "NIGHTSHIFT_CONN_API".to_owned(),
                "https://env.invalid".to_owned(),
            ),
        ]);
        let c = load(&env, Some(&file)).expect("loads");
        assert_eq!(
            c.iter().map(|c| c.display_uri()).collect::<Vec<_>>(),
            ["https://env.invalid", "postgres://etl:***@db/dwh"]
        );
        let err = load(&env, Some(&dir.path().join("nope.toml"))).expect_err("missing file");
        assert!(
            err.to_string()
                .starts_with("cannot read the connections file"),
            "{err}"
        );
    }
}
