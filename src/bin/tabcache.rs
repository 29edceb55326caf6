//! The `tabcache` command line (a later issue fills it in).
fn main() {
    eprintln!("tabcache {}: the command line is not built yet", env!("CARGO_PKG_VERSION"));
    std::process::exit(2);
}
