//! Just enough of the BPF Type Format to find where a member of a kernel struct lives,
//! from `/sys/kernel/btf/vmlinux` (CONFIG_DEBUG_INFO_BTF, Linux 5.4+ and every major
//! distribution's kernel since about 2020).
//!
//! lb's tracepoint program reads one field outside its tracepoint's record: `sk_err` of
//! the socket whose state changed, which tells a refused connect from an unreachable one
//! from one lb gave up. Its offset differs between kernels and configurations, so it is
//! looked up here at load time instead of being compiled in. (aya parses BTF too, but does
//! not expose struct members; the one crate that does is LGPL, which lb cannot link.)
//!
//! Format: `include/uapi/linux/btf.h`. A header, a type section and a string section;
//! each type is a 12-byte `btf_type` followed by kind-specific data.

use std::path::Path;

/// Where the running kernel exposes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;

/// Why an offset could not be found.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("not BTF data ({0})")]
    Malformed(&'static str),
    #[error("struct {0} not found")]
    NoStruct(String),
    #[error("struct {strukt} has no member {member}")]
    NoMember { strukt: String, member: String },
    #[error("{strukt}.{member} is a bitfield")]
    Bitfield { strukt: String, member: String },
}

/// A parsed BTF blob.
pub struct Btf {
    data: Vec<u8>,
    types: std::ops::Range<usize>,
    strings: std::ops::Range<usize>,
}

impl Btf {
    /// The running kernel's BTF.
    pub fn vmlinux() -> Result<Self, BtfError> {
        Self::from_file(Path::new(VMLINUX_BTF))
    }

    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(data)
    }

    /// Checks the header and locates the two sections (little-endian hosts only, which
    /// is every host lb's eBPF object is built for).
    pub fn parse(data: Vec<u8>) -> Result<Self, BtfError> {
        let u32_at = |at: usize| {
            data.get(at..at + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        if data.len() < 24 || u16::from_le_bytes([data[0], data[1]]) != BTF_MAGIC {
            return Err(BtfError::Malformed("bad magic"));
        }
        // magic u16, version u8, flags u8, then hdr_len and the two sections' offsets and
        // lengths (relative to the end of the header), all u32.
        let hdr_len = u32_at(4).ok_or(BtfError::Malformed("short header"))? as usize;
        let field = |n: usize| u32_at(8 + 4 * n).ok_or(BtfError::Malformed("short header"));
        let (type_off, type_len) = (field(0)? as usize, field(1)? as usize);
        let (str_off, str_len) = (field(2)? as usize, field(3)? as usize);
        let types = hdr_len + type_off..hdr_len + type_off + type_len;
        let strings = hdr_len + str_off..hdr_len + str_off + str_len;
        if types.end > data.len() || strings.end > data.len() {
            return Err(BtfError::Malformed("section past the end"));
        }
        Ok(Self {
            data,
            types,
            strings,
        })
    }

    fn u32_at(&self, at: usize) -> Option<u32> {
        self.data
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn name(&self, offset: u32) -> &[u8] {
        let start = self.strings.start + offset as usize;
        let Some(rest) = self.data.get(start..self.strings.end) else {
            return b"";
        };
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        &rest[..end]
    }

    /// Byte offset of `member` inside `struct strukt` (a direct member, not a bitfield).
    pub fn member_offset(&self, strukt: &str, member: &str) -> Result<u32, BtfError> {
        let mut at = self.types.start;
        let mut found_struct = false;
        while at + 12 <= self.types.end {
            let name = self
                .u32_at(at)
                .ok_or(BtfError::Malformed("truncated type"))?;
            let info = self
                .u32_at(at + 4)
                .ok_or(BtfError::Malformed("truncated type"))?;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31 == 1;
            let body = at + 12;
            if kind == KIND_STRUCT && self.name(name) == strukt.as_bytes() && vlen > 0 {
                found_struct = true;
                for m in 0..vlen {
                    let entry = body + 12 * m;
                    let (Some(m_name), Some(m_offset)) =
                        (self.u32_at(entry), self.u32_at(entry + 8))
                    else {
                        return Err(BtfError::Malformed("truncated member"));
                    };
                    if self.name(m_name) != member.as_bytes() {
                        continue;
                    }
                    // With kind_flag the offset packs a bitfield size into its top 8 bits.
                    let (bits, bitfield) = if kind_flag {
                        (m_offset & 0x00ff_ffff, m_offset >> 24 != 0)
                    } else {
                        (m_offset, false)
                    };
                    if bitfield || bits % 8 != 0 {
                        return Err(BtfError::Bitfield {
                            strukt: strukt.into(),
                            member: member.into(),
                        });
                    }
                    return Ok(bits / 8);
                }
            }
            at = body + kind_data_len(kind, vlen).ok_or(BtfError::Malformed("unknown kind"))?;
        }
        if found_struct {
            Err(BtfError::NoMember {
                strukt: strukt.into(),
                member: member.into(),
            })
        } else {
            Err(BtfError::NoStruct(strukt.into()))
        }
    }
}

/// Bytes of kind-specific data after a `btf_type` (btf.h: BTF_KIND_*).
fn kind_data_len(kind: u32, vlen: usize) -> Option<usize> {
    Some(match kind {
        // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
        2 | 7 | 8 | 9 | 10 | 11 | 12 | 16 | 18 => 0,
        // INT, VAR, DECL_TAG: one u32
        1 | 14 | 17 => 4,
        // ARRAY: btf_array
        3 => 12,
        // STRUCT, UNION: btf_member each; DATASEC: btf_var_secinfo each; ENUM64
        4 | 5 | 15 | 19 => 12 * vlen,
        // ENUM: btf_enum each; FUNC_PROTO: btf_param each
        6 | 13 => 8 * vlen,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob with `int` and `struct sock { int a; int sk_err; }`.
    fn tiny() -> Vec<u8> {
        let strings = b"\0int\0sock\0a\0sk_err\0";
        let mut types = Vec::new();
        let mut push = |w: u32| types.extend_from_slice(&w.to_le_bytes());
        // [1] INT "int", size 4, encoding word
        push(1);
        push(1 << 24);
        push(4);
        push(32);
        // [2] STRUCT "sock", 2 members, size 8
        push(5);
        push((4 << 24) | 2);
        push(8);
        push(10); // "a"
        push(1);
        push(0);
        push(12); // "sk_err"
        push(1);
        push(32);
        let mut blob = Vec::new();
        blob.extend_from_slice(&BTF_MAGIC.to_le_bytes());
        blob.extend_from_slice(&[1, 0]);
        for w in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            blob.extend_from_slice(&w.to_le_bytes());
        }
        blob.extend_from_slice(&types);
        blob.extend_from_slice(strings);
        blob
    }

    #[test]
    fn finds_a_member_offset_in_bytes() {
        let btf = Btf::parse(tiny()).unwrap();
        assert_eq!(btf.member_offset("sock", "sk_err").unwrap(), 4);
        assert_eq!(btf.member_offset("sock", "a").unwrap(), 0);
        assert!(matches!(
            btf.member_offset("sock", "nope"),
            Err(BtfError::NoMember { .. })
        ));
        assert!(matches!(
            btf.member_offset("inet_sock", "x"),
            Err(BtfError::NoStruct(_))
        ));
    }

    #[test]
    fn rejects_what_is_not_btf() {
        assert!(Btf::parse(b"not btf at all, not btf at all".to_vec()).is_err());
        let mut cut = tiny();
        cut.truncate(30);
        assert!(Btf::parse(cut).is_err());
    }

    #[test]
    fn the_running_kernel_has_sock_sk_err() {
        // Every kernel lb supports with kernel signals exposes BTF; skip where it does not.
        let Ok(btf) = Btf::vmlinux() else {
            eprintln!("SKIPPED: no {VMLINUX_BTF}");
            return;
        };
        let offset = btf.member_offset("sock", "sk_err").unwrap();
        assert!(offset > 0 && offset % 4 == 0, "{offset}");
    }
}
