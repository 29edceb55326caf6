//! The listing classifier on arbitrary file lists (one path a line): never panics, invents no
//! file, and gives every variant only files from the listing.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let paths: Vec<&str> = text.lines().collect();
    let classes = tabcache::quant::classify(paths.iter().copied());
    for key in classes.variants.keys() {
        let files = classes.files_for(key).expect("a listed variant has files");
        for f in files {
            assert!(paths.contains(&f.as_str()), "invented {f:?}");
        }
    }
    for files in classes.addons.values() {
        for f in files {
            assert!(paths.contains(&f.as_str()), "invented add-on {f:?}");
        }
    }
});
