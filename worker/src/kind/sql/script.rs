//! Lexing SQL scripts (no parsing): splitting a script into statements on top-level `;`
//! and rewriting `:name` parameters into the driver's placeholders.
//!
//! Both need the same knowledge of where code is: outside string literals, quoted
//! identifiers, comments and (PostgreSQL) dollar-quoted bodies. No small, maintained crate
//! does this for the three dialects together with parameter rewriting (`sqlparser` would
//! parse, and reject, whatever it does not know), so it lives here, tested by tables.

/// The lexical rules of one database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `$tag$…$tag$` bodies, `E'…'` escapes, nested `/* */`, `$n` placeholders.
    Postgres,
    /// Backslash escapes in strings, `#` comments, backticks, `?` placeholders.
    Mysql,
    /// Backticks and `[…]` identifiers, `?` placeholders.
    Sqlite,
}

/// One statement of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The text, trimmed, without its `;`.
    pub text: String,
    /// The 1-based line of the script where the text starts.
    pub line: usize,
}

/// Where the code region starting at `i` ends, if a literal, identifier, comment or
/// dollar-quoted body starts there; `None` when `i` is plain code.
fn skip_non_code(b: &[u8], i: usize, dialect: Dialect) -> Option<usize> {
    let c = b[i];
    let next = b.get(i + 1).copied();
    let prev_ident = i > 0 && is_ident(b[i - 1]);
    match c {
        b'\'' => {
            let backslash = match dialect {
                Dialect::Mysql => true,
                // E'…' strings take backslash escapes.
                Dialect::Postgres => {
                    i > 0 && matches!(b[i - 1], b'E' | b'e') && !(i > 1 && is_ident(b[i - 2]))
                }
                Dialect::Sqlite => false,
            };
            Some(skip_quoted(b, i, b'\'', backslash))
        }
        b'"' => Some(skip_quoted(b, i, b'"', dialect == Dialect::Mysql)),
        b'`' if dialect != Dialect::Postgres => Some(skip_quoted(b, i, b'`', false)),
        b'[' if dialect == Dialect::Sqlite => Some(
            b[i..]
                .iter()
                .position(|&x| x == b']')
                .map_or(b.len(), |p| i + p + 1),
        ),
        b'-' if next == Some(b'-') => {
            // MySQL needs whitespace (or the end) after `--`.
            if dialect == Dialect::Mysql && !b.get(i + 2).is_none_or(|x| x.is_ascii_whitespace()) {
                return None;
            }
            Some(line_end(b, i))
        }
        b'#' if dialect == Dialect::Mysql => Some(line_end(b, i)),
        b'/' if next == Some(b'*') => Some(skip_block_comment(b, i, dialect == Dialect::Postgres)),
        b'$' if dialect == Dialect::Postgres && !prev_ident => {
            let tag_end = b[i + 1..]
                .iter()
                .position(|&x| !is_ident(x))
                .map(|p| i + 1 + p)?;
            if b[tag_end] != b'$' || b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                return None;
            }
            let tag = &b[i..=tag_end];
            let body = tag_end + 1;
            Some(find(&b[body..], tag).map_or(b.len(), |p| body + p + tag.len()))
        }
        _ => None,
    }
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

fn skip_quoted(b: &[u8], start: usize, quote: u8, backslash: bool) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        if backslash && b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == quote {
            // A doubled quote is an escaped one.
            if b.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

fn line_end(b: &[u8], i: usize) -> usize {
    b[i..]
        .iter()
        .position(|&x| x == b'\n')
        .map_or(b.len(), |p| i + p)
}

fn skip_block_comment(b: &[u8], start: usize, nested: bool) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i + 1 < b.len() {
        if b[i] == b'/' && b[i + 1] == b'*' && (nested || depth == 0) {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b[i + 1] == b'/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Tracks `BEGIN … END` blocks of MySQL/SQLite triggers, procedures, functions and events,
/// inside which `;` does not end the statement.
#[derive(Default)]
struct Blocks {
    words: usize,
    compound: bool,
    depth: usize,
    after_end: bool,
}

impl Blocks {
    fn word(&mut self, word: &str) {
        let w = word.to_ascii_uppercase();
        self.words += 1;
        if self.words <= 8 && matches!(w.as_str(), "TRIGGER" | "PROCEDURE" | "FUNCTION" | "EVENT") {
            self.compound = true;
        }
        if self.words == 1 && w != "CREATE" {
            self.words = usize::MAX / 2; // not a CREATE: never compound
        }
        if !self.compound {
            return;
        }
        let after_end = std::mem::take(&mut self.after_end);
        match w.as_str() {
            "IF" | "LOOP" | "WHILE" | "REPEAT" if after_end => self.depth += 1,
            "CASE" if after_end => {}
            "BEGIN" | "CASE" => self.depth += 1,
            "END" => {
                self.depth = self.depth.saturating_sub(1);
                self.after_end = true;
            }
            _ => {}
        }
    }
}

/// Splits `script` on top-level `;`. Statements holding only whitespace and comments are
/// dropped.
pub fn split(script: &str, dialect: Dialect) -> Vec<Statement> {
    let b = script.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut has_code = false;
    let mut blocks = Blocks::default();
    let mut i = 0;
    let push = |from: usize, to: usize, has_code: bool, out: &mut Vec<Statement>| {
        if !has_code {
            return;
        }
        let raw = &script[from..to];
        let text = raw.trim();
        let lead = raw.len() - raw.trim_start().len();
        let line = 1 + script[..from + lead].matches('\n').count();
        out.push(Statement {
            text: text.to_owned(),
            line,
        });
    };
    while i < b.len() {
        if let Some(end) = skip_non_code(b, i, dialect) {
            let is_comment = matches!(b[i], b'-' | b'#' | b'/');
            has_code |= !is_comment;
            i = end.max(i + 1);
            continue;
        }
        let c = b[i];
        if c == b';' && blocks.depth == 0 {
            push(start, i, has_code, &mut out);
            start = i + 1;
            has_code = false;
            blocks = Blocks::default();
            i += 1;
            continue;
        }
        if c.is_ascii_alphabetic() && !(i > 0 && is_ident(b[i - 1])) {
            let end = b[i..]
                .iter()
                .position(|&x| !is_ident(x))
                .map_or(b.len(), |p| i + p);
            if dialect != Dialect::Postgres {
                blocks.word(&script[i..end]);
            }
            has_code = true;
            i = end;
            continue;
        }
        has_code |= !c.is_ascii_whitespace();
        i += 1;
    }
    push(start, b.len(), has_code, &mut out);
    out
}

/// A statement with its `:name` parameters found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    pieces: Vec<Piece>,
    /// Distinct parameter names, in order of first use.
    pub names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// An index into `names`.
    Param(usize),
}

impl Bound {
    /// The statement for the driver: `$n` (PostgreSQL, with `casts[n]` appended as
    /// `::type` when given) or `?` for each use.
    pub fn sql(&self, dialect: Dialect, casts: &[Option<String>]) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Param(n) => match dialect {
                    Dialect::Postgres => match casts.get(*n).and_then(Option::as_ref) {
                        Some(ty) => out.push_str(&format!("(${}::{ty})", n + 1)),
                        None => out.push_str(&format!("${}", n + 1)),
                    },
                    Dialect::Mysql | Dialect::Sqlite => out.push('?'),
                },
            }
        }
        out
    }

    /// The parameter (an index into `names`) for each value to bind, in order: one per
    /// name for PostgreSQL, one per use for `?` placeholders.
    pub fn order(&self, dialect: Dialect) -> Vec<usize> {
        match dialect {
            Dialect::Postgres => (0..self.names.len()).collect(),
            Dialect::Mysql | Dialect::Sqlite => self
                .pieces
                .iter()
                .filter_map(|p| match p {
                    Piece::Param(n) => Some(*n),
                    Piece::Text(_) => None,
                })
                .collect(),
        }
    }
}

/// Finds `:name` parameters in code (not in literals or comments, not `::` casts, not
/// `:=`). A name starts with a letter or `_`.
pub fn bind(statement: &str, dialect: Dialect) -> Bound {
    let b = statement.as_bytes();
    let mut pieces = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut text_from = 0;
    let mut i = 0;
    while i < b.len() {
        if let Some(end) = skip_non_code(b, i, dialect) {
            i = end.max(i + 1);
            continue;
        }
        if b[i] == b':' {
            if b.get(i + 1) == Some(&b':') {
                i += 2;
                continue;
            }
            let prev_colon = i > 0 && b[i - 1] == b':';
            let starts_name = b
                .get(i + 1)
                .is_some_and(|&x| x.is_ascii_alphabetic() || x == b'_');
            if starts_name && !prev_colon {
                let end = b[i + 1..]
                    .iter()
                    .position(|&x| !(x.is_ascii_alphanumeric() || x == b'_'))
                    .map_or(b.len(), |p| i + 1 + p);
                let name = &statement[i + 1..end];
                pieces.push(Piece::Text(statement[text_from..i].to_owned()));
                let index = names.iter().position(|n| n == name).unwrap_or_else(|| {
                    names.push(name.to_owned());
                    names.len() - 1
                });
                pieces.push(Piece::Param(index));
                text_from = end;
                i = end;
                continue;
            }
        }
        i += 1;
    }
    pieces.push(Piece::Text(statement[text_from..].to_owned()));
    Bound { pieces, names }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_split(dialect: Dialect, script: &str, expected: &[(&str, usize)]) {
        let got: Vec<(String, usize)> = split(script, dialect)
            .into_iter()
            .map(|s| (s.text, s.line))
            .collect();
        let expected: Vec<(String, usize)> = expected
            .iter()
            .map(|(t, l)| ((*t).to_owned(), *l))
            .collect();
        assert_eq!(got, expected, "{dialect:?}: {script}");
    }

    #[test]
    fn splits_on_top_level_semicolons() {
        use Dialect::*;
        check_split(
            Postgres,
            "SELECT 1; SELECT 2",
            &[("SELECT 1", 1), ("SELECT 2", 1)],
        );
        check_split(
            Postgres,
            "SELECT 1;\n\n  SELECT 2;\n",
            &[("SELECT 1", 1), ("SELECT 2", 3)],
        );
        check_split(Postgres, ";;\n-- only a comment;\n/* x; */;", &[]);
        check_split(
            Postgres,
            "INSERT INTO t VALUES ('a;b', 'it''s; ok');\nSELECT \"we;ird\" FROM t",
            &[
                ("INSERT INTO t VALUES ('a;b', 'it''s; ok')", 1),
                ("SELECT \"we;ird\" FROM t", 2),
            ],
        );
        check_split(
            Postgres,
            "CREATE FUNCTION f() RETURNS int AS $body$ BEGIN RETURN 1; END; $body$ LANGUAGE plpgsql;\nDO $$ BEGIN PERFORM 1; END $$;",
            &[
                ("CREATE FUNCTION f() RETURNS int AS $body$ BEGIN RETURN 1; END; $body$ LANGUAGE plpgsql", 1),
                ("DO $$ BEGIN PERFORM 1; END $$", 2),
            ],
        );
        check_split(
            Postgres,
            "SELECT $1, a$b; SELECT E'x\\';y'; /* a /* nested; */ still; */ SELECT 3",
            &[
                ("SELECT $1, a$b", 1),
                ("SELECT E'x\\';y'", 1),
                ("/* a /* nested; */ still; */ SELECT 3", 1),
            ],
        );
        // Comment lines before a statement stay with it (the line is the comment's).
        check_split(
            Postgres,
            "-- build; marts\nCREATE TABLE a (x int);",
            &[("-- build; marts\nCREATE TABLE a (x int)", 1)],
        );
        check_split(
            Mysql,
            "SELECT 'a\\';b'; # c;\nSELECT `x;y` FROM t; SELECT 1--2;\nSELECT 2",
            &[
                ("SELECT 'a\\';b'", 1),
                ("# c;\nSELECT `x;y` FROM t", 1),
                ("SELECT 1--2", 2),
                ("SELECT 2", 3),
            ],
        );
        check_split(
            Mysql,
            "CREATE PROCEDURE p() BEGIN IF 1 THEN SELECT 1; END IF; CASE WHEN 1 THEN SELECT 2; END CASE; END;\nCALL p();",
            &[
                ("CREATE PROCEDURE p() BEGIN IF 1 THEN SELECT 1; END IF; CASE WHEN 1 THEN SELECT 2; END CASE; END", 1),
                ("CALL p()", 2),
            ],
        );
        check_split(
            Sqlite,
            "CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE c SET n = n + 1; SELECT CASE WHEN 1 THEN 2 END; END;\nSELECT [a;b] FROM t",
            &[
                ("CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE c SET n = n + 1; SELECT CASE WHEN 1 THEN 2 END; END", 1),
                ("SELECT [a;b] FROM t", 2),
            ],
        );
        // BEGIN as a transaction statement is not a block.
        check_split(
            Sqlite,
            "BEGIN; SELECT 1; END;",
            &[("BEGIN", 1), ("SELECT 1", 1), ("END", 1)],
        );
        // An unterminated literal runs to the end: the database reports it.
        check_split(
            Postgres,
            "SELECT 'open; SELECT 2",
            &[("SELECT 'open; SELECT 2", 1)],
        );
    }

    #[test]
    fn binds_named_parameters() {
        fn check(dialect: Dialect, sql: &str, expected: &str, names: &[&str], order: &[usize]) {
            let bound = bind(sql, dialect);
            assert_eq!(bound.sql(dialect, &[]), expected, "{sql}");
            assert_eq!(bound.names, names, "{sql}");
            assert_eq!(bound.order(dialect), order, "{sql}");
        }
        use Dialect::*;
        check(
            Postgres,
            "SELECT * FROM t WHERE d = :day AND n > :n AND d2 = :day",
            "SELECT * FROM t WHERE d = $1 AND n > $2 AND d2 = $1",
            &["day", "n"],
            &[0, 1],
        );
        check(
            Mysql,
            "SELECT * FROM t WHERE d = :day AND n > :n AND d2 = :day",
            "SELECT * FROM t WHERE d = ? AND n > ? AND d2 = ?",
            &["day", "n"],
            &[0, 1, 0],
        );
        check(
            Postgres,
            "SELECT :x::date, ':no', \"a:b\", $$ :no $$, x::text -- :no\n/* :no */",
            "SELECT $1::date, ':no', \"a:b\", $$ :no $$, x::text -- :no\n/* :no */",
            &["x"],
            &[0],
        );
        check(
            Mysql,
            "SET @a := 1; SELECT arr[1:2]",
            "SET @a := 1; SELECT arr[1:2]",
            &[],
            &[],
        );
        check(
            Sqlite,
            "SELECT :_a1, ':b'",
            "SELECT ?, ':b'",
            &["_a1"],
            &[0],
        );
        let bound = bind("SELECT * FROM t WHERE d = :day", Postgres);
        assert_eq!(
            bound.sql(Postgres, &[Some("DATE".into())]),
            "SELECT * FROM t WHERE d = ($1::DATE)"
        );
    }
}
