//! `lb health`: the origins table from a running lb's admin API.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    process::ExitCode,
    time::Duration,
};

#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// The running lb's admin API address.
    #[arg(long, default_value = "127.0.0.1:9901")]
    pub admin: SocketAddr,
    /// Print the admin API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn health(args: HealthArgs) -> anyhow::Result<ExitCode> {
    let body = match fetch(args.admin, "/origins") {
        Ok(b) => b,
        Err(e) => {
            eprintln!(
                "cannot reach lb's admin API at {}: {e}\nIs lb running with [admin] (or --admin {})?",
                args.admin, args.admin
            );
            return Ok(ExitCode::from(3));
        }
    };
    if args.json {
        println!("{body}");
        return Ok(ExitCode::SUCCESS);
    }
    let doc: serde_json::Value = serde_json::from_str(&body)?;
    println!(
        "{:<16} {:<22} {:<11} {:>9} {:>8} {:>8} {:>6} {:>10} {:>8}  REASON",
        "ORIGIN",
        "ADDRESS",
        "STATE",
        "FOR",
        "IN_FLIGHT",
        "FAILED",
        "EJECT",
        "LAST_CHECK",
        "K_REFUSED"
    );
    for o in doc["origins"].as_array().into_iter().flatten() {
        let check = if o["active"]["enabled"].as_bool() == Some(true) {
            o["active"]["last_status"].to_string()
        } else {
            "-".into()
        };
        let rst = o["kernel"]["connects_refused"]
            .as_u64()
            .map_or("-".into(), |n| n.to_string());
        println!(
            "{:<16} {:<22} {:<11} {:>8}s {:>8} {:>8} {:>6} {:>10} {:>8}  {}",
            o["id"].as_str().unwrap_or("?"),
            o["address"].as_str().unwrap_or("?"),
            o["state"].as_str().unwrap_or("?"),
            o["state_for_ms"].as_u64().unwrap_or(0) / 1000,
            o["in_flight"].to_string(),
            o["passive"]["failures_total"].to_string(),
            o["passive"]["ejections"].to_string(),
            check,
            rst,
            o["reason"].as_str().unwrap_or(""),
        );
    }
    if doc["kernel_signals"].as_bool() != Some(true) {
        println!(
            "(kernel signals are off in this lb; `lb maps` reads the kernel maps directly when they are on)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// GET `path` from the admin API; the body.
pub fn fetch(admin: SocketAddr, path: &str) -> Result<String, AdminError> {
    admin_request(admin, "GET", path)
}

/// Why an admin API request got no 200.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Nothing answered (lb not running, or without an admin API there).
    #[error("{0}")]
    Unreachable(#[from] std::io::Error),
    /// lb answered and refused: the status line and its reason.
    #[error("{0}")]
    Refused(String),
}

/// One request to the admin API; the body of a 200.
pub fn admin_request(admin: SocketAddr, method: &str, path: &str) -> Result<String, AdminError> {
    let mut s = TcpStream::connect_timeout(&admin, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: lb-admin\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    if !head.starts_with("HTTP/1.1 200") {
        let status = head.lines().next().unwrap_or("no response");
        return Err(AdminError::Refused(format!("{status}: {}", body.trim())));
    }
    Ok(body.to_owned())
}
