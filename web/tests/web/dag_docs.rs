//! What a DAG file says about itself, on the pages: the task `doc` and DAG
//! `description` as sanitised Markdown, owner and tag chips and the DAG list's filters by
//! them, the DAG file's source (highlighted, escaped, per definition version), the
//! definition a run was made from, and a waiting instance's facts (only its own).

use axum::http::{Method, StatusCode};
use chrono::Utc;
use nightshift_core::dag::Dag;
use nightshift_store::{NewDagVersion, RunType, Store};
use serde_json::json;

use crate::common::{both_backends, fixture, started_run, t, Auth, Fixture, DAG_ID};

both_backends!(
    markdown_is_rendered_and_hostile_html_removed,
    dag_list_filters_by_tag_and_owner,
    source_page_highlights_and_escapes_each_version,
    run_page_names_its_definition,
    waiting_instance_shows_only_what_applies,
);

/// A runbook with markup of every kind a DAG author writes, and of every kind an
/// attacker would.
const RUNBOOK_TOML: &str = r#"
description = "Loads **the warehouse**; see [the dashboard](https://grafana.example/d/1)"
owner = "data-team"
tags = ["nightly", "warehouse"]

[tasks.load]
type = "noop"
doc = """
## When it fails

1. Check the **disk** of `db-1`.
2. Read [the runbook](https://wiki.example/load).

<script>alert('doc')</script>

<img src=x onerror="alert('img')">

<p style="color:red" onclick="alert('p')">styled</p>

<a href="javascript:alert('link')">js link</a>

[md js link](javascript:alert('md'))

<iframe src="https://evil.example"></iframe>
"""
"#;

async fn get_ok(f: &Fixture, path: &str) -> String {
    let reply = f.get(path, Auth::Session(&f.viewer_session, false)).await;
    assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
    // minijinja escapes `/` in text and attributes; compare with plain slashes.
    reply.text().replace("&#x2f;", "/")
}

/// Parses and stores `toml` as `file`, keeping its text as the loader does.
async fn seed_with_source(store: &Store, file: &str, toml: &str) -> Dag {
    let dag = nightshift_testkit::seed_dag(store, file, toml).await;
    let hash = store
        .get_dag(&dag.id)
        .await
        .expect("get")
        .expect("stored")
        .source_hash;
    store
        .record_dag_version(&NewDagVersion {
            dag_id: dag.id.clone(),
            source_hash: hash,
            file_path: file.to_owned(),
            source: toml.to_owned(),
            definition: serde_json::to_value(&dag).expect("definition"),
            loaded_at: Utc::now(),
        })
        .await
        .expect("record version");
    dag
}

async fn markdown_is_rendered_and_hostile_html_removed(store: Store) {
    let f = fixture(store).await;
    let dag = seed_with_source(&f.store, "dags/runbook.toml", RUNBOOK_TOML).await;
    let run = started_run(
        &f.store,
        &dag,
        "manual__1",
        RunType::Manual,
        t("2026-01-05T00:00:00Z"),
        t("2026-01-05T00:00:01Z"),
    )
    .await;
    let task = get_ok(
        &f,
        &format!("/dags/{}/runs/{}/tasks/load", dag.id, run.run_id),
    )
    .await;
    for rendered in [
        "<h2>When it fails</h2>",
        "<strong>disk</strong>",
        "<code>db-1</code>",
        "<a href=\"https://wiki.example/load\" rel=\"noopener noreferrer nofollow\">the runbook</a>",
        "<p>styled</p>",
        // The DAG header's description, Markdown too.
        "<strong>the warehouse</strong>",
        "<a href=\"https://grafana.example/d/1\" rel=\"noopener noreferrer nofollow\">the dashboard</a>",
    ] {
        assert!(task.contains(rendered), "task page lacks {rendered:?}:\n{task}");
    }
    // The page's own scripts are files (CSP: script-src 'self'); none of the doc's.
    let lower = task.to_lowercase();
    for hostile in [
        "alert(",
        "onerror",
        "onclick",
        "javascript:",
        "style=",
        "<iframe",
        "<img",
    ] {
        assert!(!lower.contains(hostile), "{hostile:?} survived:\n{task}");
    }
    assert_eq!(
        lower.matches("<script").count(),
        lower.matches("<script src=\"/static/").count(),
        "only the page's own script files:\n{task}"
    );

    // Owner and tags on the DAG pages and in the list, linking to the filtered list.
    for path in [format!("/dags/{}", dag.id), "/dags".to_owned()] {
        let text = get_ok(&f, &path).await;
        for chip in [
            "href=\"/dags?owner=data-team\"",
            "href=\"/dags?tag=nightly\"",
            "href=\"/dags?tag=warehouse\"",
        ] {
            assert!(text.contains(chip), "{path} lacks {chip}:\n{text}");
        }
    }
}

async fn dag_list_filters_by_tag_and_owner(store: Store) {
    let f = fixture(store).await; // `nightly`: tags ["nightly"], no owner
    for (id, owner, tags) in [
        ("sales_daily", "sales", r#"["nightly", "sales"]"#),
        ("sales_hourly", "sales", r#"["hourly"]"#),
        ("finance", "fin & ops", r#"["nightly", "a b/c"]"#),
    ] {
        let toml = format!(
            "id = \"{id}\"\nowner = \"{owner}\"\ntags = {tags}\n[tasks.a]\ntype = \"noop\"\n"
        );
        nightshift_testkit::seed_dag(&f.store, &format!("dags/{id}.toml"), &toml).await;
    }
    let listed = |text: &str| -> Vec<&'static str> {
        [DAG_ID, "sales_daily", "sales_hourly", "finance"]
            .into_iter()
            .filter(|id| text.contains(&format!("href=\"/dags/{id}\"")))
            .collect()
    };
    for (query, expected) in [
        ("", vec![DAG_ID, "sales_daily", "sales_hourly", "finance"]),
        ("?tag=nightly", vec![DAG_ID, "sales_daily", "finance"]),
        ("?tag=sales", vec!["sales_daily"]),
        ("?owner=sales", vec!["sales_daily", "sales_hourly"]),
        ("?owner=sales&tag=nightly", vec!["sales_daily"]),
        ("?owner=fin%20%26%20ops", vec!["finance"]),
        ("?tag=a%20b%2Fc", vec!["finance"]),
        // Exact matches only: a prefix, a substring or another case is another tag.
        ("?tag=night", vec![]),
        ("?tag=NIGHTLY", vec![]),
        ("?owner=sale", vec![]),
        ("?filter=all&q=hourly&tag=hourly", vec!["sales_hourly"]),
    ] {
        let text = get_ok(&f, &format!("/dags{query}")).await;
        assert_eq!(listed(&text), expected, "/dags{query}");
    }
    // The current filters are shown, each with a link that removes only it.
    let text = get_ok(&f, "/dags?owner=sales&tag=nightly").await;
    assert!(text.contains("Showing only"), "{text}");
    assert!(
        text.contains("href=\"/dags?filter=all&amp;owner=sales\""),
        "removing the tag keeps the owner:\n{text}"
    );
    assert!(
        text.contains("href=\"/dags?filter=all&amp;tag=nightly\""),
        "removing the owner keeps the tag:\n{text}"
    );
    // The search form keeps them.
    assert!(text.contains("<input type=\"hidden\" name=\"tag\" value=\"nightly\">"));
    assert!(text.contains("<input type=\"hidden\" name=\"owner\" value=\"sales\">"));
    let text = get_ok(&f, "/dags").await;
    assert!(!text.contains("Showing only"));
    // A chip with characters that need encoding links to a query that finds it.
    assert!(text.contains("href=\"/dags?tag=a%20b%2Fc\""), "{text}");
    assert!(
        text.contains("href=\"/dags?owner=fin%20%26%20ops\""),
        "{text}"
    );

    // The API lists with the same filters.
    let ids = |query: &str| {
        let f = &f;
        let query = query.to_owned();
        async move {
            let reply = f
                .call(
                    Method::GET,
                    &format!("/api/v1/dags{query}"),
                    Auth::Bearer(&f.viewer),
                    &json!(null),
                )
                .await;
            assert_eq!(reply.status, StatusCode::OK, "{query}: {}", reply.text());
            let body = reply.json();
            let mut ids: Vec<String> = body["dags"]
                .as_array()
                .expect("dags")
                .iter()
                .map(|d| d["dag_id"].as_str().expect("id").to_owned())
                .collect();
            ids.sort();
            assert_eq!(body["total_entries"], json!(ids.len()), "{query}");
            ids
        }
    };
    assert_eq!(
        ids("?tag=nightly").await,
        ["finance", DAG_ID, "sales_daily"]
    );
    assert_eq!(ids("?owner=sales").await, ["sales_daily", "sales_hourly"]);
    assert_eq!(ids("?owner=sales&tag=hourly").await, ["sales_hourly"]);
}

async fn source_page_highlights_and_escapes_each_version(store: Store) {
    let f = fixture(store).await;
    // The fixture's DAG was stored without its text (as before sources were kept).
    let page = get_ok(&f, &format!("/dags/{DAG_ID}/source")).await;
    assert!(page.contains("was not kept"), "{page}");
    assert!(page.contains("loaded now"), "{page}");

    let hostile = "# </td></tr></table><script>alert(1)</script>\n\
                   id = \"hostile\"\n\
                   description = \"<img src=x onerror=alert(2)>\"\n\
                   [tasks.a]\n\
                   type = \"noop\"\n\
                   retries = 2\n";
    let dag = seed_with_source(&f.store, "dags/hostile.toml", hostile).await;
    let first_hash = f
        .store
        .get_dag(&dag.id)
        .await
        .expect("get")
        .expect("stored")
        .source_hash;
    let page = get_ok(&f, "/dags/hostile/source").await;
    for expected in [
        "<code>dags/hostile.toml</code>",
        "<span class=\"hl-comment\"># &lt;/td&gt;&lt;/tr&gt;&lt;/table&gt;&lt;script&gt;alert(1)&lt;/script&gt;</span>",
        "&lt;img src=x onerror=alert(2)&gt;",
        "<span class=\"hl-number\">2</span>",
        "id=\"L6\"",
    ] {
        assert!(page.contains(expected), "source page lacks {expected:?}:\n{page}");
    }
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(!page.contains("<img"), "{page}");
    assert!(
        !page.contains("style="),
        "highlighting is classes only (CSP):\n{page}"
    );

    // A new version: the page shows it; the old one stays reachable by its hash.
    let changed = hostile.replace("retries = 2", "retries = 5");
    seed_with_source(&f.store, "dags/hostile.toml", &changed).await;
    let page = get_ok(&f, "/dags/hostile/source").await;
    assert!(
        page.contains("<span class=\"hl-number\">5</span>"),
        "{page}"
    );
    let old = get_ok(&f, &format!("/dags/hostile/source?hash={first_hash}")).await;
    assert!(old.contains("<span class=\"hl-number\">2</span>"), "{old}");
    assert!(old.contains("not the one loaded now"), "{old}");
    assert!(old.contains("href=\"/dags/hostile/source\""), "{old}");

    // A hash that is no version of the DAG, and one that is no hash.
    let reply = f
        .get(
            &format!("/dags/hostile/source?hash={}", "0".repeat(64)),
            Auth::Session(&f.viewer_session, false),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text());
    let reply = f
        .get(
            "/dags/hostile/source?hash=%3Cscript%3E",
            Auth::Session(&f.viewer_session, false),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    assert!(!reply.text().contains("<script>"));
    // Signed-out: the sign-in page, not the source.
    let reply = f.get("/dags/hostile/source", Auth::None).await;
    assert_ne!(reply.status, StatusCode::OK);
    assert!(!reply.text().contains("hl-comment"));
}

async fn run_page_names_its_definition(store: Store) {
    let f = fixture(store).await;
    let run = f.run(&f.run_id).await;
    let short = &run.definition_hash[..12];
    let path = format!("/dags/{DAG_ID}/runs/{}", f.run_id);
    let page = get_ok(&f, &path).await;
    assert!(
        page.contains(&format!(
            "href=\"/dags/{DAG_ID}/source?hash={}\"",
            run.definition_hash
        )),
        "{page}"
    );
    assert!(
        page.contains(&format!("<code class=\"hash\">{short}</code>")),
        "{page}"
    );
    assert!(page.contains("(the version loaded now)"), "{page}");
    // The file changes: the run keeps its definition, and says it is not the current one.
    let toml =
        "description = \"changed\"\nschedule = \"0 4 * * *\"\n[tasks.extract]\ntype = \"noop\"\n";
    nightshift_testkit::seed_dag(&f.store, "dags/nightly.toml", toml).await;
    let page = get_ok(&f, &path).await;
    assert!(
        page.contains(&format!("<code class=\"hash\">{short}</code>")),
        "{page}"
    );
    assert!(page.contains("the DAG changed since"), "{page}");
    // Its source link answers (the text of that version was not kept in this fixture).
    let source = get_ok(
        &f,
        &format!("/dags/{DAG_ID}/source?hash={}", run.definition_hash),
    )
    .await;
    assert!(source.contains("was not kept"), "{source}");
}

async fn waiting_instance_shows_only_what_applies(store: Store) {
    let f = fixture(store).await;
    let path = format!("/dags/{DAG_ID}/runs/{}/tasks/extract", f.run_id);
    // Failed on try 1: the try's facts.
    let page = get_ok(&f, &path).await;
    assert!(page.contains("<dt>Try</dt><dd>1 of 1</dd>"), "{page}");
    assert!(page.contains("<dt>Ended</dt>"), "{page}");
    assert!(page.contains("<dt>Host</dt><dd>host-1</dd>"), "{page}");
    // Cleared: waiting for try 2, so nothing of try 1 is shown as its own.
    let reply = f
        .call(
            Method::POST,
            &format!("/api/v1/dags/{DAG_ID}/clearTaskInstances"),
            Auth::Bearer(&f.operator),
            &json!({"dag_run_id": f.run_id, "task_ids": ["extract"], "dry_run": false}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let page = get_ok(&f, &path).await;
    let ti = f.instance(f.run(&f.run_id).await.id, "extract").await;
    assert_eq!(ti.try_number, 1);
    assert!(
        page.contains(&format!(
            "<dt>Next try</dt><dd>2 of {}, not started",
            ti.max_tries
        )),
        "{page}"
    );
    for stale in [
        "<dt>Started</dt>",
        "<dt>Ended</dt>",
        "<dt>Host</dt>",
        "<dt>Try</dt>",
        "Ended ()",
    ] {
        assert!(
            !page.contains(stale),
            "{stale:?} shown while waiting:\n{page}"
        );
    }
    // The log shown is try 1's, and says so.
    assert!(
        page.contains("This is the log of try 1; try 2 has not started yet."),
        "{page}"
    );
    // The attempts table still has try 1, with its host.
    assert!(page.contains("host-1"), "{page}");
}
