//! The promises README.md and docs/reference.md make about the binary,
//! checked against the binary, so the docs cannot drift from it.
//!
//! - "Quick start on one machine": its `sh` block, read from README.md
//!   itself, runs command by command against the real `ccnproxy` (in place
//!   of `cargo run --release --`), in a scratch directory (in place of the
//!   one the block makes). Each server the block starts in the background
//!   gets port 0 in place of its own; it is ready when it says where it
//!   listens, and that port then replaces the block's number in the
//!   commands after it. Every other command must exit 0, and every `curl`
//!   must print the file its URL names. The proxy's access log must then
//!   show one line per request, the second on a reused connection, as the
//!   text under the block says.
//! - docs/reference.md "Flags": the tables name exactly the long flags `--help` shows, with
//!   the same short forms, and a table's default (when it is one literal
//!   value) is `--help`'s. The flags that are not in `--help` on purpose and
//!   the defaults the tables put in words are listed here, each with why.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use clap::CommandFactory as _;

use super::support::TIMEOUT;

const README: &str = include_str!("../../README.md");
/// Where every flag is listed.
const REFERENCE: &str = include_str!("../../docs/reference.md");
/// Where the subcommands are shown in use.
const GUIDE: &str = include_str!("../../docs/guide.md");

/// The README is the front page; the manual is `docs/`.
const README_MAX_LINES: usize = 250;
const BINARY: &str = env!("CARGO_BIN_EXE_ccnproxy");

/// How long a background server may take to say where it listens.
const STARTUP: Duration = Duration::from_secs(30);

/// How the quick start runs the proxy; the test runs the built binary.
const CARGO_RUN: &str = "cargo run --release --";

/// Flags clap knows but `--help` hides, and why they are not in the README.
const HIDDEN: &[(&str, &str)] = &[(
    "access-log-rotate-secs",
    "a test aid (rotation in seconds), not an operator's setting",
)];

/// Long flags in `--help` that the tables leave out, and why.
const NOT_IN_TABLES: &[(&str, &str)] = &[("help", "clap's own; every program has it")];

/// Flags whose table default is put in words rather than `--help`'s value.
const DEFAULT_IN_WORDS: &[(&str, &str)] = &[
    (
        "access-log-dir",
        "the empty default is shown as where it goes: stderr",
    ),
    ("rate-limit", "0 is shown as off"),
    ("rate-burst", "shares --rate-limit's row: off"),
    ("stsize", "shows chocon's default next to ccnproxy's"),
];

#[test]
fn quick_start_runs_as_written() {
    let block = sh_block(section(README, "Quick start on one machine"));
    let commands = commands(block);
    let scratch = tempfile::tempdir().expect("scratch directory");
    let scratch = scratch.path().to_str().expect("utf-8 temp path").to_owned();
    let made = commands
        .iter()
        .find_map(|c| c.strip_prefix("mkdir -p "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the quick start makes its directory with `mkdir -p DIR`")
        .to_owned();

    // (the block's port, the port its server got)
    let mut ports: Vec<(String, String)> = Vec::new();
    let mut servers: Vec<Process> = Vec::new();
    let mut proxy = None;
    let mut requests = 0;
    for command in &commands {
        let mut command = command.replace(&made, &scratch);
        for (from, to) in &ports {
            command = replace_number(&command, from, to);
        }
        if let Some(background) = command.strip_suffix('&') {
            let (command, port, is_proxy) = on_port_zero(background.trim());
            let server = Process::start(&command);
            let addr = server.wait_for(STARTUP, "line saying where it listens", listening_on);
            assert!(
                addr.ip().is_loopback(),
                "`{command}` listens on {addr}: the quick start must listen on loopback only"
            );
            ports.push((port, addr.port().to_string()));
            if is_proxy {
                proxy = Some(servers.len());
            }
            servers.push(server);
            continue;
        }
        let mut run = Process::start(&command);
        let status = run.finish(TIMEOUT);
        assert!(
            status.success(),
            "`{command}` failed ({status}); its output:\n{}",
            run.output()
        );
        if command.starts_with("curl ") {
            requests += 1;
            let want = served_file(&command, &scratch);
            assert_eq!(
                run.stdout().trim_end(),
                want.trim_end(),
                "`{command}` printed something else than the file it asks for; stderr:\n{}",
                run.output()
            );
        }
    }
    let proxy = &servers[proxy.expect("the quick start starts the proxy with `cargo run`")];
    assert!(
        requests >= 2,
        "the quick start sends at least two requests (the text under it speaks of the second)"
    );
    let mut log = Vec::new();
    while log.len() < requests {
        log.push(proxy.wait_for(TIMEOUT, "access-log line", |line| {
            line.contains(" reused=").then(|| line.to_owned())
        }));
    }
    assert!(
        log[0].contains(" reused=false "),
        "first request: {}",
        log[0]
    );
    for claim in [" reused=true ", " connect_ms=0.000 "] {
        assert!(
            log[1].contains(claim),
            "the README says the second request shows `{}`: {}",
            claim.trim(),
            log[1]
        );
    }
}

#[test]
fn flags_tables_match_help() {
    let out = Command::new(BINARY)
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success(), "--help: {}", out.status);
    let help_text = String::from_utf8(out.stdout).expect("utf-8 help");
    let help = help_flags(&help_text);
    assert!(help.len() > 40, "read the flags of --help: {help:?}");
    let tables = table_flags(section(REFERENCE, "Flags"));
    let mut problems = Vec::new();

    let hidden: BTreeSet<String> = ccnproxy::config::cli::Args::command()
        .get_arguments()
        .filter(|a| a.is_hide_set())
        .filter_map(|a| a.get_long().map(str::to_owned))
        .collect();
    let listed: BTreeSet<String> = HIDDEN.iter().map(|(f, _)| (*f).to_owned()).collect();
    if hidden != listed {
        problems.push(format!(
            "hidden flags are {hidden:?}; HIDDEN here lists {listed:?} (say why each is hidden)"
        ));
    }
    for flag in &hidden {
        if help.contains_key(flag) || tables.contains_key(flag) {
            problems.push(format!(
                "--{flag} is hidden but shows in --help or the reference"
            ));
        }
    }

    for flag in help.keys() {
        let excused = NOT_IN_TABLES.iter().any(|(f, _)| f == flag);
        if !tables.contains_key(flag) && !excused {
            problems.push(format!(
                "--{flag} is in --help but not in the reference's Flags tables"
            ));
        }
    }
    for (flag, row) in &tables {
        let Some(helped) = help.get(flag) else {
            problems.push(format!(
                "--{flag} is in the reference's Flags tables but not in --help"
            ));
            continue;
        };
        if row.short != helped.short {
            problems.push(format!(
                "--{flag}: short form {:?} in the reference, {:?} in --help",
                row.short, helped.short
            ));
        }
        let in_words = DEFAULT_IN_WORDS.iter().any(|(f, _)| f == flag);
        match (&row.default, &helped.default) {
            (Some(table), Some(help)) if table != help => problems.push(format!(
                "--{flag}: default `{table}` in the reference, `{help}` in --help"
            )),
            (None, Some(help)) if !in_words => problems.push(format!(
                "--{flag}: --help's default `{help}` is not the reference's (one `value`), \
                 nor listed in DEFAULT_IN_WORDS"
            )),
            (Some(table), None) => problems.push(format!(
                "--{flag}: the reference gives default `{table}`, --help none"
            )),
            _ => {}
        }
    }
    for (flag, _) in DEFAULT_IN_WORDS.iter().chain(NOT_IN_TABLES) {
        if !help.contains_key(*flag) {
            problems.push(format!(
                "--{flag} is excused here but not in --help any more"
            ));
        }
    }

    for name in subcommands(&help_text) {
        let shown = format!("`ccnproxy {name}");
        if name != "help" && !README.contains(&shown) && !GUIDE.contains(&shown) {
            problems.push(format!(
                "subcommand `{name}` is in neither README nor docs/guide.md"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/reference.md and --help disagree:\n{}",
        problems.join("\n")
    );
}

#[test]
fn readme_is_a_front_page() {
    let lines = README.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines; at most {README_MAX_LINES}: move detail to docs/"
    );
}

/// Every relative link of README.md and docs/*.md names a file that exists.
#[test]
fn relative_links_resolve() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).expect("docs/") {
        let path = entry.expect("docs entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    let mut broken = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(page).expect("read page");
        let dir = page.parent().expect("a page is in a directory");
        for (at, _) in text.match_indices("](") {
            let rest = &text[at + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = rest[..end].split('#').next().unwrap_or_default();
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            if !dir.join(target).exists() {
                broken.push(format!("{}: {target}", page.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links to missing files:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_readers_parse_what_they_should() {
    assert_eq!(
        commands("# c\nmkdir -p /x && echo hi \\\n  > /x/i\n\n(a) &\n"),
        ["mkdir -p /x && echo hi > /x/i", "(a) &"]
    );
    assert_eq!(
        replace_number("-p 3000 127.0.0.1:3000 30000 :3000/", "3000", "41"),
        "-p 41 127.0.0.1:41 30000 :41/"
    );
    let help = help_flags(
        "  -p, --port <PORT>\n          Port [env: X=] [default: 3000]\n      --sign\n          Sign\n",
    );
    assert_eq!(help["port"].short, Some('p'));
    assert_eq!(help["port"].default.as_deref(), Some("3000"));
    assert_eq!(help["sign"].default, None);
    let rows = table_flags(
        "| flag | default | meaning |\n|---|---|---|\n| `-l, --listen` | `0.0.0.0` | x |\n\
         | `--rate-limit N` / `--rate-burst M` | off | y |\n",
    );
    assert_eq!(rows["listen"].short, Some('l'));
    assert_eq!(rows["listen"].default.as_deref(), Some("0.0.0.0"));
    assert_eq!(rows["rate-burst"].default, None);
    assert_eq!(rows.len(), 3);
}

/// The text of `doc`'s `## TITLE` section, up to the next `## ` heading.
fn section(doc: &'static str, title: &str) -> &'static str {
    let heading = format!("\n## {title}\n");
    let start = doc
        .find(&heading)
        .unwrap_or_else(|| panic!("no \"## {title}\" section"));
    let rest = &doc[start + heading.len()..];
    &rest[..rest.find("\n## ").map_or(rest.len(), |i| i + 1)]
}

/// The first `sh` code block of `text`.
fn sh_block(text: &str) -> &str {
    let start = text.find("```sh\n").expect("an ```sh block") + "```sh\n".len();
    let rest = &text[start..];
    &rest[..rest.find("```").expect("the block ends")]
}

/// The block's commands: comments and blank lines out, `\` continuations
/// joined.
fn commands(block: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in block.lines().map(str::trim) {
        if current.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            continue;
        }
        current.push_str(line);
        out.push(std::mem::take(&mut current));
    }
    out
}

/// `command` with every number equal to `from` (whole, not part of a
/// longer number) replaced by `to`.
fn replace_number(command: &str, from: &str, to: &str) -> String {
    let mut out = String::new();
    let mut digits = String::new();
    let flush = |out: &mut String, digits: &mut String| {
        out.push_str(if digits == from { to } else { digits });
        digits.clear();
    };
    for c in command.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut out, &mut digits);
            out.push(c);
        }
    }
    flush(&mut out, &mut digits);
    out
}

/// A background server's command on port 0: the command, the port the
/// README gave it, whether it is the proxy.
fn on_port_zero(command: &str) -> (String, String, bool) {
    let (command, flags, is_proxy) = if let Some(at) = command.find(CARGO_RUN) {
        let rewritten = format!(
            "{}{BINARY}{}",
            &command[..at],
            &command[at + CARGO_RUN.len()..]
        );
        (rewritten, &["-p", "--port"][..], true)
    } else if command.contains("http.server ") {
        (command.to_owned(), &["http.server"][..], false)
    } else {
        panic!("a background command this test cannot put on a free port: `{command}`")
    };
    let words: Vec<&str> = command.split(' ').collect();
    let at = words
        .iter()
        .position(|w| flags.contains(w))
        .unwrap_or_else(|| panic!("`{command}` names no port with {flags:?}"));
    let port = words
        .get(at + 1)
        .expect("a port after the flag")
        .to_string();
    assert!(port.parse::<u16>().is_ok(), "`{command}`: port {port:?}");
    let mut words = words;
    words[at + 1] = "0";
    (words.join(" "), port, is_proxy)
}

/// Where a server says it listens: the proxy's startup line (`… listening
/// on ADDR`) or Python's (`Serving HTTP on IP port N (…`).
fn listening_on(line: &str) -> Option<SocketAddr> {
    if let Some((_, addr)) = line.split_once(" listening on ") {
        return addr.trim().parse().ok();
    }
    let rest = line.strip_prefix("Serving HTTP on ")?;
    let mut words = rest.split_whitespace();
    let ip = words.next()?;
    (words.next()? == "port").then_some(())?;
    format!("{ip}:{}", words.next()?).parse().ok()
}

/// The contents of the file a `curl` command's URL names, under `dir`.
fn served_file(command: &str, dir: &str) -> String {
    let url = command
        .split_whitespace()
        .rfind(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("`{command}`: no http:// URL"));
    let path = url["http://".len()..]
        .split_once('/')
        .map_or("", |(_, p)| p);
    std::fs::read_to_string(Path::new(dir).join(path)).unwrap_or_else(|e| {
        panic!("`{command}` asks for {path}, which the block did not make: {e}")
    })
}

/// What `--help` says of a long flag.
#[derive(Debug)]
struct HelpFlag {
    short: Option<char>,
    default: Option<String>,
}

/// `--help`'s flags by long name: a line `  -x, --long <V>` or `      --long`
/// followed by its description, which may end in `[default: V]`.
fn help_flags(help: &str) -> BTreeMap<String, HelpFlag> {
    let mut out: BTreeMap<String, HelpFlag> = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in help.lines() {
        let text = line.trim_start();
        let indent = line.len() - text.len();
        if indent <= 6 && text.starts_with('-') {
            let (short, long) = match text.strip_prefix('-').and_then(|t| t.split_once(", --")) {
                Some((s, long)) if s.len() == 1 => (s.chars().next(), long),
                _ => (None, text.trim_start_matches('-')),
            };
            let long = long
                .split_whitespace()
                .next()
                .expect("a flag name")
                .to_owned();
            out.insert(
                long.clone(),
                HelpFlag {
                    short,
                    default: None,
                },
            );
            last = Some(long);
        } else if let (Some(flag), Some((_, rest))) = (&last, text.split_once("[default: ")) {
            let value = rest.split_once(']').map_or(rest, |(v, _)| v);
            out.get_mut(flag).expect("seen").default = Some(value.to_owned());
        }
    }
    out
}

/// What a README table row says of a flag.
#[derive(Debug)]
struct Row {
    short: Option<char>,
    /// The default when the cell is one literal value (`` `30s` ``) and the
    /// row names one flag.
    default: Option<String>,
}

/// The flags of every table row whose first cell starts with a flag.
fn table_flags(text: &str) -> BTreeMap<String, Row> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("| `-")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (first, default) = (cells[1], cells.get(2).copied().unwrap_or(""));
        let longs: Vec<&str> = first
            .split("--")
            .skip(1)
            .map(|t| {
                let end = t
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                    .unwrap_or(t.len());
                &t[..end]
            })
            .collect();
        let short = first
            .strip_prefix("`-")
            .filter(|t| t.get(1..3) == Some(", "))
            .and_then(|t| t.chars().next());
        let literal = default
            .strip_prefix('`')
            .and_then(|d| d.strip_suffix('`'))
            .filter(|d| !d.contains('`'));
        for long in &longs {
            out.insert(
                (*long).to_owned(),
                Row {
                    short,
                    default: literal.filter(|_| longs.len() == 1).map(str::to_owned),
                },
            );
        }
    }
    out
}

/// The subcommands `--help` lists under "Commands:".
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// A command of the block run by `sh` in a process group of its own (so
/// that what it starts goes with it), its output kept and its lines sent as
/// they come. Killed, group and all, when dropped.
struct Process {
    command: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Process {
    fn start(command: &str) -> Self {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            // Python's server says where it listens only when unbuffered;
            // a proxy in the environment would take curl elsewhere.
            .env("PYTHONUNBUFFERED", "1")
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("all_proxy")
            .env_remove("ALL_PROXY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("`{command}`: {e}"));
        let (tx, lines) = mpsc::channel();
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().expect("piped");
        let err = child.stderr.take().expect("piped");
        read_lines(out, stdout.clone(), tx.clone());
        read_lines(err, stderr.clone(), tx);
        Self {
            command: command.to_owned(),
            child,
            lines,
            stdout,
            stderr,
        }
    }

    /// The first line (from now on) that `find` accepts, within `limit`.
    fn wait_for<T>(&self, limit: Duration, what: &str, find: impl Fn(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(found) = find(&line) {
                        return found;
                    }
                }
                Err(e) => panic!(
                    "`{}`: no {what} ({e}: exited or {limit:?} passed); its output:\n{}",
                    self.command,
                    self.output()
                ),
            }
        }
    }

    /// Waits (at most `limit`) for the command to close its output, then
    /// for its exit.
    fn finish(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "`{}` did not finish within {limit:?}; its output:\n{}",
                    self.command,
                    self.output()
                ),
            }
        }
        // Both pipes are closed: the shell is exiting (or has).
        self.child.wait().expect("wait for the command")
    }

    fn stdout(&self) -> String {
        self.stdout.lock().expect("stdout").clone()
    }

    fn output(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr.lock().expect("stderr")
        )
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// Reads `stream` line by line on a thread: each line is kept in `into`
/// and sent on `tx`.
fn read_lines(
    stream: impl Read + Send + 'static,
    into: Arc<Mutex<String>>,
    tx: mpsc::Sender<String>,
) {
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let mut kept = into.lock().expect("output");
            kept.push_str(&line);
            kept.push('\n');
            drop(kept);
            if tx.send(line).is_err() {
                break;
            }
        }
    });
}
