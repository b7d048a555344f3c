//! The kernel object (XDP program and tracepoint programs), built by build.rs from lb-ebpf and embedded in the binary, so `lb` is a
//! single file with nothing to install next to it.

/// The ELF object with the program and its maps, 8-byte aligned as the ELF parser needs.
pub(crate) static XDP_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-xdp"));

/// Name of the XDP function in the object.
pub(crate) const XDP_PROGRAM: &str = "lb_origin_signals";
/// The `sock:inet_sock_set_state` tracepoint program.
pub(crate) const SOCK_STATE_PROGRAM: &str = "lb_sock_state";
/// The `tcp:tcp_retransmit_skb` tracepoint program.
pub(crate) const TCP_RETRANSMIT_PROGRAM: &str = "lb_tcp_retransmit";
