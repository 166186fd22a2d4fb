//! `Secret`: a string that never prints itself (database URLs, passwords, tokens).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret value. `Debug` and `Display` print `***`; read it with [`Secret::expose`].
/// Serializing it writes the real value (it is how settings are passed around); never
/// serialize one into an API response or a log.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

/// A connection URI with its password replaced by `***`, for logs and error messages.
///
/// Written for careless input: a password may hold `#`, `/`, `?`, `@`, `:`, `%`, spaces
/// or any other character un-encoded, and the text need not parse as a URL at all. The
/// user info is everything up to the *last* `@` (a host never holds one), and the
/// password everything in it after the first `:`; when the query or fragment holds an
/// `@` too, more than the password is hidden, never less. Values of secret-looking
/// `key=value` pairs (`?password=…`, libpq's `password=…`) are hidden as well.
pub fn redact_url(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    let rest = match url_password(url) {
        Some(range) => {
            out.push_str(&url[..range.start]);
            out.push_str("***");
            range.end
        }
        None => 0,
    };
    redact_key_values(&url[rest..], &mut out);
    out
}

/// Where the password of `url` is, read the way [`redact_url`] reads it: after the
/// scheme's `://` (if any), up to the last `@`, after the first `:`.
pub fn url_password(url: &str) -> Option<std::ops::Range<usize>> {
    let start = url
        .find("://")
        .filter(|&end| is_scheme(&url[..end]))
        .map_or(0, |end| end + 3);
    let at = start + url[start..].rfind('@')?;
    let colon = start + url[start..at].find(':')?;
    Some(colon + 1..at)
}

/// What to tell a person whose URL [`password_misread`].
pub const MISREAD_PASSWORD: &str =
    "the password holds an un-encoded `#`, `/`, `?` or `\\`, which ends it early \
     for every URL parser: percent-encode it (`#` as %23, `/` as %2F, `?` as %3F, `\\` as %5C, \
     `@` as %40, `%` as %25)";

/// Whether a URL parser reads the user info of `url` differently from [`redact_url`]:
/// the password holds an un-encoded `#`, `/`, `?` (or `\\`), so the parser ends the user
/// info early and takes the rest of the password for a host, port, path, query or
/// fragment. Such a URL fails obscurely ("invalid port number") or, worse, connects
/// somewhere else while part of the password shows as a path; callers refuse it and
/// ask for the password to be percent-encoded.
pub fn password_misread(url: &str) -> bool {
    let Some(scheme_end) = url.find("://").filter(|&end| is_scheme(&url[..end])) else {
        return false;
    };
    let Some(password) = url_password(url) else {
        return false;
    };
    match url::Url::parse(url) {
        Ok(parsed) => {
            // No user info for the parser, and the user name taken for the host; or the
            // `@` that ends the user info landed in a path or a fragment (where no
            // connection URI puts one; a query may hold one, as in `?to=a@b`).
            let user = &url[scheme_end + 3..password.start - 1];
            let no_user_info = parsed.username().is_empty()
                && parsed.password().is_none()
                && parsed.host_str() == Some(user);
            no_user_info
                || parsed.path().contains('@')
                || parsed.fragment().is_some_and(|f| f.contains('@'))
        }
        Err(_) => url[password].contains(['#', '/', '?', '\\']),
    }
}

fn is_scheme(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
}

/// Copies `text` to `out` with the value of every `key=value` pair whose key looks
/// secret replaced by `***`. Pairs are separated by `&`, `;` or whitespace (a query, or
/// libpq's `host=… password=…`); a value in single quotes runs to its closing quote.
fn redact_key_values(text: &str, out: &mut String) {
    let is_separator = |c: char| matches!(c, '?' | '&' | ';') || c.is_whitespace();
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = text[from..].find('=') {
        let eq = from + found;
        let key_start = text[..eq].rfind(is_separator).map_or(0, |i| {
            i + text[i..].chars().next().map_or(1, char::len_utf8)
        });
        let key = &text[key_start..eq];
        let value_start = eq + 1;
        let value_end = match text[value_start..].strip_prefix('\'') {
            Some(quoted) => quoted
                .find('\'')
                .map_or(text.len(), |close| value_start + 1 + close + 1),
            None => text[value_start..]
                .find(|c: char| c == '&' || c == ';' || c.is_whitespace())
                .map_or(text.len(), |end| value_start + end),
        };
        if !key.is_empty() && value_end > value_start && crate::connection::is_secret_key(key) {
            out.push_str(&text[copied..value_start]);
            out.push_str("***");
            copied = value_end;
        }
        from = value_end.max(value_start);
    }
    out.push_str(&text[copied..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn redacts_url_passwords() {
        let check =
            |input: &str, expected: &str| assert_eq!(redact_url(input), expected, "{input}");
        check("postgres://u:pw@h:5432/db", "postgres://u:***@h:5432/db");
        check("postgres://u@h/db", "postgres://u@h/db");
        check("sqlite://nightshift.db", "sqlite://nightshift.db");
        check("sqlite:nightshift.db", "sqlite:nightshift.db");
        check("mysql://root:p@ss@h/db?x=1", "mysql://root:***@h/db?x=1");
        check("not a url", "not a url");
        check(
            "postgres://u:p@ss/w?rd#x@host:5432/db",
            "postgres://u:***@host:5432/db",
        );
        check(
            "https://api.invalid/x?a=1#top",
            "https://api.invalid/x?a=1#top",
        );
        // Secret-looking keys, in a query or in libpq's keyword form.
        check(
            "postgres://h/db?user=u&password=hunter2&sslmode=require",
            "postgres://h/db?user=u&password=***&sslmode=require",
        );
        check(
            "host=db user=u password=hunter2 dbname=x",
            "host=db user=u password=*** dbname=x",
        );
        check(
            "host=db password='a b c' port=1",
            "host=db password=*** port=1",
        );
        check(
            "https://h/x?token=abc;next=1",
            "https://h/x?token=***;next=1",
        );
        // Without a scheme, `user:password@host` still hides the password.
        check("u:hunter2@db:5432/x", "u:***@db:5432/x");
        // A query holding an `@` hides more than the password, never less.
        check("postgres://u:pw@h/db?to=a@b", "postgres://u:***@b");
    }

    #[test]
    fn a_password_a_parser_would_misread_is_noticed() {
        let check = |url: &str, misread: bool| assert_eq!(password_misread(url), misread, "{url}");
        check("postgres://u:p#ss@h/db", true);
        check("postgres://u:p/ss@h:5432/db", true);
        check("postgres://u:p?ss@h/db", true);
        check("postgres://u:123/ss@h/db", true);
        check("postgres://u:p@ss/w?rd#x@h:5432/db", true);
        check("https://u:p\\ss@h/x", true);
        // Read the same way by both.
        check("postgres://u:p@ss@h/db", false);
        check("postgres://u:p%23ss@h/db", false);
        check("postgres://u:pä ss@h/db", false);
        check("postgres://postgres:pw@postgres/db", false);
        check("postgres://u:pw@h/db?to=a@b", false);
        check("https://h/x?a:b@c", false);
        check("postgres://u@h/db", false);
        check("sqlite:nightshift.db", false);
        check("sqlite://nightshift.db", false);
    }

    /// Passwords a careless person pastes into a URI without percent-encoding them.
    const NASTY_PASSWORDS: [&str; 16] = [
        "p#ss",
        "p/ss",
        "p?ss",
        "p@ss",
        "p%ss",
        "p%41ss",
        "p ss",
        "pässwörd",
        "密码密码",
        "p:ss",
        "p@ss/w?rd#x",
        "#/?@",
        "a&b=c;d",
        "ends-with-@",
        "@starts",
        "p@ss word/#?%:@",
    ];

    /// A connection URI with such a password is refused or read right, and its error or
    /// its display never holds the password.
    #[test]
    fn connections_with_careless_passwords_never_show_them() {
        use crate::connection::Connection;
        for password in NASTY_PASSWORDS {
            let uri = format!("postgres://etl:{password}@db.internal:5432/dwh");
            match Connection::parse("wh", &uri, None) {
                Ok(c) => {
                    assert_eq!(c.display_uri(), "postgres://etl:***@db.internal:5432/dwh");
                    assert_eq!(c.host.as_deref(), Some("db.internal"), "{uri}");
                }
                Err(e) => {
                    let message = e.to_string();
                    assert!(
                        message.contains("\"postgres://etl:***@db.internal:5432/dwh\""),
                        "{message}"
                    );
                    assert!(!message.contains(password), "{message}");
                }
            }
        }
    }

    #[test]
    fn redacts_every_character_a_careless_password_holds() {
        let forms = [
            (
                "postgres://etl:{}@db.internal:5432/dwh",
                "postgres://etl:***@db.internal:5432/dwh",
            ),
            ("mysql://root:{}@h/db?ssl=1", "mysql://root:***@h/db?ssl=1"),
            (
                "postgresql://u:{}@[::1]/db#frag",
                "postgresql://u:***@[::1]/db#frag",
            ),
            (
                "https://user:{}@api.invalid",
                "https://user:***@api.invalid",
            ),
            ("u:{}@db/x", "u:***@db/x"),
        ];
        for password in NASTY_PASSWORDS {
            for (form, expected) in forms {
                let url = form.replace("{}", password);
                let got = redact_url(&url);
                assert_eq!(got, expected, "{url}");
            }
        }
    }
}
