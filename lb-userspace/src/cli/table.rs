//! Plain-text tables for terminal output.

use std::fmt::Write as _;

use crate::kernel::PinnedOrigin;

/// The per-origin kernel signals as an aligned table: the socket events the verdicts
/// rest on, then the packets the XDP program saw.
pub fn origins(rows: &[PinnedOrigin]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<5} {:<16} {:<24} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>12} {:>12}  FINDING",
        "SLOT",
        "ORIGIN",
        "ADDRESS",
        "CONN_OK",
        "REFUSED",
        "UNREACH",
        "SYN_RTX",
        "RTX",
        "RESETS",
        "LAST_OK",
        "LAST_FAIL",
    );
    for r in rows {
        let s = &r.signals;
        let last_fail = [
            s.connect_refused_age_ms,
            s.connect_unreachable_age_ms,
            s.syn_retransmit_age_ms,
        ]
        .into_iter()
        .flatten()
        .min();
        let _ = writeln!(
            out,
            "{:<5} {:<16} {:<24} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>12} {:>12}  {}",
            r.slot,
            r.origin,
            r.address.to_string(),
            s.connects_established,
            s.connects_refused,
            s.connects_unreachable,
            s.syn_retransmits,
            s.retransmits,
            s.resets_established,
            age(s.connect_established_age_ms),
            age(last_fail),
            s.finding.unwrap_or("-"),
        );
    }
    if rows.is_empty() {
        out.push_str("(no origins registered)\n");
        return out;
    }
    let _ = writeln!(
        out,
        "\npackets seen by XDP (shown, never a verdict: anyone on the path can send them)"
    );
    let _ = writeln!(
        out,
        "{:<5} {:<16} {:>7} {:>8} {:>9} {:>12} {:>12}",
        "SLOT", "ORIGIN", "RST", "SYN_ACK", "ICMP_UNR", "LAST_RST", "LAST_SYNACK"
    );
    for r in rows {
        let p = &r.signals.packets;
        let _ = writeln!(
            out,
            "{:<5} {:<16} {:>7} {:>8} {:>9} {:>12} {:>12}",
            r.slot,
            r.origin,
            p.rst,
            p.syn_ack,
            p.icmp_unreachable,
            age(p.rst_age_ms),
            age(p.syn_ack_age_ms),
        );
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
