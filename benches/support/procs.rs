//! The processes under test: ccnproxy (the binary Cargo built for this
//! bench) and, when installed, Debian's nginx as a keepalive TLS proxy; plus
//! what `/proc` says about them: CPU ticks (utime + stime), VmRSS, VmHWM.
//! Every process started here is stopped when its handle drops.
//!
//! With 2 or more CPUs and `taskset` installed (and `BENCH_PIN` not `0`),
//! every proxy runs on CPU 0 and the bench (clients, origins) keeps to the
//! others ([`pin_bench`]), so a proxy's CPU is not shared with its load.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::Res;

/// Lines of a proxy's stderr kept for the report.
const STDERR_LINES_KEPT: usize = 20;

/// The CPU the proxies run on when pinned.
const PROXY_CPU: usize = 0;

/// Whether proxies are pinned to [`PROXY_CPU`] (see the module docs).
pub fn pinned() -> bool {
    static PINNED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PINNED.get_or_init(|| {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let wanted = std::env::var_os("BENCH_PIN").is_none_or(|v| v != "0");
        let taskset = std::process::Command::new("taskset")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        wanted && cpus >= 2 && taskset
    })
}

/// Moves the bench process (its threads, and what it spawns later unless
/// [`command`] pins it) off [`PROXY_CPU`]; a no-op when not [`pinned`].
pub fn pin_bench() {
    if !pinned() {
        return;
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let others: Vec<String> = (0..cpus)
        .filter(|&c| c != PROXY_CPU)
        .map(|c| c.to_string())
        .collect();
    let _ = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &others.join(",")])
        .arg(std::process::id().to_string())
        .stdout(Stdio::null())
        .status();
}

/// `program`, run on [`PROXY_CPU`] when [`pinned`] (`taskset` execs it,
/// so the child's pid is the program's).
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    if pinned() {
        let mut cmd = Command::new("taskset");
        cmd.arg("-c").arg(PROXY_CPU.to_string()).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// Worker processes or threads a peer (nginx, HAProxy) gets: one per CPU
/// it may use.
pub fn peer_workers() -> usize {
    if pinned() {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// A running ccnproxy; killed when dropped.
pub struct Proxy {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its process id.
    pub pid: u32,
    stderr: Arc<Mutex<Vec<String>>>,
    child: Child,
}

impl Proxy {
    /// Starts `ccnproxy ARGS` and waits for its `listening on ADDR` line.
    pub async fn start(args: &[String]) -> Res<Proxy> {
        let mut child = command(env!("CARGO_BIN_EXE_ccnproxy"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().ok_or("ccnproxy exited at once")?;
        let mut lines = BufReader::new(child.stderr.take().ok_or("no stderr")?).lines();
        let startup = async {
            while let Some(line) = lines.next_line().await? {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    return Ok::<_, Box<dyn std::error::Error + Send + Sync>>(addr.parse()?);
                }
            }
            Err("ccnproxy exited before listening".into())
        };
        let addr = tokio::time::timeout(Duration::from_secs(10), startup)
            .await
            .map_err(|_| "ccnproxy did not start within 10 s")??;
        // Keep draining stderr so the proxy never blocks on a full pipe; the
        // last lines (warnings) go into the report.
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let kept = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut kept = kept.lock().expect("stderr lock");
                if kept.len() == STDERR_LINES_KEPT {
                    kept.remove(0);
                }
                kept.push(line);
            }
        });
        Ok(Proxy {
            addr,
            pid,
            stderr,
            child,
        })
    }

    /// Kills the proxy and waits until it is gone.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    /// What the proxy wrote to stderr after its startup line (last lines).
    pub fn stderr_tail(&self) -> Vec<String> {
        self.stderr.lock().expect("stderr lock").clone()
    }
}

/// nginx as a keepalive TLS reverse proxy to one origin; stopped (master
/// and workers) when dropped.
pub struct Nginx {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Master and worker process ids.
    pub pids: Vec<u32>,
    child: Child,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// The nginx binary, if installed.
    pub fn binary() -> Option<PathBuf> {
        let mut candidates = vec![PathBuf::from("/usr/sbin/nginx")];
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path).map(|d| d.join("nginx")));
        }
        candidates.into_iter().find(|p| p.is_file())
    }

    /// `nginx -v`, one line.
    pub fn version(binary: &Path) -> String {
        std::process::Command::new(binary)
            .arg("-v")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
            .unwrap_or_else(|_| "nginx".to_owned())
    }

    /// Starts nginx ([`peer_workers`] workers) proxying 127.0.0.1:any to
    /// `https://origin` with TLS verified for `name` against `ca_file`, and
    /// up to 64 idle upstream connections kept per worker.
    pub async fn start(
        binary: &Path,
        origin: SocketAddr,
        name: &str,
        ca_file: &Path,
    ) -> Res<Nginx> {
        let dir = tempfile::tempdir()?;
        let d = dir.path().display();
        let port = free_port()?;
        let is_root = status_value(std::process::id(), "Uid:").is_some_and(|uid| uid == 0);
        // Started as root, nginx's workers would become `nobody`, who cannot
        // write the private temporary folder.
        let user = if is_root { "user root;" } else { "" };
        let conf = format!(
            r#"{user}
worker_processes {workers};
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 1000000;
    upstream origin {{
        server {origin};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass https://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host {name};
            proxy_ssl_server_name on;
            proxy_ssl_name {name};
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate {ca};
            proxy_ssl_session_reuse on;
        }}
    }}
}}
"#,
            ca = ca_file.display(),
            workers = peer_workers(),
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let error_log = dir.path().join("error.log");
        let mut child = command(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(&error_log)
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let master = child.id().ok_or("nginx exited at once")?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        // Ready when it accepts and both workers exist; bounded wait.
        for _ in 0..250 {
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(&error_log).unwrap_or_default();
                return Err(format!("nginx exited ({status}): {}", log.trim()).into());
            }
            let workers = children(master);
            if workers.len() >= peer_workers() && tokio::net::TcpStream::connect(addr).await.is_ok()
            {
                let mut pids = vec![master];
                pids.extend(workers);
                return Ok(Nginx {
                    addr,
                    pids,
                    child,
                    dir,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err("nginx did not start within 5 s".into())
    }
}

impl Nginx {
    /// The last lines of nginx's error log.
    pub fn error_log_tail(&self, lines: usize) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..]
            .iter()
            .map(|l| (*l).to_owned())
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM to the master stops the workers too; a SIGKILL (what
        // kill_on_drop sends) would orphan them. Bounded wait, then force.
        signal("-TERM", self.pids[0]);
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for &pid in &self.pids[1..] {
            if comm(pid).as_deref() == Some("nginx") {
                signal("-KILL", pid);
            }
        }
    }
}

pub fn signal(sig: &str, pid: u32) {
    let _ = std::process::Command::new("kill")
        .arg(sig)
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

/// A port free right now on 127.0.0.1 (for nginx, which cannot listen on
/// port 0 and say where it landed).
pub fn free_port() -> Res<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The fields of `/proc/PID/stat` after the command name.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

pub fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim().to_owned())
}

/// User + system CPU time of a process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    // After ")": state ppid ... utime is field 14 of the line, stime 15.
    let fields = stat_fields(pid)?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 if that fails).
pub fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// The first number of a `/proc/PID/status` line (`VmRSS:` and `VmHWM:` are
/// in KiB; `Uid:` starts with the real uid).
pub fn status_value(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// Starts `pid`'s peak RSS (`VmHWM`) over from its current RSS (writes 5
/// to `/proc/PID/clear_refs`); `false` where that is not allowed.
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// Processes whose parent is `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| {
            stat_fields(p)
                .and_then(|f| f.get(1)?.parse::<u32>().ok())
                .is_some_and(|ppid| ppid == pid)
        })
        .collect()
}
