//! Request-path micro-benchmarks: request-head parsing, behavior matching over 100 path
//! patterns, and reading an origin's kernel counters through the mmap view versus a
//! map-lookup syscall (that one needs root, and is skipped without it), and origin
//! selection for each group mode.

use std::{hint::black_box, path::Path};

use criterion::{Criterion, criterion_group, criterion_main};
use lb_userspace::{
    config::Config,
    http::{HeadLimits, MAX_HEADERS, parse_request_head},
    kernel::{LoadedProgram, OriginRegistration},
};

const HEAD: &[u8] = b"GET /api/v1/users/42?fields=name,email HTTP/1.1\r\nHost: example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) bench\r\nAccept: application/json\r\n\
Accept-Encoding: gzip, br\r\nCookie: session=0123456789abcdef\r\nX-Request-Id: 7f3c\r\n\r\n";

fn parse(c: &mut Criterion) {
    let limits = HeadLimits::default();
    c.bench_function("parse_request_head (7 fields)", |b| {
        b.iter(|| {
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let r = parse_request_head(black_box(HEAD), &limits, &mut slots)
                .unwrap()
                .unwrap();
            black_box(r.head_len)
        })
    });
}

fn behaviors(c: &mut Criterion) {
    let mut toml = String::from("[[origins]]\nid = \"o\"\naddress = \"127.0.0.1:1\"\n");
    for i in 0..100 {
        toml.push_str(&format!(
            "[[behaviors]]\npath_pattern = \"/svc{i}/*/item?.json\"\ntarget = \"o\"\n"
        ));
    }
    let config = Config::parse(&toml, Path::new("bench.toml")).unwrap();
    c.bench_function("behavior_for over 100 patterns (miss: default)", |b| {
        b.iter(|| black_box(config.behavior_for(black_box("/static/app/main.css?v=3"))).target)
    });
    c.bench_function("behavior_for over 100 patterns (hit at 100)", |b| {
        b.iter(|| black_box(config.behavior_for(black_box("/svc99/a/b/item7.json"))).target)
    });
}

fn health_lookup(c: &mut Criterion) {
    let Ok(mut program) = LoadedProgram::load() else {
        eprintln!("health lookup benchmarks skipped: loading the XDP program needs root");
        return;
    };
    program
        .register_origins(&[OriginRegistration {
            slot: 7,
            label: "bench".into(),
            address: "127.0.0.1:9".parse().unwrap(),
        }])
        .unwrap();
    let view = program.signals_view().unwrap();
    c.bench_function("kernel signals: mmap view read (one slot)", |b| {
        b.iter(|| black_box(view.get(black_box(7))))
    });
    c.bench_function("kernel signals: map lookup syscall (one slot)", |b| {
        b.iter(|| black_box(program.lookup_signals(black_box(7)).unwrap()))
    });
}

criterion_group!(benches, parse, behaviors, health_lookup);

fn selection(c: &mut Criterion) {
    use lb_userspace::{config::Target, dataplane::selection::Selector, health::HealthTable};
    for mode in ["failover", "round-robin", "least-outstanding", "peak-ewma"] {
        let toml = format!(
            "[[origins]]\nid = \"a\"\naddress = \"127.0.0.1:1\"\n[[origins]]\nid = \"b\"\naddress = \"127.0.0.1:2\"\n\
             [[origins]]\nid = \"c\"\naddress = \"127.0.0.1:3\"\n[[origin_groups]]\nid = \"g\"\nmembers = [\"a\", \"b\", \"c\"]\n\
             failover_status_codes = [503]\nmode = \"{mode}\"\n[default_behavior]\ntarget = \"g\"\n"
        );
        let config = Config::parse(&toml, Path::new("bench.toml")).unwrap();
        let health = HealthTable::new(3, config.health.clone());
        let selector = Selector::new(&config, 1);
        c.bench_function(&format!("select: {mode}, 3 healthy members"), |b| {
            b.iter(|| black_box(selector.plan(&config, &health, None, black_box(Target::Group(0)))))
        });
    }
}

criterion_group!(selection_benches, selection);
criterion_main!(benches, selection_benches);
