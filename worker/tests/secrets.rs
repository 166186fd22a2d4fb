//! Secrets across a cut, through the real worker and real `sh` processes: a connection's
//! password printed where the try's error (500 characters of stderr) and the log's line
//! limit (64 KiB) cut the text must leave no part of itself in the stored error, log
//! line or output: text is masked first, then cut.

mod kinds_common;

use nightshift_worker::log::DEFAULT_MAX_LINE_BYTES;

/// The password; its first two characters appear nowhere else in what the tasks print.
const SECRET: &str = "Q7zSeCrEt-straddle-99";
/// How many characters of stderr the error keeps (the command kind's cut).
const ERROR_CHARS: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_secret_straddling_a_cut_leaves_no_prefix_behind() {
    let temp = nightshift_testkit::sqlite_store().await;
    let (store, file) = (temp.store.clone(), temp.path.clone());
    // Each secret starts five bytes before the cut and ends after it.
    let error_fill = ERROR_CHARS - 5;
    let line_fill = DEFAULT_MAX_LINE_BYTES - 5;
    let run = kinds_common::seed(
        &store,
        &format!(
            r#"
[tasks.error_cut]
type = "command"
command = "head -c {error_fill} /dev/zero | tr '\\0' e >&2; printf '%s tail\\n' '{{{{ env.WH_PASSWORD }}}}' >&2; exit 1"

[tasks.line_cut]
type = "command"
command = "head -c {line_fill} /dev/zero | tr '\\0' a; printf '%s tail\\n' '{{{{ env.WH_PASSWORD }}}}'"
"#
        ),
    )
    .await;
    let wh = format!("postgres://etl:{SECRET}@db.invalid:5432/dwh");
    let connections = [kinds_common::connection("wh", &wh, None)];
    let config = kinds_common::config(connections, &[("WH_PASSWORD", SECRET)]);
    let done = kinds_common::run_to_end(&store, config, &run).await;

    // The error: stderr masked, then cut to 500 characters.
    let error_cut = &done["error_cut"];
    let attempts = store.list_attempts(error_cut.id).await.expect("attempts");
    let errors: Vec<String> = attempts.iter().filter_map(|a| a.error.clone()).collect();
    assert_eq!(
        errors.last().map(String::as_str),
        Some(format!("exited with code 1: {}*** t…", "e".repeat(error_fill)).as_str()),
        "{errors:?}"
    );

    // The log line: masked, then cut to the line limit.
    let line_cut = &done["line_cut"];
    assert_eq!(line_cut.state.as_str(), "success");
    let log = kinds_common::stored_log(&store, line_cut).await;
    let long = log
        .iter()
        .find(|l| l.starts_with("aaaa"))
        .unwrap_or_else(|| panic!("no long line: {:?}", short(&log)));
    assert_eq!(
        long.strip_prefix(&"a".repeat(line_fill)),
        Some(
            format!(
                "*** t [nightshift] line cut: kept {DEFAULT_MAX_LINE_BYTES} of {} bytes",
                line_fill + SECRET.len() + " tail".len()
            )
            .as_str()
        ),
    );
    // The output (the last stdout line) is the line as the log shows it.
    let output = line_cut
        .output
        .as_ref()
        .and_then(|o| o.as_str())
        .unwrap_or("");
    assert_eq!(output, format!("{}*** t", "a".repeat(line_fill)));

    // No prefix of the secret anywhere: log, rendered fields, output, errors, the file.
    let prefix = &SECRET[..2];
    for ti in done.values() {
        let log = kinds_common::stored_log(&store, ti).await;
        assert!(
            !log.iter().any(|l| l.contains(prefix)),
            "{}: part of the secret in the log: {:?}",
            ti.task_id,
            short(&log)
        );
        for value in [&ti.rendered, &ti.output] {
            let text = value.as_ref().map(|v| v.to_string()).unwrap_or_default();
            assert!(!text.contains(prefix), "{}: {}", ti.task_id, text.len());
        }
        for attempt in store.list_attempts(ti.id).await.expect("attempts") {
            let error = attempt.error.unwrap_or_default();
            assert!(!error.contains(prefix), "{}: {error}", ti.task_id);
        }
    }
    kinds_common::assert_never_stored(&store, &file, &done, prefix).await;
}

/// Log lines without their long filler, for a readable failure.
fn short(log: &[String]) -> Vec<String> {
    log.iter()
        .map(|l| {
            if l.len() > 200 {
                format!("{}…{}", &l[..40], &l[l.len() - 120..])
            } else {
                l.clone()
            }
        })
        .collect()
}
