//! Functions with Lambda@Edge's interface, in JavaScript (QuickJS through `rquickjs`):
//! what a function is (`FunctionSpec`), how it is run with limits on the worker that
//! needs it (`engine`: one runtime per data-plane thread, nothing crosses threads), and
//! Lambda@Edge's event and result shapes (`edge`), and CloudFront Functions' (`cff`).
//!
//! Built: all four Lambda@Edge triggers, `callback(null, x)`, returned values and
//! Promises, CloudFront Functions' `handler(event)` at the two viewer triggers, CPU-time
//! and memory limits.

pub mod cff;
pub mod edge;
pub mod engine;

use std::{path::PathBuf, time::Duration};

/// Where in an exchange a function runs (Lambda@Edge's event types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// After behavior matching, before the cache and the origins: may change the request
    /// or answer it.
    ViewerRequest,
    /// Before each attempt, so again on failover: sees the origin it goes to (its custom
    /// headers among it) and may change the request or answer it.
    OriginRequest,
    /// On the final origin answer, before custom error responses: may change its status
    /// and headers or replace it with a generated response.
    OriginResponse,
    /// On what the client gets from an origin or the cache, just before it is sent: may
    /// change its status and headers (not its body).
    ViewerResponse,
}

impl Trigger {
    pub fn event_type(self) -> &'static str {
        match self {
            Self::ViewerRequest => "viewer-request",
            Self::OriginRequest => "origin-request",
            Self::OriginResponse => "origin-response",
            Self::ViewerResponse => "viewer-response",
        }
    }
}

/// Which interface a function has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FunctionKind {
    /// `exports.handler = (event, context, callback) => ...`, Lambda@Edge's event.
    #[default]
    LambdaEdge,
    /// `function handler(event) { ... return request; }`, CloudFront Functions' event
    /// (viewer triggers only).
    #[serde(rename = "cloudfront-function")]
    CloudFrontFunction,
}

/// One function of a behavior: its source, read and compiled (as a check) at load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionSpec {
    /// For the access log and the metrics (the file's stem unless named).
    pub name: String,
    pub path: PathBuf,
    pub source: String,
    pub trigger: Trigger,
    pub kind: FunctionKind,
}

/// Limits per invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionLimits {
    /// CPU time (wall time on the worker, which is the CPU the function holds).
    pub time: Duration,
    /// Bytes the worker's JavaScript heap may hold (all its functions together).
    pub memory: usize,
}

impl Default for FunctionLimits {
    fn default() -> Self {
        Self {
            time: Duration::from_millis(50),
            memory: 32 << 20,
        }
    }
}

/// Why an invocation gave no usable answer. Each yields the 502 CloudFront gives.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FunctionError {
    #[error("the function threw: {0}")]
    Threw(String),
    #[error("the function ran out of time")]
    Timeout,
    #[error("the function ran out of memory")]
    Memory,
    #[error("the function returned something invalid: {0}")]
    Invalid(String),
    #[error("the function does not compile: {0}")]
    Compile(String),
}

/// The reasons of `lb_function_errors_total{reason}`, in [`FunctionError::index`] order.
pub const ERROR_LABELS: [&str; 5] = ["threw", "timeout", "memory", "invalid", "compile"];

impl FunctionError {
    pub fn index(&self) -> usize {
        ERROR_LABELS
            .iter()
            .position(|l| *l == self.label())
            .unwrap_or(0)
    }

    /// For `lb_function_errors_total{reason}`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Threw(_) => "threw",
            Self::Timeout => "timeout",
            Self::Memory => "memory",
            Self::Invalid(_) => "invalid",
            Self::Compile(_) => "compile",
        }
    }
}
