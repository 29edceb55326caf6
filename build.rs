//! Generates include/tabcache.h from src/ffi/ with cbindgen. The header is committed:
//! scripts/check-header regenerates it and fails when the committed copy differs.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=include/tabcache.h");

    let crate_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let version = std::env::var("CARGO_PKG_VERSION").expect("cargo sets CARGO_PKG_VERSION");
    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is readable and valid");
    config.after_includes = Some(version_macros(&version));

    let header = match cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
    {
        Ok(bindings) => {
            let mut text = Vec::new();
            bindings.write(&mut text);
            text
        }
        Err(e) => panic!("cbindgen could not generate include/tabcache.h: {e}"),
    };
    let target = crate_dir.join("include").join("tabcache.h");
    // Rewriting an identical header would only churn timestamps (and fail in read-only
    // source trees, such as a vendored crate, where the committed header is already right).
    if std::fs::read(&target).ok().as_deref() == Some(header.as_slice()) {
        return;
    }
    let written = std::fs::create_dir_all(target.parent().expect("include/ has a parent"))
        .and_then(|()| std::fs::write(&target, &header));
    if let Err(e) = written {
        println!("cargo:warning=could not write {}: {e}", target.display());
    }
}

/// `TC_VERSION` and its parts, for compile-time checks against `tc_version()`.
fn version_macros(version: &str) -> String {
    let mut parts = version
        .split(['.', '-', '+'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor, patch) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    format!(
        "\n/* The version of the library this header belongs to; compare with tc_version(). */\n\
         #define TC_VERSION \"{version}\"\n\
         #define TC_VERSION_MAJOR {major}\n\
         #define TC_VERSION_MINOR {minor}\n\
         #define TC_VERSION_PATCH {patch}\n"
    )
}
