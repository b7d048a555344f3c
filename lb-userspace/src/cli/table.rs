//! Plain-text tables for terminal output.

use std::fmt::Write as _;

use crate::kernel::PinnedOrigin;

/// The per-origin kernel counters as an aligned table.
pub fn origins(rows: &[PinnedOrigin]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<5} {:<16} {:<24} {:>7} {:>7} {:>8} {:>8} {:>10} {:>10} {:>10}",
        "SLOT",
        "ORIGIN",
        "ADDRESS",
        "RST",
        "RST_RUN",
        "SYN_ACK",
        "UNREACH",
        "LAST_RST",
        "LAST_SYNACK",
        "LAST_UNRCH"
    );
    for r in rows {
        let s = &r.signals;
        let _ = writeln!(
            out,
            "{:<5} {:<16} {:<24} {:>7} {:>7} {:>8} {:>8} {:>10} {:>10} {:>10}",
            r.slot,
            r.origin,
            r.address.to_string(),
            s.rst,
            s.rst_run,
            s.syn_ack,
            s.unreachable,
            age(s.rst_age_ms),
            age(s.syn_ack_age_ms),
            age(s.unreachable_age_ms),
        );
    }
    if rows.is_empty() {
        out.push_str("(no origins registered)\n");
    }
    out
}

fn age(ms: Option<u64>) -> String {
    match ms {
        None => "never".into(),
        Some(ms) if ms < 10_000 => format!("{ms}ms ago"),
        Some(ms) => format!("{}s ago", ms / 1000),
    }
}
