//! Links libpcap (libpcap-dev): as a shared library, or with the `static` feature from its
//! archive, with the archives its D-Bus capture source needs.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_STATIC").is_some() {
        println!("cargo:rustc-link-lib=static=pcap");
        println!("cargo:rustc-link-lib=static=dbus-1");
    } else {
        println!("cargo:rustc-link-lib=pcap");
    }
}
