//! A small authoritative DNS server on loopback (UDP) for tests: answers A and AAAA
//! queries from a table the test changes while lb runs, NXDOMAIN for names not in it,
//! and counts the queries per name. Built on hickory-proto's message types, so what lb's
//! resolver parses is real DNS wire format.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr, UdpSocket},
    str::FromStr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use hickory_proto::{
    op::{Message, MessageType, ResponseCode},
    rr::{
        Name, RData, Record, RecordType,
        rdata::{A, AAAA},
    },
};

#[derive(Default)]
struct Zone {
    /// Name (lower case, no trailing dot) → its addresses and their TTL.
    records: HashMap<String, (Vec<IpAddr>, u32)>,
    queries: HashMap<String, usize>,
}

pub struct DnsServer {
    pub addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DnsServer {
    pub fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the test DNS server");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let zone = Arc::new(Mutex::new(Zone::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (zone, stop) = (Arc::clone(&zone), Arc::clone(&stop));
            std::thread::spawn(move || serve(&socket, &zone, &stop))
        };
        Self {
            addr,
            zone,
            stop,
            thread: Some(thread),
        }
    }

    /// `name` now resolves to `ips` with this TTL.
    pub fn set(&self, name: &str, ips: &[&str], ttl: u32) {
        let ips = ips.iter().map(|s| s.parse().expect("an IP")).collect();
        self.zone
            .lock()
            .unwrap()
            .records
            .insert(name.to_ascii_lowercase(), (ips, ttl));
    }

    /// `name` no longer exists (NXDOMAIN).
    pub fn remove(&self, name: &str) {
        self.zone
            .lock()
            .unwrap()
            .records
            .remove(&name.to_ascii_lowercase());
    }

    /// Queries for `name` so far (A and AAAA each count).
    pub fn queries(&self, name: &str) -> usize {
        let zone = self.zone.lock().unwrap();
        zone.queries
            .get(&name.to_ascii_lowercase())
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(socket: &UdpSocket, zone: &Mutex<Zone>, stop: &AtomicBool) {
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let Ok(request) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let mut response = Message::new();
        response
            .set_id(request.id())
            .set_message_type(MessageType::Response)
            .set_op_code(request.op_code())
            .set_authoritative(true)
            .set_recursion_desired(request.recursion_desired())
            .set_recursion_available(true);
        let mut zone = zone.lock().unwrap();
        for query in request.queries() {
            response.add_query(query.clone());
            let name = query
                .name()
                .to_ascii()
                .trim_end_matches('.')
                .to_ascii_lowercase();
            *zone.queries.entry(name.clone()).or_default() += 1;
            let Some((ips, ttl)) = zone.records.get(&name) else {
                response.set_response_code(ResponseCode::NXDomain);
                continue;
            };
            let owner = Name::from_str(&format!("{name}.")).unwrap();
            for ip in ips {
                let rdata = match (ip, query.query_type()) {
                    (IpAddr::V4(v4), RecordType::A) => RData::A(A(*v4)),
                    (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(AAAA(*v6)),
                    _ => continue,
                };
                response.add_answer(Record::from_rdata(owner.clone(), *ttl, rdata));
            }
        }
        drop(zone);
        if let Ok(bytes) = response.to_vec() {
            let _ = socket.send_to(&bytes, from);
        }
    }
}
