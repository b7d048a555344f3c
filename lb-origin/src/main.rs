//! `lb-origin --listen 127.0.0.1:8081 --name primary`: the test origin as a process, for
//! scenarios that need a real crash (kill -9) or a separate network namespace.

use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: std::net::SocketAddr,
    #[arg(long, default_value = "origin")]
    name: String,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
}

fn main() {
    let args = Args::parse();
    let origin = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let tls = lb_origin::tls_config_from_files(cert, key)
                .unwrap_or_else(|e| panic!("lb-origin: {e}"));
            lb_origin::Origin::start_tls(&args.name, args.listen, tls)
        }
        _ => lb_origin::Origin::start(&args.name, args.listen),
    }
    .unwrap_or_else(|e| panic!("lb-origin: cannot listen on {}: {e}", args.listen));
    println!("lb-origin {} listening on {}", args.name, origin.addr());
    origin.wait();
}
