//! Batched hash map writes and deletes (`BPF_MAP_UPDATE_BATCH`, `BPF_MAP_DELETE_BATCH`, Linux 5.6+).
//!
//! aya 0.14 updates one element per `bpf(2)` call; a 10,000-frontend document is some 340,000
//! entries to write and as many to delete, and on this hardware the call itself costs about as
//! much as the kernel's work. The batch commands hand the kernel arrays of keys (and values) in one
//! call. This module is the only place of the workspace with `unsafe`: aya has no batch API, so the
//! system call is made with `libc`.

#![allow(unsafe_code)]

use aya::maps::{HashMap, IterableMap, MapData};
use aya::Pod;
use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// Elements per call: bounds the time the kernel spends in one call (it reschedules inside too).
const CHUNK: usize = 16_384;

const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// The `batch` member of `union bpf_attr` (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Writes `keys[i] → values[i]` for every i (flag `BPF_ANY`). On error, the elements before the
/// failing one are written; returns how many were.
pub fn update<K: Pod, V: Pod>(
    map: &HashMap<MapData, K, V>,
    keys: &[K],
    values: &[V],
) -> Result<(), (usize, io::Error)> {
    if keys.len() != values.len() {
        return Err((
            0,
            io::Error::new(io::ErrorKind::InvalidInput, "keys and values differ in number"),
        ));
    }
    let mut done = 0;
    for (k, v) in keys.chunks(CHUNK).zip(values.chunks(CHUNK)) {
        let mut attr = BatchAttr {
            keys: k.as_ptr() as u64,
            values: v.as_ptr() as u64,
            count: k.len() as u32,
            map_fd: fd(map),
            ..BatchAttr::default()
        };
        let result = bpf(BPF_MAP_UPDATE_BATCH, &mut attr);
        done += attr.count as usize;
        if let Err(e) = result {
            return Err((done, e));
        }
    }
    Ok(())
}

/// Deletes `keys`. A key that is not there stops the kernel's loop (ENOENT); the rest of that chunk
/// is then deleted one by one, ignoring missing keys.
pub fn delete<K: Pod, V: Pod>(map: &mut HashMap<MapData, K, V>, keys: &[K]) {
    for chunk in keys.chunks(CHUNK) {
        let mut attr = BatchAttr {
            keys: chunk.as_ptr() as u64,
            count: chunk.len() as u32,
            map_fd: fd(map),
            ..BatchAttr::default()
        };
        if bpf(BPF_MAP_DELETE_BATCH, &mut attr).is_err() {
            for k in chunk.iter().skip(attr.count as usize) {
                let _ = map.remove(k);
            }
        }
    }
}

fn fd<K: Pod, V: Pod>(map: &HashMap<MapData, K, V>) -> u32 {
    map.map().fd().as_fd().as_raw_fd() as u32
}

fn bpf(cmd: libc::c_long, attr: &mut BatchAttr) -> io::Result<()> {
    // SAFETY: `attr` is a valid, initialised `batch` member of `union bpf_attr` that lives across
    // the call, and its size is passed (the kernel zero-extends a shorter attribute). `keys` and
    // `values` point to `count` elements of `K` and `V`, which aya checked against the map's key and
    // value sizes when the typed `HashMap` was made, and the slices outlive the call. The kernel
    // only reads them, and writes `count` back into `attr`.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut BatchAttr,
            std::mem::size_of::<BatchAttr>(),
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
