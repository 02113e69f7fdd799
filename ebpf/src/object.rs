//! The compiled BPF object (`bpf/flotilla.bpf.c`, clang `-target bpf -O2 -g`), embedded.

/// 8-byte alignment for the embedded ELF (the loader reads its headers in place).
#[repr(C, align(8))]
struct Aligned<T: ?Sized>(T);

static ALIGNED: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/flotilla.bpf.o")));

/// The ELF object: four `cgroup/*4` programs and the maps of [`crate::datapath`].
pub static OBJECT: &[u8] = &ALIGNED.0;

/// Program (function) names in [`OBJECT`] with their section names.
pub const PROGRAMS: [(&str, &str); 4] = [
    ("flotilla_connect4", "cgroup/connect4"),
    ("flotilla_sendmsg4", "cgroup/sendmsg4"),
    ("flotilla_recvmsg4", "cgroup/recvmsg4"),
    ("flotilla_getpeername4", "cgroup/getpeername4"),
];

#[cfg(test)]
mod tests {
    #[test]
    fn the_object_is_an_aligned_bpf_elf() {
        assert_eq!(&super::OBJECT[..4], b"\x7fELF");
        assert_eq!(super::OBJECT.as_ptr() as usize % 8, 0);
        // e_machine (offset 18, little endian) is EM_BPF (247).
        assert_eq!(u16::from_le_bytes([super::OBJECT[18], super::OBJECT[19]]), 247);
    }
}
