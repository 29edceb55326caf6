//! The quant classifier on real Hub listings (tests/fixtures/listings, format in its README):
//! every fixture is classified, checked against invariants that hold for any listing, and
//! against expectations written from reading that listing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use tabcache::quant::{classify, Classification};

/// How many listings the fixture folder holds; a lost or added fixture must be noticed.
const FIXTURE_COUNT: usize = 19;

struct Listing {
    repo_id: String,
    paths: Vec<String>,
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/listings")
}

fn load(path: &Path) -> Listing {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let json: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let repo_id = json["repo_id"].as_str().expect("repo_id").to_string();
    let paths = json["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|file| file["path"].as_str().expect("path").to_string())
        .collect();
    Listing { repo_id, paths }
}

fn load_all() -> Vec<Listing> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("fixture folder")
        .map(|entry| entry.expect("fixture entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files.iter().map(|path| load(path)).collect()
}

fn listing(repo_id: &str) -> Listing {
    load(&fixtures_dir().join(format!("{}.json", repo_id.replace('/', "--"))))
}

fn classify_listing(listing: &Listing) -> Classification {
    classify(listing.paths.iter().map(String::as_str))
}

fn keys(c: &Classification) -> Vec<&str> {
    c.variants.keys().map(String::as_str).collect()
}

/// `{prefix}-00001-of-{total}.{ext}` ... as the shard names of one variant.
fn shards(prefix: &str, first: usize, last: usize, total: usize, ext: &str) -> Vec<String> {
    (first..=last)
        .map(|i| format!("{prefix}-{i:05}-of-{total:05}.{ext}"))
        .collect()
}

/// What holds for every listing, whatever the repo.
fn assert_invariants(listing: &Listing, c: &Classification) {
    let repo = &listing.repo_id;
    let listed: BTreeSet<&str> = listing.paths.iter().map(String::as_str).collect();
    let mut owner: BTreeMap<&str, String> = BTreeMap::new();
    let groups = c
        .variants
        .iter()
        .map(|(k, files)| (format!("variant {k}"), files))
        .chain(
            c.addons
                .iter()
                .map(|(k, files)| (format!("addon {k}"), files)),
        )
        .chain(std::iter::once(("shared".to_string(), &c.shared)));
    for (group, files) in groups {
        assert!(
            group == "shared" || !files.is_empty(),
            "{repo}: {group} is empty"
        );
        assert!(
            files.windows(2).all(|w| w[0] < w[1]),
            "{repo}: {group} not sorted"
        );
        for file in files {
            assert!(
                listed.contains(file.as_str()),
                "{repo}: {group} invents {file}"
            );
            if let Some(first) = owner.insert(file, group.clone()) {
                panic!("{repo}: {file} is in both {first} and {group}");
            }
            let name = file.rsplit('/').next().unwrap();
            assert!(
                !matches!(name, "README.md" | ".gitattributes") && !name.ends_with(".png"),
                "{repo}: {group} holds {file}"
            );
        }
    }
    for gguf in listed
        .iter()
        .filter(|p| p.to_ascii_lowercase().ends_with(".gguf"))
    {
        assert!(owner.contains_key(gguf), "{repo}: {gguf} was dropped");
    }
    for (key, own) in &c.variants {
        let expected: Vec<String> = own.iter().chain(&c.shared).cloned().collect();
        assert_eq!(c.files_for(key), Some(expected), "{repo}: files_for({key})");
    }
    assert_eq!(c.files_for("no-such-quant"), None, "{repo}");
}

/// What reading one listing says its classification must be; the table of them all is
/// [`EXPECTATIONS`].
struct Expectation {
    /// Every variant key, sorted.
    variants: Vec<String>,
    shared: Vec<String>,
    /// The exact files of some of the variants (all of a repo's where they are few).
    files: BTreeMap<String, Vec<String>>,
    /// Keys that are no variant of this repo although other repos have them.
    absent: Vec<String>,
}

/// One entry per fixture, keyed by repo id: `variants`, `shared`, `files` (each file a path or
/// a shard range `{"shards": prefix, "from", "to", "of", "ext"}`), and where needed `absent`
/// and `note` (why the expectation is what it is, in place of a comment, which JSON lacks).
const EXPECTATIONS: &str = "tests/fixtures/quant_expectations.json";

fn expectations() -> BTreeMap<String, Expectation> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(EXPECTATIONS);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let table: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    table
        .into_iter()
        .map(|(repo, entry)| {
            let expectation = parse_expectation(&entry).unwrap_or_else(|e| panic!("{repo}: {e}"));
            (repo, expectation)
        })
        .collect()
}

fn parse_expectation(entry: &serde_json::Value) -> Result<Expectation, String> {
    let object = entry.as_object().ok_or("not an object")?;
    // A misspelt field would otherwise be a check that silently never runs.
    if let Some(unknown) = object
        .keys()
        .find(|k| !["note", "variants", "shared", "files", "absent"].contains(&k.as_str()))
    {
        return Err(format!("unknown field {unknown:?}"));
    }
    let field = |name: &str| entry.get(name).ok_or(format!("no {name:?}"));
    let mut files = BTreeMap::new();
    for (key, list) in field("files")?.as_object().ok_or("files: not an object")? {
        files.insert(key.clone(), file_list(list)?);
    }
    Ok(Expectation {
        variants: strings(field("variants")?)?,
        shared: strings(field("shared")?)?,
        files,
        absent: entry.get("absent").map_or(Ok(Vec::new()), strings)?,
    })
}

fn strings(value: &serde_json::Value) -> Result<Vec<String>, String> {
    value
        .as_array()
        .ok_or(format!("{value}: not a list"))?
        .iter()
        .map(|v| {
            v.as_str()
                .map(String::from)
                .ok_or(format!("{v}: not a string"))
        })
        .collect()
}

/// A list of paths and shard ranges, expanded.
fn file_list(value: &serde_json::Value) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for item in value.as_array().ok_or(format!("{value}: not a list"))? {
        if let Some(path) = item.as_str() {
            out.push(path.to_string());
            continue;
        }
        let text = |name: &str| item[name].as_str().ok_or(format!("{item}: no {name:?}"));
        let number = |name: &str| {
            item[name]
                .as_u64()
                .map(|n| n as usize)
                .ok_or(format!("{item}: no {name:?}"))
        };
        out.extend(shards(
            text("shards")?,
            number("from")?,
            number("to")?,
            number("of")?,
            text("ext")?,
        ));
    }
    Ok(out)
}

fn assert_expected(c: &Classification, expect: &Expectation) {
    assert_eq!(keys(c), expect.variants, "variant keys");
    assert_eq!(c.shared, expect.shared, "shared files");
    // No fixture has an mmproj.
    assert!(c.addons.is_empty(), "unexpected add-ons {:?}", c.addons);
    for (key, files) in &expect.files {
        assert_eq!(c.variants.get(key), Some(files), "variant {key}");
        let with_shared: Vec<String> = files.iter().chain(&expect.shared).cloned().collect();
        assert_eq!(c.files_for(key), Some(with_shared), "files_for({key})");
    }
    for key in &expect.absent {
        assert_eq!(c.files_for(key), None, "files_for({key})");
    }
}

/// The message a failed assertion panicked with.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(a panic without a message)".into())
}

#[test]
fn every_fixture_meets_the_invariants_and_its_expectations() {
    let listings = load_all();
    assert_eq!(listings.len(), FIXTURE_COUNT, "fixture count");
    let mut expectations = expectations();
    // Every case runs and every failure is reported, so one fix-up pass sees them all.
    let mut failures = Vec::new();
    for listing in &listings {
        let repo = &listing.repo_id;
        let Some(expect) = expectations.remove(repo) else {
            failures.push(format!("{repo}: no entry in {EXPECTATIONS}"));
            continue;
        };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let c = classify_listing(listing);
            assert_invariants(listing, &c);
            assert_expected(&c, &expect);
        }));
        if let Err(payload) = outcome {
            failures.push(format!("{repo}: {}", panic_message(&*payload)));
        }
    }
    failures.extend(
        expectations
            .keys()
            .map(|repo| format!("{repo}: in {EXPECTATIONS} but no fixture")),
    );
    assert!(
        failures.is_empty(),
        "{} failing:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Listings built from the fixtures or from scratch

#[test]
fn mmproj_projectors_are_addons_beside_a_gguf_repos_quants() {
    // bartowski's vision repos ship projectors next to the quants; this listing adds two
    // (names as llama.cpp's converter writes them) to the real Llama 3.2 listing.
    let mut listing = listing("bartowski/Llama-3.2-3B-Instruct-GGUF");
    listing
        .paths
        .push("mmproj-Llama-3.2-3B-Instruct-f16.gguf".into());
    listing
        .paths
        .push("mmproj-Llama-3.2-3B-Instruct-f32.gguf".into());
    let c = classify_listing(&listing);
    assert_invariants(&listing, &c);
    assert_eq!(
        keys(&c),
        expectations()["bartowski/Llama-3.2-3B-Instruct-GGUF"].variants,
        "projectors are not variants"
    );
    assert_eq!(c.variants["F16"], ["Llama-3.2-3B-Instruct-f16.gguf"]);
    let addons: Vec<(&str, Vec<&str>)> = c
        .addons
        .iter()
        .map(|(name, files)| (name.as_str(), files.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(
        addons,
        [
            (
                "mmproj-Llama-3.2-3B-Instruct-f16",
                vec!["mmproj-Llama-3.2-3B-Instruct-f16.gguf"]
            ),
            (
                "mmproj-Llama-3.2-3B-Instruct-f32",
                vec!["mmproj-Llama-3.2-3B-Instruct-f32.gguf"]
            ),
        ]
    );
}

#[test]
fn a_weights_less_listing_has_shared_files_but_no_variants() {
    let listing = Listing {
        repo_id: "example/docs-only".into(),
        paths: [
            ".gitattributes",
            "README.md",
            "LICENSE",
            "config.json",
            "tokenizer.json",
            "images/diagram.png",
            "tf_model.h5",
            "original/consolidated.00.pth",
        ]
        .map(String::from)
        .to_vec(),
    };
    let c = classify_listing(&listing);
    assert_invariants(&listing, &c);
    assert!(c.variants.is_empty(), "{:?}", c.variants);
    assert!(c.addons.is_empty());
    assert_eq!(c.shared, ["config.json", "tokenizer.json"]);
    assert_eq!(c.files_for("fp32"), None);
}

#[test]
fn an_empty_listing_classifies_to_nothing() {
    let c = classify([]);
    assert!(c.variants.is_empty() && c.shared.is_empty() && c.addons.is_empty());
}
