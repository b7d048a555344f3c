//! `lb cache stats` and `lb cache purge`: the cache of a running lb, through its admin API.

use std::{net::SocketAddr, process::ExitCode};

use super::health::{AdminError, admin_request};

#[derive(Debug, clap::Subcommand)]
pub enum CacheCommand {
    /// What the cache holds (objects and bytes per tier, evictions) and what it did.
    Stats {
        #[command(flatten)]
        admin: AdminFlags,
        /// Also list up to N keys (the form `lb cache purge --key` takes).
        #[arg(long, default_value_t = 0)]
        keys: usize,
    },
    /// Drop cached entries, like a CloudFront invalidation: every entry whose path
    /// matches PATH (`/img/*`, `/index.html`; all query, header and cookie variants),
    /// or one exact key.
    Purge {
        #[command(flatten)]
        admin: AdminFlags,
        /// A path pattern starting with / (`*` matches anything, `?` one character).
        #[arg(required_unless_present = "key", conflicts_with = "key")]
        path: Option<String>,
        /// Only entries of this host (with a path pattern).
        #[arg(long, requires = "path")]
        host: Option<String>,
        /// One key exactly as `lb cache stats --keys` lists it.
        #[arg(long)]
        key: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
pub struct AdminFlags {
    /// The running lb's admin API address.
    #[arg(long, default_value = "127.0.0.1:9901")]
    pub admin: SocketAddr,
    /// Print the admin API's JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn cache(command: CacheCommand) -> anyhow::Result<ExitCode> {
    let (admin, method, target) = match &command {
        CacheCommand::Stats { admin, keys } => (admin, "GET", format!("/cache/stats?keys={keys}")),
        CacheCommand::Purge {
            admin,
            path,
            host,
            key,
        } => {
            let mut target = String::from("/cache/purge?");
            match (key, path) {
                // Keys are listed with their newlines written as \n.
                (Some(key), _) => {
                    target.push_str(&format!("key={}", encode(&key.replace("\\n", "\n"))))
                }
                (None, Some(path)) => {
                    target.push_str(&format!("path={}", encode(path)));
                    if let Some(host) = host {
                        target.push_str(&format!("&host={}", encode(host)));
                    }
                }
                (None, None) => unreachable!("clap requires a path or --key"),
            }
            (admin, "POST", target)
        }
    };
    let body = match admin_request(admin.admin, method, &target) {
        Ok(body) => body,
        Err(AdminError::Refused(why)) => {
            eprintln!("lb refused: {why}");
            return Ok(ExitCode::from(2));
        }
        Err(AdminError::Unreachable(e)) => {
            eprintln!(
                "cannot reach lb's admin API at {}: {e}\nIs lb running with [admin] (or --admin {})?",
                admin.admin, admin.admin
            );
            return Ok(ExitCode::from(3));
        }
    };
    if admin.json {
        print!("{body}");
        return Ok(ExitCode::SUCCESS);
    }
    let doc: serde_json::Value = serde_json::from_str(&body)?;
    match command {
        CacheCommand::Stats { .. } => {
            println!(
                "{:<8} {:>10} {:>14} {:>14} {:>10}",
                "TIER", "OBJECTS", "BYTES", "BUDGET", "EVICTIONS"
            );
            for (tier, t) in doc["tiers"].as_object().into_iter().flatten() {
                println!(
                    "{:<8} {:>10} {:>14} {:>14} {:>10}",
                    tier,
                    t["objects"].to_string(),
                    t["bytes"].to_string(),
                    t["budget_bytes"].to_string(),
                    t["evictions"].to_string()
                );
            }
            if let Some(disk) = doc["tiers"].get("disk") {
                println!(
                    "disk tier {}: reads {} ({} failed), writes {} ({} failed, {} dropped)",
                    disk["path"].as_str().unwrap_or("?"),
                    disk["reads"],
                    disk["read_errors"],
                    disk["writes"],
                    disk["write_errors"],
                    disk["dropped_writes"]
                );
            }
            println!("filling now: {}", doc["filling"]);
            println!("requests of cached behaviors:");
            for (result, n) in doc["requests"].as_object().into_iter().flatten() {
                println!("  {result:<18} {n}");
            }
            for key in doc["keys"].as_array().into_iter().flatten() {
                println!("key {}", key.as_str().unwrap_or("?").replace('\n', "\\n"));
            }
        }
        CacheCommand::Purge { .. } => {
            println!("purged {} entries", doc["purged"]);
            for key in doc["keys"].as_array().into_iter().flatten() {
                println!("  {}", key.as_str().unwrap_or("?").replace('\n', "\\n"));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Percent-encodes everything but unreserved characters (the admin API decodes).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~/*".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
