//! Compiles the BPF program (`bpf/flotilla.bpf.c`) with clang for `-target bpf` when the
//! `bpf-object` feature is on (only `flotilla-agent` turns it on, so building `flotilla` never needs
//! clang). The object lands in `OUT_DIR/flotilla.bpf.o` and is embedded by `src/object.rs`.
//!
//! `CLANG` names the compiler (default `clang`). Missing clang or a compile error fails the build
//! with a message saying what to install.

use std::path::PathBuf;
use std::process::Command;

const SOURCE: &str = "bpf/flotilla.bpf.c";

fn main() {
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-env-changed=CLANG");
    if std::env::var_os("CARGO_FEATURE_BPF_OBJECT").is_none() {
        return;
    }
    let out = match std::env::var_os("OUT_DIR") {
        Some(dir) => PathBuf::from(dir).join("flotilla.bpf.o"),
        None => fail("cargo did not set OUT_DIR"),
    };
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".to_string());
    // uapi headers (asm/types.h) live in the multiarch include directory on Debian.
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".to_string());
    let multiarch = format!("/usr/include/{arch}-linux-gnu");
    let output = Command::new(&clang)
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
        .arg(format!("-I{multiarch}"))
        .args(["-c", SOURCE, "-o"])
        .arg(&out)
        .output();
    match output {
        Err(e) => fail(&format!(
            "cannot run `{clang}` ({e}). The BPF program is compiled with clang: install it \
             (Debian: `apt-get install clang llvm libbpf-dev`) or point CLANG at a clang binary"
        )),
        Ok(o) if !o.status.success() => fail(&format!(
            "`{clang} -target bpf` failed on {SOURCE} ({}):\n{}\n(the program needs libbpf's headers \
             and the kernel uapi headers: `apt-get install libbpf-dev linux-libc-dev`)",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        )),
        Ok(_) => {}
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: flotilla-ebpf build script: {message}");
    std::process::exit(1)
}
