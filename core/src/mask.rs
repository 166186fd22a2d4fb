//! Hiding secrets in text shown to people: masking every occurrence as `***`, and cutting
//! text to a length only after masking it, so a secret that straddles a cut never shows
//! its first part.
//!
//! Every place that shortens text a try produced (errors, log lines, outputs, previews)
//! goes through [`mask_then_cut`] or [`mask_then_shorten`]; cutting first and masking
//! after would leave the part of a secret before the cut in plain sight.

use std::sync::{Arc, RwLock};

/// The secrets one process masks, shared by everything that shows text and growing while
/// it runs: a value fetched from a secret store (a connection, a `secret()` value) is
/// added before anything that may hold it is rendered or logged. Cloning shares the set.
#[derive(Clone, Default)]
pub struct SecretSet {
    inner: Arc<RwLock<Arc<[String]>>>,
}

impl SecretSet {
    /// A set holding `secrets`.
    pub fn new(secrets: impl IntoIterator<Item = String>) -> SecretSet {
        let set = SecretSet::default();
        set.add(secrets);
        set
    }

    /// Adds `more` (longest first, so a secret that contains another is masked whole).
    pub fn add(&self, more: impl IntoIterator<Item = String>) {
        let more: Vec<String> = more.into_iter().filter(|s| !s.is_empty()).collect();
        if more.is_empty() {
            return;
        }
        // Only strings are kept; a poisoned lock still holds a usable list.
        let mut guard = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if more.iter().all(|s| guard.contains(s)) {
            return;
        }
        let mut all: Vec<String> = guard.iter().cloned().chain(more).collect();
        all.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        all.dedup();
        *guard = all.into();
    }

    /// The secrets now.
    pub fn snapshot(&self) -> Arc<[String]> {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl std::fmt::Debug for SecretSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretSet({} secrets)", self.snapshot().len())
    }
}

/// How much of a text to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// At most this many characters.
    Chars(usize),
    /// At most this many bytes (cut back to a character boundary).
    Bytes(usize),
}

/// `text` with every secret masked, then cut to `limit`; the flag says whether anything
/// was cut. See [`mask_secrets`] for which secrets count.
pub fn mask_then_cut(text: &str, secrets: &[&str], limit: Limit) -> (String, bool) {
    let mut masked = mask_secrets(text, secrets);
    let end = match limit {
        Limit::Chars(max) => masked.char_indices().nth(max).map(|(at, _)| at),
        Limit::Bytes(max) if masked.len() > max => Some(
            (0..=max)
                .rev()
                .find(|&i| masked.is_char_boundary(i))
                .unwrap_or(0),
        ),
        Limit::Bytes(_) => None,
    };
    match end {
        Some(end) => {
            masked.truncate(end);
            (masked, true)
        }
        None => (masked, false),
    }
}

/// [`mask_then_cut`] to `max_chars` characters, with `…` appended when it cut.
pub fn mask_then_shorten(text: &str, secrets: &[&str], max_chars: usize) -> String {
    let (mut shown, cut) = mask_then_cut(text, secrets, Limit::Chars(max_chars));
    if cut {
        shown.push('…');
    }
    shown
}

/// The length in bytes of the longest secret that [`mask_secrets`] masks (0 when none):
/// how much more than its limit a reader must keep of a text so that a secret starting
/// before the limit is whole when the text is masked.
pub fn longest_secret(secrets: &[&str]) -> usize {
    secrets
        .iter()
        .filter(|s| counts(s))
        .map(|s| s.len())
        .max()
        .unwrap_or(0)
}

/// Secrets shorter than three characters are not masked.
fn counts(secret: &str) -> bool {
    secret.chars().count() >= 3
}

/// Replaces every occurrence of each secret in `text` with `***`. Secrets shorter than
/// three characters are ignored (masking every "a" would hide the text, not the secret).
/// Overlapping occurrences, of one secret or of several, are masked as one stretch.
pub fn mask_secrets(text: &str, secrets: &[&str]) -> String {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for secret in secrets.iter().filter(|s| counts(s)) {
        let mut from = 0;
        while let Some(found) = text[from..].find(secret) {
            let start = from + found;
            ranges.push((start, start + secret.len()));
            // Next search starts one character later, so overlapping occurrences count.
            from = start + text[start..].chars().next().map_or(1, char::len_utf8);
        }
    }
    if ranges.is_empty() {
        return text.to_owned();
    }
    ranges.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut iter = ranges.into_iter().peekable();
    while let Some((start, mut end)) = iter.next() {
        while let Some(&(next_start, next_end)) = iter.peek() {
            if next_start > end {
                break;
            }
            end = end.max(next_end);
            iter.next();
        }
        out.push_str(&text[copied..start]);
        out.push_str("***");
        copied = end;
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking() {
        let cases: [(&str, &[&str], &str); 10] = [
            ("password=hunter2 ok", &["hunter2"], "password=*** ok"),
            ("hunter2 hunter2", &["hunter2"], "*** ***"),
            ("no secret here", &["hunter2"], "no secret here"),
            ("short ab a", &["ab", "a", ""], "short ab a"),
            ("abc", &["abc"], "***"),
            ("tok=abcdef", &["abc", "abcdef"], "tok=***"),
            ("tok=abcdef", &["cde", "abcd"], "tok=***f"),
            ("aaaa", &["aaa"], "***"),
            ("ключ=секрет!", &["секрет"], "ключ=***!"),
            ("x", &[], "x"),
        ];
        for (text, secrets, expected) in cases {
            assert_eq!(
                mask_secrets(text, secrets),
                expected,
                "{text:?} {secrets:?}"
            );
        }
    }

    #[test]
    fn masks_before_it_cuts() {
        fn check(text: &str, limit: Limit, expected: (&str, bool)) {
            let got = mask_then_cut(text, &["hunter2", "секрет"], limit);
            assert_eq!((got.0.as_str(), got.1), expected, "{text:?} {limit:?}");
        }
        // A secret straddling the cut: none of it shows, in characters or bytes.
        check("abcdhunter2", Limit::Chars(6), ("abcd**", true));
        check("abcdhunter2", Limit::Bytes(6), ("abcd**", true));
        check("ab hunter2 cd", Limit::Chars(4), ("ab *", true));
        check("ab секрет cd", Limit::Bytes(5), ("ab **", true));
        // Cuts land on character boundaries.
        check("ééé", Limit::Bytes(3), ("é", true));
        check("ééé", Limit::Chars(2), ("éé", true));
        // Nothing to cut.
        check("hunter2", Limit::Chars(3), ("***", false));
        check("short", Limit::Bytes(5), ("short", false));
        check("", Limit::Chars(0), ("", false));
        assert_eq!(mask_then_shorten("xhunter2y", &["hunter2"], 3), "x**…");
        assert_eq!(mask_then_shorten("ok", &["hunter2"], 3), "ok");
    }

    #[test]
    fn a_secret_set_grows_and_is_shared() {
        let set = SecretSet::new(["abc".to_owned()]);
        let shared = set.clone();
        shared.add(["abcdef".to_owned(), "abc".to_owned(), String::new()]);
        assert_eq!(&*set.snapshot(), ["abcdef".to_owned(), "abc".to_owned()]);
        assert_eq!(format!("{set:?}"), "SecretSet(2 secrets)");
    }

    #[test]
    fn longest_secret_ignores_what_is_not_masked() {
        assert_eq!(longest_secret(&["ab", "hunter2", "секрет"]), 12);
        assert_eq!(longest_secret(&["ab"]), 0);
        assert_eq!(longest_secret(&[]), 0);
    }
}
