//! Socket events from the kernel's own TCP state machine, for connections from this host
//! to registered origins. Unlike the packets the XDP program sees, every event here
//! happened only after the kernel's checks:
//!
//! - `sock:inet_sock_set_state` (Linux 4.16+): SYN_SENT -> ESTABLISHED is a connect that
//!   worked; SYN_SENT -> CLOSE carries the socket's error, which the kernel set only for
//!   an RST whose ACK matched the SYN it sent (ECONNREFUSED), an ICMP error quoting that
//!   SYN's sequence number (EHOSTUNREACH, ENETUNREACH, ...), or SYN retries running out
//!   (ETIMEDOUT). An RST or ICMP error that fails those checks never gets here, so an
//!   off-path spoofer cannot produce one of these events.
//! - `tcp:tcp_retransmit_skb` (Linux 4.15+): the kernel retransmitted a segment of a
//!   connection to the origin. In SYN_SENT that is the SYN after an initial RTO (1 s)
//!   without answer: a black hole, or an origin dropping SYNs. Later states count
//!   retransmissions of any kind, a cue for userspace to look at its own connection.
//!
//! Field offsets come from `TRACE_LAYOUT`, which userspace fills from the tracepoints'
//! format files and the kernel's BTF (`struct sock`'s `sk_err`), so nothing here depends
//! on one kernel's layout.

use aya_ebpf::{helpers::bpf_probe_read_kernel, macros::tracepoint, programs::TracePointContext};
use lb_common::{AF_INET, AF_INET6, OriginKey, TraceLayout, tcp_state};

use crate::{
    counters::{add, bump_stat, count, now_ns, origin_signals, stats},
    maps::TRACE_LAYOUT,
};

const IPPROTO_TCP: u16 = 6;
const EPIPE: i32 = 32;
const ECONNRESET: i32 = 104;
const ETIMEDOUT: i32 = 110;
const ECONNREFUSED: i32 = 111;

#[tracepoint]
pub fn lb_sock_state(ctx: TracePointContext) -> u32 {
    let _ = on_state_change(&ctx);
    0
}

#[tracepoint]
pub fn lb_tcp_retransmit(ctx: TracePointContext) -> u32 {
    let _ = on_retransmit(&ctx);
    0
}

/// The layout, once userspace has filled it.
#[inline(always)]
fn layout() -> Option<&'static TraceLayout> {
    TRACE_LAYOUT.get(0).filter(|l| l.ready != 0)
}

/// A field of the tracepoint record at a runtime offset.
#[inline(always)]
fn field<T>(ctx: &TracePointContext, offset: u32) -> Result<T, i32> {
    // SAFETY: bpf_probe_read_kernel checks the address; the offset comes from the
    // tracepoint's own format file, so it lies inside the record.
    unsafe { ctx.read_at::<T>(offset as usize) }
}

/// The origin key of the socket's peer: `family`, destination port (host order in the
/// record) and the IPv4 or IPv6 destination address. A v4-mapped IPv6 peer is keyed as
/// IPv4, as userspace registers it.
#[inline(always)]
fn peer_key(
    ctx: &TracePointContext,
    family: u32,
    dport: u32,
    daddr: u32,
    daddr_v6: u32,
) -> Result<Option<OriginKey>, i32> {
    let family: u16 = field(ctx, family)?;
    let port: u16 = field(ctx, dport)?;
    match family {
        AF_INET => Ok(Some(OriginKey::v4(field(ctx, daddr)?, port))),
        AF_INET6 => {
            let a: [u8; 16] = field(ctx, daddr_v6)?;
            let mapped = a[0] | a[1] | a[2] | a[3] | a[4] | a[5] | a[6] | a[7] | a[8] | a[9] == 0
                && a[10] == 0xff
                && a[11] == 0xff;
            if mapped {
                Ok(Some(OriginKey::v4([a[12], a[13], a[14], a[15]], port)))
            } else {
                Ok(Some(OriginKey::v6(a, port)))
            }
        }
        _ => Ok(None),
    }
}

/// The error the kernel recorded on the socket the record is about: `sk_err`, or, if that
/// is clear, `sk_err_soft` (an ICMP error the kernel matched to the connect while the
/// socket's owner held its lock, and so did not act on at once). `None` when the offsets
/// are unknown.
#[inline(always)]
fn socket_error(ctx: &TracePointContext, l: &TraceLayout) -> Result<Option<i32>, i32> {
    if l.sock_sk_err == 0 {
        return Ok(None);
    }
    let sk: u64 = field(ctx, l.state_skaddr)?;
    if sk == 0 {
        return Ok(None);
    }
    let read = |offset: u32| -> Result<i32, i32> {
        let at = (sk + u64::from(offset)) as *const i32;
        // SAFETY: bpf_probe_read_kernel checks the address; `sk` is the tracepoint's
        // socket, alive for the duration of the event, and the offset comes from BTF.
        unsafe { bpf_probe_read_kernel(at) }
    };
    let err = read(l.sock_sk_err)?;
    if err != 0 || l.sock_sk_err_soft == 0 {
        return Ok(Some(err));
    }
    Ok(Some(read(l.sock_sk_err_soft)?))
}

fn on_state_change(ctx: &TracePointContext) -> Result<(), i32> {
    let Some(l) = layout() else {
        return Ok(());
    };
    let stats = stats();
    bump_stat(stats, |s| &mut s.state_changes_seen);
    let protocol: u16 = field(ctx, l.state_protocol)?;
    if protocol != IPPROTO_TCP {
        return Ok(());
    }
    let old = field::<i32>(ctx, l.state_oldstate)? as u32;
    let new = field::<i32>(ctx, l.state_newstate)? as u32;
    let connect_ended =
        old == tcp_state::SYN_SENT && (new == tcp_state::ESTABLISHED || new == tcp_state::CLOSE);
    let connection_closed = new == tcp_state::CLOSE && old != tcp_state::SYN_SENT;
    if !connect_ended && !connection_closed {
        return Ok(());
    }
    let Some(key) = peer_key(
        ctx,
        l.state_family,
        l.state_dport,
        l.state_daddr,
        l.state_daddr_v6,
    )?
    else {
        return Ok(());
    };
    let Some((_slot, s)) = origin_signals(&key) else {
        return Ok(());
    };
    bump_stat(stats, |s| &mut s.socket_events_matched);
    let now = now_ns();
    if new == tcp_state::ESTABLISHED {
        // SAFETY (all blocks below): `s` is a live ORIGIN_SIGNALS element (lookup
        // succeeded) and each field is an 8-byte-aligned word of it.
        unsafe {
            count(
                &raw mut (*s).connects_established,
                &raw mut (*s).connect_established_last_ns,
                now,
            )
        };
        return Ok(());
    }
    let Some(err) = socket_error(ctx, l)? else {
        return Ok(());
    };
    if connection_closed {
        // The kernel sets the error before the state changes only when the peer reset
        // the connection; lb's own aborts set it afterwards (or not at all).
        if err == ECONNRESET || err == EPIPE {
            unsafe {
                count(
                    &raw mut (*s).resets_established,
                    &raw mut (*s).reset_established_last_ns,
                    now,
                )
            };
        }
        return Ok(());
    }
    unsafe {
        match err {
            0 => add(&raw mut (*s).connects_abandoned),
            ECONNREFUSED => count(
                &raw mut (*s).connects_refused,
                &raw mut (*s).connect_refused_last_ns,
                now,
            ),
            ETIMEDOUT => count(
                &raw mut (*s).connects_timed_out,
                &raw mut (*s).connect_timed_out_last_ns,
                now,
            ),
            _ => count(
                &raw mut (*s).connects_unreachable,
                &raw mut (*s).connect_unreachable_last_ns,
                now,
            ),
        }
        if err != 0 {
            core::ptr::write_volatile(&raw mut (*s).last_connect_errno, err as u64);
        }
    }
    Ok(())
}

fn on_retransmit(ctx: &TracePointContext) -> Result<(), i32> {
    let Some(l) = layout() else {
        return Ok(());
    };
    let stats = stats();
    bump_stat(stats, |s| &mut s.retransmits_seen);
    let Some(key) = peer_key(
        ctx,
        l.retransmit_family,
        l.retransmit_dport,
        l.retransmit_daddr,
        l.retransmit_daddr_v6,
    )?
    else {
        return Ok(());
    };
    let Some((_slot, s)) = origin_signals(&key) else {
        return Ok(());
    };
    bump_stat(stats, |s| &mut s.socket_events_matched);
    let state = field::<i32>(ctx, l.retransmit_state)? as u32;
    let now = now_ns();
    // SAFETY: `s` is a live ORIGIN_SIGNALS element and the fields are aligned words of it.
    unsafe {
        if state == tcp_state::SYN_SENT {
            count(
                &raw mut (*s).syn_retransmits,
                &raw mut (*s).syn_retransmit_last_ns,
                now,
            );
        } else {
            count(
                &raw mut (*s).retransmits,
                &raw mut (*s).retransmit_last_ns,
                now,
            );
        }
    }
    Ok(())
}
