//! A task try's log: a cheap, clonable [`LogWriter`] that task kinds write lines to, and
//! a [`LogReceiver`] that the worker drains into the store in batches.
//!
//! The writer enforces the per-try caps ([`LogLimits`]): past `max_lines` lines or
//! `max_bytes` bytes it emits one [`truncation marker`](LogWriter::line) and discards the
//! rest, so a runaway task cannot fill the database; a line longer than
//! `max_line_bytes` is cut with a marker. A writer made [`with_secrets`](LogChannel::with_secrets)
//! masks each line *before* cutting it, so a secret across the cut never shows its first
//! part; producers read [`LogWriter::read_limit`] bytes of a line (the cap plus the longest
//! secret) for that. Because the caps bound what is ever sent, the
//! channel is unbounded and [`LogWriter::line`] never blocks or awaits: a task kind keeps
//! reading its child's pipes at full speed whatever the store does.

use std::fmt;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use chrono::{DateTime, Utc};
use nightshift_core::mask::{longest_secret, mask_then_cut, Limit, SecretSet};
use nix::errno::Errno;
use serde::{Deserialize, Serialize};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::process::{ChildStderr, ChildStdout};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

/// Default for [`LogLimits::max_lines`].
pub const DEFAULT_MAX_LINES: usize = 100_000;
/// Default for [`LogLimits::max_bytes`]: 10 MiB.
pub const DEFAULT_MAX_BYTES: usize = 10 * 1024 * 1024;
/// Default for [`LogLimits::max_line_bytes`]: 64 KiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;
/// How many [`Stream::System`] lines are still kept after the log was truncated, so
/// nightshift's own closing lines ("exited with code 1") survive a noisy task.
pub const SYSTEM_LINES_AFTER_TRUNCATION: usize = 100;

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// The task's standard output.
    Stdout,
    /// The task's standard error.
    Stderr,
    /// nightshift itself: what it started, signals it sent, how the try ended, markers.
    System,
}

impl Stream {
    /// The lowercase name stored in the database and shown in the UI.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::System => "system",
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of a try's log, as it leaves the writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// 0, 1, 2, ... in the order the writer accepted the lines (across all streams).
    pub seq: u64,
    pub stream: Stream,
    /// The line without its line terminator; invalid UTF-8 replaced by U+FFFD.
    pub text: String,
    /// When the writer accepted the line.
    pub at: DateTime<Utc>,
}

/// The caps of one try's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// Lines kept before the log is truncated.
    pub max_lines: usize,
    /// Bytes of text kept (line terminators not counted) before the log is truncated.
    pub max_bytes: usize,
    /// A longer line keeps its first `max_line_bytes` bytes and a marker.
    pub max_line_bytes: usize,
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits {
            max_lines: DEFAULT_MAX_LINES,
            max_bytes: DEFAULT_MAX_BYTES,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }
}

/// What a writer did so far; for the attempt record and for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogStats {
    /// Lines sent to the receiver, markers included.
    pub lines: u64,
    /// Bytes of text sent to the receiver, markers included.
    pub bytes: u64,
    /// Whether the cap was reached and output is being discarded.
    pub truncated: bool,
    /// Lines discarded after truncation.
    pub discarded_lines: u64,
    /// Bytes discarded after truncation (counted before any line cut).
    pub discarded_bytes: u64,
}

/// Builds the two ends of a try's log.
pub struct LogChannel;

impl LogChannel {
    /// A channel whose writer keeps at most `cap_lines` lines, with the default byte caps.
    #[allow(
        clippy::new_ret_no_self,
        reason = "returns both ends, like tokio's mpsc::channel"
    )]
    pub fn new(cap_lines: usize) -> (LogWriter, LogReceiver) {
        Self::with_limits(LogLimits {
            max_lines: cap_lines,
            ..LogLimits::default()
        })
    }

    /// A channel with explicit caps.
    pub fn with_limits(limits: LogLimits) -> (LogWriter, LogReceiver) {
        Self::with_secrets(limits, SecretSet::default())
    }

    /// A channel with explicit caps whose writer masks every occurrence of `secrets` as
    /// `***` in each line before the line is cut to `max_line_bytes`.
    /// `secrets` may grow while the try runs (a connection fetched from a secret store):
    /// each line is masked with the secrets known when it is written.
    pub fn with_secrets(limits: LogLimits, secrets: SecretSet) -> (LogWriter, LogReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = LogWriter {
            inner: Arc::new(Inner {
                limits,
                secrets,
                tx,
                state: Mutex::new(WriterState::default()),
            }),
        };
        (writer, LogReceiver { rx })
    }
}

/// The writing end of a try's log. Cloning is cheap; all clones share the caps.
#[derive(Clone)]
pub struct LogWriter {
    inner: Arc<Inner>,
}

struct Inner {
    limits: LogLimits,
    /// Masked in every line, before it is cut.
    secrets: SecretSet,
    tx: mpsc::UnboundedSender<LogLine>,
    state: Mutex<WriterState>,
}

#[derive(Default)]
struct WriterState {
    seq: u64,
    /// Lines and bytes counted against the caps (markers excluded).
    kept_lines: usize,
    kept_bytes: usize,
    system_after_truncation: usize,
    stats: LogStats,
}

impl fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogWriter")
            .field("limits", &self.inner.limits)
            .field("stats", &self.stats())
            .finish()
    }
}

impl LogWriter {
    /// Adds one line (without its terminator). Never blocks.
    ///
    /// Once the try's caps are reached, exactly one [`Stream::System`] marker line
    /// "`[nightshift] log truncated after N lines / M bytes; further output discarded`"
    /// is sent and later stdout/stderr lines are counted and dropped; up to
    /// [`SYSTEM_LINES_AFTER_TRUNCATION`] system lines are still kept. If the receiver is
    /// gone the line is dropped silently: the task must not fail because its log did.
    pub fn line(&self, stream: Stream, text: impl Into<String>) {
        let text = text.into();
        let len = text.len();
        self.accept(stream, len, || text);
    }

    /// Adds one line given as raw bytes, of which `bytes` is the (possibly already cut)
    /// beginning of a line that was `full_len` bytes long. Used by [`LineSplitter`] users
    /// so that discarded output costs no UTF-8 conversion.
    pub fn line_bytes(&self, stream: Stream, bytes: &[u8], full_len: usize) {
        self.accept(stream, full_len.max(bytes.len()), || {
            String::from_utf8_lossy(bytes).into_owned()
        });
    }

    /// What was written so far.
    pub fn stats(&self) -> LogStats {
        self.lock().stats
    }

    /// Whether output is being discarded because the caps were reached. Cheap; lets a
    /// producer skip work, though [`line`](Self::line) is correct without it.
    pub fn is_truncated(&self) -> bool {
        self.lock().stats.truncated
    }

    /// The caps this writer enforces.
    pub fn limits(&self) -> LogLimits {
        self.inner.limits
    }

    /// The secrets this writer masks, for a producer that shortens text itself (an
    /// error, an output) and must mask it first (see [`nightshift_core::mask`]).
    pub fn secrets(&self) -> Arc<[String]> {
        self.inner.secrets.snapshot()
    }

    /// How many bytes of one line a producer should keep: `max_line_bytes` plus the
    /// longest secret, so that a secret starting before the cut is whole when the line
    /// is masked (and then cut).
    pub fn read_limit(&self) -> usize {
        self.inner
            .limits
            .max_line_bytes
            .saturating_add(longest_secret(&crate::connections::refs(&self.secrets())))
    }

    fn lock(&self) -> MutexGuard<'_, WriterState> {
        // A panic while holding this lock cannot leave the counters inconsistent in a way
        // that matters more than losing the log, so a poisoned lock is simply reused.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `full_len` is the line's length before any cut; `make` builds its text lazily.
    fn accept(&self, stream: Stream, full_len: usize, make: impl FnOnce() -> String) {
        let limits = self.inner.limits;
        // The text is built, masked and cut outside the lock (the two pumps of a command
        // write at once); a line the log would discard is not built at all. Truncation
        // never ends, so a line found discarded here is discarded below too.
        let text = (stream == Stream::System || !self.is_truncated())
            .then(|| self.mask_and_cut(make(), full_len));
        let mut state = self.lock();
        let Some(text) = text.filter(|_| {
            !state.stats.truncated
                || (stream == Stream::System
                    && state.system_after_truncation < SYSTEM_LINES_AFTER_TRUNCATION)
        }) else {
            state.stats.discarded_lines += 1;
            state.stats.discarded_bytes += full_len as u64;
            return;
        };
        if state.stats.truncated {
            state.system_after_truncation += 1;
            self.send(&mut state, stream, text);
            return;
        }
        if state.kept_lines >= limits.max_lines
            || state.kept_bytes.saturating_add(text.len()) > limits.max_bytes
        {
            state.stats.truncated = true;
            state.stats.discarded_lines += 1;
            state.stats.discarded_bytes += full_len as u64;
            let marker = format!(
                "[nightshift] log truncated after {} lines / {} bytes; further output discarded",
                state.kept_lines, state.kept_bytes
            );
            self.send(&mut state, Stream::System, marker);
            return;
        }
        state.kept_lines += 1;
        state.kept_bytes += text.len();
        self.send(&mut state, stream, text);
    }

    /// Masks the secrets in `text` (the kept part of a line that was `full_len` bytes
    /// long), then cuts it to `max_line_bytes`.
    fn mask_and_cut(&self, text: String, full_len: usize) -> String {
        cut_line(
            text,
            full_len,
            self.inner.limits.max_line_bytes,
            &crate::connections::refs(&self.secrets()),
        )
    }

    fn send(&self, state: &mut WriterState, stream: Stream, text: String) {
        state.stats.lines += 1;
        state.stats.bytes += text.len() as u64;
        let line = LogLine {
            seq: state.seq,
            stream,
            text,
            at: Utc::now(),
        };
        state.seq += 1;
        // Sent under the lock so that `seq` order is channel order.
        let _ = self.inner.tx.send(line);
    }
}

/// Masks `secrets` in `text` (the kept part of a line that was `full_len` bytes long),
/// then cuts it to `max` bytes on a character boundary and appends a marker when
/// anything was removed. Masking first keeps a secret across the cut whole in the mask.
fn cut_line(text: String, full_len: usize, max: usize, secrets: &[&str]) -> String {
    let more = full_len > text.len();
    if !more && text.len() <= max && secrets.is_empty() {
        return text;
    }
    let (kept, cut) = mask_then_cut(&text, secrets, Limit::Bytes(max));
    if !cut && !more {
        return kept;
    }
    let end = kept.len();
    let full_len = full_len.max(text.len());
    format!("{kept} [nightshift] line cut: kept {end} of {full_len} bytes")
}

/// The reading end of a try's log. Ends (`None`) once every [`LogWriter`] clone is
/// dropped and the remaining lines were received.
#[derive(Debug)]
pub struct LogReceiver {
    rx: mpsc::UnboundedReceiver<LogLine>,
}

impl LogReceiver {
    /// The next line, waiting for one; `None` when all writers are gone.
    pub async fn recv(&mut self) -> Option<LogLine> {
        self.rx.recv().await
    }

    /// Waits for at least one line, then moves up to `limit` lines into `buf`; returns
    /// how many were added, 0 when all writers are gone (or `limit` is 0).
    pub async fn recv_batch(&mut self, buf: &mut Vec<LogLine>, limit: usize) -> usize {
        self.rx.recv_many(buf, limit).await
    }

    /// A line if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<LogLine> {
        self.rx.try_recv().ok()
    }
}

/// Bytes read from a child's pipe at once: a whole default pipe buffer (64 KiB on Linux),
/// so one read empties it.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes read but not yet split into lines: 8 MiB, about 100,000 lines of 80 characters.
/// Past that the reader waits too and the child's pipes fill up; a reader that waited for
/// the lines to be written would let a fast child run ahead of it in both pipes at once.
const BYTES_IN_FLIGHT: usize = 8 * 1024 * 1024;

/// Copies a child's stdout and stderr into `log`, line by line, until both pipes end;
/// `seen(stream, kept_bytes)` is called for each line before it is written.
///
/// Both pipes are read in one place ([`read_pipes`]), on a thread that only reads
/// (splitting, masking and writing happen here, behind a bounded queue) so it keeps up
/// with the child; the lines then pass through one [`LogWriter`], whose sequence numbers
/// are the try's line order. So the stored order is the order the bytes were read.
pub async fn capture(
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    log: &LogWriter,
    mut seen: impl FnMut(Stream, &[u8]),
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let room = Arc::new(Semaphore::new(BYTES_IN_FLIGHT));
    let tx = Chunks {
        tx,
        room: room.clone(),
    };
    let stdout = stdout.map(ChildStdout::into_owned_fd);
    let stderr = stderr.map(ChildStderr::into_owned_fd);
    // The reader runs on a thread of its own, woken by the kernel the moment a pipe has
    // data, whatever the worker's runtime is busy with. It stops when the pipes end or
    // when this future is dropped (a try given up on), so nothing keeps the pipes.
    let _reader = match reader() {
        Ok(reader) => AbortOnDrop(reader.spawn(read_pipes(stdout, stderr, tx))),
        Err(e) => {
            log.line(Stream::System, format!("cannot read the output: {e}"));
            return;
        }
    };
    // A little more than the log keeps, so that a secret across the cut is masked whole.
    let mut out = LineSplitter::new(log.read_limit());
    let mut err = LineSplitter::new(log.read_limit());
    while let Some(piece) = rx.recv().await {
        let (stream, splitter) = match piece.stream() {
            Stream::Stderr => (Stream::Stderr, &mut err),
            _ => (Stream::Stdout, &mut out),
        };
        let mut emit = |bytes: &[u8], full_len: usize| {
            seen(stream, bytes);
            log.line_bytes(stream, bytes, full_len);
        };
        match piece {
            Piece::Bytes(_, bytes) => {
                splitter.push(&bytes, &mut emit);
                room.add_permits(bytes.len());
            }
            Piece::End(_) => splitter.finish(&mut emit),
            Piece::Failed(_, error) => {
                splitter.finish(&mut emit);
                log.line(Stream::System, format!("reading {stream} failed: {error}"));
            }
        }
    }
}

/// A child's pipe, read with plain `read(2)` calls: tokio's cached readiness can lag the
/// pipe's content, and [`read_pipes`] must see what is in each pipe now.
type Pipe = AsyncFd<OwnedFd>;

fn open_pipe(fd: std::io::Result<OwnedFd>) -> std::io::Result<Pipe> {
    // Non-blocking again (the conversion out of tokio made it blocking).
    let fd = tokio::net::unix::pipe::Receiver::from_owned_fd(fd?)?.into_nonblocking_fd()?;
    // SAFETY: an OwnedFd is a valid, open descriptor that stays the same for as long as
    // the AsyncFd owns it.
    Ok(unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?)
}

/// What the pipe reader saw, in the order it saw it.
enum Piece {
    Bytes(Stream, Vec<u8>),
    /// The pipe reached its end.
    End(Stream),
    Failed(Stream, std::io::Error),
}

impl Piece {
    fn stream(&self) -> Stream {
        match self {
            Piece::Bytes(s, _) | Piece::End(s) | Piece::Failed(s, _) => *s,
        }
    }
}

/// The reader's end of the queue of what it read: at most [`BYTES_IN_FLIGHT`] waiting.
struct Chunks {
    tx: mpsc::UnboundedSender<Piece>,
    room: Arc<Semaphore>,
}

impl Chunks {
    /// Queues `piece`, waiting for room; `Err` when nobody reads the queue any more.
    async fn send(&self, piece: Piece) -> Result<(), ()> {
        if let Piece::Bytes(_, bytes) = &piece {
            // A chunk is at most READ_CHUNK bytes, far below both limits.
            let n = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
            // Waiting for room ends when nobody reads the queue any more.
            let permits = tokio::select! {
                permits = self.room.acquire_many(n) => permits.map_err(|_| ())?,
                () = self.tx.closed() => return Err(()),
            };
            permits.forget();
        }
        self.tx.send(piece).map_err(|_| ())
    }
}

/// The runtime every command try's pipes are read on: one thread, started with the
/// first try and kept for the life of the process, that does nothing but read (a thread
/// and a runtime per try cost about a millisecond each try).
fn reader() -> Result<&'static Handle, &'static str> {
    static READER: OnceLock<Result<Handle, String>> = OnceLock::new();
    READER
        .get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .map_err(|e| e.to_string())?;
            let handle = runtime.handle().clone();
            std::thread::Builder::new()
                .name("nightshift-output".to_owned())
                .spawn(move || runtime.block_on(std::future::pending::<()>()))
                .map_err(|e| e.to_string())?;
            Ok(handle)
        })
        .as_ref()
        .map_err(String::as_str)
}

/// Stops a try's pipe reading when the capture that started it is dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One pipe being read, and its buffer.
struct Reading {
    stream: Stream,
    pipe: Option<Pipe>,
    buf: Vec<u8>,
}

impl Reading {
    fn new(stream: Stream, pipe: Option<std::io::Result<Pipe>>) -> (Self, Option<Piece>) {
        let (pipe, failed) = match pipe {
            Some(Ok(pipe)) => (Some(pipe), None),
            Some(Err(e)) => (None, Some(Piece::Failed(stream, e))),
            None => (None, None),
        };
        let buf = vec![0u8; READ_CHUNK];
        (Reading { stream, pipe, buf }, failed)
    }

    /// Reads what the pipe holds now, without waiting: `None` when it holds nothing (or
    /// is gone). The end of the pipe or an error closes it.
    fn read_now(&mut self) -> Option<Piece> {
        let pipe = self.pipe.as_ref()?;
        let piece = loop {
            match nix::unistd::read(pipe.get_ref(), &mut self.buf) {
                Ok(0) => break Piece::End(self.stream),
                Ok(n) => return Some(Piece::Bytes(self.stream, self.buf[..n].to_vec())),
                Err(Errno::EAGAIN) => return None,
                Err(Errno::EINTR) => continue,
                Err(e) => break Piece::Failed(self.stream, e.into()),
            }
        };
        self.pipe = None;
        Some(piece)
    }

    /// Waits until the pipe may have something to read; never, once it is gone.
    async fn wait(&mut self) {
        let Some(pipe) = &self.pipe else {
            return std::future::pending().await;
        };
        match pipe.readable().await {
            Ok(mut ready) => ready.clear_ready(),
            // Not pollable after all: keep reading, each read reports what is wrong.
            Err(_) => tokio::task::yield_now().await,
        }
    }
}

/// Reads both pipes until both end and sends what it read, in order.
///
/// Two pipes share no clock, so the order of bytes waiting in both is not known; this
/// reader makes the likely order the stored one. Before each read of stdout, stderr is
/// read if it holds anything (a program's stderr lines are few and say what went wrong),
/// and then stdout once more, whose bytes are passed on first: every stdout byte the
/// program wrote before its stderr line is in the pipe by then, so what it flushed to
/// stdout before writing to stderr is stored before the stderr line. Only stdout it
/// wrote in the microseconds between that stderr line and this read can come first.
async fn read_pipes(
    stdout: Option<std::io::Result<OwnedFd>>,
    stderr: Option<std::io::Result<OwnedFd>>,
    tx: Chunks,
) {
    let (mut out, out_failed) = Reading::new(Stream::Stdout, stdout.map(open_pipe));
    let (mut err, err_failed) = Reading::new(Stream::Stderr, stderr.map(open_pipe));
    for piece in out_failed.into_iter().chain(err_failed) {
        if tx.send(piece).await.is_err() {
            return;
        }
    }
    while out.pipe.is_some() || err.pipe.is_some() {
        let pieces = match err.read_now() {
            Some(piece @ Piece::Bytes(..)) => vec![out.read_now(), Some(piece)],
            Some(piece) => vec![Some(piece)],
            None => vec![out.read_now()],
        };
        let mut read = false;
        for piece in pieces.into_iter().flatten() {
            read = true;
            if tx.send(piece).await.is_err() {
                return;
            }
        }
        if !read {
            // Both pipes are empty (a pipe that ended or failed is gone): wait for either.
            tokio::select! {
                () = out.wait() => {}
                () = err.wait() => {}
                // Nobody reads the lines any more.
                () = tx.tx.closed() => return,
            }
        }
    }
}

/// Splits a byte stream into lines with bounded memory: a line longer than `max` bytes
/// keeps its first `max` bytes and the rest is only counted, so a child that writes a
/// gigabyte without a newline costs `max` bytes, not a gigabyte.
#[derive(Debug)]
pub struct LineSplitter {
    max: usize,
    buf: Vec<u8>,
    /// Length of the current line so far, including bytes not kept.
    len: usize,
}

impl LineSplitter {
    pub fn new(max_line_bytes: usize) -> Self {
        LineSplitter {
            max: max_line_bytes,
            buf: Vec::new(),
            len: 0,
        }
    }

    /// Feeds a chunk; calls `emit(kept_bytes, full_len)` for each completed line, without
    /// its `\n` (nor a `\r` before it).
    pub fn push(&mut self, mut chunk: &[u8], mut emit: impl FnMut(&[u8], usize)) {
        while let Some(pos) = chunk.iter().position(|&b| b == b'\n') {
            self.take(&chunk[..pos]);
            self.emit_current(&mut emit);
            chunk = &chunk[pos + 1..];
        }
        self.take(chunk);
    }

    /// Emits the last line if the stream did not end with a newline.
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8], usize)) {
        if self.len > 0 {
            self.emit_current(&mut emit);
        }
    }

    fn take(&mut self, part: &[u8]) {
        let room = self.max.saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&part[..part.len().min(room)]);
        self.len += part.len();
    }

    fn emit_current(&mut self, emit: &mut impl FnMut(&[u8], usize)) {
        let mut kept = &self.buf[..];
        let mut len = self.len;
        // Only a CR that was kept can be dropped; a cut line's CR is long gone.
        if len == kept.len() && kept.last() == Some(&b'\r') {
            kept = &kept[..kept.len() - 1];
            len -= 1;
        }
        emit(kept, len);
        self.buf.clear();
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(rx: &mut LogReceiver) -> Vec<(Stream, String)> {
        std::iter::from_fn(|| rx.try_recv())
            .map(|l| (l.stream, l.text))
            .collect()
    }

    #[test]
    fn lines_pass_in_order_with_sequence_numbers() {
        let (w, mut rx) = LogChannel::new(10);
        w.line(Stream::Stdout, "a");
        w.clone().line(Stream::Stderr, "b");
        w.line(Stream::System, "c");
        let lines: Vec<_> = std::iter::from_fn(|| rx.try_recv()).collect();
        let got: Vec<_> = lines
            .iter()
            .map(|l| (l.seq, l.stream, l.text.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (0, Stream::Stdout, "a"),
                (1, Stream::Stderr, "b"),
                (2, Stream::System, "c")
            ]
        );
    }

    #[test]
    fn line_cap_emits_one_marker_and_discards_the_rest() {
        let (w, mut rx) = LogChannel::new(2);
        for i in 0..5 {
            w.line(Stream::Stdout, format!("l{i}"));
        }
        assert_eq!(
            drain(&mut rx),
            [
                (Stream::Stdout, "l0".to_string()),
                (Stream::Stdout, "l1".to_string()),
                (
                    Stream::System,
                    "[nightshift] log truncated after 2 lines / 4 bytes; further output discarded"
                        .to_string()
                ),
            ]
        );
        let stats = w.stats();
        assert!(stats.truncated);
        assert_eq!((stats.lines, stats.discarded_lines), (3, 3));
        assert_eq!(stats.discarded_bytes, 6);
    }

    #[test]
    fn byte_cap_truncates_before_the_line_that_would_cross_it() {
        let (w, mut rx) = LogChannel::with_limits(LogLimits {
            max_lines: 100,
            max_bytes: 10,
            max_line_bytes: 100,
        });
        w.line(Stream::Stdout, "12345");
        w.line(Stream::Stdout, "6789");
        w.line(Stream::Stdout, "ab");
        w.line(Stream::Stdout, "c");
        let got = drain(&mut rx);
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[2].1,
            "[nightshift] log truncated after 2 lines / 9 bytes; further output discarded"
        );
    }

    #[test]
    fn system_lines_survive_truncation_up_to_an_allowance() {
        let (w, mut rx) = LogChannel::new(1);
        w.line(Stream::Stdout, "kept");
        w.line(Stream::Stdout, "dropped");
        for i in 0..SYSTEM_LINES_AFTER_TRUNCATION + 5 {
            w.line(Stream::System, format!("s{i}"));
        }
        let got = drain(&mut rx);
        // kept + marker + the allowance
        assert_eq!(got.len(), 2 + SYSTEM_LINES_AFTER_TRUNCATION);
        assert_eq!(got.last().map(|l| l.0), Some(Stream::System));
        assert_eq!(
            got.iter().filter(|l| l.1.contains("log truncated")).count(),
            1
        );
    }

    #[test]
    fn long_lines_are_cut_on_a_char_boundary() {
        fn check(text: &str, max: usize, expected: &str) {
            assert_eq!(
                cut_line(text.to_string(), text.len(), max, &[]),
                expected,
                "{text:?}"
            );
        }
        check("short", 10, "short");
        check("exactly10!", 10, "exactly10!");
        check(
            "abcdefghijkl",
            4,
            "abcd [nightshift] line cut: kept 4 of 12 bytes",
        );
        // "é" is two bytes: a cut inside it backs off to the boundary.
        check("aéé", 2, "a [nightshift] line cut: kept 1 of 5 bytes");
    }

    #[test]
    fn splitter_bounds_lines_and_handles_chunk_edges() {
        fn check(chunks: &[&str], max: usize, expected: &[(&str, usize)]) {
            let mut s = LineSplitter::new(max);
            let mut got = Vec::new();
            for c in chunks {
                s.push(c.as_bytes(), |b, n| {
                    got.push((String::from_utf8_lossy(b).into_owned(), n))
                });
            }
            s.finish(|b, n| got.push((String::from_utf8_lossy(b).into_owned(), n)));
            let got: Vec<_> = got.iter().map(|(t, n)| (t.as_str(), *n)).collect();
            assert_eq!(got, expected, "{chunks:?}");
        }
        check(&["a\nb\n"], 10, &[("a", 1), ("b", 1)]);
        check(&["a", "b\n", "c"], 10, &[("ab", 2), ("c", 1)]);
        check(&["crlf\r\n"], 10, &[("crlf", 4)]);
        check(&["\n\n"], 10, &[("", 0), ("", 0)]);
        check(&["abcdef", "gh\nxy\n"], 3, &[("abc", 8), ("xy", 2)]);
        check(&[], 3, &[]);
    }

    #[test]
    fn line_bytes_counts_the_full_length_when_cutting() {
        let (w, mut rx) = LogChannel::with_limits(LogLimits {
            max_lines: 10,
            max_bytes: 1000,
            max_line_bytes: 3,
        });
        w.line_bytes(Stream::Stdout, b"abc", 8);
        assert_eq!(
            drain(&mut rx),
            [(
                Stream::Stdout,
                "abc [nightshift] line cut: kept 3 of 8 bytes".to_string()
            )]
        );
    }

    #[test]
    fn secrets_are_masked_before_a_line_is_cut() {
        let secret = "Q7-hunter2-secret";
        let (w, mut rx) = LogChannel::with_secrets(
            LogLimits {
                max_lines: 10,
                max_bytes: 10_000,
                max_line_bytes: 20,
            },
            SecretSet::new([secret.to_owned()]),
        );
        assert_eq!(w.read_limit(), 20 + secret.len());
        // The secret starts 4 bytes before the cut, as text and as bytes a splitter kept.
        let line = format!("{}{secret} tail", "x".repeat(16));
        w.line(Stream::Stdout, line.clone());
        w.line_bytes(
            Stream::Stderr,
            &line.as_bytes()[..w.read_limit()],
            line.len(),
        );
        w.line(Stream::System, format!("ok {secret}"));
        let got = drain(&mut rx);
        assert_eq!(
            got,
            [
                (
                    Stream::Stdout,
                    format!(
                        "{}***  [nightshift] line cut: kept 20 of 38 bytes",
                        "x".repeat(16)
                    )
                ),
                (
                    Stream::Stderr,
                    format!(
                        "{}***  [nightshift] line cut: kept 20 of 38 bytes",
                        "x".repeat(16)
                    )
                ),
                (Stream::System, "ok ***".to_owned()),
            ]
        );
    }

    #[tokio::test]
    async fn receiver_ends_when_writers_are_dropped() {
        let (w, mut rx) = LogChannel::new(10);
        let w2 = w.clone();
        w.line(Stream::Stdout, "x");
        drop(w);
        w2.line(Stream::Stdout, "y");
        drop(w2);
        let mut buf = Vec::new();
        assert_eq!(rx.recv_batch(&mut buf, 10).await, 2);
        assert_eq!(rx.recv().await, None);
    }
}
