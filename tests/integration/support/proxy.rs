//! The proxy under test, on 127.0.0.1 port 0 with a JSON access log.
//!
//! [`Proxy::start`] runs it inside the test process: the arguments go
//! through the crate's own clap `Args` → `Config` path, `run_reporting`
//! reports the bound addresses, access-log lines arrive through an in-memory
//! writer and the proxy's `tracing` output is kept as its "stderr". It runs on
//! a runtime of its own (a thread and two workers), so a test that blocks its
//! own thread cannot stall it and dropping the handle stops it at once, as
//! killing a process would. [`Proxy::start_on_this_runtime`] runs it as a
//! task on the test's own runtime instead, for tests on a paused clock.
//!
//! [`Proxy::spawn_binary`] starts the real binary instead, for what only a
//! process has: signals, exit codes, a pid and its memory, stdout/stderr.
//! Its startup line on stderr gives the address; stderr is kept in a buffer
//! for failure messages; stdout lines are parsed as access-log records.
//! With `CCNPROXY_TEST_SPAWN_ALL=1` in the environment every test spawns it.

use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt as _;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ccnproxy::config::{LogDestination, LogWriter, cli};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

use super::TIMEOUT;
use super::client::{self, Client, RawConn, ReqBody, Resp};

/// How long the proxy may take to bind (the binary: to print its startup line).
const STARTUP: Duration = Duration::from_secs(20);

/// Set (to anything) to make [`Proxy::start`] spawn the binary as well: the
/// whole suite against the real process, or a timing comparison.
const SPAWN_ALL: &str = "CCNPROXY_TEST_SPAWN_ALL";

/// The flags every proxy under test starts with (`args` come after and win).
const BASE_ARGS: [&str; 8] = [
    "-l",
    "127.0.0.1",
    "-p",
    "0",
    "--access-log-dir",
    "stdout",
    "--access-log-format",
    "json",
];

/// A running proxy: in this process (stopped when dropped) or a child
/// process (killed when dropped).
pub struct Proxy {
    runner: Runner,
    addr: SocketAddr,
    /// Known at start for an in-process proxy; read from stderr otherwise.
    admin_addr: Option<SocketAddr>,
    stderr: Arc<Mutex<String>>,
    logs: tokio::sync::Mutex<mpsc::UnboundedReceiver<Value>>,
}

enum Runner {
    Process {
        child: tokio::sync::Mutex<Child>,
        pid: u32,
    },
    InProcess(InProcess),
}

/// Where an in-process proxy runs.
enum Where {
    /// A runtime of its own on a thread of its own.
    OwnRuntime,
    /// A task on the caller's runtime.
    ThisRuntime,
}

/// Stops an in-process proxy at once (on drop), as killing a process would.
enum Stop {
    Thread(oneshot::Sender<()>),
    Task(tokio::task::AbortHandle),
}

/// The controls of a proxy running in this process.
struct InProcess {
    /// Asks for the graceful shutdown SIGTERM would start.
    shutdown: Mutex<Option<oneshot::Sender<()>>>,
    stop: Option<Stop>,
    /// Resolves with `run`'s result (`Err` carries the one-line reason).
    exited: tokio::sync::Mutex<Exit>,
}

enum Exit {
    Running(oneshot::Receiver<Result<(), String>>),
    Exited(ExitStatus),
}

impl Proxy {
    /// Starts the proxy in this process with `-l 127.0.0.1 -p 0
    /// --access-log-dir stdout --access-log-format json` and `args`; panics
    /// (with its output) if it does not start.
    pub async fn start<I, S>(args: I) -> Proxy
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        match Proxy::try_start(args).await {
            Ok(proxy) => proxy,
            Err(err) => panic!("{err}"),
        }
    }

    /// Like [`Proxy::start`], returning the reason on failure.
    pub async fn try_start<I, S>(args: I) -> Result<Proxy, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let args: Vec<String> = args.into_iter().map(|s| s.as_ref().to_owned()).collect();
        if std::env::var_os(SPAWN_ALL).is_some() {
            return Proxy::try_spawn_binary(args).await;
        }
        Proxy::start_in_process(args, Where::OwnRuntime).await
    }

    /// Starts the proxy as a task on the caller's runtime, for tests with
    /// `#[tokio::test(start_paused = true)]`: its timers (read timeout,
    /// idle timeouts, …) then run on the test's paused clock, which moves
    /// only when every task on the runtime waits. The access-log writer is a
    /// thread outside that clock: such a test should not wait for log lines.
    pub async fn start_on_this_runtime<I, S>(args: I) -> Proxy
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let args: Vec<String> = args.into_iter().map(|s| s.as_ref().to_owned()).collect();
        match Proxy::start_in_process(args, Where::ThisRuntime).await {
            Ok(proxy) => proxy,
            Err(err) => panic!("{err}"),
        }
    }

    async fn start_in_process(args: Vec<String>, place: Where) -> Result<Proxy, String> {
        let fail = |why: String| format!("ccnproxy {args:?} did not start: {why}");
        let argv = std::iter::once("ccnproxy")
            .chain(BASE_ARGS)
            .chain(args.iter().map(String::as_str))
            .map(std::ffi::OsString::from);
        let parsed = cli::parse_args(argv).map_err(|e| fail(e.to_string()))?;
        let (log_level, log_format) = (parsed.log_level.clone(), parsed.log_format.clone());
        let mut config = parsed.into_config().map_err(|e| fail(e.to_string()))?;
        let (log_tx, log_rx) = mpsc::unbounded_channel();
        if config.access_log.destination == LogDestination::Stdout {
            config.access_log.destination = LogDestination::Writer(LogWriter::new(LineSink {
                partial: Vec::new(),
                logs: log_tx,
            }));
        }

        let stderr = Arc::new(Mutex::new(String::new()));
        let dispatch = capture_tracing(&stderr, &log_level, &log_format);
        let (ready_tx, ready_rx) = oneshot::channel();
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let (exit_tx, exit_rx) = oneshot::channel();
        let out = stderr.clone();
        let serve = async move {
            let shutdown = async {
                let _ = shutdown_rx.await;
            };
            let ready = move |bound: ccnproxy::Bound| {
                let _ = ready_tx.send(bound);
            };
            let result = ccnproxy::run_reporting(config, shutdown, ready)
                .await
                .map_err(|e| error_chain(&e));
            if let Err(e) = &result {
                out.lock().unwrap().push_str(&format!("ccnproxy: {e}\n"));
            }
            let _ = exit_tx.send(result);
        };
        let stop = match place {
            Where::OwnRuntime => {
                let runtime = {
                    let dispatch = dispatch.clone();
                    tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .thread_name("ccnproxy-under-test")
                        .enable_all()
                        .on_thread_start(move || {
                            // The guard would restore the previous default;
                            // these threads live only as long as the proxy.
                            std::mem::forget(tracing::dispatcher::set_default(&dispatch));
                        })
                        .build()
                        .map_err(|e| fail(format!("building its runtime: {e}")))?
                };
                let (kill_tx, kill_rx) = oneshot::channel::<()>();
                std::thread::Builder::new()
                    .name("ccnproxy-under-test".to_owned())
                    .spawn(move || {
                        runtime.block_on(async {
                            tokio::select! {
                                () = serve => {}
                                _ = kill_rx => {}
                            }
                        });
                        // Killed, or done: drop the tasks left without waiting.
                        runtime.shutdown_background();
                    })
                    .map_err(|e| fail(format!("spawning its thread: {e}")))?;
                Stop::Thread(kill_tx)
            }
            Where::ThisRuntime => {
                use tracing::instrument::WithSubscriber as _;
                Stop::Task(tokio::spawn(serve.with_subscriber(dispatch)).abort_handle())
            }
        };

        let inner = InProcess {
            shutdown: Mutex::new(Some(shutdown_tx)),
            stop: Some(stop),
            exited: tokio::sync::Mutex::new(Exit::Running(exit_rx)),
        };
        let bound = match tokio::time::timeout(STARTUP, ready_rx).await {
            Ok(Ok(bound)) => bound,
            Ok(Err(_)) => {
                let mut exited = inner.exited.lock().await;
                let why = match &mut *exited {
                    Exit::Running(rx) => match rx.await {
                        Ok(Err(e)) => e,
                        _ => "it stopped before binding".to_owned(),
                    },
                    Exit::Exited(_) => unreachable!("set only by wait_exit"),
                };
                return Err(fail(why));
            }
            Err(_) => return Err(fail(format!("not bound within {STARTUP:?}"))),
        };
        // What the binary prints, for tests that read it.
        let version = env!("CARGO_PKG_VERSION");
        let mut lines = format!("ccnproxy {version} listening on {}\n", bound.addr);
        if let Some(admin) = bound.admin_addr {
            lines.push_str(&format!("ccnproxy {version} admin listening on {admin}\n"));
        }
        stderr.lock().unwrap().insert_str(0, &lines);
        Ok(Proxy {
            runner: Runner::InProcess(inner),
            addr: bound.addr,
            admin_addr: bound.admin_addr,
            stderr,
            logs: tokio::sync::Mutex::new(log_rx),
        })
    }

    /// Starts the real binary with the flags of [`Proxy::start`]; for tests
    /// of signals, exit codes, the pid file, the process's memory or its
    /// output streams. Panics (with its stderr) if it does not print
    /// `listening on ADDR` within 20 s.
    pub async fn spawn_binary<I, S>(args: I) -> Proxy
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        match Proxy::try_spawn_binary(args).await {
            Ok(proxy) => proxy,
            Err(err) => panic!("{err}"),
        }
    }

    /// Like [`Proxy::spawn_binary`], returning the reason (with stderr) on
    /// failure.
    pub async fn try_spawn_binary<I, S>(args: I) -> Result<Proxy, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let args: Vec<String> = args.into_iter().map(|s| s.as_ref().to_owned()).collect();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccnproxy"));
        cmd.args(BASE_ARGS)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Only the flags above configure the proxy under test.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("CCNPROXY_") {
                cmd.env_remove(name);
            }
        }
        let mut child = cmd.spawn().map_err(|e| format!("spawning ccnproxy: {e}"))?;
        let pid = child.id().expect("child pid");

        let stderr = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(drain_stderr(
            child.stderr.take().expect("piped stderr"),
            stderr.clone(),
            ready_tx,
        ));
        let (log_tx, log_rx) = mpsc::unbounded_channel();
        tokio::spawn(drain_stdout(
            child.stdout.take().expect("piped stdout"),
            log_tx,
        ));

        let fail = |why: String, child: &mut Child| {
            let status = child.try_wait().ok().flatten();
            format!(
                "ccnproxy {args:?} did not start: {why}; exit status {status:?}\n--- stderr ---\n{}",
                stderr.lock().unwrap()
            )
        };
        let addr = match tokio::time::timeout(STARTUP, ready_rx).await {
            Ok(Ok(addr)) => addr,
            Ok(Err(_)) => {
                // stderr closed: wait (bounded) for the exit status.
                let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                return Err(fail(
                    "stderr closed before the startup line".into(),
                    &mut child,
                ));
            }
            Err(_) => {
                return Err(fail(
                    format!("no startup line within {STARTUP:?}"),
                    &mut child,
                ));
            }
        };
        Ok(Proxy {
            runner: Runner::Process {
                child: tokio::sync::Mutex::new(child),
                pid,
            },
            addr,
            admin_addr: None,
            stderr,
            logs: tokio::sync::Mutex::new(log_rx),
        })
    }

    /// Whether this proxy is the real binary ([`Proxy::spawn_binary`]).
    pub fn is_binary(&self) -> bool {
        matches!(self.runner, Runner::Process { .. })
    }

    /// The admin address, when the in-process proxy reported it at start.
    pub(super) fn bound_admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The id of the process the proxy runs in: the child of
    /// [`Proxy::spawn_binary`], or this test process (what an in-process
    /// proxy writes to `--pid-file`). Measure memory only on the binary.
    pub fn pid(&self) -> u32 {
        match &self.runner {
            Runner::Process { pid, .. } => *pid,
            Runner::InProcess(_) => std::process::id(),
        }
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The next access-log record (a JSON object), within [`TIMEOUT`].
    pub async fn next_log(&self) -> Value {
        let line = self.next_log_within(TIMEOUT).await.unwrap_or_else(|| {
            panic!(
                "no access-log line within {TIMEOUT:?}\n--- proxy stderr ---\n{}",
                self.stderr()
            )
        });
        assert!(
            line.is_object(),
            "the access-log line is not a JSON object (--access-log-format json): {line}"
        );
        line
    }

    /// The next access-log record, or `None` if none arrives within `limit`
    /// (or stdout closed). A stdout line that is not JSON comes back as a
    /// JSON string.
    pub async fn next_log_within(&self, limit: Duration) -> Option<Value> {
        let mut logs = self.logs.lock().await;
        tokio::time::timeout(limit, logs.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next `n` access-log records.
    pub async fn logs_until(&self, n: usize) -> Vec<Value> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.next_log().await);
        }
        out
    }

    /// Skips access-log records until one satisfies `pred` (at most 1000
    /// records, each within [`TIMEOUT`]).
    pub async fn log_where(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let mut skipped = Vec::new();
        for _ in 0..1000 {
            let Some(line) = self.next_log_within(TIMEOUT).await else {
                break;
            };
            if pred(&line) {
                return line;
            }
            skipped.push(line);
        }
        panic!(
            "no access-log line where {what}; skipped {skipped:#?}\n--- proxy stderr ---\n{}",
            self.stderr()
        )
    }

    /// Sends SIGTERM. In process: starts the graceful shutdown that SIGTERM
    /// starts in the binary (`run`'s shutdown future resolves).
    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Sends SIGINT (in process: like [`Proxy::sigterm`]).
    pub fn sigint(&self) {
        self.signal("INT");
    }

    /// Sends SIGHUP (the access log reopens its file). Only the binary: in
    /// process the signal would reach the whole test process.
    pub fn sighup(&self) {
        assert!(
            self.is_binary(),
            "SIGHUP goes to a process: start the proxy with Proxy::spawn_binary"
        );
        self.signal("HUP");
    }

    fn signal(&self, name: &str) {
        match &self.runner {
            Runner::Process { pid, .. } => {
                let status = std::process::Command::new("kill")
                    .args([&format!("-{name}"), &pid.to_string()])
                    .status()
                    .expect("running kill");
                assert!(status.success(), "kill -{name} {pid} failed");
            }
            Runner::InProcess(inner) => {
                if let Some(tx) = inner.shutdown.lock().unwrap().take() {
                    let _ = tx.send(());
                }
            }
        }
    }

    /// Waits (at most 15 s) for the process to exit (in process: for `run`
    /// to return; exit status 0 for `Ok`, 2 for an error, as `main` does).
    pub async fn wait_exit(&self) -> ExitStatus {
        const LIMIT: Duration = Duration::from_secs(15);
        let waited = match &self.runner {
            Runner::Process { child, .. } => {
                let mut child = child.lock().await;
                tokio::time::timeout(LIMIT, child.wait())
                    .await
                    .map(|status| status.expect("waiting for ccnproxy"))
            }
            Runner::InProcess(inner) => {
                let mut exited = inner.exited.lock().await;
                match &mut *exited {
                    Exit::Exited(status) => Ok(*status),
                    Exit::Running(rx) => tokio::time::timeout(LIMIT, rx).await.map(|result| {
                        let code = if matches!(result, Ok(Ok(()))) { 0 } else { 2 };
                        let status = ExitStatus::from_raw(code << 8);
                        *exited = Exit::Exited(status);
                        status
                    }),
                }
            }
        };
        waited.unwrap_or_else(|_| {
            panic!(
                "ccnproxy did not exit within {LIMIT:?}\n--- stderr ---\n{}",
                self.stderr()
            )
        })
    }

    /// Whether the process has exited (in process: whether `run` returned).
    pub async fn has_exited(&self) -> bool {
        match &self.runner {
            Runner::Process { child, .. } => {
                child.lock().await.try_wait().expect("try_wait").is_some()
            }
            Runner::InProcess(inner) => {
                let mut exited = inner.exited.lock().await;
                match &mut *exited {
                    Exit::Exited(_) => true,
                    Exit::Running(rx) => match rx.try_recv() {
                        Err(oneshot::error::TryRecvError::Empty) => false,
                        Ok(result) => {
                            let code = if result.is_ok() { 0 } else { 2 };
                            *exited = Exit::Exited(ExitStatus::from_raw(code << 8));
                            true
                        }
                        Err(oneshot::error::TryRecvError::Closed) => true,
                    },
                }
            }
        }
    }

    /// `GET path` with `Host: host`, on a fresh connection.
    pub async fn get(&self, host: &str, path: &str) -> Resp {
        self.request("GET", host, path, &[], Bytes::new()).await
    }

    /// One request on a fresh connection; panics on a transport error.
    pub async fn request(
        &self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        let body: Bytes = body.into();
        let body = if body.is_empty() && matches!(method, "GET" | "HEAD") {
            client::empty()
        } else {
            client::full(body)
        };
        self.send(client::request(method, host, path, headers, body))
            .await
    }

    /// Sends a prepared request on a fresh connection; panics on a transport
    /// error (with the proxy's stderr).
    pub async fn send(&self, req: Request) -> Resp {
        let mut client = self.client().await;
        match client.send(req).await {
            Ok(resp) => resp,
            Err(err) => panic!(
                "request through the proxy failed: {err:?}\n--- proxy stderr ---\n{}",
                self.stderr()
            ),
        }
    }

    /// A keep-alive HTTP/1.1 connection to the proxy.
    pub async fn client(&self) -> Client {
        Client::connect(self.addr).await
    }

    /// A raw TCP connection to the proxy.
    pub async fn raw(&self) -> RawConn {
        RawConn::connect(self.addr).await
    }

    /// Writes `bytes` on a fresh connection and returns everything the proxy
    /// sends until it closes (send `Connection: close`).
    pub async fn raw_exchange(&self, bytes: &[u8]) -> String {
        let mut conn = self.raw().await;
        conn.write(bytes).await.expect("writing the raw request");
        String::from_utf8_lossy(&conn.read_to_end().await).into_owned()
    }
}

/// The request type [`Proxy::send`] takes.
pub type Request = http::Request<ReqBody>;

impl Drop for Proxy {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let which = match &self.runner {
                Runner::Process { pid, .. } => format!("pid {pid}"),
                Runner::InProcess(_) => "in process".to_owned(),
            };
            eprintln!(
                "--- ccnproxy stderr ({which}) ---\n{}",
                self.stderr.lock().unwrap()
            );
        }
        if let Runner::InProcess(inner) = &mut self.runner {
            match inner.stop.take() {
                Some(Stop::Thread(kill)) => {
                    let _ = kill.send(());
                }
                Some(Stop::Task(task)) => task.abort(),
                None => {}
            }
        }
    }
}

/// `tracing` output of an in-process proxy, into its "stderr" buffer, with
/// the binary's filter (`RUST_LOG`, else `ccnproxy=LEVEL,warn`).
fn capture_tracing(buf: &Arc<Mutex<String>>, level: &str, format: &str) -> tracing::Dispatch {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(format!("ccnproxy={level},warn")))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let buf = buf.clone();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(move || Capture(buf.clone()));
    if format == "json" {
        tracing::Dispatch::new(builder.json().finish())
    } else {
        tracing::Dispatch::new(builder.finish())
    }
}

/// Appends what `tracing` writes to a shared string.
struct Capture(Arc<Mutex<String>>);

impl std::io::Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap()
            .push_str(&String::from_utf8_lossy(bytes));
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The in-process access-log destination: whole lines, each parsed as
/// [`drain_stdout`] parses the binary's stdout.
struct LineSink {
    partial: Vec<u8>,
    logs: mpsc::UnboundedSender<Value>,
}

impl std::io::Write for LineSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.partial.extend_from_slice(bytes);
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            if let Some(value) = log_value(&line) {
                // The test stopped reading; the line has nowhere to go.
                let _ = self.logs.send(value);
            }
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One access-log line as a JSON value; a line that is not JSON comes back
/// as a JSON string; `None` for a blank line.
fn log_value(line: &[u8]) -> Option<Value> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end();
    if text.is_empty() {
        return None;
    }
    Some(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())))
}

/// `err` and its sources on one line, as `main` prints a startup error.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// Parses the address out of `... listening on 127.0.0.1:PORT`.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

async fn drain_stderr(
    stderr: impl AsyncRead + Unpin,
    buf: Arc<Mutex<String>>,
    ready: tokio::sync::oneshot::Sender<SocketAddr>,
) {
    let mut ready = Some(ready);
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        buf.lock().unwrap().push_str(&text);
        if ready.is_some()
            && let Some(addr) = listening_addr(&text)
        {
            let _ = ready.take().expect("checked").send(addr);
        }
    }
}

async fn drain_stdout(stdout: impl AsyncRead + Unpin, logs: mpsc::UnboundedSender<Value>) {
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let Some(value) = log_value(&line) else {
            continue;
        };
        if logs.send(value).is_err() {
            return;
        }
    }
}

/// Waits at most `limit` for `fut`, panicking with `what` and the proxy's
/// stderr.
pub async fn within_proxy<F: Future>(
    proxy: &Proxy,
    what: &str,
    limit: Duration,
    fut: F,
) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!(
            "timed out after {limit:?}: {what}\n--- proxy stderr ---\n{}",
            proxy.stderr()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::listening_addr;

    #[test]
    fn parses_startup_line() {
        assert_eq!(
            listening_addr("ccnproxy 0.1.0 listening on 127.0.0.1:43215\n"),
            Some("127.0.0.1:43215".parse().unwrap())
        );
        assert_eq!(listening_addr("starting"), None);
    }
}
