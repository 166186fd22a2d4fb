//! Connections and single secrets kept in AWS SSM Parameter Store or Secrets Manager: the
//! `connections_backend` setting, `secret("ssm:/…")` references in templates, and turning
//! a fetched value (a URI, `{"uri", "extra"}`, or the JSON of an RDS secret) into a
//! [`Connection`].
//!
//! Pure: the worker (and the CLI) fetch the values; this module says what to fetch and
//! reads what came back. Messages name the connection and where it was looked up, never
//! the value.

use std::fmt;

use serde_json::Value;

use crate::connection::{Connection, ConnectionError};

/// The AWS service a value is kept in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AwsStore {
    /// SSM Parameter Store (a `SecureString` is decrypted).
    Ssm,
    /// Secrets Manager (the secret's `SecretString`).
    SecretsManager,
}

impl AwsStore {
    /// How a person knows the thing a value is kept in: "SSM parameter", "Secrets Manager
    /// secret".
    pub fn noun(self) -> &'static str {
        match self {
            AwsStore::Ssm => "SSM parameter",
            AwsStore::SecretsManager => "Secrets Manager secret",
        }
    }
}

/// One value in an AWS store: the store and the parameter's name or the secret's id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AwsLocation {
    pub store: AwsStore,
    pub name: String,
}

impl fmt::Display for AwsLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.store.noun(), self.name)
    }
}

/// The `connections_backend` setting: where connections that are neither in the
/// environment nor in the connections file are looked up, by name under a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionsBackend {
    pub store: AwsStore,
    /// Put before the connection's name: `/nightshift/connections/` + `warehouse`.
    pub prefix: String,
}

/// A `connections_backend` or a `secret()` reference that does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("connections_backend {0:?}: expected aws-ssm:/PATH/ or aws-secretsmanager:PREFIX (e.g. aws-ssm:/nightshift/connections/)")]
    BadBackend(String),
    #[error("secret({0:?}): expected \"ssm:/PARAMETER\" or \"secretsmanager:SECRET_ID\"")]
    BadReference(String),
}

impl ConnectionsBackend {
    /// Parses `aws-ssm:/nightshift/connections/` or
    /// `aws-secretsmanager:nightshift/connections/`.
    pub fn parse(text: &str) -> Result<ConnectionsBackend, BackendError> {
        let bad = || BackendError::BadBackend(text.to_owned());
        let (store, prefix) = if let Some(prefix) = text.strip_prefix("aws-ssm:") {
            // SSM names a hierarchy from `/`; a prefix without it is a plain name prefix.
            (AwsStore::Ssm, prefix)
        } else if let Some(prefix) = text.strip_prefix("aws-secretsmanager:") {
            (AwsStore::SecretsManager, prefix)
        } else {
            return Err(bad());
        };
        if prefix.chars().any(char::is_whitespace) {
            return Err(bad());
        }
        Ok(ConnectionsBackend {
            store,
            prefix: prefix.to_owned(),
        })
    }

    /// Where connection `name` (lower case, as `NIGHTSHIFT_CONN_<NAME>` maps it) is kept.
    pub fn location(&self, name: &str) -> AwsLocation {
        AwsLocation {
            store: self.store,
            name: format!("{}{}", self.prefix, name.to_ascii_lowercase()),
        }
    }
}

impl fmt::Display for ConnectionsBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.store {
            AwsStore::Ssm => write!(f, "aws-ssm:{}", self.prefix),
            AwsStore::SecretsManager => write!(f, "aws-secretsmanager:{}", self.prefix),
        }
    }
}

/// Parses a `secret()` reference: `ssm:/dmp/slack_webhook` or `secretsmanager:dmp/token`.
pub fn parse_reference(reference: &str) -> Result<AwsLocation, BackendError> {
    let (store, name) = if let Some(name) = reference.strip_prefix("ssm:") {
        (AwsStore::Ssm, name)
    } else if let Some(name) = reference.strip_prefix("secretsmanager:") {
        (AwsStore::SecretsManager, name)
    } else {
        return Err(BackendError::BadReference(reference.to_owned()));
    };
    if name.is_empty() || name.chars().any(char::is_whitespace) {
        return Err(BackendError::BadReference(reference.to_owned()));
    }
    Ok(AwsLocation {
        store,
        name: name.to_owned(),
    })
}

/// The literal arguments of every `secret("…")` call in `text`, in order. A call whose
/// argument is not a string literal is not listed (rendering it then fails, saying so).
pub fn references_in(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find("secret(") {
        let start = from + found;
        from = start + "secret(".len();
        let before = text[..start].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.') {
            continue;
        }
        let rest = text[from..].trim_start();
        let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            continue;
        };
        let inner = &rest[1..];
        let Some(end) = inner.find(quote) else {
            continue;
        };
        if inner[end + 1..].trim_start().starts_with(')') {
            out.push(inner[..end].to_owned());
        }
    }
    out
}

/// Every `secret("…")` reference in the strings of `value` (at any depth).
pub fn references_in_value(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.extend(references_in(s)),
        Value::Array(items) => items.iter().for_each(|v| references_in_value(v, out)),
        Value::Object(map) => map.values().for_each(|v| references_in_value(v, out)),
        _ => {}
    }
}

/// Reads the value fetched for connection `name` from `at`: a URI, a JSON object
/// `{"uri": "…", "extra": {…}}`, or the JSON of an RDS secret (`engine`, `host`, `port`,
/// `username`, `password`, `dbname`).
pub fn connection_from_value(
    name: &str,
    at: &AwsLocation,
    value: &str,
) -> Result<Connection, ConnectionError> {
    let bad = |message: String| ConnectionError::BadValue {
        name: name.to_ascii_lowercase(),
        message: format!("{at}: {message}"),
    };
    let trimmed = value.trim();
    if !trimmed.starts_with('{') {
        return Connection::parse(name, trimmed, None).map_err(|e| match e {
            ConnectionError::BadUri { uri, message, .. } => {
                bad(format!("invalid URI {uri:?}: {message}"))
            }
            other => other,
        });
    }
    // serde_json's messages name a position, never the text.
    let object: serde_json::Map<String, Value> = serde_json::from_str(trimmed)
        .map_err(|e| bad(format!("not a URI nor a JSON object: {e}")))?;
    if object.contains_key("uri") {
        return Connection::from_env_value(name, trimmed).map_err(|e| match e {
            ConnectionError::BadValue { message, .. } => bad(message),
            other => other,
        });
    }
    let uri = rds_uri(&object).map_err(bad)?;
    Connection::parse(name, &uri, None)
}

/// The URI of an RDS-style secret (as AWS writes them for RDS and Aurora).
fn rds_uri(object: &serde_json::Map<String, Value>) -> Result<String, String> {
    let text = |key: &str| -> Result<Option<String>, String> {
        match object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) if key == "port" => Ok(Some(n.to_string())),
            Some(_) => Err(format!("field {key:?} must be a string")),
        }
    };
    let required = |key: &str| -> Result<String, String> {
        text(key)?.filter(|v| !v.is_empty()).ok_or_else(|| {
            format!(
                "JSON secret without \"uri\" is read as an RDS secret (engine, host, port, \
                 username, password, dbname), but it has no {key:?}"
            )
        })
    };
    let engine = required("engine")?;
    let scheme = match engine.to_ascii_lowercase().as_str() {
        "postgres" | "postgresql" | "aurora-postgresql" | "redshift" => "postgres",
        "mysql" | "mariadb" | "aurora" | "aurora-mysql" => "mysql",
        other => return Err(format!("engine {other:?} is not a database nightshift connects to (postgres, aurora-postgresql, mysql, mariadb, aurora-mysql)")),
    };
    let host = required("host")?;
    let username = required("username")?;
    let mut url = url::Url::parse(&format!("{scheme}://placeholder"))
        .map_err(|e| format!("cannot build the URI: {e}"))?;
    url.set_host(Some(&host))
        .map_err(|e| format!("field \"host\" is not a host name: {e}"))?;
    if let Some(port) = text("port")? {
        let port: u16 = port
            .parse()
            .map_err(|_| "field \"port\" is not a port number".to_owned())?;
        let _ = url.set_port(Some(port));
    }
    let _ = url.set_username(&username);
    if let Some(password) = text("password")? {
        let _ = url.set_password(Some(&password));
    }
    if let Some(db) = text("dbname")? {
        url.set_path(&db);
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_and_references_parse() {
        let b = ConnectionsBackend::parse("aws-ssm:/nightshift/connections/").expect("ssm");
        assert_eq!(b.store, AwsStore::Ssm);
        assert_eq!(
            b.location("Warehouse").to_string(),
            "SSM parameter /nightshift/connections/warehouse"
        );
        let b = ConnectionsBackend::parse("aws-secretsmanager:nightshift/connections/")
            .expect("secrets manager");
        assert_eq!(
            b.location("warehouse").to_string(),
            "Secrets Manager secret nightshift/connections/warehouse"
        );
        assert_eq!(b.to_string(), "aws-secretsmanager:nightshift/connections/");
        assert!(ConnectionsBackend::parse("vault:/x").is_err());
        assert_eq!(
            parse_reference("ssm:/dmp/slack_webhook").map(|l| l.to_string()),
            Ok("SSM parameter /dmp/slack_webhook".to_owned())
        );
        assert!(parse_reference("secretsmanager:dmp/token").is_ok());
        assert!(parse_reference("env:X").is_err());
        assert!(parse_reference("ssm:").is_err());
    }

    #[test]
    fn references_are_found_in_templates() {
        fn check(text: &str, expected: &[&str]) {
            assert_eq!(references_in(text), expected, "{text}");
        }
        check("{{ secret(\"ssm:/a\") }}", &["ssm:/a"]);
        check(
            "{{ secret( 'ssm:/a' ) }} {{secret(\"secretsmanager:b\")}}",
            &["ssm:/a", "secretsmanager:b"],
        );
        check("{{ secret(x) }}", &[]);
        check("{{ my_secret('x') }} {{ a.secret('y') }}", &[]);
        check("{{ secret('unclosed }}", &[]);
        check("no templates", &[]);
    }

    #[test]
    fn values_become_connections() {
        let at = ConnectionsBackend::parse("aws-secretsmanager:ns/")
            .expect("backend")
            .location("warehouse");
        let c = connection_from_value("warehouse", &at, "postgres://etl:pw-1@db:5432/dwh")
            .expect("uri");
        assert_eq!(c.display_uri(), "postgres://etl:***@db:5432/dwh");
        let rds = r#"{"engine": "postgres", "host": "db.internal", "port": 5432,
                      "username": "etl", "password": "p@ss/w#rd", "dbname": "dwh",
                      "dbInstanceIdentifier": "dwh-1"}"#;
        let c = connection_from_value("warehouse", &at, rds).expect("rds");
        assert_eq!(c.kind, crate::connection::ConnectionKind::Postgres);
        assert_eq!(c.password.as_ref().map(|p| p.expose()), Some("p@ss/w#rd"));
        assert_eq!(c.schema.as_deref(), Some("dwh"));
        assert!(c.secrets().contains(&"p@ss/w#rd".to_owned()));
        let with_uri = r#"{"uri": "https://api.invalid", "extra": {"token": "t-123"}}"#;
        let c = connection_from_value("api", &at, with_uri).expect("uri object");
        assert_eq!(c.token(), Some("t-123"));

        let fail = |value: &str| {
            connection_from_value("warehouse", &at, value)
                .expect_err("must fail")
                .to_string()
        };
        let e = fail(r#"{"engine": "postgres", "host": "db", "password": "hunter22""#);
        assert!(e.starts_with("connection \"warehouse\": Secrets Manager secret ns/warehouse: not a URI nor a JSON object: EOF"), "{e}");
        assert!(!e.contains("hunter22"), "{e}");
        let e = fail(r#"{"engine": "postgres", "host": "db", "password": "hunter22"}"#);
        assert!(e.contains("has no \"username\""), "{e}");
        assert!(!e.contains("hunter22"), "{e}");
        let e = fail(r#"{"engine": "oracle", "host": "db", "username": "u"}"#);
        assert!(e.contains("engine \"oracle\""), "{e}");
    }
}
