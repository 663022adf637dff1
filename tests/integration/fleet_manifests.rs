//! `etc/kubernetes/`: every manifest parses, and what its fields say agrees
//! with the ccnproxy flags they sit beside. The container's `args` go
//! through ccnproxy's own flag parser, so a misspelt flag or bad value fails
//! here, and the timings are read from the resulting `Config`:
//!
//! - readiness probes `/healthz` on a declared port, and takes the pod out
//!   (`periodSeconds × failureThreshold`) before `--drain-delay` ends;
//! - `terminationGracePeriodSeconds` ≥ preStop sleep + `--drain-delay` +
//!   `--shutdown-timeout`;
//! - the ports named by `--port` and `--metrics-listen` are declared;
//! - requests for CPU and memory are set, and the memory limit holds
//!   `--max-client-conns` idle clients (32 KiB each, docs/bench.md) + 64 MiB;
//! - every Deployment has a Service and a PodDisruptionBudget selecting it;
//! - an NLB Service with PROXY protocol selects pods running
//!   `--proxy-protocol --trust-proxy`, health-checks `/healthz` on the admin
//!   port, notices failure before `--drain-delay` ends, and keeps targets
//!   registered for `--drain-delay` + `--shutdown-timeout`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml_ng::Value;

use ccnproxy::config::Config;
use ccnproxy::config::cli::parse_args;

const PROXY_PROTOCOL: &str = "service.beta.kubernetes.io/aws-load-balancer-proxy-protocol";
const ANNOTATION: &str = "service.beta.kubernetes.io/aws-load-balancer-";

fn manifests() -> Vec<(PathBuf, Value)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/kubernetes");
    let mut files = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("etc/kubernetes exists") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut docs = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("readable");
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = <Value as serde::Deserialize>::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            docs.push((path.clone(), value));
        }
    }
    docs
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path)?.as_str()
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn u64_at(v: &Value, path: &[&str]) -> u64 {
    at(v, path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{path:?} is a number in {v:?}"))
}

fn labels(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

fn selects(selector: &BTreeMap<String, String>, pod: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| pod.get(k) == Some(v))
}

/// One Deployment's container, parsed.
struct Pod {
    file: PathBuf,
    labels: BTreeMap<String, String>,
    config: Config,
    ports: BTreeMap<String, u64>,
}

fn check_deployment(file: &Path, d: &Value) -> Pod {
    let what = file.display().to_string();
    let spec = at(d, &["spec", "template", "spec"]).expect("pod spec");
    let container = at(spec, &["containers"])
        .and_then(|c| c.as_sequence())
        .and_then(|c| c.first())
        .expect("a container");
    let args: Vec<String> = at(container, &["args"])
        .and_then(Value::as_sequence)
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string args").to_owned())
        .collect();
    let argv = std::iter::once("ccnproxy".into()).chain(args.iter().map(Into::into));
    let config = parse_args(argv)
        .and_then(|a| a.into_config())
        .unwrap_or_else(|e| panic!("{what}: ccnproxy refuses its args {args:?}: {e}"));

    let mut ports = BTreeMap::new();
    for p in at(container, &["ports"])
        .and_then(Value::as_sequence)
        .expect("ports")
    {
        let name = str_at(p, &["name"]).expect("named port").to_owned();
        ports.insert(name, u64_at(p, &["containerPort"]));
    }
    let declared: Vec<u64> = ports.values().copied().collect();
    assert!(
        declared.contains(&u64::from(config.listener.addr.port())),
        "{what}: --port {} is not a containerPort {declared:?}",
        config.listener.addr.port()
    );
    let admin = config
        .listener
        .metrics_listen
        .map(|a| u64::from(a.port()))
        .unwrap_or(u64::from(config.listener.addr.port()));
    assert!(
        declared.contains(&admin),
        "{what}: admin port {admin} not declared"
    );

    let readiness = at(container, &["readinessProbe"]).expect("readinessProbe");
    assert_eq!(
        str_at(readiness, &["httpGet", "path"]),
        Some("/healthz"),
        "{what}"
    );
    let probe_port = match at(readiness, &["httpGet", "port"]).expect("probe port") {
        Value::String(name) => *ports.get(name).expect("probe port is declared"),
        v => v.as_u64().expect("port number"),
    };
    assert_eq!(
        probe_port, admin,
        "{what}: readiness must ask the admin endpoint"
    );
    let unready_after = Duration::from_secs(
        u64_at(readiness, &["periodSeconds"]) * u64_at(readiness, &["failureThreshold"]),
    );
    let drain = config.process.drain_delay;
    let grace = config.process.shutdown_timeout;
    assert!(
        unready_after < drain,
        "{what}: readiness takes {unready_after:?} to fail, --drain-delay is {drain:?}"
    );
    let pre_stop = at(container, &["lifecycle", "preStop", "sleep", "seconds"])
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let termination = u64_at(spec, &["terminationGracePeriodSeconds"]);
    assert!(
        Duration::from_secs(termination) >= Duration::from_secs(pre_stop) + drain + grace,
        "{what}: terminationGracePeriodSeconds {termination} < preStop {pre_stop} s + {drain:?} + {grace:?}"
    );

    let requests = at(container, &["resources", "requests"]).expect("resource requests");
    assert!(str_at(requests, &["cpu"]).is_some(), "{what}: cpu request");
    assert!(
        str_at(requests, &["memory"]).is_some(),
        "{what}: memory request"
    );
    let limit = str_at(container, &["resources", "limits", "memory"]).expect("memory limit");
    let limit_mib: u64 = if let Some(g) = limit.strip_suffix("Gi") {
        g.parse::<u64>().expect("Gi") * 1024
    } else {
        limit
            .strip_suffix("Mi")
            .expect("Mi or Gi")
            .parse()
            .expect("Mi")
    };
    let needed_mib = (config.listener.max_client_conns as u64 * 32) / 1024 + 64;
    assert!(
        limit_mib >= needed_mib,
        "{what}: memory limit {limit} < {needed_mib} MiB for --max-client-conns {}",
        config.listener.max_client_conns
    );
    Pod {
        file: file.to_owned(),
        labels: labels(at(d, &["spec", "template", "metadata", "labels"])),
        config,
        ports,
    }
}

#[test]
fn kubernetes_manifests_agree_with_the_flags() {
    let docs = manifests();
    let kinds: Vec<&str> = docs
        .iter()
        .filter_map(|(_, d)| str_at(d, &["kind"]))
        .collect();
    for kind in ["Deployment", "Service", "PodDisruptionBudget"] {
        assert!(kinds.contains(&kind), "a {kind} among {kinds:?}");
    }
    let pods: Vec<Pod> = docs
        .iter()
        .filter(|(_, d)| str_at(d, &["kind"]) == Some("Deployment"))
        .map(|(f, d)| check_deployment(f, d))
        .collect();
    for pod in &pods {
        let what = pod.file.display();
        let selected_by = |kind: &str, path: &[&str]| {
            docs.iter()
                .filter(|(_, d)| str_at(d, &["kind"]) == Some(kind))
                .filter(|(_, d)| selects(&labels(at(d, path)), &pod.labels))
                .map(|(_, d)| d)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            selected_by("PodDisruptionBudget", &["spec", "selector", "matchLabels"]).len(),
            1,
            "{what}: one PodDisruptionBudget"
        );
        let services = selected_by("Service", &["spec", "selector"]);
        assert!(!services.is_empty(), "{what}: a Service selects it");
        for svc in services {
            for port in at(svc, &["spec", "ports"])
                .and_then(Value::as_sequence)
                .expect("ports")
            {
                match at(port, &["targetPort"]).expect("targetPort") {
                    Value::String(name) => assert!(pod.ports.contains_key(name), "{what}: {name}"),
                    v => assert!(pod.ports.values().any(|p| Some(*p) == v.as_u64())),
                }
            }
            let annotations = labels(at(svc, &["metadata", "annotations"]));
            let proxied = annotations.get(PROXY_PROTOCOL).is_some_and(|v| v == "*");
            assert_eq!(
                proxied, pod.config.identity.proxy_protocol,
                "{what}: PROXY protocol on the NLB iff --proxy-protocol"
            );
            if !proxied {
                continue;
            }
            assert!(
                !pod.config.identity.trust_proxy.is_empty(),
                "{what}: --trust-proxy"
            );
            let get = |k: &str| annotations.get(&format!("{ANNOTATION}{k}")).cloned();
            assert_eq!(get("healthcheck-path").as_deref(), Some("/healthz"));
            let admin = pod
                .config
                .listener
                .metrics_listen
                .expect("--metrics-listen")
                .port();
            assert_eq!(
                get("healthcheck-port"),
                Some(admin.to_string()),
                "{what}: the NLB checks the admin port, which expects no PROXY header"
            );
            let secs = |k: &str| -> u64 {
                get(k)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{k}"))
            };
            let unhealthy = Duration::from_secs(
                secs("healthcheck-interval") * secs("healthcheck-unhealthy-threshold"),
            );
            let drain = pod.config.process.drain_delay;
            assert!(
                unhealthy < drain,
                "{what}: the NLB notices after {unhealthy:?}, --drain-delay is {drain:?}"
            );
            let attrs = get("target-group-attributes").expect("target group attributes");
            let dereg: u64 = attrs
                .split(',')
                .find_map(|kv| kv.strip_prefix("deregistration_delay.timeout_seconds="))
                .and_then(|v| v.parse().ok())
                .expect("deregistration delay");
            assert!(
                Duration::from_secs(dereg) >= drain + pod.config.process.shutdown_timeout,
                "{what}: deregistration delay {dereg} s"
            );
        }
    }
}
