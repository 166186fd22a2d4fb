//! Named connections (a warehouse, an API, an AWS account): parsed from a URI with optional
//! extra JSON, or from the TOML connections file, and the secrets to mask wherever text
//! about them is shown.
//!
//! Pure: the caller reads the environment and the file and passes their contents in.
//! Names are lower case (`NIGHTSHIFT_CONN_WAREHOUSE` is `warehouse`).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::secret::{password_misread, redact_url, Secret, MISREAD_PASSWORD};
use crate::template::mask_secrets;

/// The prefix of environment variables that define connections.
pub const ENV_PREFIX: &str = "NIGHTSHIFT_CONN_";

/// What a connection talks to, from its URI's scheme.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionKind {
    /// `postgres://` or `postgresql://`.
    Postgres,
    /// `mysql://` or `mariadb://`.
    Mysql,
    /// `sqlite://FILE`, `sqlite:///ABSOLUTE/FILE` or `sqlite::memory:`.
    Sqlite,
    Http,
    Https,
    /// `aws://` (region and endpoint in `extra` or the query string).
    Aws,
    /// `bigquery://PROJECT?location=…&credentials_file=…&endpoint=…` (the `bigquery` kind).
    Bigquery,
    /// Any other scheme, kept as written (lower case).
    Other(String),
}

impl ConnectionKind {
    pub fn from_scheme(scheme: &str) -> ConnectionKind {
        match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => ConnectionKind::Postgres,
            "mysql" | "mariadb" => ConnectionKind::Mysql,
            "sqlite" => ConnectionKind::Sqlite,
            "http" => ConnectionKind::Http,
            "https" => ConnectionKind::Https,
            "aws" => ConnectionKind::Aws,
            "bigquery" => ConnectionKind::Bigquery,
            other => ConnectionKind::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            ConnectionKind::Postgres => "postgres",
            ConnectionKind::Mysql => "mysql",
            ConnectionKind::Sqlite => "sqlite",
            ConnectionKind::Http => "http",
            ConnectionKind::Https => "https",
            ConnectionKind::Aws => "aws",
            ConnectionKind::Bigquery => "bigquery",
            ConnectionKind::Other(s) => s,
        }
    }

    /// A database a `sql` task can run on.
    pub fn is_database(&self) -> bool {
        matches!(
            self,
            ConnectionKind::Postgres | ConnectionKind::Mysql | ConnectionKind::Sqlite
        )
    }

    /// An HTTP endpoint an `http` task can call.
    pub fn is_http(&self) -> bool {
        matches!(self, ConnectionKind::Http | ConnectionKind::Https)
    }

    /// A BigQuery project a `bigquery` task can run in.
    pub fn is_bigquery(&self) -> bool {
        matches!(self, ConnectionKind::Bigquery)
    }
}

impl fmt::Display for ConnectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One named connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    pub name: String,
    pub kind: ConnectionKind,
    /// The URI as given (with its password); pass it to drivers, never show it.
    pub uri: Secret,
    pub login: Option<String>,
    /// Percent-decoded.
    pub password: Option<Secret>,
    pub host: Option<String>,
    pub port: Option<u16>,
    /// The database (or for SQLite the file path) the URI names.
    pub schema: Option<String>,
    /// A JSON object: options beyond the URI (`token`, `headers`, `region`, …).
    pub extra: Value,
}

/// Why a connection could not be read. Messages never contain a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    #[error("connection name {name:?} is not valid: use letters, digits, `_` and `-`")]
    BadName { name: String },
    #[error("connection {name:?}: invalid URI {uri:?}: {message}")]
    BadUri {
        name: String,
        /// Redacted.
        uri: String,
        message: String,
    },
    #[error("connection {name:?}: {message}")]
    BadValue { name: String, message: String },
    #[error("connection {name:?}: environment variable {var} is not set (used as ${{{var}}})")]
    MissingVar { name: String, var: String },
    #[error("connections file {file}: {message}")]
    BadFile { file: String, message: String },
}

/// Keys (of `extra`, of the URI's query, of headers) whose values are secrets.
const SECRET_KEY_PARTS: [&str; 10] = [
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "private_key",
    "credential",
    "authorization",
];

/// Whether a value stored under `key` is a secret (`token`, `aws_secret_access_key`,
/// `Authorization`, `X-Api-Key`, …).
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEY_PARTS.iter().any(|part| key.contains(part)) || key == "cookie"
}

impl Connection {
    /// Parses `uri` (and `extra`, a JSON object or `None`) as connection `name`.
    pub fn parse(
        name: &str,
        uri: &str,
        extra: Option<Value>,
    ) -> Result<Connection, ConnectionError> {
        let name = check_name(name)?;
        let extra = match extra {
            None | Some(Value::Null) => Value::Object(serde_json::Map::new()),
            Some(Value::Object(map)) => Value::Object(map),
            Some(other) => {
                return Err(ConnectionError::BadValue {
                    name,
                    message: format!("extra must be a JSON object, found {}", json_kind(&other)),
                })
            }
        };
        let bad = |message: String| ConnectionError::BadUri {
            name: name.clone(),
            uri: redact_url(uri),
            message,
        };
        if password_misread(uri) {
            return Err(bad(MISREAD_PASSWORD.into()));
        }
        let url = url::Url::parse(uri).map_err(|e| bad(e.to_string()))?;
        let kind = ConnectionKind::from_scheme(url.scheme());
        let login = Some(percent_decode(url.username())).filter(|l| !l.is_empty());
        let password = url.password().map(|p| Secret::new(percent_decode(p)));
        let host = url.host_str().filter(|h| !h.is_empty()).map(str::to_owned);
        let path = percent_decode(url.path());
        let schema = match kind {
            // sqlite://relative.db reads as host "relative.db": the path is host + path.
            ConnectionKind::Sqlite => {
                let full = format!("{}{}", host.as_deref().unwrap_or(""), path);
                Some(full).filter(|p| !p.is_empty())
            }
            _ => Some(path.trim_start_matches('/').to_owned()).filter(|p| !p.is_empty()),
        };
        if kind != ConnectionKind::Sqlite && kind != ConnectionKind::Aws && host.is_none() {
            return Err(bad("the URI names no host".into()));
        }
        Ok(Connection {
            name,
            kind: kind.clone(),
            uri: Secret::new(uri),
            login,
            password,
            host: if kind == ConnectionKind::Sqlite {
                None
            } else {
                host
            },
            port: url.port(),
            schema,
            extra,
        })
    }

    /// Parses the value of a `NIGHTSHIFT_CONN_<NAME>` variable: a URI, or a JSON object
    /// `{"uri": "…", "extra": {…}}`.
    pub fn from_env_value(name: &str, value: &str) -> Result<Connection, ConnectionError> {
        let trimmed = value.trim();
        if !trimmed.starts_with('{') {
            return Connection::parse(name, trimmed, None);
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Object {
            uri: String,
            #[serde(default)]
            extra: Option<Value>,
        }
        let object: Object =
            serde_json::from_str(trimmed).map_err(|e| ConnectionError::BadValue {
                name: name.to_ascii_lowercase(),
                // serde_json's messages name the position, never the text.
                message: format!("not a URI nor a JSON object {{uri, extra}}: {e}"),
            })?;
        Connection::parse(name, &object.uri, object.extra)
    }

    /// The strings to mask as `***` wherever text about this connection may be shown:
    /// the password (as written in the URI and decoded), secret-looking query values,
    /// secret-looking `extra` values (at any depth) and headers marked secret.
    pub fn secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(password) = &self.password {
            out.push(password.expose().to_owned());
        }
        if let Ok(url) = url::Url::parse(self.uri.expose()) {
            if let Some(raw) = url.password() {
                out.push(raw.to_owned());
            }
            if let Some(query) = url.query() {
                for pair in query.split('&') {
                    if let Some((key, value)) = pair.split_once('=') {
                        if is_secret_key(&percent_decode(key)) {
                            out.push(value.to_owned());
                            out.push(percent_decode(value));
                        }
                    }
                }
            }
        }
        collect_extra_secrets(&self.extra, false, &mut out);
        if let Some(Value::Object(headers)) = self.extra.get("headers") {
            for (name, value) in headers {
                match value {
                    Value::String(v) if is_secret_key(name) => out.push(v.clone()),
                    Value::Object(h) if h.get("secret") == Some(&Value::Bool(true)) => {
                        if let Some(Value::String(v)) = h.get("value") {
                            out.push(v.clone());
                        }
                    }
                    _ => {}
                }
            }
        }
        out.retain(|s| !s.is_empty());
        out.sort();
        out.dedup();
        out
    }

    /// The URI with every secret replaced by `***`, for display.
    pub fn display_uri(&self) -> String {
        let secrets = self.secrets();
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        mask_secrets(&redact_url(self.uri.expose()), &refs)
    }

    /// The bearer token of an HTTP connection (`extra.token`).
    pub fn token(&self) -> Option<&str> {
        self.extra.get("token").and_then(Value::as_str)
    }

    /// Extra headers of an HTTP connection: `extra.headers`, each a string or
    /// `{ value = "…", secret = true }`.
    pub fn headers(&self) -> Vec<(String, String)> {
        let Some(Value::Object(headers)) = self.extra.get("headers") else {
            return Vec::new();
        };
        headers
            .iter()
            .filter_map(|(name, value)| match value {
                Value::String(v) => Some((name.clone(), v.clone())),
                Value::Object(h) => h
                    .get("value")
                    .and_then(Value::as_str)
                    .map(|v| (name.clone(), v.to_owned())),
                _ => None,
            })
            .collect()
    }

    /// The base URL of an HTTP connection: its URI without user info.
    pub fn base_url(&self) -> Option<url::Url> {
        let mut url = url::Url::parse(self.uri.expose()).ok()?;
        url.set_username("").ok()?;
        url.set_password(None).ok()?;
        Some(url)
    }
}

fn collect_extra_secrets(value: &Value, secret: bool, out: &mut Vec<String>) {
    match value {
        Value::String(s) if secret => out.push(s.clone()),
        Value::Array(items) => {
            for v in items {
                collect_extra_secrets(v, secret, out);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                collect_extra_secrets(v, secret || is_secret_key(k), out);
            }
        }
        _ => {}
    }
}

/// Every named connection one process knows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Connections {
    by_name: BTreeMap<String, Connection>,
}

impl Connections {
    pub fn new() -> Connections {
        Connections::default()
    }

    /// Adds or replaces a connection.
    pub fn insert(&mut self, connection: Connection) {
        self.by_name.insert(connection.name.clone(), connection);
    }

    pub fn get(&self, name: &str) -> Option<&Connection> {
        self.by_name.get(name)
    }

    pub fn names(&self) -> std::collections::BTreeSet<String> {
        self.by_name.keys().cloned().collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Connection> {
        self.by_name.values()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// The secrets of every connection (see [`Connection::secrets`]), longest first so a
    /// secret that contains another is masked whole.
    pub fn secrets(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .by_name
            .values()
            .flat_map(Connection::secrets)
            .collect();
        all.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        all.dedup();
        all
    }

    /// The connections defined by `NIGHTSHIFT_CONN_<NAME>` variables among `env`.
    pub fn from_env<'a>(
        env: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Connections, ConnectionError> {
        let mut out = Connections::new();
        for (key, value) in env {
            if let Some(name) = key.strip_prefix(ENV_PREFIX) {
                out.insert(Connection::from_env_value(name, value)?);
            }
        }
        Ok(out)
    }

    /// Parses a connections file: one table per connection (`uri`, optional `extra`) or a
    /// plain `name = "URI"`. `${VAR}` in any string is replaced by `env[VAR]` (a variable
    /// that is not set is an error).
    pub fn from_toml(
        file: &str,
        text: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<Connections, ConnectionError> {
        let bad_file = |message: String| ConnectionError::BadFile {
            file: file.to_owned(),
            message,
        };
        let table: toml::Table = toml::from_str(text).map_err(|e| bad_file(e.to_string()))?;
        let mut out = Connections::new();
        for (name, value) in table {
            let (uri, extra) = match value {
                toml::Value::String(uri) => (uri, None),
                toml::Value::Table(mut t) => {
                    let uri = match t.remove("uri") {
                        Some(toml::Value::String(uri)) => uri,
                        Some(_) => return Err(bad_file(format!("{name}.uri: expected a string"))),
                        None => {
                            return Err(bad_file(format!("{name}: missing required field \"uri\"")))
                        }
                    };
                    let extra = t.remove("extra");
                    if let Some(key) = t.keys().next() {
                        return Err(bad_file(format!(
                            "{name}.{key}: unknown field (expected uri, extra)"
                        )));
                    }
                    let extra = extra
                        .map(serde_json::to_value)
                        .transpose()
                        .map_err(|e| bad_file(format!("{name}.extra: {e}")))?;
                    (uri, extra)
                }
                _ => {
                    return Err(bad_file(format!(
                        "{name}: expected a URI string or a table {{ uri, extra }}"
                    )))
                }
            };
            let uri = expand_env(&name, &uri, env)?;
            let extra = extra.map(|e| expand_value(&name, e, env)).transpose()?;
            out.insert(Connection::parse(&name, &uri, extra)?);
        }
        Ok(out)
    }

    /// Adds every connection of `other`, replacing those of the same name.
    pub fn merge(&mut self, other: Connections) {
        self.by_name.extend(other.by_name);
    }
}

/// Replaces `${VAR}` in `text` with `env[VAR]`.
pub fn expand_env(
    name: &str,
    text: &str,
    env: &BTreeMap<String, String>,
) -> Result<String, ConnectionError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let var = &after[..end];
        match env.get(var) {
            Some(value) => out.push_str(value),
            None => {
                return Err(ConnectionError::MissingVar {
                    name: name.to_ascii_lowercase(),
                    var: var.to_owned(),
                })
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn expand_value(
    name: &str,
    value: Value,
    env: &BTreeMap<String, String>,
) -> Result<Value, ConnectionError> {
    Ok(match value {
        Value::String(s) => Value::String(expand_env(name, &s, env)?),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| expand_value(name, v, env))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| Ok((k, expand_value(name, v, env)?)))
                .collect::<Result<_, ConnectionError>>()?,
        ),
        other => other,
    })
}

fn check_name(name: &str) -> Result<String, ConnectionError> {
    let lower = name.to_ascii_lowercase();
    let ok = !lower.is_empty()
        && lower
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(lower)
    } else {
        Err(ConnectionError::BadName {
            name: name.to_owned(),
        })
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Decodes `%XX` escapes (invalid ones are kept as written).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[derive(Debug, PartialEq)]
    struct Parts<'a> {
        kind: &'a str,
        login: Option<&'a str>,
        password: Option<&'a str>,
        host: Option<&'a str>,
        port: Option<u16>,
        schema: Option<&'a str>,
    }

    #[test]
    fn uris_parse_into_parts() {
        fn check(uri: &str, expected: Parts<'_>) {
            let c = Connection::parse("c", uri, None).unwrap_or_else(|e| panic!("{uri}: {e}"));
            let got = Parts {
                kind: c.kind.as_str(),
                login: c.login.as_deref(),
                password: c.password.as_ref().map(Secret::expose),
                host: c.host.as_deref(),
                port: c.port,
                schema: c.schema.as_deref(),
            };
            assert_eq!(got, expected, "{uri}");
        }
        let none = Parts {
            kind: "",
            login: None,
            password: None,
            host: None,
            port: None,
            schema: None,
        };
        check(
            "postgres://etl:s3cr%40t@db.internal:5433/dwh?sslmode=require",
            Parts {
                kind: "postgres",
                login: Some("etl"),
                password: Some("s3cr@t"),
                host: Some("db.internal"),
                port: Some(5433),
                schema: Some("dwh"),
            },
        );
        check(
            "postgresql://postgres@127.0.0.1/postgres",
            Parts {
                kind: "postgres",
                login: Some("postgres"),
                host: Some("127.0.0.1"),
                schema: Some("postgres"),
                ..none
            },
        );
        check(
            "mariadb://root@127.0.0.1:3306/test",
            Parts {
                kind: "mysql",
                login: Some("root"),
                host: Some("127.0.0.1"),
                port: Some(3306),
                schema: Some("test"),
                ..none
            },
        );
        check(
            "sqlite://data/app.db",
            Parts {
                kind: "sqlite",
                schema: Some("data/app.db"),
                ..none
            },
        );
        check(
            "sqlite:///var/lib/app.db",
            Parts {
                kind: "sqlite",
                schema: Some("/var/lib/app.db"),
                ..none
            },
        );
        check(
            "sqlite::memory:",
            Parts {
                kind: "sqlite",
                schema: Some(":memory:"),
                ..none
            },
        );
        check(
            "https://bot:pw@api.example.invalid/v1",
            Parts {
                kind: "https",
                login: Some("bot"),
                password: Some("pw"),
                host: Some("api.example.invalid"),
                schema: Some("v1"),
                ..none
            },
        );
        check(
            "aws://?region=ap-northeast-1",
            Parts {
                kind: "aws",
                ..none
            },
        );
        check(
            "ftp://files.example.invalid",
            Parts {
                kind: "ftp",
                host: Some("files.example.invalid"),
                ..none
            },
        );
    }

    #[test]
    fn bad_values_are_errors_without_secrets() {
        fn check(name: &str, value: &str, expected: &str) {
            let err = Connection::from_env_value(name, value).expect_err(value);
            assert_eq!(err.to_string(), expected, "{value}");
        }
        check(
            "WH",
            "not a uri",
            "connection \"wh\": invalid URI \"not a uri\": relative URL without a base",
        );
        check(
            "wh",
            "postgres://u:hunter2@/db",
            "connection \"wh\": invalid URI \"postgres://u:***@/db\": empty host",
        );
        check(
            "wh",
            "{\"uri\": \"https://x.invalid\", \"extra\": [1]}",
            "connection \"wh\": extra must be a JSON object, found an array",
        );
        check(
            "wh",
            "{\"url\": \"https://x.invalid\"}",
            "connection \"wh\": not a URI nor a JSON object {uri, extra}: unknown field `url`, expected `uri` or `extra` at line 1 column 6",
        );
        check(
            "my conn",
            "https://x.invalid",
            "connection name \"my conn\" is not valid: use letters, digits, `_` and `-`",
        );
    }

    #[test]
    fn secrets_to_mask() {
        fn check(uri: &str, extra: Value, expected: &[&str]) {
            let c =
                Connection::parse("c", uri, Some(extra)).unwrap_or_else(|e| panic!("{uri}: {e}"));
            assert_eq!(c.secrets(), expected, "{uri}");
        }
        check("postgres://u@h/db", json!({}), &[]);
        check("postgres://u:p%40ss@h/db", json!({}), &["p%40ss", "p@ss"]);
        check(
            "postgres://u@h/db?password=abc&sslmode=require",
            json!({}),
            &["abc"],
        );
        check(
            "https://api.invalid",
            json!({
                "token": "tok-123",
                "region": "eu",
                "aws": {"secret_access_key": "SAK", "access_key_id": "AKID"},
                "headers": {
                    "X-Team": "data",
                    "X-Api-Key": "key-1",
                    "X-Signed": {"value": "sig-2", "secret": true},
                    "X-Open": {"value": "open-3"},
                },
            }),
            &["SAK", "key-1", "sig-2", "tok-123"],
        );
    }

    #[test]
    fn env_values_read_as_uri_or_json() {
        let c = Connection::from_env_value(
            "API",
            r#"{"uri": "https://api.invalid/v2", "extra": {"token": "t0k"}}"#,
        )
        .expect("parses");
        assert_eq!(c.name, "api");
        assert_eq!(c.kind, ConnectionKind::Https);
        assert_eq!(c.token(), Some("t0k"));
        assert_eq!(
            c.base_url().map(|u| u.to_string()),
            Some("https://api.invalid/v2".into())
        );
        let all = Connections::from_env([
            ("PATH", "/bin"),
            ("NIGHTSHIFT_CONN_WAREHOUSE", "postgres://u:pw1@h/db"),
            ("NIGHTSHIFT_DATABASE_URL", "postgres://x@h/y"),
        ])
        .expect("parses");
        assert_eq!(all.names().into_iter().collect::<Vec<_>>(), ["warehouse"]);
        assert_eq!(
            all.get("warehouse").map(Connection::display_uri),
            Some("postgres://u:***@h/db".into())
        );
    }

    #[test]
    fn connections_file() {
        let env = BTreeMap::from([
            ("WH_PASSWORD".to_owned(), "pw-9".to_owned()),
            ("API_TOKEN".to_owned(), "tok-9".to_owned()),
        ]);
        fn check(
            text: &str,
            env: &BTreeMap<String, String>,
            expected: Result<Vec<(&str, String)>, &str>,
        ) {
            let got = Connections::from_toml("conns.toml", text, env)
                .map(|c| {
                    c.iter()
                        .map(|c| (c.kind.as_str().to_owned(), c.display_uri()))
                        .collect::<Vec<_>>()
                })
                .map_err(|e| e.to_string());
            let expected = expected
                .map(|v| v.into_iter().map(|(k, u)| (k.to_owned(), u)).collect())
                .map_err(str::to_owned);
            assert_eq!(got, expected, "{text}");
        }
        check(
            r#"
warehouse = "postgres://etl:${WH_PASSWORD}@db/dwh"
[api]
uri = "https://api.invalid"
extra = { token = "${API_TOKEN}" }
"#,
            &env,
            Ok(vec![
                ("https", "https://api.invalid".into()),
                ("postgres", "postgres://etl:***@db/dwh".into()),
            ]),
        );
        check(
            "wh = \"postgres://etl:${NOPE}@db/dwh\"",
            &env,
            Err("connection \"wh\": environment variable NOPE is not set (used as ${NOPE})"),
        );
        check(
            "[wh]\nurl = \"x\"",
            &env,
            Err("connections file conns.toml: wh: missing required field \"uri\""),
        );
        check(
            "[wh]\nuri = \"sqlite::memory:\"\nextras = 1",
            &env,
            Err("connections file conns.toml: wh.extras: unknown field (expected uri, extra)"),
        );
        check(
            "wh = 3",
            &env,
            Err("connections file conns.toml: wh: expected a URI string or a table { uri, extra }"),
        );
        let conns = Connections::from_toml(
            "c.toml",
            "[api]\nuri = \"https://api.invalid\"\nextra = { token = \"${API_TOKEN}\" }\n[wh]\nuri = \"postgres://u:${WH_PASSWORD}@h/d\"",
            &env,
        )
        .expect("parses");
        assert_eq!(conns.secrets(), ["tok-9", "pw-9"]);
    }

    #[test]
    fn expansion_table() {
        let env = BTreeMap::from([("A".to_owned(), "1".to_owned())]);
        let check = |text: &str, expected: Result<&str, &str>| {
            let got = expand_env("c", text, &env).map_err(|e| e.to_string());
            assert_eq!(
                got.as_deref(),
                expected.map_err(|e| e.to_owned()).as_deref(),
                "{text}"
            );
        };
        check("x${A}y${A}", Ok("x1y1"));
        check("$A and $ and ${", Ok("$A and $ and ${"));
        check(
            "${B}",
            Err("connection \"c\": environment variable B is not set (used as ${B})"),
        );
    }

    #[test]
    fn secret_keys() {
        let check = |key: &str, expected: bool| assert_eq!(is_secret_key(key), expected, "{key}");
        check("token", true);
        check("aws_secret_access_key", true);
        check("Authorization", true);
        check("X-API-Key", true);
        check("region", false);
        check("access_key_id", false);
    }
}
