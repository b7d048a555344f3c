//! The shared HTTP cache in front of origin groups (RFC 9111, RFC 5861's stale rules):
//! what may be stored and for how long (`control`), what identifies a response and what
//! of the request reaches the origin (`key`), the process-wide memory tier (`store`)
//! and the disk tier behind it (`disk`). It sits between behavior matching and the group's failover loop.

pub mod control;
pub mod disk;
pub mod inflight;
pub mod key;
pub mod store;

pub use control::{CacheControl, NotStored, Ttls};
pub use inflight::{Inflight, Join, Lead};
pub use key::{CookieKey, KeyPolicy, QueryKey};
pub use store::{Object, Purge, Store, StoreStats};
