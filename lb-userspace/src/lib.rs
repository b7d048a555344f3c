//! lb: an eBPF/XDP-assisted HTTP load balancer.
//!
//! The tree follows the architecture (see the README):
//! - [`config`]: what users write, validated into what lb runs.
//! - [`kernel`]: the XDP program, its maps and the zero-syscall signal view. All `unsafe`.
//! - [`control`]: the tokio control plane thread.
//! - [`cli`]: the `lb` subcommands.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod cache;
pub mod cli;
pub mod config;
pub mod control;
pub mod dataplane;
pub mod fd_limit;
pub mod functions;
pub mod health;
pub mod http;
pub mod kernel;
pub mod local_resource;
pub mod log_sink;
pub mod metrics;
pub mod resolver;
pub mod rules;
pub mod snapshot;
pub mod tls;
