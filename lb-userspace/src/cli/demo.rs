//! `lb demo`: the embedded default. Starts two local origins, one listening and one whose
//! port is closed, probes both, and shows the kernel's view of them as it changes.
//!
//! Until the HTTP data plane exists this is what lb's main job looks like: the XDP program
//! tells a live origin (SYN-ACKs) from a dead one (a run of RSTs) from the first packets.

use std::{
    io::Write as _,
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use crate::{
    config::{Config, Origin},
    kernel::{KernelSettings, OriginRegistration, PinnedOrigin, monotonic_now_ns},
};

use super::{run::start_kernel_signals, table};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Where to pin the maps while the demo runs (try `lb maps --pin-path` on it).
    #[arg(long, default_value = "/sys/fs/bpf/lb")]
    pub pin_path: PathBuf,
}

pub fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let up = TcpListener::bind("127.0.0.1:0")?;
    let up_addr = up.local_addr()?;
    std::thread::Builder::new()
        .name("demo-origin".into())
        .spawn(move || serve_demo_origin(up))?;
    let down_addr = closed_port()?;
    // Everything but the origins and the pin path keeps its documented default.
    let mut config = Config::parse("", &crate::config::embedded("demo config"))?;
    config.origins = vec![
        Origin::new("demo-up", up_addr),
        Origin::new("demo-down", down_addr),
    ];
    config.kernel = KernelSettings {
        pin_path: args.pin_path,
        ..KernelSettings::default()
    };
    let registrations = config.kernel_registrations();
    println!(
        "lb demo: origin `demo-up` listens on {up_addr}; origin `demo-down` at {down_addr} has nothing listening."
    );
    let Some(kernel) = start_kernel_signals(&config.kernel, &registrations) else {
        println!(
            "The XDP program could not be loaded (see the warning above), so there are no kernel \
             signals to show. Run the demo as root (or with CAP_BPF and CAP_NET_ADMIN)."
        );
        return Ok(ExitCode::FAILURE);
    };
    let view = kernel.view();
    println!(
        "XDP program attached: {}",
        serde_json::to_string(kernel.status())?
    );
    println!(
        "Probing both origins every 500 ms for {} s...\n",
        args.seconds
    );
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(args.seconds) {
        let mut line = format!("t={:>4.1}s", start.elapsed().as_secs_f64());
        for reg in &registrations {
            let outcome = probe(reg.address);
            let s = view.get(reg.slot).unwrap_or_default();
            line.push_str(&format!(
                " | {:<9} connect {:<9} kernel: syn_ack={:<3} rst={:<3} rst_run={:<3}",
                reg.label, outcome, s.syn_ack, s.rst, s.rst_run
            ));
        }
        println!("{line}");
        std::thread::sleep(Duration::from_millis(500));
    }
    println!("\nFinal kernel view (the same table `lb maps` prints from the pinned maps):");
    print!("{}", table::origins(&rows(&registrations, &view)));
    println!(
        "\n`demo-down` shows a growing RST run with no SYN-ACK: its port is closed. The health \
         engine uses exactly this to stop sending it traffic within milliseconds."
    );
    Ok(ExitCode::SUCCESS)
}

fn rows(regs: &[OriginRegistration], view: &crate::kernel::SignalsView) -> Vec<PinnedOrigin> {
    let now = monotonic_now_ns();
    regs.iter()
        .map(|r| PinnedOrigin {
            slot: r.slot,
            origin: r.label.clone(),
            address: r.address,
            signals: crate::kernel::SignalsReport::new(&view.get(r.slot).unwrap_or_default(), now),
        })
        .collect()
}

fn probe(addr: SocketAddr) -> &'static str {
    match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
        Ok(_) => "ok",
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => "refused",
        Err(_) => "failed",
    }
}

/// A loopback port with nothing listening: bind an ephemeral port, then release it.
fn closed_port() -> std::io::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    l.local_addr()
}

fn serve_demo_origin(listener: TcpListener) {
    for stream in listener.incoming().flatten() {
        let mut stream = stream;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nup\n");
    }
}
