//! Debian's HAProxy as a keep-alive TLS proxy to one origin, the second
//! peer beside nginx: `http-reuse always` keeps upstream connections, ALPN
//! `h2` toward an HTTP/2 origin, `http/1.1` toward the other. Stopped when
//! dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Child;

use super::Res;
use super::procs::{command, free_port, peer_workers, signal};

/// A running HAProxy (one process, [`peer_workers`] threads).
pub struct Haproxy {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its process id.
    pub pid: u32,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// The haproxy binary, if installed.
    pub fn binary() -> Option<PathBuf> {
        let mut candidates = vec![PathBuf::from("/usr/sbin/haproxy")];
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path).map(|d| d.join("haproxy")));
        }
        candidates.into_iter().find(|p| p.is_file())
    }

    /// `HAProxy 2.6.12`, from `haproxy -v`.
    pub fn version(binary: &Path) -> String {
        std::process::Command::new(binary)
            .arg("-v")
            .output()
            .ok()
            .and_then(|o| {
                let out = String::from_utf8_lossy(&o.stdout).into_owned();
                let first = out.lines().next()?.to_owned();
                let mut words = first.split_whitespace();
                Some(format!("{} {}", words.next()?, words.nth(1)?))
            })
            .map(|v| v.split('-').next().unwrap_or_default().to_owned())
            .unwrap_or_else(|| "HAProxy".to_owned())
    }

    /// Starts HAProxy proxying 127.0.0.1:any to `https://origin` (TLS
    /// verified for `name` against `ca_file`), speaking HTTP/2 upstream when
    /// `h2`.
    pub async fn start(
        binary: &Path,
        origin: SocketAddr,
        name: &str,
        ca_file: &Path,
        h2: bool,
    ) -> Res<Haproxy> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let alpn = if h2 { "h2,http/1.1" } else { "http/1.1" };
        let conf = format!(
            r#"global
    nbthread {threads}
    maxconn 8000
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    option http-keep-alive
    http-reuse always
frontend front
    bind 127.0.0.1:{port}
    default_backend origin
backend origin
    http-request set-header Host {name}
    server origin {origin} ssl verify required ca-file {ca} sni str({name}) verifyhost {name} alpn {alpn} pool-max-conn 64
"#,
            threads = peer_workers(),
            ca = ca_file.display(),
        );
        let conf_path = dir.path().join("haproxy.cfg");
        std::fs::write(&conf_path, conf)?;
        let mut child = command(binary)
            .arg("-db")
            .arg("-f")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().ok_or("haproxy exited at once")?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        for _ in 0..250 {
            if let Some(status) = child.try_wait()? {
                let mut err = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    use tokio::io::AsyncReadExt;
                    let _ = stderr.read_to_string(&mut err).await;
                }
                return Err(format!("haproxy exited ({status}): {}", err.trim()).into());
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                // Its warnings go nowhere from here on; a full pipe must
                // not stall it.
                if let Some(stderr) = child.stderr.take() {
                    tokio::spawn(async move {
                        let mut sink = tokio::io::sink();
                        let mut stderr = stderr;
                        let _ = tokio::io::copy(&mut stderr, &mut sink).await;
                    });
                }
                return Ok(Haproxy {
                    addr,
                    pid,
                    child,
                    _dir: dir,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err("haproxy did not start within 5 s".into())
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        signal("-TERM", self.pid);
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        signal("-KILL", self.pid);
    }
}
