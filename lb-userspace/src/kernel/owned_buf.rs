//! Copies between ordinary slices and monoio's owned I/O buffers ([`IoBuf`],
//! [`IoBufMut`]): the buffers io_uring reads into and writes from. Their accessors are raw
//! pointers with an `unsafe` length contract, because the kernel owns them while an
//! operation is in flight. The HTTP/2 viewer streams (`dataplane::h2_viewer`) are not
//! sockets: they hand bytes over in memory, through these two functions, so that the
//! rest of the data plane reads and writes them like any other stream.

use monoio::buf::{IoBuf, IoBufMut};

/// Copies as much of `src` as fits into `buf`'s spare capacity (from its start, as a
/// read does) and marks those bytes initialised. Returns how many were copied.
pub fn fill_owned<T: IoBufMut>(buf: &mut T, src: &[u8]) -> usize {
    let n = src.len().min(buf.bytes_total());
    // SAFETY: `write_ptr` points to `bytes_total()` writable bytes owned by `buf` (the
    // IoBufMut contract), and `n` is at most that; `src` is a distinct live slice, so the
    // ranges cannot overlap. `set_init(n)` then declares exactly the bytes written.
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr(), buf.write_ptr(), n);
        buf.set_init(n);
    }
    n
}

/// The initialised bytes of an owned buffer, as a write would send them.
pub fn owned_bytes<T: IoBuf>(buf: &T) -> &[u8] {
    // SAFETY: `read_ptr` points to `bytes_init()` initialised bytes owned by `buf` (the
    // IoBuf contract), which stay valid and unchanged while `buf` is borrowed.
    unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) }
}
