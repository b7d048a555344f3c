//! Health kept across a restart (`[health] state_file`): a stop, then a start, does not
//! forget that an origin was down, nor its ejection history.
//!
//! The file is JSON, written to a temporary name and renamed (a crash never leaves half a
//! file), every second by the control plane and once more at exit. At start, an entry is
//! used only for an origin with the same id **and** the same settings that decide what
//! is being judged (address or name, ports, scheme, protocol, TLS name, health check): a
//! config that moved an origin starts it fresh instead of applying another server's state
//! to it (HAProxy's server-state-file bugs, haproxy#1412 and #2506, came from matching on
//! less). Entries older than [`MAX_AGE`] are ignored: a long-stopped lb knows nothing of
//! now.

use std::{
    path::Path,
    sync::atomic::Ordering::Relaxed,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use super::{HealthState, HealthTable, Reason, table::now_ms};
use crate::config::{Config, Origin};

/// Older state is not applied.
pub const MAX_AGE: Duration = Duration::from_secs(300);

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    /// Unix time of the write, in milliseconds.
    written_ms: u64,
    origins: Vec<SavedOrigin>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedOrigin {
    id: String,
    /// What the state is about (see [`identity`]).
    identity: String,
    state: String,
    reason: u8,
    /// Remaining ejection, in milliseconds.
    ejected_for_ms: u64,
    ejections: u32,
    consecutive_failures: u32,
}

/// The settings of `origin` whose change makes its old health meaningless.
fn identity(origin: &Origin) -> String {
    let check = origin
        .health_check
        .as_ref()
        .map(|c| format!("{} {}", c.path, c.expected_status))
        .unwrap_or_default();
    format!(
        "{} {} {} {:?} {:?} {} [{check}]",
        origin.host.as_deref().unwrap_or("-"),
        origin.address,
        origin.https_port,
        origin.protocol,
        origin.http_version,
        origin.tls_server_name,
    )
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Writes the health of `config`'s origins to `path` (atomically).
pub fn save(path: &Path, config: &Config, table: &HealthTable) -> std::io::Result<()> {
    let text = to_json(config, table)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// The state file's contents for `config`'s origins (also what an upgrade hands over).
pub fn to_json(config: &Config, table: &HealthTable) -> std::io::Result<Vec<u8>> {
    let now = now_ms();
    let origins = config
        .origins
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let h = table.origin(i);
            SavedOrigin {
                id: o.id.clone(),
                identity: identity(o),
                state: table.state(i).as_str().to_owned(),
                reason: h.reason_code(),
                ejected_for_ms: h.ejected_until_ms.load(Relaxed).saturating_sub(now),
                ejections: h.ejections.load(Relaxed),
                consecutive_failures: h.consecutive_failures.load(Relaxed),
            }
        })
        .collect();
    let file = StateFile {
        written_ms: unix_ms(),
        origins,
    };
    serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)
}

/// What [`restore`] did, for the start-up log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Restored {
    pub applied: Vec<String>,
    /// Origins in the file whose settings changed: started fresh.
    pub changed: Vec<String>,
    /// Why nothing was applied, if so (no file, too old, unreadable).
    pub skipped: Option<String>,
}

/// Applies the state in `path` to the origins of `config` that it still describes.
pub fn restore(path: &Path, config: &Config, table: &HealthTable) -> Restored {
    match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Restored {
            skipped: Some("no state file yet".into()),
            ..Default::default()
        },
        Err(e) => Restored {
            skipped: Some(format!("{}: {e}", path.display())),
            ..Default::default()
        },
        Ok(bytes) => restore_from(&bytes, &path.display().to_string(), config, table),
    }
}

/// [`restore`] from the bytes of a state file (`source` names them in messages).
pub fn restore_from(bytes: &[u8], source: &str, config: &Config, table: &HealthTable) -> Restored {
    let mut out = Restored::default();
    let file: StateFile = match serde_json::from_slice(bytes) {
        Ok(f) => f,
        Err(e) => {
            out.skipped = Some(format!("{source}: not a state file: {e}"));
            return out;
        }
    };
    let age = Duration::from_millis(unix_ms().saturating_sub(file.written_ms));
    if age > MAX_AGE {
        out.skipped = Some(format!(
            "{source} is {}s old (over {}s)",
            age.as_secs(),
            MAX_AGE.as_secs()
        ));
        return out;
    }
    let now = now_ms();
    for saved in &file.origins {
        let Some(index) = config.origins.iter().position(|o| o.id == saved.id) else {
            continue;
        };
        if identity(&config.origins[index]) != saved.identity {
            out.changed.push(saved.id.clone());
            continue;
        }
        let state = match saved.state.as_str() {
            "suspect" => HealthState::Suspect,
            "down" => HealthState::Down,
            "recovering" => HealthState::Recovering,
            _ => HealthState::Healthy,
        };
        let h = table.origin(index);
        h.ejections.store(saved.ejections, Relaxed);
        h.consecutive_failures
            .store(saved.consecutive_failures, Relaxed);
        if saved.ejected_for_ms > 0 {
            h.ejected_until_ms
                .store(now + saved.ejected_for_ms, Relaxed);
        }
        table.set_state(index, state, Reason::from_code(saved.reason), now);
        out.applied.push(format!("{} {}", saved.id, saved.state));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(address: &str) -> Config {
        Config::parse(
            &format!("[[origins]]\nid = \"a\"\naddress = \"{address}\"\n"),
            Path::new("t.toml"),
        )
        .unwrap()
    }

    #[test]
    fn state_survives_for_the_same_origin_and_not_for_a_moved_one() {
        let dir = std::env::temp_dir().join(format!("lb-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("health.json");
        let before = config("127.0.0.1:80");
        let table = HealthTable::new(1, Default::default());
        table.set_state(0, HealthState::Down, Reason::ActiveChecksFailing, now_ms());
        save(&path, &before, &table).unwrap();

        let after = HealthTable::new(1, Default::default());
        let restored = restore(&path, &before, &after);
        assert_eq!(restored.applied, ["a down"]);
        assert_eq!(after.state(0), HealthState::Down);

        let moved = config("127.0.0.2:80");
        let fresh = HealthTable::new(1, Default::default());
        let restored = restore(&path, &moved, &fresh);
        assert_eq!(restored.changed, ["a"]);
        assert_eq!(fresh.state(0), HealthState::Healthy);

        std::fs::write(&path, b"{ not json").unwrap();
        assert!(restore(&path, &before, &fresh).skipped.is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
