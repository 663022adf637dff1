//! Section 2, `cpu`: ccnproxy side by side with nginx and HAProxy (each
//! when installed) under the same loads, rounds interleaved, so that the
//! ratios of adjacent rounds cancel most of a shared machine's drift.
//!
//! Targets: ccnproxy to an HTTP/1.1-only origin and to an h2 origin; nginx
//! (it speaks HTTP/1.1 upstream whatever the origin offers, so one row
//! serves as the reference for both); HAProxy to each origin (ALPN `h2`
//! toward the h2 one). Scenarios: 1 KiB calls on keep-alive connections,
//! 1 MiB downloads, 1 KiB calls on a new connection each, and 1 KiB calls
//! from many keep-alive clients at once (1,000; peak RSS per scenario).

use std::net::SocketAddr;

use super::support::client::Call;
use super::support::haproxy::Haproxy;
use super::support::load::load;
use super::support::origin::{Origin, Pki};
use super::support::procs::{self, Nginx, Proxy};
use super::support::{MIB, Res};
use super::{NAME, PROXY_HOST, Settings, fmt_samples, proxy_args, report_stderr};

/// One load shape.
struct Scenario {
    label: &'static str,
    call: Call,
    requests: usize,
    concurrency: usize,
}

impl Scenario {
    /// Bytes the client receives per call.
    fn bytes(&self) -> f64 {
        match self.call {
            Call::Large => MIB.len() as f64,
            Call::Small | Call::SmallClose => 1024.0,
        }
    }
}

/// One scenario's samples for one target, one value per round.
#[derive(Default)]
struct Samples {
    /// Requests per second (1 MiB: MB/s).
    rate: Vec<f64>,
    /// CPU µs per request (1 MiB: CPU ms per MB).
    cpu: Vec<f64>,
    /// 99th percentile latency, ms.
    p99: Vec<f64>,
    /// Peak RSS during the round, MiB (`VmHWM` after resetting it; nginx:
    /// processes summed).
    rss: Vec<f64>,
    errors: usize,
    first_error: Option<String>,
}

/// The process handles a target keeps alive (each stops its process when
/// dropped).
enum Handle {
    Ccnproxy(Proxy),
    Nginx(Nginx),
    Haproxy(Haproxy),
}

impl Handle {
    /// The HAProxy handle, if this is one.
    fn haproxy(&self) -> Option<&Haproxy> {
        match self {
            Handle::Haproxy(h) => Some(h),
            _ => None,
        }
    }
}

/// One proxy under test.
struct Target {
    label: String,
    is_nginx: bool,
    addr: SocketAddr,
    pids: Vec<u32>,
    handle: Handle,
    _origin: Origin,
    samples: Vec<Samples>,
}

impl Target {
    fn cpu_ticks(&self) -> u64 {
        self.pids.iter().filter_map(|&p| procs::cpu_ticks(p)).sum()
    }

    /// Starts the peak RSS over; `false` if the kernel did not allow it.
    fn reset_peak_rss(&self) -> bool {
        self.pids.iter().all(|&p| procs::reset_peak_rss(p))
    }

    fn peak_rss_kib(&self) -> u64 {
        self.pids
            .iter()
            .filter_map(|&p| procs::status_value(p, "VmHWM:"))
            .sum()
    }
}

/// Starts every target that can run here; says which peers are skipped.
async fn targets(pki: &Pki, scenarios: usize) -> Res<Vec<Target>> {
    let mut out = Vec::new();
    let mut push = |label: String, addr, pids, handle, origin| {
        out.push(Target {
            is_nginx: matches!(handle, Handle::Nginx(_)),
            label,
            addr,
            pids,
            handle,
            _origin: origin,
            samples: (0..scenarios).map(|_| Samples::default()).collect(),
        });
    };
    let haproxy = Haproxy::binary();
    if haproxy.is_none() {
        println!(
            "   HAProxy: not installed (scripts/bench-peers.sh installs it); its rows are skipped"
        );
    }
    for h2 in [false, true] {
        let kind = if h2 { "h2 origin" } else { "h1 origin" };
        let origin = Origin::start(pki.server_config(h2)?).await?;
        let proxy = Proxy::start(&proxy_args(pki, origin.addr, &[])).await?;
        let (addr, pids) = (proxy.addr, vec![proxy.pid]);
        push(
            format!("ccnproxy, {kind}"),
            addr,
            pids,
            Handle::Ccnproxy(proxy),
            origin,
        );
        if !h2 {
            match Nginx::binary() {
                Some(binary) => {
                    let origin = Origin::start(pki.server_config(false)?).await?;
                    match Nginx::start(&binary, origin.addr, NAME, &pki.ca_file).await {
                        Ok(nginx) => {
                            let version = Nginx::version(&binary);
                            let version = version.trim_start_matches("nginx version: ");
                            let (addr, pids) = (nginx.addr, nginx.pids.clone());
                            let label = format!("{version}, h1 upstream");
                            push(label, addr, pids, Handle::Nginx(nginx), origin);
                        }
                        Err(err) => println!("   nginx: could not start ({err}); skipped"),
                    }
                }
                None => println!(
                    "   nginx: not installed (scripts/bench-peers.sh installs it); ratios are skipped"
                ),
            }
        }
        if let Some(binary) = &haproxy {
            let origin = Origin::start(pki.server_config(h2)?).await?;
            match Haproxy::start(binary, origin.addr, NAME, &pki.ca_file, h2).await {
                Ok(hap) => {
                    let label = format!("{}, {kind}", Haproxy::version(binary));
                    let (addr, pids) = (hap.addr, vec![hap.pid]);
                    push(label, addr, pids, Handle::Haproxy(hap), origin);
                }
                Err(err) => println!("   HAProxy: could not start ({err}); skipped"),
            }
        }
    }
    Ok(out)
}

/// The section: every scenario for every target, `s.rounds` times.
pub async fn cpu(pki: &Pki, s: &Settings) -> Res<()> {
    let tps = procs::ticks_per_second() as f64;
    let scenarios = [
        Scenario {
            label: "1 KiB calls, keep-alive",
            call: Call::Small,
            requests: s.load_requests,
            concurrency: s.concurrency,
        },
        Scenario {
            label: "1 MiB downloads, keep-alive",
            call: Call::Large,
            requests: s.large_requests,
            concurrency: s.concurrency,
        },
        Scenario {
            label: "1 KiB calls, new connection each",
            call: Call::SmallClose,
            requests: s.close_requests,
            concurrency: s.concurrency,
        },
        Scenario {
            label: "1 KiB calls, many keep-alive clients",
            call: Call::Small,
            requests: s.load_requests,
            concurrency: s.many_clients,
        },
    ];
    println!();
    println!(
        "2. CPU per request, side by side: {} interleaved rounds; {} client connections (in-bench hyper client,",
        s.rounds, s.concurrency
    );
    println!(
        "   plain HTTP/1.1) → proxy → TLS origin, all on 127.0.0.1; {}",
        if procs::pinned() {
            "each proxy pinned to CPU 0, clients and origins on the others"
        } else {
            "not pinned (BENCH_PIN=0, one CPU, or no taskset)"
        }
    );
    println!(
        "   CPU = utime + stime from /proc/PID/stat of the proxy (nginx: master + workers); ccnproxy with default flags"
    );
    let mut targets = targets(pki, scenarios.len()).await?;
    // Warm-up (pools, allocators, upstream caches), not measured.
    for t in &targets {
        for sc in &scenarios {
            let _ = load(
                t.addr,
                PROXY_HOST,
                sc.call,
                sc.requests / 20 + 1,
                sc.concurrency,
            )
            .await;
        }
    }
    for _ in 0..s.rounds {
        for (i, sc) in scenarios.iter().enumerate() {
            for t in &mut targets {
                let peak_reset = t.reset_peak_rss();
                let before = t.cpu_ticks();
                let run = load(t.addr, PROXY_HOST, sc.call, sc.requests, sc.concurrency).await?;
                let cpu_s = t.cpu_ticks().saturating_sub(before) as f64 / tps;
                if peak_reset {
                    let peak = t.peak_rss_kib() as f64 / 1024.0;
                    t.samples[i].rss.push(peak);
                }
                let secs = run.elapsed.as_secs_f64();
                let sm = &mut t.samples[i];
                if sc.call == Call::Large {
                    let mb = sc.requests as f64 * sc.bytes() / 1e6;
                    sm.rate.push(mb / secs);
                    sm.cpu.push(cpu_s * 1e3 / mb);
                } else {
                    sm.rate.push(sc.requests as f64 / secs);
                    sm.cpu.push(cpu_s * 1e6 / sc.requests as f64);
                }
                sm.p99.push(run.percentile(99.0));
                sm.errors += run.errors;
                if sm.first_error.is_none() {
                    sm.first_error = run.first_error;
                }
            }
        }
    }
    for (i, sc) in scenarios.iter().enumerate() {
        print_scenario(&targets, i, sc);
    }
    println!();
    println!(
        "   rate, CPU, p99: median [lowest–highest] of {} rounds; ratios: median of per-round ratios to nginx's round",
        s.rounds
    );
    let rss: Vec<String> = targets
        .iter()
        .map(|t| format!("{} {:.1}", t.label, t.peak_rss_kib() as f64 / 1024.0))
        .collect();
    println!(
        "   peak RSS MiB (VmHWM, nginx: processes summed): {}",
        rss.join("; ")
    );
    for t in &targets {
        for (sc, sm) in scenarios.iter().zip(&t.samples) {
            if let Some(err) = &sm.first_error {
                println!("   {} ({}): first error: {err}", t.label, sc.label);
            }
        }
        match &t.handle {
            Handle::Ccnproxy(proxy) => report_stderr(&t.label, proxy),
            Handle::Nginx(nginx) => {
                for line in nginx.error_log_tail(5) {
                    println!("   nginx error.log: {line}");
                }
            }
            Handle::Haproxy(_) => {}
        }
        if let Some(hap) = t.handle.haproxy()
            && hap.pid == 0
        {
            println!("   {}: no process id", t.label);
        }
    }
    Ok(())
}

fn print_scenario(targets: &[Target], i: usize, sc: &Scenario) {
    let large = sc.call == Call::Large;
    let (rate, cpu) = if large {
        ("MB/s", "CPU ms per MB")
    } else {
        ("req/s", "CPU µs per req")
    };
    println!();
    println!(
        "   {}: {} calls per round from {} clients",
        sc.label, sc.requests, sc.concurrency
    );
    println!(
        "   {:<30} {:>20} {:>20} {:>20} {:>20} {:>6}   {:>28}",
        "proxy, upstream",
        rate,
        cpu,
        "p99 ms",
        "peak RSS MiB",
        "errors",
        "÷ nginx: CPU rate p99 RSS"
    );
    let nginx = targets.iter().find(|t| t.is_nginx).map(|t| &t.samples[i]);
    let ratio = |a: &[f64], b: &[f64]| -> String {
        let r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
        let rounds: Vec<Vec<f64>> = r.iter().map(|&v| vec![v]).collect();
        format!("{:.2}", super::spread(&rounds).0)
    };
    for t in targets {
        let sm = &t.samples[i];
        let ratios = match nginx {
            Some(n) if !t.is_nginx => format!(
                "{}× {}× {}× {}",
                ratio(&sm.cpu, &n.cpu),
                ratio(&sm.rate, &n.rate),
                ratio(&sm.p99, &n.p99),
                if sm.rss.is_empty() || n.rss.is_empty() {
                    "-".to_owned()
                } else {
                    format!("{}×", ratio(&sm.rss, &n.rss))
                }
            ),
            _ => String::new(),
        };
        println!(
            "   {:<30} {:>20} {:>20} {:>20} {:>20} {:>6}   {:>28}",
            t.label,
            fmt_samples(&sm.rate, 0),
            fmt_samples(&sm.cpu, 1),
            fmt_samples(&sm.p99, 2),
            fmt_samples(&sm.rss, 1),
            sm.errors,
            ratios,
        );
    }
}
