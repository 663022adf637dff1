//! This process's resource use, read from `/proc/self` at scrape time (Linux;
//! elsewhere every field is `None`). Parsing is pure and tested on text.

/// A snapshot of the process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessStats {
    /// Resident set size (`VmRSS`).
    pub rss_bytes: Option<u64>,
    /// Peak resident set size (`VmHWM`).
    pub rss_peak_bytes: Option<u64>,
    /// Virtual memory size (`VmSize`).
    pub virtual_bytes: Option<u64>,
    /// OS threads (`Threads`).
    pub threads: Option<u64>,
    /// CPU time in user mode.
    pub cpu_user_seconds: Option<f64>,
    /// CPU time in kernel mode.
    pub cpu_system_seconds: Option<f64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// Soft limit on file descriptors.
    pub max_fds: Option<u64>,
}

/// `/proc/[pid]/stat` counts CPU time in USER_HZ ticks, which the kernel ABI
/// fixes at 100 on every architecture Linux supports today.
const TICKS_PER_SEC: f64 = 100.0;

/// Reads the current numbers.
pub fn read() -> ProcessStats {
    let mut stats = ProcessStats::default();
    if let Ok(text) = std::fs::read_to_string("/proc/self/status") {
        parse_status(&text, &mut stats);
    }
    if let Some((user, system)) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .as_deref()
        .and_then(parse_stat)
    {
        stats.cpu_user_seconds = Some(user as f64 / TICKS_PER_SEC);
        stats.cpu_system_seconds = Some(system as f64 / TICKS_PER_SEC);
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        // The listing includes the descriptor read_dir itself holds open.
        stats.open_fds = Some((dir.count() as u64).saturating_sub(1));
    }
    stats.max_fds = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .ok()
        .map(|(soft, _)| soft);
    stats
}

/// Fills the memory and thread fields from `/proc/self/status`.
fn parse_status(text: &str, stats: &mut ProcessStats) {
    for line in text.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let mut words = value.split_whitespace();
        let Some(n) = words.next().and_then(|w| w.parse::<u64>().ok()) else {
            continue;
        };
        let bytes = match words.next() {
            Some("kB") => n.saturating_mul(1024),
            _ => n,
        };
        match name {
            "VmRSS" => stats.rss_bytes = Some(bytes),
            "VmHWM" => stats.rss_peak_bytes = Some(bytes),
            "VmSize" => stats.virtual_bytes = Some(bytes),
            "Threads" => stats.threads = Some(n),
            _ => {}
        }
    }
}

/// `utime` and `stime` (fields 14 and 15) of `/proc/self/stat`. The command
/// name (field 2) may hold spaces and parentheses, so fields are counted
/// from its closing parenthesis.
fn parse_stat(text: &str) -> Option<(u64, u64)> {
    let after = &text[text.rfind(')')? + 1..];
    let mut fields = after.split_whitespace().skip(14 - 3);
    let user = fields.next()?.parse().ok()?;
    let system = fields.next()?.parse().ok()?;
    Some((user, system))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_in_bytes() {
        let text = "Name:\tccnproxy\nVmPeak:\t  900 kB\nVmSize:\t  800 kB\nVmHWM:\t   30 kB\nVmRSS:\t   20 kB\nThreads:\t5\nbogus line\nVmRSS:\tx kB\n";
        let mut stats = ProcessStats::default();
        parse_status(text, &mut stats);
        assert_eq!(stats.rss_bytes, Some(20 * 1024));
        assert_eq!(stats.rss_peak_bytes, Some(30 * 1024));
        assert_eq!(stats.virtual_bytes, Some(800 * 1024));
        assert_eq!(stats.threads, Some(5));
    }

    #[test]
    fn stat_times_survive_odd_command_names() {
        let rest = "S 1 2 3 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 5 0 1234 0 0";
        for comm in ["ccnproxy", "a b) c (d", ")"] {
            let text = format!("4242 ({comm}) {rest}\n");
            assert_eq!(parse_stat(&text), Some((250, 75)), "comm {comm:?}");
        }
        assert_eq!(parse_stat("4242 (x) S 1 2"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn reads_this_process_on_linux() {
        let stats = read();
        if cfg!(target_os = "linux") {
            assert!(stats.rss_bytes.is_some_and(|b| b > 0));
            assert!(stats.open_fds.is_some_and(|n| n >= 3));
            assert!(stats.cpu_user_seconds.is_some());
        }
    }
}
