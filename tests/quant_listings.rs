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

/// Keys, shared files, and no add-ons (no fixture has an mmproj).
fn assert_shape(c: &Classification, expected_keys: &[&str], expected_shared: &[&str]) {
    assert_eq!(keys(c), expected_keys, "variant keys");
    assert_eq!(c.shared, expected_shared, "shared files");
    assert!(c.addons.is_empty(), "unexpected add-ons {:?}", c.addons);
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

type Expectation = fn(&Classification);

fn expectations() -> BTreeMap<&'static str, Expectation> {
    BTreeMap::from([
        ("Xenova/all-MiniLM-L6-v2", xenova_minilm as Expectation),
        ("onnx-community/Qwen2.5-Coder-3B-Instruct", qwen_coder_onnx),
        ("huuquyet/PhoWhisper-tiny", pho_whisper),
        ("nomic-ai/nomic-embed-vision-v1.5", nomic_vision),
        ("briaai/RMBG-1.4", rmbg),
        ("openai-community/gpt2", gpt2),
        ("sentence-transformers/all-mpnet-base-v2", mpnet),
        ("google-bert/bert-base-uncased", bert),
        ("ibm-granite/granite-3.1-1b-a400m-instruct", granite),
        ("meta-llama/Llama-3.2-3B-Instruct", llama32),
        ("openai/gpt-oss-20b", gpt_oss),
        ("alpindale/WizardLM-2-8x22B", wizardlm_8x22b),
        ("mattshumer/Reflection-Llama-3.1-70B", reflection_70b),
        (
            "TheBloke/Wizard-Vicuna-30B-Uncensored-GPTQ",
            wizard_vicuna_gptq,
        ),
        ("TheBloke/WizardCoder-15B-1.0-GPTQ", wizardcoder_gptq),
        ("TheBloke/Llama-2-7B-Chat-GGUF", llama2_gguf),
        ("TheBloke/Mistral-7B-Instruct-v0.2-GGUF", mistral_gguf),
        (
            "bartowski/Llama-3.2-3B-Instruct-GGUF",
            bartowski_llama32_gguf,
        ),
        ("unsloth/DeepSeek-R1-GGUF", deepseek_r1_gguf),
    ])
}

#[test]
fn every_fixture_meets_the_invariants_and_its_expectations() {
    let listings = load_all();
    assert_eq!(listings.len(), FIXTURE_COUNT, "fixture count");
    let expectations = expectations();
    let mut checked = BTreeSet::new();
    for listing in &listings {
        let repo = listing.repo_id.as_str();
        let c = classify_listing(listing);
        assert_invariants(listing, &c);
        let expect = expectations
            .get(repo)
            .unwrap_or_else(|| panic!("fixture {repo} has no expectations in this file"));
        expect(&c);
        checked.insert(repo);
    }
    let without_fixture: Vec<&str> = expectations
        .keys()
        .copied()
        .filter(|repo| !checked.contains(repo))
        .collect();
    assert!(
        without_fixture.is_empty(),
        "no fixture for {without_fixture:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// ONNX (transformers.js)

fn xenova_minilm(c: &Classification) {
    let shared = [
        "config.json",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
    ];
    assert_shape(c, &["fp16", "fp32", "int8", "q8"], &shared);
    assert_eq!(c.variants["fp32"], ["onnx/model.onnx"]);
    assert_eq!(c.variants["fp16"], ["onnx/model_fp16.onnx"]);
    assert_eq!(c.variants["int8"], ["onnx/model_int8.onnx"]);
    assert_eq!(c.variants["q8"], ["onnx/model_quantized.onnx"]);
    // This snapshot predates the q4/q4f16 exports.
    assert_eq!(c.files_for("q4f16"), None);
    let mut q8 = vec!["onnx/model_quantized.onnx"];
    q8.extend(shared);
    assert_eq!(c.files_for("q8").unwrap(), q8);
}

fn qwen_coder_onnx(c: &Classification) {
    let shared = [
        "added_tokens.json",
        "config.json",
        "generation_config.json",
        "merges.txt",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.json",
    ];
    let dtypes = [
        ("bnb4", "_bnb4"),
        ("fp16", "_fp16"),
        ("fp32", ""),
        ("int8", "_int8"),
        ("q4", "_q4"),
        ("q4f16", "_q4f16"),
        ("q8", "_quantized"),
        ("uint8", "_uint8"),
    ];
    let expected_keys: Vec<&str> = dtypes.iter().map(|(key, _)| *key).collect();
    assert_shape(c, &expected_keys, &shared);
    for (key, suffix) in dtypes {
        let model = format!("onnx/model{suffix}.onnx");
        assert_eq!(
            c.variants[key],
            [model.clone(), format!("{model}_data")],
            "{key}"
        );
    }
    let mut q4f16 = vec!["onnx/model_q4f16.onnx", "onnx/model_q4f16.onnx_data"];
    q4f16.extend(shared);
    assert_eq!(c.files_for("q4f16").unwrap(), q4f16);
}

fn pho_whisper(c: &Classification) {
    assert_shape(
        c,
        &["fp32", "q8"],
        &[
            "added_tokens.json",
            "config.json",
            "generation_config.json",
            "merges.txt",
            "normalizer.json",
            "preprocessor_config.json",
            "quantize_config.json",
            "special_tokens_map.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "vocab.json",
        ],
    );
    // Every component in each dtype, the merged decoder kept apart from the plain one.
    assert_eq!(
        c.variants["fp32"],
        [
            "onnx/decoder_model.onnx",
            "onnx/decoder_model_merged.onnx",
            "onnx/decoder_with_past_model.onnx",
            "onnx/encoder_model.onnx",
        ]
    );
    assert_eq!(
        c.variants["q8"],
        [
            "onnx/decoder_model_merged_quantized.onnx",
            "onnx/decoder_model_quantized.onnx",
            "onnx/decoder_with_past_model_quantized.onnx",
            "onnx/encoder_model_quantized.onnx",
        ]
    );
}

fn nomic_vision(c: &Classification) {
    assert_shape(
        c,
        &[
            "bnb4",
            "fp16",
            "fp32",
            "int8",
            "q4",
            "q8",
            "safetensors",
            "uint8",
        ],
        &["config.json", "preprocessor_config.json"],
    );
    assert_eq!(c.variants["bnb4"], ["onnx/model_bnb4.onnx"]);
    assert_eq!(c.variants["q4"], ["onnx/model_q4.onnx"]);
    assert_eq!(c.variants["uint8"], ["onnx/model_uint8.onnx"]);
    assert_eq!(c.variants["safetensors"], ["model.safetensors"]);
}

fn rmbg(c: &Classification) {
    // onnx/quantize_config.json records how the ONNX files were made; nothing loads it.
    assert_shape(
        c,
        &["fp16", "fp32", "pytorch", "q8", "safetensors"],
        &["config.json", "preprocessor_config.json"],
    );
    assert_eq!(c.variants["fp32"], ["onnx/model.onnx"]);
    assert_eq!(c.variants["q8"], ["onnx/model_quantized.onnx"]);
    // model.pth is the custom code's checkpoint, not transformers' pytorch_model.bin.
    assert_eq!(c.variants["pytorch"], ["pytorch_model.bin"]);
    assert_eq!(c.variants["safetensors"], ["model.safetensors"]);
}

fn gpt2(c: &Classification) {
    // onnx/ carries its own config and tokenizer copies; transformers.js reads the root's.
    assert_shape(
        c,
        &["fp32", "pytorch", "safetensors"],
        &[
            "config.json",
            "generation_config.json",
            "merges.txt",
            "tokenizer.json",
            "tokenizer_config.json",
            "vocab.json",
        ],
    );
    assert_eq!(
        c.variants["fp32"],
        [
            "onnx/decoder_model.onnx",
            "onnx/decoder_model_merged.onnx",
            "onnx/decoder_with_past_model.onnx",
        ]
    );
    assert_eq!(c.variants["pytorch"], ["pytorch_model.bin"]);
    assert_eq!(c.variants["safetensors"], ["model.safetensors"]);
}

fn mpnet(c: &Classification) {
    assert_shape(
        c,
        &[
            "O1",
            "O2",
            "O3",
            "O4",
            "fp32",
            "pytorch",
            "qint8_arm64",
            "qint8_avx512",
            "qint8_avx512_vnni",
            "quint8_avx2",
            "safetensors",
        ],
        &[
            "1_Pooling/config.json",
            "config.json",
            "config_sentence_transformers.json",
            "modules.json",
            "sentence_bert_config.json",
            "special_tokens_map.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "vocab.txt",
        ],
    );
    // The Optimum exports are alternatives to model.onnx, not extra components of fp32.
    assert_eq!(c.variants["fp32"], ["onnx/model.onnx"]);
    assert_eq!(c.variants["O4"], ["onnx/model_O4.onnx"]);
    assert_eq!(c.variants["qint8_avx512"], ["onnx/model_qint8_avx512.onnx"]);
    assert_eq!(
        c.variants["qint8_avx512_vnni"],
        ["onnx/model_qint8_avx512_vnni.onnx"]
    );
    assert_eq!(c.variants["pytorch"], ["pytorch_model.bin"]);
}

// ---------------------------------------------------------------------------------------------
// safetensors / pytorch

fn bert(c: &Classification) {
    // tf_model.h5 is another framework's copy: only the pytorch weights are a variant.
    assert_shape(c, &["pytorch"], &["config.json", "vocab.txt"]);
    assert_eq!(c.variants["pytorch"], ["pytorch_model.bin"]);
}

fn granite(c: &Classification) {
    assert_shape(
        c,
        &["safetensors"],
        &[
            "added_tokens.json",
            "config.json",
            "generation_config.json",
            "merges.txt",
            "special_tokens_map.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "vocab.json",
        ],
    );
    assert_eq!(c.variants["safetensors"], ["model.safetensors"]);
}

fn llama32(c: &Classification) {
    // original/ (consolidated.00.pth, params.json, its tokenizer.model) is Meta's own format.
    assert_shape(
        c,
        &["safetensors"],
        &[
            "config.json",
            "generation_config.json",
            "special_tokens_map.json",
            "tokenizer.json",
            "tokenizer_config.json",
        ],
    );
    let mut weights = shards("model", 1, 2, 2, "safetensors");
    weights.push("model.safetensors.index.json".into());
    assert_eq!(c.variants["safetensors"], weights);
}

fn gpt_oss(c: &Classification) {
    // original/ and metal/ hold other runtimes' copies of the weights.
    assert_shape(
        c,
        &["safetensors"],
        &[
            "chat_template.jinja",
            "config.json",
            "generation_config.json",
            "special_tokens_map.json",
            "tokenizer.json",
            "tokenizer_config.json",
        ],
    );
    // Shards numbered from zero still form one variant.
    let mut weights = shards("model", 0, 2, 2, "safetensors");
    weights.push("model.safetensors.index.json".into());
    assert_eq!(c.variants["safetensors"], weights);
}

fn wizardlm_8x22b(c: &Classification) {
    assert_shape(
        c,
        &["safetensors"],
        &[
            "config.json",
            "generation_config.json",
            "special_tokens_map.json",
            "tokenizer.model",
            "tokenizer_config.json",
        ],
    );
    let mut weights = shards("model", 1, 59, 59, "safetensors");
    weights.push("model.safetensors.index.json".into());
    assert_eq!(c.variants["safetensors"], weights);
}

fn reflection_70b(c: &Classification) {
    assert_shape(
        c,
        &["safetensors"],
        &[
            "config.json",
            "generation_config.json",
            "special_tokens_map.json",
            "tokenizer.json",
            "tokenizer_config.json",
        ],
    );
    let mut weights = shards("model", 1, 162, 162, "safetensors");
    weights.push("model.safetensors.index.json".into());
    assert_eq!(c.variants["safetensors"], weights);
}

fn wizard_vicuna_gptq(c: &Classification) {
    // quantize_config.json is shared, so downloading the GPTQ weights fetches it too.
    assert_shape(
        c,
        &["safetensors"],
        &[
            "config.json",
            "generation_config.json",
            "quantize_config.json",
            "special_tokens_map.json",
            "tokenizer.json",
            "tokenizer.model",
            "tokenizer_config.json",
        ],
    );
    assert_eq!(c.variants["safetensors"], ["model.safetensors"]);
    let files = c.files_for("safetensors").unwrap();
    assert!(files.contains(&"quantize_config.json".to_string()));
    assert!(!files.contains(&"trainer_state.json".to_string()));
}

fn wizardcoder_gptq(c: &Classification) {
    assert_shape(
        c,
        &["safetensors"],
        &[
            "added_tokens.json",
            "config.json",
            "generation_config.json",
            "quantize_config.json",
            "special_tokens_map.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "vocab.json",
        ],
    );
    assert_eq!(
        c.variants["safetensors"],
        ["gptq_model-4bit-128g.safetensors"]
    );
}

// ---------------------------------------------------------------------------------------------
// GGUF

/// TheBloke's twelve llama.cpp k-quants and legacy quants, one file each.
const THEBLOKE_QUANTS: [&str; 12] = [
    "Q2_K", "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q4_0", "Q4_K_M", "Q4_K_S", "Q5_0", "Q5_K_M", "Q5_K_S",
    "Q6_K", "Q8_0",
];

fn assert_one_file_per_quant(c: &Classification, prefix: &str) {
    for quant in THEBLOKE_QUANTS {
        assert_eq!(
            c.variants[quant],
            [format!("{prefix}.{quant}.gguf")],
            "{quant}"
        );
    }
}

fn llama2_gguf(c: &Classification) {
    assert_shape(c, &THEBLOKE_QUANTS, &["config.json"]);
    assert_one_file_per_quant(c, "llama-2-7b-chat");
}

fn mistral_gguf(c: &Classification) {
    assert_shape(c, &THEBLOKE_QUANTS, &["config.json"]);
    assert_one_file_per_quant(c, "mistral-7b-instruct-v0.2");
}

const BARTOWSKI_QUANTS: [(&str, &str); 18] = [
    ("F16", "f16"),
    ("IQ3_M", "IQ3_M"),
    ("IQ4_XS", "IQ4_XS"),
    ("Q3_K_L", "Q3_K_L"),
    ("Q3_K_XL", "Q3_K_XL"),
    ("Q4_0", "Q4_0"),
    ("Q4_0_4_4", "Q4_0_4_4"),
    ("Q4_0_4_8", "Q4_0_4_8"),
    ("Q4_0_8_8", "Q4_0_8_8"),
    ("Q4_K_L", "Q4_K_L"),
    ("Q4_K_M", "Q4_K_M"),
    ("Q4_K_S", "Q4_K_S"),
    ("Q5_K_L", "Q5_K_L"),
    ("Q5_K_M", "Q5_K_M"),
    ("Q5_K_S", "Q5_K_S"),
    ("Q6_K", "Q6_K"),
    ("Q6_K_L", "Q6_K_L"),
    ("Q8_0", "Q8_0"),
];

fn bartowski_llama32_gguf(c: &Classification) {
    // The listing is the card's table of .gguf files only, so nothing is shared.
    let expected_keys: Vec<&str> = BARTOWSKI_QUANTS.iter().map(|(key, _)| *key).collect();
    assert_shape(c, &expected_keys, &[]);
    for (key, spelled) in BARTOWSKI_QUANTS {
        let file = format!("Llama-3.2-3B-Instruct-{spelled}.gguf");
        assert_eq!(c.variants[key], [file], "{key}");
    }
}

fn deepseek_r1_gguf(c: &Classification) {
    // (key, folder/file prefix, shard count)
    let quants = [
        ("BF16", "DeepSeek-R1-BF16/DeepSeek-R1.BF16", 30),
        ("Q2_K", "DeepSeek-R1-Q2_K/DeepSeek-R1-Q2_K", 5),
        ("Q2_K_L", "DeepSeek-R1-Q2_K_L/DeepSeek-R1-Q2_K_L", 5),
        ("Q2_K_XS", "DeepSeek-R1-Q2_K_XS/DeepSeek-R1-Q2_K_XS", 5),
        ("Q3_K_M", "DeepSeek-R1-Q3_K_M/DeepSeek-R1-Q3_K_M", 7),
        ("Q4_K_M", "DeepSeek-R1-Q4_K_M/DeepSeek-R1-Q4_K_M", 9),
        ("Q5_K_M", "DeepSeek-R1-Q5_K_M/DeepSeek-R1-Q5_K_M", 10),
        ("Q6_K", "DeepSeek-R1-Q6_K/DeepSeek-R1-Q6_K", 12),
        ("Q8_0", "DeepSeek-R1-Q8_0/DeepSeek-R1.Q8_0", 15),
        ("UD-IQ1_M", "DeepSeek-R1-UD-IQ1_M/DeepSeek-R1-UD-IQ1_M", 4),
        ("UD-IQ1_S", "DeepSeek-R1-UD-IQ1_S/DeepSeek-R1-UD-IQ1_S", 3),
        (
            "UD-IQ2_XXS",
            "DeepSeek-R1-UD-IQ2_XXS/DeepSeek-R1-UD-IQ2_XXS",
            4,
        ),
        (
            "UD-Q2_K_XL",
            "DeepSeek-R1-UD-Q2_K_XL/DeepSeek-R1-UD-Q2_K_XL",
            5,
        ),
    ];
    let expected_keys: Vec<&str> = quants.iter().map(|(key, _, _)| *key).collect();
    assert_shape(c, &expected_keys, &["config.json"]);
    for (key, prefix, count) in quants {
        assert_eq!(
            c.variants[key],
            shards(prefix, 1, count, count, "gguf"),
            "{key}"
        );
    }
    let mut files_for = shards("DeepSeek-R1-UD-IQ1_S/DeepSeek-R1-UD-IQ1_S", 1, 3, 3, "gguf");
    files_for.push("config.json".into());
    assert_eq!(c.files_for("UD-IQ1_S").unwrap(), files_for);
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
        keys(&c).len(),
        BARTOWSKI_QUANTS.len(),
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
