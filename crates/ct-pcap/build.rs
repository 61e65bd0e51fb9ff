//! Links libpcap (libpcap-dev): as a shared library, or with the `static` feature from its
//! archive, with the D-Bus archive its D-Bus capture source needs (libdbus-1-dev), both
//! found where the C compiler finds them.
use std::path::Path;
use std::process::Command;

fn archive_dir(name: &str) -> Option<String> {
    let out = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .arg(format!("-print-file-name={name}"))
        .output()
        .ok()?;
    let path = String::from_utf8(out.stdout).ok()?;
    let path = Path::new(path.trim());
    // A bare name back means the compiler does not know the file.
    path.is_absolute()
        .then(|| path.parent().map(|p| p.display().to_string()))
        .flatten()
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CC");
    if std::env::var_os("CARGO_FEATURE_STATIC").is_none() {
        println!("cargo:rustc-link-lib=pcap");
        return;
    }
    for (archive, package) in [
        ("libpcap.a", "libpcap-dev"),
        ("libdbus-1.a", "libdbus-1-dev"),
    ] {
        match archive_dir(archive) {
            Some(dir) => println!("cargo:rustc-link-search=native={dir}"),
            None => panic!("{archive} not found: install {package} (scripts/install-deps.sh)"),
        }
    }
    println!("cargo:rustc-link-lib=static=pcap");
    println!("cargo:rustc-link-lib=static=dbus-1");
}
