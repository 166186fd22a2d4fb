//! Markdown for the UI (a task's `doc`, a DAG's `description`): CommonMark with tables,
//! strikethrough and task lists (pulldown-cmark), then an allow-list HTML sanitiser
//! (ammonia) over the result, so raw HTML in a DAG file cannot run script, load styles or
//! set event handlers, and nothing rendered breaks the page's Content-Security-Policy.
//!
//! Beyond ammonia's defaults: links get `rel="noopener noreferrer nofollow"`, only
//! `http`, `https` and `mailto` URLs survive (`javascript:` and `data:` do not), and
//! images become links to their address (the CSP allows images from this server only, so
//! an outside image would not load anyway; a link still takes the reader to it).

use std::collections::HashSet;
use std::sync::LazyLock;

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

/// Rendered Markdown that is safe to put into a page as it is.
pub fn render(markdown: &str) -> String {
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let events = Parser::new_ext(markdown, options).map(|event| match event {
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }),
        Event::End(TagEnd::Image) => Event::End(TagEnd::Link),
        other => other,
    });
    let mut html = String::with_capacity(markdown.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, events);
    SANITISER.clean(&html).to_string()
}

/// The allow-list: ammonia's defaults (no script, style, iframe, form or event handler;
/// no `style` attribute), less images, with fewer URL schemes and `nofollow` links.
static SANITISER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let mut builder = ammonia::Builder::default();
    builder
        .rm_tags(["img"])
        .url_schemes(HashSet::from(["http", "https", "mailto"]))
        .link_rel(Some("noopener noreferrer nofollow"))
        // A task list's check boxes, shown as they are written and never submitted.
        .add_tags(["input"])
        .add_tag_attribute_values("input", "type", ["checkbox"])
        .add_tag_attributes("input", ["checked", "disabled"]);
    builder
});

#[cfg(test)]
mod tests {
    use super::render;

    /// `markdown` renders to exactly `html`.
    fn check(markdown: &str, html: &str) {
        assert_eq!(render(markdown), html, "rendering {markdown:?}");
    }

    /// Nothing of `forbidden` survives in what `markdown` renders to.
    fn check_gone(markdown: &str, forbidden: &[&str]) {
        let html = render(markdown).to_lowercase();
        for bad in forbidden {
            assert!(
                !html.contains(bad),
                "{bad:?} survived in {html:?} (from {markdown:?})"
            );
        }
    }

    #[test]
    fn markdown_renders() {
        check(
            "**bold** and `code`",
            "<p><strong>bold</strong> and <code>code</code></p>\n",
        );
        check(
            "# Runbook\n\n1. one\n2. two\n",
            "<h1>Runbook</h1>\n<ol>\n<li>one</li>\n<li>two</li>\n</ol>\n",
        );
        check(
            "[dash](https://grafana.example/d/1)",
            "<p><a href=\"https://grafana.example/d/1\" rel=\"noopener noreferrer nofollow\">dash</a></p>\n",
        );
        check("~~old~~", "<p><del>old</del></p>\n");
        check(
            "| a | b |\n|---|---|\n| 1 | 2 |\n",
            "<table><thead><tr><th>a</th><th>b</th></tr></thead><tbody>\n<tr><td>1</td><td>2</td></tr>\n</tbody></table>\n",
        );
        check(
            "- [x] done\n",
            "<ul>\n<li><input disabled=\"\" type=\"checkbox\" checked=\"\">\ndone</li>\n</ul>\n",
        );
        check(
            "![chart](https://example.com/c.png)",
            "<p><a href=\"https://example.com/c.png\" rel=\"noopener noreferrer nofollow\">chart</a></p>\n",
        );
        check("a < b & c", "<p>a &lt; b &amp; c</p>\n");
    }

    #[test]
    fn hostile_html_is_removed() {
        let inline = [
            "style=",
            "onerror",
            "onclick",
            "onload",
            "javascript:",
            "<script",
            "<style",
            "<iframe",
            "<img",
            "<svg",
            "<form",
            "<object",
            "<embed",
            "<link",
            "<meta",
            "data:text",
            "alert(",
            "onfocus",
            "onmouseover",
            "autofocus",
        ];
        for doc in [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "<p style=\"color:red\" onclick=\"alert(1)\">hi</p>",
            "<style>body{display:none}</style>",
            "[click](javascript:alert(1))",
            "[click](JaVaScRiPt:alert(1))",
            "<a href=\"javascript:alert(1)\">x</a>",
            "<a href=\"data:text/html,<script>alert(1)</script>\">x</a>",
            "![x](javascript:alert(1))",
            "<iframe src=\"https://evil.example\"></iframe>",
            "<svg onload=alert(1)><circle/></svg>",
            "<form action=\"https://evil.example\"><input name=a></form>",
            "<object data=x></object><embed src=x>",
            "<link rel=stylesheet href=x><meta http-equiv=refresh content=0>",
            "<div onmouseover=\"alert(1)\">hover</div>",
            "<input type=\"text\" onfocus=\"alert(1)\" autofocus>",
        ] {
            check_gone(doc, &inline);
        }
        // What is left of them is text or harmless markup.
        check("<script>alert(1)</script>", "");
        check(
            "<p style=\"color:red\" onclick=\"alert(1)\">hi</p>",
            "<p>hi</p>",
        );
        check(
            "[click](javascript:alert(1))",
            "<p><a rel=\"noopener noreferrer nofollow\">click</a></p>\n",
        );
    }
}
