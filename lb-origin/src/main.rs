//! `lb-origin --listen 127.0.0.1:8081 --name primary`: the test origin as a process, for
//! scenarios that need a real crash (kill -9) or a separate network namespace.

use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: std::net::SocketAddr,
    #[arg(long, default_value = "origin")]
    name: String,
}

fn main() {
    let args = Args::parse();
    let origin = lb_origin::Origin::start(&args.name, args.listen)
        .unwrap_or_else(|e| panic!("lb-origin: cannot listen on {}: {e}", args.listen));
    println!("lb-origin {} listening on {}", args.name, origin.addr());
    origin.wait();
}
