//! tracefs: mounted if missing (aya attaches tracepoints through it), and the field
//! layout of the two tracepoints lb's socket-event programs read, from their `format`
//! files. Together with `sk_err`'s offset from BTF this fills `TRACE_LAYOUT`.

use std::{collections::HashMap, path::Path};

use lb_common::TraceLayout;

use super::{KernelError, btf::Btf};

/// Where tracefs lives on current kernels; older setups only have it under debugfs.
const TRACEFS: &str = "/sys/kernel/tracing";
const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";

/// The tracepoints lb attaches to: (category, name).
pub const SOCK_STATE: (&str, &str) = ("sock", "inet_sock_set_state");
pub const TCP_RETRANSMIT: (&str, &str) = ("tcp", "tcp_retransmit_skb");

/// The tracefs root, mounting it at `/sys/kernel/tracing` if nothing is mounted there.
/// aya looks tracefs up once per process, so this must run before the first attach.
pub fn ensure_tracefs() -> Result<&'static Path, KernelError> {
    let usable = |p: &Path| p.join("events").is_dir();
    for candidate in [TRACEFS, DEBUGFS_TRACING] {
        if usable(Path::new(candidate)) {
            return Ok(Path::new(candidate));
        }
    }
    nix::mount::mount(
        Some("tracefs"),
        TRACEFS,
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| {
        KernelError::Tracefs(format!(
            "not mounted, and mounting it at {TRACEFS} failed: {e}"
        ))
    })?;
    tracing::info!(path = TRACEFS, "mounted tracefs");
    if usable(Path::new(TRACEFS)) {
        Ok(Path::new(TRACEFS))
    } else {
        Err(KernelError::Tracefs(format!(
            "{TRACEFS} has no events directory after mounting"
        )))
    }
}

/// One field of a tracepoint record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Field {
    offset: u32,
    size: u32,
}

/// The fields of a tracepoint `format` file by name.
fn parse_format(text: &str) -> HashMap<String, Field> {
    let mut fields = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("field:") else {
            continue;
        };
        let mut parts = rest.split(';').map(str::trim);
        let Some(decl) = parts.next() else { continue };
        let mut offset = None;
        let mut size = None;
        for p in parts {
            if let Some(v) = p.strip_prefix("offset:") {
                offset = v.parse().ok();
            } else if let Some(v) = p.strip_prefix("size:") {
                size = v.parse().ok();
            }
        }
        // "const void * skaddr", "__u8 daddr[4]": the name is the last word, minus any
        // array suffix.
        let name = decl
            .rsplit([' ', '*'])
            .next()
            .unwrap_or("")
            .split('[')
            .next()
            .unwrap_or("");
        if let (Some(offset), Some(size)) = (offset, size)
            && !name.is_empty()
        {
            fields.insert(name.to_owned(), Field { offset, size });
        }
    }
    fields
}

fn format_of(
    root: &Path,
    (category, name): (&str, &str),
) -> Result<HashMap<String, Field>, KernelError> {
    let path = root.join("events").join(category).join(name).join("format");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| KernelError::Tracefs(format!("reading {}: {e}", path.display())))?;
    Ok(parse_format(&text))
}

/// The offset of `name`, checked to have `size` bytes.
fn offset(
    fields: &HashMap<String, Field>,
    tracepoint: (&str, &str),
    name: &str,
    size: u32,
) -> Result<u32, KernelError> {
    match fields.get(name) {
        Some(f) if f.size == size => Ok(f.offset),
        Some(f) => Err(KernelError::Tracefs(format!(
            "{}:{} field {name} has {} bytes, expected {size}",
            tracepoint.0, tracepoint.1, f.size
        ))),
        None => Err(KernelError::Tracefs(format!(
            "{}:{} has no field {name}",
            tracepoint.0, tracepoint.1
        ))),
    }
}

/// The layout the socket-event programs need. A missing `sk_err` offset (no BTF) is not
/// an error: failed connects are then not classified, which is logged.
pub fn trace_layout(root: &Path) -> Result<TraceLayout, KernelError> {
    let state = format_of(root, SOCK_STATE)?;
    let rtx = format_of(root, TCP_RETRANSMIT)?;
    let s = |name, size| offset(&state, SOCK_STATE, name, size);
    let r = |name, size| offset(&rtx, TCP_RETRANSMIT, name, size);
    let offsets = Btf::vmlinux().and_then(|b| {
        Ok((
            b.member_offset("sock", "sk_err")?,
            b.member_offset("sock", "sk_err_soft")?,
        ))
    });
    let (sock_sk_err, sock_sk_err_soft) = match offsets {
        Ok(offsets) => offsets,
        Err(e) => {
            tracing::warn!(
                error = %e,
                "no kernel BTF for struct sock: failed connects are counted but not told \
                 refused from unreachable, so only SYN retransmits give kernel verdicts"
            );
            (0, 0)
        }
    };
    Ok(TraceLayout {
        ready: 1,
        state_skaddr: s("skaddr", 8)?,
        state_oldstate: s("oldstate", 4)?,
        state_newstate: s("newstate", 4)?,
        state_dport: s("dport", 2)?,
        state_family: s("family", 2)?,
        state_protocol: s("protocol", 2)?,
        state_daddr: s("daddr", 4)?,
        state_daddr_v6: s("daddr_v6", 16)?,
        retransmit_state: r("state", 4)?,
        retransmit_dport: r("dport", 2)?,
        retransmit_family: r("family", 2)?,
        retransmit_daddr: r("daddr", 4)?,
        retransmit_daddr_v6: r("daddr_v6", 16)?,
        sock_sk_err,
        sock_sk_err_soft,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INET_SOCK_SET_STATE: &str = "name: inet_sock_set_state
ID: 2287
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;
\tfield:__u16 dport;\toffset:26;\tsize:2;\tsigned:0;
\tfield:__u8 daddr[4];\toffset:36;\tsize:4;\tsigned:0;
\tfield:__u8 daddr_v6[16];\toffset:56;\tsize:16;\tsigned:0;

print fmt: \"family=%s\", REC->family
";

    #[test]
    fn format_fields_by_name_with_pointers_and_arrays() {
        let f = parse_format(INET_SOCK_SET_STATE);
        assert_eq!(f["skaddr"], Field { offset: 8, size: 8 });
        assert_eq!(
            f["oldstate"],
            Field {
                offset: 16,
                size: 4
            }
        );
        assert_eq!(
            f["dport"],
            Field {
                offset: 26,
                size: 2
            }
        );
        assert_eq!(
            f["daddr"],
            Field {
                offset: 36,
                size: 4
            }
        );
        assert_eq!(
            f["daddr_v6"],
            Field {
                offset: 56,
                size: 16
            }
        );
        assert_eq!(f["common_pid"], Field { offset: 4, size: 4 });
        assert!(!f.contains_key("family"));
    }

    #[test]
    fn a_field_of_the_wrong_size_is_refused() {
        let f = parse_format(INET_SOCK_SET_STATE);
        assert!(offset(&f, SOCK_STATE, "dport", 2).is_ok());
        let e = offset(&f, SOCK_STATE, "dport", 4).unwrap_err().to_string();
        assert!(e.contains("dport has 2 bytes, expected 4"), "{e}");
        assert!(offset(&f, SOCK_STATE, "family", 2).is_err());
    }
}
