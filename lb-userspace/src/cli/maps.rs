//! `lb maps`: read the pinned kernel maps of a running lb, from another process.

use std::{path::PathBuf, process::ExitCode};

use crate::kernel::{KernelError, PinnedMaps};

use super::table;

#[derive(Debug, clap::Args)]
pub struct MapsArgs {
    /// Where the running lb pinned its maps (its `kernel.pin_path`).
    #[arg(long, default_value = "/sys/fs/bpf/lb")]
    pub pin_path: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn maps(args: MapsArgs) -> anyhow::Result<ExitCode> {
    let maps = match PinnedMaps::open(&args.pin_path) {
        Ok(maps) => maps,
        Err(e @ KernelError::NotPinned { .. }) => {
            eprintln!(
                "{e}\nNo lb with kernel signals is using this pin path: lb is not running, runs \
                 without kernel signals (see its start-up warning), or was given another \
                 kernel.pin_path (pass it with --pin-path)."
            );
            return Ok(ExitCode::from(3));
        }
        Err(e) => return Err(e.into()),
    };
    let origins = maps.origins()?;
    let stats = maps.program_stats()?;
    if args.json {
        let doc = serde_json::json!({
            "pin_path": maps.dir(),
            "origins": origins,
            "program": stats,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("kernel maps pinned at {}", maps.dir().display());
        print!("{}", table::origins(&origins));
        println!(
            "XDP: {} packets, {} TCP, {} ICMP unreachable, {} counted for origins, {} truncated",
            stats.packets,
            stats.tcp_seen,
            stats.icmp_unreachable_seen,
            stats.matched,
            stats.truncated
        );
        println!(
            "socket events: {} state changes and {} retransmissions seen, {} counted for origins{}",
            stats.state_changes_seen,
            stats.retransmits_seen,
            stats.socket_events_matched,
            if stats.state_changes_seen == 0 {
                " (none yet: the tracepoints may not be attached, see lb's start-up log)"
            } else {
                ""
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
