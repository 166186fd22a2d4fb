//! Limits on what a person may put into one run (its id and its `conf`), so that one
//! request cannot make pages unreachable or every list of runs megabytes long. The
//! defaults are far above what real use needs; settings change them.

use serde_json::Value;

/// The longest run id by default, in characters (Airflow's `run_id` column is 250).
pub const DEFAULT_MAX_RUN_ID_CHARS: usize = 250;
/// The largest `conf` by default, in bytes of compact JSON.
pub const DEFAULT_MAX_CONF_BYTES: usize = 64 * 1024;

/// The limits a trigger is checked against (the `max_run_id_length` and `max_conf_bytes`
/// settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    pub max_run_id_chars: usize,
    pub max_conf_bytes: usize,
}

impl Default for RunLimits {
    fn default() -> Self {
        RunLimits {
            max_run_id_chars: DEFAULT_MAX_RUN_ID_CHARS,
            max_conf_bytes: DEFAULT_MAX_CONF_BYTES,
        }
    }
}

/// Why a run id or a conf is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("run id {run_id:?} may only use letters, digits and _.~:+- (and not be empty)")]
    RunIdCharacters { run_id: String },
    #[error("run id {0:?} is not allowed: `.` and `..` are path segments, not names")]
    RunIdDots(String),
    #[error(
        "run id has {count} characters; at most {max} are allowed (the max_run_id_length setting)"
    )]
    RunIdTooLong { count: usize, max: usize },
    #[error(
        "conf is {size} bytes of JSON; at most {max} are allowed (the max_conf_bytes setting)"
    )]
    ConfTooBig { size: usize, max: usize },
}

impl RunLimits {
    /// A run id given by a person: 1 to `max_run_id_chars` letters, digits and `_.~:+-`
    /// (as Airflow allows, and safe in paths and file names), and not `.` or `..`, which
    /// a URL path resolves away.
    pub fn check_run_id(&self, run_id: &str) -> Result<(), LimitError> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || "_.~:+-".contains(c);
        if run_id.is_empty() || !run_id.chars().all(allowed) {
            return Err(LimitError::RunIdCharacters {
                run_id: run_id.to_owned(),
            });
        }
        if run_id == "." || run_id == ".." {
            return Err(LimitError::RunIdDots(run_id.to_owned()));
        }
        // Only ASCII is allowed, so bytes are characters.
        if run_id.len() > self.max_run_id_chars {
            return Err(LimitError::RunIdTooLong {
                count: run_id.len(),
                max: self.max_run_id_chars,
            });
        }
        Ok(())
    }

    /// A run's `conf`, measured as compact JSON (the form it is stored and listed in).
    pub fn check_conf(&self, conf: &Value) -> Result<(), LimitError> {
        let size = compact_json_len(conf);
        if size > self.max_conf_bytes {
            return Err(LimitError::ConfTooBig {
                size,
                max: self.max_conf_bytes,
            });
        }
        Ok(())
    }
}

/// The length of `value` as compact JSON, counted without building the text.
fn compact_json_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a `Value` into a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check_run_id(run_id: &str, expected: Result<(), &str>) {
        let limits = RunLimits {
            max_run_id_chars: 10,
            ..RunLimits::default()
        };
        let got = limits.check_run_id(run_id).map_err(|e| e.to_string());
        match (got, expected) {
            (Ok(()), Ok(())) => {}
            (Err(message), Err(part)) => assert!(message.contains(part), "{run_id:?}: {message}"),
            (got, expected) => panic!("{run_id:?}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn run_ids() {
        check_run_id("manual_1", Ok(()));
        check_run_id("a.b", Ok(()));
        check_run_id("...", Ok(()));
        check_run_id("0123456789", Ok(()));
        check_run_id(".", Err("path segments"));
        check_run_id("..", Err("path segments"));
        check_run_id("", Err("not be empty"));
        check_run_id("a/b", Err("only use"));
        check_run_id("01234567890", Err("11 characters; at most 10"));
    }

    #[test]
    fn conf_is_measured_as_compact_json() {
        let limits = RunLimits {
            max_conf_bytes: 10,
            ..RunLimits::default()
        };
        // {"a":"12"} is 10 bytes.
        assert_eq!(limits.check_conf(&json!({"a": "12"})), Ok(()));
        assert_eq!(
            limits.check_conf(&json!({"a": "123"})),
            Err(LimitError::ConfTooBig { size: 11, max: 10 })
        );
        assert!(RunLimits::default()
            .check_conf(&json!({"x": "y".repeat(64 * 1024)}))
            .is_err());
    }
}
