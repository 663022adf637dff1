//! The real `ccnproxy` binary, started on 127.0.0.1 port 0 with a JSON
//! access log on stdout. Its startup line on stderr gives the address; stderr
//! is kept in a buffer for failure messages; stdout lines are parsed as
//! access-log records.

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::TIMEOUT;
use super::client::{self, Client, RawConn, ReqBody, Resp};

/// How long the binary may take to print its startup line.
const STARTUP: Duration = Duration::from_secs(20);

/// A running proxy process (killed when dropped).
pub struct Proxy {
    child: tokio::sync::Mutex<Child>,
    pid: u32,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    logs: tokio::sync::Mutex<mpsc::UnboundedReceiver<Value>>,
}

impl Proxy {
    /// Starts the binary with `-l 127.0.0.1 -p 0 --access-log-dir stdout
    /// --access-log-format json` and `args`; panics (with its stderr) if it
    /// does not print `listening on ADDR` within 20 s.
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

    /// Like [`Proxy::start`], returning the reason (with stderr) on failure.
    pub async fn try_start<I, S>(args: I) -> Result<Proxy, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let args: Vec<String> = args.into_iter().map(|s| s.as_ref().to_owned()).collect();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccnproxy"));
        cmd.args([
            "-l",
            "127.0.0.1",
            "-p",
            "0",
            "--access-log-dir",
            "stdout",
            "--access-log-format",
            "json",
        ])
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
            child: tokio::sync::Mutex::new(child),
            pid,
            addr,
            stderr,
            logs: tokio::sync::Mutex::new(log_rx),
        })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
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

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Sends SIGINT.
    pub fn sigint(&self) {
        self.signal("INT");
    }

    fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.pid.to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{name} {} failed", self.pid);
    }

    /// Waits (at most 15 s) for the process to exit.
    pub async fn wait_exit(&self) -> ExitStatus {
        let mut child = self.child.lock().await;
        match tokio::time::timeout(Duration::from_secs(15), child.wait()).await {
            Ok(status) => status.expect("waiting for ccnproxy"),
            Err(_) => panic!(
                "ccnproxy did not exit within 15 s\n--- stderr ---\n{}",
                self.stderr()
            ),
        }
    }

    /// Whether the process has exited.
    pub async fn has_exited(&self) -> bool {
        self.child
            .lock()
            .await
            .try_wait()
            .expect("try_wait")
            .is_some()
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
            eprintln!(
                "--- ccnproxy stderr (pid {}) ---\n{}",
                self.pid,
                self.stderr.lock().unwrap()
            );
        }
    }
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
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if text.is_empty() {
            continue;
        }
        let value = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()));
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
