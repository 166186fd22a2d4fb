//! A try of 100,000 stdout lines with a stderr line after the 50,000th, read back every
//! way the API and the UI offer: the viewer opens on the last lines, "earlier lines"
//! pages back to line 1, the download streams every line as text, and the search finds
//! lines in the database with their line numbers. Every route checks its role.

use axum::body::Body;
use axum::http::{header, Method, StatusCode};
use futures_util::StreamExt;
use nightshift_store::{LogLine, Store};
use tower::ServiceExt;

use crate::common::{both_backends, fixture, request, unescape, Auth, Fixture, DAG_ID};

both_backends!(
    api_pages_back_searches_and_downloads_a_long_log,
    the_viewer_opens_at_the_end_and_pages_back_to_line_one,
);

/// The fixture's `extract` try 1 holds 5 lines; these follow them.
const BEFORE: i64 = 5;
/// The stderr line's number.
const STDERR_LINE: i64 = BEFORE + 50_001;
const TOTAL: i64 = BEFORE + 100_001;

async fn long_log(store: Store) -> (Fixture, i64) {
    let f = fixture(store).await;
    let run = f.run(&f.run_id).await;
    let ti = f
        .store
        .list_task_instances(run.id)
        .await
        .expect("instances")
        .into_iter()
        .find(|ti| ti.task_id == "extract")
        .expect("extract");
    let now = chrono::Utc::now();
    let line = |stream: &str, line: String| LogLine {
        ts: now,
        stream: stream.to_owned(),
        line,
    };
    let lines: Vec<LogLine> = (1..=50_000)
        .map(|i| line("stdout", i.to_string()))
        .chain([line("stderr", "to stderr".to_owned())])
        .chain((50_001..=100_000).map(|i| line("stdout", i.to_string())))
        .collect();
    for batch in lines.chunks(10_000) {
        f.store.append_logs(ti.id, 1, batch).await.expect("append");
    }
    (f, ti.id)
}

async fn api_pages_back_searches_and_downloads_a_long_log(store: Store) {
    let (f, _) = long_log(store).await;
    let viewer = Auth::Bearer(&f.viewer);
    let base = format!(
        "/api/v1/dags/{DAG_ID}/dagRuns/{}/taskInstances/extract/logs/1",
        f.run_id
    );

    // From the end back to line 1, 10,000 lines a page.
    let mut page = f.get(&format!("{base}?tail=10000"), viewer).await.json();
    let mut numbers = Vec::new();
    loop {
        let lines = page["lines"].as_array().expect("lines").clone();
        let Some(first) = lines.first().and_then(|l| l["line_no"].as_i64()) else {
            break;
        };
        numbers.splice(
            0..0,
            lines.iter().map(|l| l["line_no"].as_i64().unwrap_or(0)),
        );
        if first == 1 {
            break;
        }
        page = f
            .get(&format!("{base}?before={first}&limit=10000"), viewer)
            .await
            .json();
    }
    assert_eq!(
        numbers,
        (1..=TOTAL).collect::<Vec<_>>(),
        "every line, in order"
    );
    let around = f
        .get(
            &format!("{base}?offset={}&limit=2", STDERR_LINE - 2),
            viewer,
        )
        .await
        .json();
    assert_eq!(around["lines"][0]["line"], "50000");
    assert_eq!(around["lines"][1]["line"], "to stderr");
    assert_eq!(around["lines"][1]["stream"], "stderr");

    // Search: in the database, with line numbers, literally.
    let found = f
        .get(&format!("{base}/search?q=TO%20STDERR"), viewer)
        .await
        .json();
    assert_eq!(found["lines"].as_array().map(Vec::len), Some(1));
    assert_eq!(found["lines"][0]["line_no"], STDERR_LINE);
    assert_eq!(found["continuation_token"], serde_json::Value::Null);
    let many = f
        .get(&format!("{base}/search?q=9999&limit=3"), viewer)
        .await
        .json();
    let first: Vec<&str> = many["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter_map(|l| l["line"].as_str())
        .collect();
    assert_eq!(first, ["9999", "19999", "29999"]);
    let token = many["continuation_token"]
        .as_str()
        .expect("more")
        .to_owned();
    let next = f
        .get(
            &format!("{base}/search?q=9999&limit=3&offset={token}"),
            viewer,
        )
        .await
        .json();
    assert_eq!(next["lines"][0]["line"], "39999");
    assert!(
        f.get(&format!("{base}/search?q=%25"), viewer).await.json()["lines"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );
    f.get(&format!("{base}/search?q=%20"), viewer)
        .await
        .problem(StatusCode::BAD_REQUEST);
    f.get(&format!("{base}/search?q={}", "x".repeat(201)), viewer)
        .await
        .problem(StatusCode::BAD_REQUEST);

    // Download: every line as text, streamed a page at a time.
    let response = f
        .app
        .clone()
        .oneshot(request(
            Method::GET,
            &format!("{base}/download"),
            viewer,
            Body::empty(),
            "text/plain",
        ))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(
        header(header::CONTENT_TYPE).as_deref(),
        Some("text/plain; charset=utf-8")
    );
    let disposition = header(header::CONTENT_DISPOSITION).expect("disposition");
    assert!(
        disposition.starts_with("attachment; filename=\"nightly.")
            && disposition.ends_with(".extract.try1.log\""),
        "{disposition}"
    );
    let mut chunks = 0;
    let mut text = Vec::new();
    let mut body = response.into_body().into_data_stream();
    while let Some(chunk) = body.next().await {
        chunks += 1;
        text.extend_from_slice(&chunk.expect("chunk"));
    }
    let text = String::from_utf8(text).expect("UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() as i64, TOTAL);
    assert_eq!(lines[0], "extract line 0");
    assert_eq!(lines[(STDERR_LINE - 1) as usize], "to stderr");
    assert_eq!(lines.last().copied(), Some("100000"));
    assert!(
        chunks >= 100,
        "streamed in pages, not one buffer: {chunks} chunks"
    );

    // Every route checks its role: no one signed in, no log.
    for path in [
        format!("{base}/download"),
        format!("{base}/search?q=x"),
        format!("{base}?tail=1"),
    ] {
        f.get(&path, Auth::None)
            .await
            .problem(StatusCode::UNAUTHORIZED);
    }
    f.get(
        &format!(
            "/api/v1/dags/{DAG_ID}/dagRuns/{}/taskInstances/extract/logs/2/download",
            f.run_id
        ),
        viewer,
    )
    .await
    .problem(StatusCode::NOT_FOUND);
}

/// The `hx-get` of the "earlier lines" link in `html`, if there is one.
fn earlier_link(html: &str) -> Option<String> {
    let at = html.find("class=\"earlier\"")?;
    let rest = &html[at..];
    let start = rest.find("hx-get=\"")? + "hx-get=\"".len();
    let end = rest[start..].find('"')?;
    Some(unescape(&rest[start..start + end]))
}

/// The line numbers of the log lines in `html` (`id="L123"`).
fn line_numbers(html: &str) -> Vec<i64> {
    html.split("id=\"L")
        .skip(1)
        .filter_map(|s| s.split('"').next()?.parse().ok())
        .collect()
}

async fn the_viewer_opens_at_the_end_and_pages_back_to_line_one(store: Store) {
    let (f, _) = long_log(store).await;
    let viewer = Auth::Session(&f.viewer_session, false);
    let task = format!("/dags/{DAG_ID}/runs/{}/tasks/extract", f.run_id);
    let page = f.get(&format!("{task}?try=1"), viewer).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let html = page.text();
    // The box opens at its end (nightshift.js reads data-scroll-end) on the last lines.
    assert!(
        html.contains("<pre class=\"log\" data-scroll-end "),
        "{html}"
    );
    let mut numbers = line_numbers(&html);
    assert_eq!(numbers.last().copied(), Some(TOTAL));
    assert!(html.contains(">100000</span>"));
    assert!(html.contains(&format!("of {TOTAL}")));
    assert!(
        unescape(&html).contains("/logs/1/download\""),
        "a download link"
    );

    // "earlier lines" until line 1.
    let mut next = earlier_link(&html);
    let mut pages = 1;
    while let Some(link) = next {
        let fragment = f.get(&link, viewer).await;
        assert_eq!(fragment.status, StatusCode::OK, "{link}");
        let html = fragment.text();
        numbers.splice(0..0, line_numbers(&html));
        next = earlier_link(&html);
        pages += 1;
    }
    assert_eq!(
        numbers,
        (1..=TOTAL).collect::<Vec<_>>(),
        "paged back to line 1"
    );
    assert_eq!(pages, (TOTAL + 1999) / 2000);

    // The stderr line is marked in words, not by colour alone.
    let around = f
        .get(&format!("{task}?try=1&around={STDERR_LINE}"), viewer)
        .await
        .text();
    assert!(
        around.contains(&format!(
            "<span class=\"line stderr\" id=\"L{STDERR_LINE}\"><a class=\"ln\" href=\"#L{STDERR_LINE}\">{STDERR_LINE}</a><span class=\"tag\">err</span>to stderr</span>"
        )),
        "{around}"
    );

    // Search in the page: the matches with their numbers, each linking to its place.
    let found = f
        .get(&format!("{task}?try=1&q=to+stderr"), viewer)
        .await
        .text();
    assert_eq!(line_numbers(&found), [STDERR_LINE]);
    assert!(
        unescape(&found).contains(&format!("&around={STDERR_LINE}#L{STDERR_LINE}")),
        "{found}"
    );

    // Signed out: no lines.
    let link = format!("{task}/log/earlier?try=1&before=100");
    let reply = f.get(&link, Auth::None).await;
    assert_ne!(reply.status, StatusCode::OK);
    assert!(line_numbers(&reply.text()).is_empty());
}
