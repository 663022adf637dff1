//! An in-process DNS server (hickory-server) on 127.0.0.1, UDP and TCP on
//! the same kernel-chosen port, answering A and AAAA queries from a map the
//! test changes at will. Unknown names get NXDOMAIN.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Header, HeaderCounts, Metadata, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::net::{TcpListener, UdpSocket};

#[derive(Default)]
struct Zone {
    /// Lowercase name without the trailing dot → addresses and TTL.
    records: HashMap<String, (Vec<IpAddr>, u32)>,
    /// Queries received per name (any type).
    queries: HashMap<String, usize>,
    /// Counts queries but answers none (a resolver that stopped answering).
    silent: bool,
}

/// A running DNS server; stops when dropped.
pub struct Dns {
    addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    server: Server<ZoneHandler>,
}

impl Dns {
    /// Starts the server on 127.0.0.1 (UDP and TCP, same port).
    pub async fn start() -> Dns {
        let zone = Arc::new(Mutex::new(Zone::default()));
        let mut last_err = None;
        // The UDP port may be taken for TCP; try a bounded number of ports.
        for _ in 0..20 {
            let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind DNS UDP");
            let addr = udp.local_addr().expect("DNS address");
            let tcp = match TcpListener::bind(addr).await {
                Ok(tcp) => tcp,
                Err(err) => {
                    last_err = Some(err);
                    continue;
                }
            };
            let mut server = Server::new(ZoneHandler { zone: zone.clone() });
            server.register_socket(udp);
            server.register_listener(tcp, Duration::from_secs(5), 64);
            return Dns { addr, zone, server };
        }
        panic!("no port free for both UDP and TCP: {last_err:?}");
    }

    /// Address to pass as `--dns-server`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers `name` with `ips` (A and AAAA by family) and `ttl_secs`,
    /// replacing what it answered before.
    pub fn set(&self, name: &str, ips: &[&str], ttl_secs: u32) {
        let ips = ips
            .iter()
            .map(|ip| ip.parse().expect("IP address"))
            .collect();
        self.zone
            .lock()
            .unwrap()
            .records
            .insert(normalize(name), (ips, ttl_secs));
    }

    /// Forgets `name` (queries get NXDOMAIN).
    pub fn remove(&self, name: &str) {
        self.zone.lock().unwrap().records.remove(&normalize(name));
    }

    /// Proxy flags for origins found through this server (`--dns-server`,
    /// `--dns-min-ttl 1s`, plus what [`super::origin::args_for`] gives every
    /// proxy), then `extra`.
    pub fn proxy_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args = super::origin::args_for(&[]);
        let addr = self.addr.to_string();
        args.extend(["--dns-server", &addr, "--dns-min-ttl", "1s"].map(str::to_owned));
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// Stops answering (`true`: queries are counted, never answered) or
    /// answers again.
    pub fn set_silent(&self, silent: bool) {
        self.zone.lock().unwrap().silent = silent;
    }

    /// How many queries (any type, UDP or TCP) arrived for `name`.
    pub fn queries(&self, name: &str) -> usize {
        let zone = self.zone.lock().unwrap();
        zone.queries.get(&normalize(name)).copied().unwrap_or(0)
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.server.shutdown_token().cancel();
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

struct ZoneHandler {
    zone: Arc<Mutex<Zone>>,
}

#[async_trait::async_trait]
impl RequestHandler for ZoneHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        let builder = MessageResponseBuilder::from_message_request(request);
        let Ok(info) = request.request_info() else {
            metadata.response_code = ResponseCode::FormErr;
            return send(&mut response_handle, builder.build_no_records(metadata)).await;
        };
        let qname: Name = info.query.name().into();
        let key = normalize(&qname.to_string());
        let qtype = info.query.query_type();
        let answers: Option<Vec<Record>> = {
            let mut zone = self.zone.lock().unwrap();
            *zone.queries.entry(key.clone()).or_default() += 1;
            if zone.silent {
                return ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                });
            }
            zone.records.get(&key).map(|(ips, ttl)| {
                ips.iter()
                    .filter_map(|ip| match (ip, qtype) {
                        (IpAddr::V4(v4), RecordType::A) => Some(RData::A(A(*v4))),
                        (IpAddr::V6(v6), RecordType::AAAA) => Some(RData::AAAA(AAAA(*v6))),
                        _ => None,
                    })
                    .map(|rdata| Record::from_rdata(qname.clone(), *ttl, rdata))
                    .collect()
            })
        };
        match answers {
            None => {
                metadata.response_code = ResponseCode::NXDomain;
                send(&mut response_handle, builder.build_no_records(metadata)).await
            }
            Some(answers) => {
                let response = builder.build(
                    metadata,
                    answers.iter(),
                    std::iter::empty(),
                    std::iter::empty(),
                    std::iter::empty(),
                );
                send(&mut response_handle, response).await
            }
        }
    }
}

async fn send<'a, R: ResponseHandler>(
    handle: &mut R,
    response: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
) -> ResponseInfo {
    let metadata = *response.metadata();
    match handle.send_response(response).await {
        Ok(info) => info,
        Err(_) => ResponseInfo::from(Header {
            metadata,
            counts: HeaderCounts::default(),
        }),
    }
}
