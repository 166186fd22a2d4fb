//! Log line numbers, paging back from the end, and search, on both backends.

use nightshift_core::state::TaskState;
use nightshift_store::{LogLine, Store};

use crate::common::{both_backends, new_ti, seed_run, t};

both_backends!(
    lines_are_numbered_per_try_across_batches,
    paging_back_reaches_line_one,
    search_matches_literally_and_returns_line_numbers,
    an_unknown_stream_is_refused,
);

fn lines(stream: &str, texts: impl IntoIterator<Item = String>) -> Vec<LogLine> {
    texts
        .into_iter()
        .map(|line| LogLine {
            ts: t("2026-01-02T03:00:00Z"),
            stream: stream.to_owned(),
            line,
        })
        .collect()
}

async fn instance(store: &Store) -> i64 {
    let run = seed_run(store, "d", &[new_ti("a", TaskState::Pending)]).await;
    store.list_task_instances(run.id).await.expect("list")[0].id
}

async fn lines_are_numbered_per_try_across_batches(store: Store) {
    let ti = instance(&store).await;
    // More than one INSERT statement's worth, then a second batch, and another try.
    let first = lines("stdout", (1..=1203).map(|i| format!("out {i}")));
    store.append_logs(ti, 1, &first).await.expect("append");
    store
        .append_logs(ti, 1, &lines("stderr", ["err".to_owned()]))
        .await
        .expect("append");
    store
        .append_logs(ti, 2, &lines("system", ["other try".to_owned()]))
        .await
        .expect("append");
    let all = store.read_logs(ti, 1, 0, 10_000).await.expect("read");
    let numbers: Vec<i64> = all.iter().map(|r| r.line_no).collect();
    assert_eq!(numbers, (1..=1204).collect::<Vec<_>>());
    assert_eq!(all[1202].line, "out 1203");
    assert_eq!(
        (all[1203].stream.as_str(), all[1203].line.as_str()),
        ("stderr", "err")
    );
    assert_eq!(store.count_log_lines(ti, 1).await.expect("count"), 1204);
    let other = store.read_logs(ti, 2, 0, 10).await.expect("read");
    assert_eq!(
        other
            .iter()
            .map(|r| (r.line_no, r.line.as_str()))
            .collect::<Vec<_>>(),
        [(1, "other try")]
    );
    let after = store.read_logs(ti, 1, 1200, 2).await.expect("read after");
    assert_eq!(
        after.iter().map(|r| r.line_no).collect::<Vec<_>>(),
        [1201, 1202]
    );
}

async fn paging_back_reaches_line_one(store: Store) {
    let ti = instance(&store).await;
    store
        .append_logs(ti, 1, &lines("stdout", (1..=2500).map(|i| i.to_string())))
        .await
        .expect("append");
    let tail = store.tail_logs(ti, 1, 1000).await.expect("tail");
    assert_eq!(
        (tail[0].line_no, tail[999].line_no, tail[999].line.as_str()),
        (1501, 2500, "2500")
    );
    let mut before = tail[0].line_no;
    let mut pages = vec![tail];
    while before > 1 {
        let page = store
            .read_logs_before(ti, 1, before, 1000)
            .await
            .expect("page");
        before = page.first().expect("a page").line_no;
        pages.push(page);
    }
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [1000, 1000, 500]);
    assert_eq!(pages[2][0].line, "1");
    assert!(store
        .read_logs_before(ti, 1, 1, 1000)
        .await
        .expect("nothing before line 1")
        .is_empty());
}

async fn search_matches_literally_and_returns_line_numbers(store: Store) {
    let ti = instance(&store).await;
    let texts = [
        "starting",
        "ERROR: disk 95% full",
        "loaded 10 rows",
        "error_code=7",
        "done 100%",
        "errorcode=8",
        r"path C:\tmp",
    ];
    store
        .append_logs(ti, 1, &lines("stdout", texts.map(str::to_owned)))
        .await
        .expect("append");
    let check = |term: &'static str, expected: &'static [i64]| {
        let store = store.clone();
        async move {
            let found = store
                .search_logs(ti, 1, term, 0, 100)
                .await
                .expect("search");
            let numbers: Vec<i64> = found.iter().map(|r| r.line_no).collect();
            assert_eq!(numbers, expected, "{term:?}");
        }
    };
    check("error", &[2, 4, 6]).await;
    check("%", &[2, 5]).await;
    check("error_", &[4]).await;
    check(r"c:\t", &[7]).await;
    check("nothing like it", &[]).await;
    // Paged: after the first match.
    let rest = store
        .search_logs(ti, 1, "error", 2, 1)
        .await
        .expect("search");
    assert_eq!(rest.iter().map(|r| r.line_no).collect::<Vec<_>>(), [4]);
}

async fn an_unknown_stream_is_refused(store: Store) {
    let ti = instance(&store).await;
    for stream in ["stdout", "stderr", "system", "scheduler"] {
        store
            .append_logs(ti, 1, &lines(stream, ["ok".to_owned()]))
            .await
            .unwrap_or_else(|e| panic!("{stream}: {e}"));
    }
    store
        .append_logs(ti, 1, &lines("stdin", ["no".to_owned()]))
        .await
        .expect_err("stdin is not a log stream");
    assert_eq!(store.count_log_lines(ti, 1).await.expect("count"), 4);
}
