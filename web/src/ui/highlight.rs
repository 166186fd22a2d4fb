//! TOML highlighted on the server for the DAG source page: the tree-sitter TOML grammar
//! and its highlight queries (tree-sitter-highlight), emitted as `<span class="hl-…">`
//! (the page's CSP allows no inline style), one HTML string per source line, escaped.

use std::sync::LazyLock;

use tree_sitter_highlight::{HighlightConfiguration, Highlighter, HtmlRenderer};

/// The captures of the grammar's `highlights.scm`, in the order their classes are named.
const NAMES: &[&str] = &[
    "boolean",
    "comment",
    "number",
    "operator",
    "property",
    "punctuation.bracket",
    "punctuation.delimiter",
    "string",
    "string.special",
    "type",
];

/// `class="hl-…"` per name: `string.special` is `hl-string-special`.
static CLASSES: LazyLock<Vec<String>> = LazyLock::new(|| {
    NAMES
        .iter()
        .map(|name| format!("class=\"hl-{}\"", name.replace('.', "-")))
        .collect()
});

static CONFIG: LazyLock<Option<HighlightConfiguration>> = LazyLock::new(|| {
    let mut config = HighlightConfiguration::new(
        tree_sitter_toml_ng::LANGUAGE.into(),
        "toml",
        tree_sitter_toml_ng::HIGHLIGHTS_QUERY,
        "",
        "",
    )
    .map_err(|err| tracing::error!(error = %err, "the TOML highlight query does not compile"))
    .ok()?;
    config.configure(NAMES);
    Some(config)
});

/// `source`'s lines as HTML: text escaped, tokens in `<span class="hl-…">`. Without a
/// usable grammar (it compiles at first use) the lines are only escaped.
pub fn toml_lines(source: &str) -> Vec<String> {
    highlighted(source).unwrap_or_else(|| source.lines().map(escape).collect())
}

fn highlighted(source: &str) -> Option<Vec<String>> {
    let config = CONFIG.as_ref()?;
    let mut highlighter = Highlighter::new();
    let events = highlighter
        .highlight(config, source.as_bytes(), None, None, |_| None)
        .ok()?;
    let mut renderer = HtmlRenderer::new();
    renderer
        .render(
            events,
            source.as_bytes(),
            &|highlight, out: &mut Vec<u8>| {
                if let Some(class) = CLASSES.get(highlight.0) {
                    out.extend_from_slice(class.as_bytes());
                }
            },
        )
        .ok()?;
    Some(
        renderer
            .lines()
            .map(|line| line.strip_suffix('\n').unwrap_or(line).to_owned())
            .collect(),
    )
}

fn escape(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_get_classes_and_text_is_escaped() {
        let lines =
            toml_lines("# nightly <b>\nid = \"a<script>\"\n[tasks.load]\nretries = 3\nok = true\n");
        // A pair is a `property` (the key's colour), its key a `type`, its value its own.
        let pair = |key: &str, value: &str| {
            format!(
                "<span class=\"hl-type\"><span class=\"hl-property\">{key} \
                 <span class=\"hl-operator\">=</span> {value}</span></span>"
            )
        };
        assert_eq!(
            lines,
            [
                "<span class=\"hl-comment\"># nightly &lt;b&gt;</span>".to_owned(),
                pair(
                    "id",
                    "<span class=\"hl-string\">&quot;a&lt;script&gt;&quot;</span>"
                ),
                "<span class=\"hl-punctuation-bracket\">[</span><span class=\"hl-type\">tasks</span>\
                 <span class=\"hl-punctuation-delimiter\">.</span><span class=\"hl-type\">load</span>\
                 <span class=\"hl-punctuation-bracket\">]</span>"
                    .to_owned(),
                pair("retries", "<span class=\"hl-number\">3</span>"),
                pair("ok", "<span class=\"hl-boolean\">true</span>"),
            ]
        );
    }

    #[test]
    fn a_broken_file_is_still_shown_escaped() {
        let lines = toml_lines("id = \"unclosed <img src=x onerror=alert(1)>\n");
        assert_eq!(lines.len(), 1);
        assert!(!lines[0].contains("<img"), "{}", lines[0]);
        assert!(
            lines[0].contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{}",
            lines[0]
        );
    }
}
