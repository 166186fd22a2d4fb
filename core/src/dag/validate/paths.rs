//! Field paths from positions: which key or array element of the document a byte offset
//! belongs to, so an error can name its field.

use super::*;

/// Every key and array element of the document with its dotted path and spans, so an
/// error at a byte offset can name its field.
pub(super) struct PathIndex {
    entries: Vec<PathEntry>,
}

pub(super) struct PathEntry {
    pub(super) keys: Vec<String>,
    key: Range<usize>,
    value: Range<usize>,
}

impl PathEntry {
    pub(super) fn path(&self) -> String {
        path_string(&self.keys)
    }
}

impl PathIndex {
    pub(super) fn build(root: &DeTable<'_>) -> PathIndex {
        let mut entries = Vec::new();
        walk_table(root, &[], &mut entries);
        PathIndex { entries }
    }

    /// The deepest entry whose key or value contains `pos`.
    pub(super) fn lookup(&self, pos: usize) -> Option<&PathEntry> {
        self.entries
            .iter()
            .filter(|e| e.key.contains(&pos) || e.value.contains(&pos) || e.key.start == pos)
            .max_by_key(|e| e.keys.len())
    }

    /// The span of the value at `keys` (e.g. `["params", "limit"]`).
    pub(super) fn value_span(&self, keys: &[&str]) -> Option<Range<usize>> {
        let entry = self.entries.iter().find(|e| e.keys.iter().eq(keys))?;
        Some(entry.value.clone())
    }

    /// [`Self::lookup`], else the last key that starts before `pos`.
    pub(super) fn lookup_or_before(&self, pos: usize) -> Option<&PathEntry> {
        self.lookup(pos).or_else(|| {
            self.entries
                .iter()
                .filter(|e| e.key.start <= pos)
                .max_by_key(|e| e.key.start)
        })
    }
}

/// The 1-based line and column of the value at `keys` (e.g. `["tasks", "t", "sql_file"]`)
/// in `source`, for errors found after parsing (reading a referenced file).
pub(crate) fn field_position(source: &str, keys: &[&str]) -> Option<(usize, usize)> {
    let (root, _) = DeTable::parse_recoverable(source);
    let index = PathIndex::build(root.get_ref());
    let entry = index.entries.iter().find(|e| e.keys.iter().eq(keys))?;
    Some(LineIndex::new(source).line_col(entry.value.start))
}

pub(super) fn walk_table(table: &DeTable<'_>, prefix: &[String], out: &mut Vec<PathEntry>) {
    for (k, v) in table {
        let mut keys = prefix.to_vec();
        keys.push(k.get_ref().to_string());
        walk_value(v, keys, k.span(), out);
    }
}

pub(super) fn walk_value(
    v: &Spanned<DeValue<'_>>,
    keys: Vec<String>,
    key: Range<usize>,
    out: &mut Vec<PathEntry>,
) {
    match v.get_ref() {
        DeValue::Table(t) => walk_table(t, &keys, out),
        DeValue::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                let mut item_keys = keys.clone();
                item_keys.push(format!("[{i}]"));
                walk_value(item, item_keys, item.span(), out);
            }
        }
        _ => {}
    }
    out.push(PathEntry {
        keys,
        key,
        value: v.span(),
    });
}

pub(super) fn path_string(keys: &[String]) -> String {
    let mut out = String::new();
    for k in keys {
        if k.starts_with('[') {
            out.push_str(k);
            continue;
        }
        if !out.is_empty() {
            out.push('.');
        }
        if !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            out.push_str(k);
        } else {
            out.push_str(&format!("{k:?}"));
        }
    }
    out
}

pub(super) fn join_path(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}
