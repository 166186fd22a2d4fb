//! The checks over the samples: every page renders its typed context strictly, every page
//! template has a context type and samples, and a misspelt name in any template fails a
//! render.

use super::*;

/// Renders every sample; the first failure, as `sample: error`.
fn render_all(env: &Environment<'_>, samples: &[Sample]) -> Result<(), String> {
    for s in samples {
        let template = env
            .get_template(s.template)
            .map_err(|err| format!("{}: {err:#}", s.name))?;
        template
            .render(&s.context)
            .map_err(|err| format!("{}: {err:#}", s.name))?;
    }
    Ok(())
}

#[test]
fn every_page_renders_its_typed_context_strictly() {
    let env = environment_with(TEMPLATES);
    let samples = samples();
    if let Err(err) = render_all(&env, &samples) {
        panic!("{err}");
    }
    for s in &samples {
        let html = env
            .get_template(s.template)
            .and_then(|t| t.render(&s.context))
            .unwrap_or_else(|err| panic!("{}: {err:#}", s.name));
        assert!(!html.trim().is_empty(), "{} rendered nothing", s.name);
    }
}

#[test]
fn every_page_template_has_a_context_type_and_samples() {
    let mut pages: Vec<&str> = PAGE_TEMPLATES.to_vec();
    pages.sort_unstable();
    let mut templates: Vec<&str> = TEMPLATES
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| {
            !matches!(
                *name,
                "base.html"
                    | "macros.html"
                    | "charts.html"
                    | "task_head.html"
                    | "task_log.html"
                    | "gantt.html"
            )
        })
        .collect();
    templates.sort_unstable();
    assert_eq!(pages, templates, "page templates and context types");
    let samples = samples();
    for page in pages {
        assert!(
            samples.iter().any(|s| s.template == page),
            "no sample context renders {page}"
        );
    }
}

/// Where a template reads a name: an attribute (`x.name`) or a top-level variable.
fn reads(source: &str, variables: &[String]) -> Vec<(usize, usize)> {
    let bytes = source.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i + 1 < bytes.len() {
        let opens_tag = bytes[i] == b'{' && matches!(bytes[i + 1], b'{' | b'%');
        if !opens_tag {
            i += 1;
            continue;
        }
        let close = if bytes[i + 1] == b'{' { "}}" } else { "%}" };
        let end = source[i..].find(close).map_or(source.len(), |e| i + e);
        let mut quote: Option<u8> = None;
        let mut j = i + 2;
        while j < end {
            let b = bytes[j];
            if let Some(q) = quote {
                if b == q {
                    quote = None;
                }
                j += 1;
            } else if b == b'\'' || b == b'"' {
                quote = Some(b);
                j += 1;
            } else if b.is_ascii_alphabetic() || b == b'_' {
                let start = j;
                while j < end && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                    j += 1;
                }
                let word = &source[start..j];
                let attribute = start > 0 && bytes[start - 1] == b'.';
                if attribute || variables.iter().any(|v| v == word) {
                    found.push((start, j));
                }
            } else {
                j += 1;
            }
        }
        i = end;
    }
    found
}

#[test]
fn a_misspelt_name_in_any_template_fails_a_render() {
    let samples = samples();
    let env = environment_with(TEMPLATES);
    let mut unnoticed = Vec::new();
    let mut checked = 0;
    for (index, (name, source)) in TEMPLATES.iter().enumerate() {
        let template = env
            .get_template(name)
            .unwrap_or_else(|err| panic!("{name}: {err:#}"));
        // Names the template reads from its context; functions and macros are not data.
        let variables: Vec<String> = template
            .undeclared_variables(false)
            .into_iter()
            .filter(|v| env.globals().all(|(global, _)| global != v.as_str()))
            .collect();
        for (start, end) in reads(source, &variables) {
            let misspelt = format!(
                "{}{}_misspelt{}",
                &source[..start],
                &source[start..end],
                &source[end..]
            );
            let mut templates: Vec<(&str, &str)> = TEMPLATES.to_vec();
            templates[index].1 = &misspelt;
            checked += 1;
            if render_all(&environment_with(&templates), &samples).is_ok() {
                let line = source[..start].lines().count();
                unnoticed.push(format!("{name}:{line}: {}", &source[start..end]));
            }
        }
    }
    assert!(checked > 100, "only {checked} names found in the templates");
    assert!(
        unnoticed.is_empty(),
        "{} of {checked} misspelt names render without an error:\n{}",
        unnoticed.len(),
        unnoticed.join("\n")
    );
}
