//! Host/authority parsing and routing: any Host bytes and request target
//! must give a route or a `RouteError`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

use ccnproxy::config::RouteConfig;
use ccnproxy::route::Router;

fuzz_target!(|data: &[u8]| {
    let router = Router::new(&RouteConfig {
        upstream: None,
        https_upgrade: ccnproxy::config::AWS_PATTERNS.iter().map(|p| p.to_string()).collect(),
    })
    .expect("default patterns compile");
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let (host, target) = data.split_at(split);
    let target = target.get(1..).unwrap_or_default();
    let uri = http::Uri::try_from(target).unwrap_or_else(|_| http::Uri::from_static("/"));
    for method in [http::Method::GET, http::Method::CONNECT] {
        let _ = router.route(&method, &uri, Some(host), 3000);
        let _ = router.route(&method, &uri, None, 3000);
    }
    if let Ok(text) = std::str::from_utf8(host) {
        let _ = ccnproxy::origin::validate_host(text);
        let _ = ccnproxy::origin::Origin::from_url(text);
        let _ = ccnproxy::pattern::HostPattern::parse(text);
    }
});
