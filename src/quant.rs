//! Turns a repository's file listing (paths only) into quantization variants: for each quant
//! key the files that variant needs, the files every variant shares, and projector add-ons.
//! Pure and infallible: an empty or weights-less listing classifies to no variants.
//!
//! # Rules
//!
//! A repo may hold several formats at once (ONNX, GGUF, safetensors, pytorch); each contributes
//! its own keys to the one map. Keys of different formats never collide (`fp16` vs `F16`).
//!
//! ## ONNX (transformers.js `dtype` conventions)
//! * A file `{component}{suffix}.onnx` is one component in one dtype. The suffix is the
//!   longest of: `""`->`fp32`, `_fp16`->`fp16`, `_int8`->`int8`, `_uint8`->`uint8`,
//!   `_quantized`->`q8`, `_q4`->`q4`, `_q4f16`->`q4f16`, `_bnb4`->`bnb4`, `_q2`->`q2`,
//!   `_q2f16`->`q2f16`, `_q1`->`q1`, `_q1f16`->`q1f16`. Optimum / sentence-transformers exports
//!   are recognized too so that they do not pose as extra fp32 components: `_O1`..`_O4` ->
//!   `O1`..`O4`, `_qint8_arm64`, `_qint8_avx512`, `_qint8_avx512_vnni`, `_quint8_avx2` -> the
//!   suffix without its `_`. Suffixes are case-sensitive, as transformers.js builds them. A
//!   stem with no known suffix is an fp32 component (so `decoder_model_merged` is a component,
//!   not `decoder_model` + something).
//! * Which folder holds the components: `onnx/` when it has any `.onnx` (where transformers.js
//!   looks; `.onnx` files elsewhere are then ignored), else the root (Optimum's layout), else
//!   every folder that holds `.onnx` files directly, each folder's components being distinct
//!   (diffusers-style pipelines: `text_encoder/model.onnx`, `unet/model.onnx`, ...).
//! * A key is a variant only if EVERY component has a file with that suffix: transformers.js
//!   applies one dtype to all components and fails on a missing one. So a repo with
//!   `model.onnx`, `model_q4.onnx` and only `embed_tokens.onnx` offers `fp32` alone. Conversely
//!   every component is fetched, even those a given architecture does not load (Whisper's
//!   `decoder_model` next to `decoder_model_merged`): the listing cannot tell which are used.
//! * Each `.onnx` brings its external data in the same folder: `{name}.onnx_data`,
//!   `{name}.onnx_data_{n}` and `{name}.onnx.data`. Data files without their `.onnx` are ignored.
//!
//! ## GGUF (llama.cpp)
//! * Any `*.gguf` (extension case-insensitive) anywhere. A name containing `mmproj` is a
//!   projector add-on, keyed by its stem (`mmproj-F16`), never a variant.
//! * The quant type is searched case-insensitively in the file stem (shard suffix removed),
//!   then in its folders from the innermost out (per-quant folders such as `Q4_K_M/`). A type
//!   is one of F64, F32, F16, BF16, MXFP4, MXFP4_MOE, Q{4,5,8}_{0,1}, Q4_0_{4_4,4_8,8_8},
//!   Q{2..8}_K with an optional `_XXS/_XS/_S/_M/_L/_XL`, IQ{1..4}_{XXS,XS,S,M,NL,XL},
//!   TQ1_0, TQ2_0; it must stand between non-alphanumeric characters (so `BF16` never yields
//!   `F16`), the longest type wins at a position, and when a name holds several, the LAST one
//!   wins. A type right after a standalone `UD-` keeps that prefix (`UD-IQ1_S`). Keys are the
//!   canonical upper-case spelling.
//! * Split shards `{base}-00001-of-00003.gguf` share their base's key, so they group into one
//!   variant, as do all files of a per-quant folder.
//! * A GGUF whose quant cannot be found is not dropped: its key is its path without `.gguf`
//!   and without a shard suffix (`ggml-model` for a root file, `folder/name` otherwise), so
//!   its shards still group and two unrelated files never merge.
//!
//! ## safetensors / pytorch (transformers layout, root folder only)
//! * `safetensors`: every root `*.safetensors` plus `*.safetensors.index.json`, single file or
//!   shards. GPTQ/AWQ weights (`model.safetensors`, `gptq_model-4bit-128g.safetensors`) are
//!   this variant; their `quantize_config.json` is a shared file (below), so it is fetched
//!   with them. Mistral's `consolidated*.safetensors` are another format's copy of the same
//!   weights and are not part of it.
//! * `pytorch`: root `pytorch_model*.bin` and `pytorch_model.bin.index.json`. Other `.bin`,
//!   `.pt` and `.pth` (training state, `model.pth` for custom code) are not transformers
//!   weights.
//! * Subfolders are never part of these variants: Meta's `original/` checkpoint
//!   (`consolidated.00.pth`, `params.json`), gpt-oss's `original/` and `metal/`, OpenVINO,
//!   CoreML. Other frameworks' weights (`tf_model.h5`, `flax_model.msgpack`, `rust_model.ot`,
//!   `*.tflite`) are ignored.
//!
//! ## Shared files
//! Files whose name is in [`SHARED_NAMES`] (config, generation config, tokenizer files, chat
//! templates, vocab/merges, processor configs, `quantize_config.json`, sentence-transformers
//! and PEFT configs) join every variant, but only where a loader reads them: the root, a
//! sentence-transformers module folder (`1_Pooling/`, `2_Dense/`, ...), and the component
//! folders of a diffusers-style ONNX pipeline. Copies inside `onnx/` (gpt2 carries its own
//! config and tokenizer there for Optimum's `subfolder=` loading) are not shared: transformers.js
//! reads them from the root. README, `.gitattributes`, licences, images, code and training
//! files never join.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

/// What a listing offers: variants, the files they all need, and add-ons.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Classification {
    /// quant key -> the variant's own files (sorted), not including shared files
    pub variants: BTreeMap<String, Vec<String>>,
    /// files every variant needs (config.json, tokenizer*, ...), sorted
    pub shared: Vec<String>,
    /// projector add-ons such as GGUF `mmproj-*.gguf`: name (e.g. "mmproj-F16") -> files
    pub addons: BTreeMap<String, Vec<String>>,
}

impl Classification {
    /// The variant's own files followed by the shared files: what downloading it fetches.
    pub fn files_for(&self, key: &str) -> Option<Vec<String>> {
        let own = self.variants.get(key)?;
        Some(own.iter().chain(&self.shared).cloned().collect())
    }
}

/// File names that every variant needs when they sit in a folder a loader reads.
pub const SHARED_NAMES: &[&str] = &[
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "preprocessor_config.json",
    "processor_config.json",
    "video_preprocessor_config.json",
    "chat_template.json",
    "chat_template.jinja",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "normalizer.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "source.spm",
    "target.spm",
    "quantize_config.json",
    "adapter_config.json",
    "model_index.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
];

/// Classifies a listing. Paths are repo-relative and `/`-separated; duplicates are ignored.
pub fn classify<'a>(paths: impl IntoIterator<Item = &'a str>) -> Classification {
    let paths: BTreeSet<&str> = paths.into_iter().collect();
    let mut variants: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut addons: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();

    let onnx_dirs = onnx_component_dirs(&paths);
    add_onnx_variants(&paths, &onnx_dirs, &mut variants);
    add_gguf_variants(&paths, &mut variants, &mut addons);
    add_transformers_variants(&paths, &mut variants);

    // Folders other than `onnx/` and the root that hold ONNX components are pipeline parts
    // with their own configs.
    let shared = paths
        .iter()
        .filter(|path| {
            let (dir, name) = split_dir(path);
            SHARED_NAMES.contains(&name)
                && (dir.is_empty()
                    || is_sentence_transformers_module(dir)
                    || (dir != "onnx" && onnx_dirs.contains(dir)))
        })
        .map(|path| path.to_string())
        .collect();

    let into_sorted_vecs = |map: BTreeMap<String, BTreeSet<String>>| {
        map.into_iter()
            .map(|(key, files)| (key, files.into_iter().collect()))
            .collect()
    };
    Classification {
        variants: into_sorted_vecs(variants),
        shared,
        addons: into_sorted_vecs(addons),
    }
}

/// `("dir/sub", "name")` for `dir/sub/name`, `("", "name")` for a root file.
fn split_dir(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

fn is_sentence_transformers_module(dir: &str) -> bool {
    match dir.split_once('_') {
        Some((index, name)) => {
            !index.is_empty()
                && index.bytes().all(|b| b.is_ascii_digit())
                && !name.is_empty()
                && !name.contains('/')
        }
        None => false,
    }
}

// ---------------------------------------------------------------------------------------------
// ONNX

/// transformers.js dtype suffixes, then Optimum / sentence-transformers export suffixes.
const ONNX_SUFFIXES: &[(&str, &str)] = &[
    ("_fp16", "fp16"),
    ("_int8", "int8"),
    ("_uint8", "uint8"),
    ("_quantized", "q8"),
    ("_q4", "q4"),
    ("_q4f16", "q4f16"),
    ("_bnb4", "bnb4"),
    ("_q2", "q2"),
    ("_q2f16", "q2f16"),
    ("_q1", "q1"),
    ("_q1f16", "q1f16"),
    ("_O1", "O1"),
    ("_O2", "O2"),
    ("_O3", "O3"),
    ("_O4", "O4"),
    ("_qint8_arm64", "qint8_arm64"),
    ("_qint8_avx512", "qint8_avx512"),
    ("_qint8_avx512_vnni", "qint8_avx512_vnni"),
    ("_quint8_avx2", "quint8_avx2"),
];

/// Splits an `.onnx` stem into (component, dtype key): `decoder_model_merged_q4f16` ->
/// (`decoder_model_merged`, `q4f16`); a stem without a known suffix is fp32. The longest
/// matching suffix wins and the component must stay non-empty.
pub fn onnx_component_and_dtype(stem: &str) -> (&str, &'static str) {
    ONNX_SUFFIXES
        .iter()
        .filter(|(suffix, _)| stem.len() > suffix.len() && stem.ends_with(suffix))
        .max_by_key(|(suffix, _)| suffix.len())
        .map(|(suffix, key)| (&stem[..stem.len() - suffix.len()], *key))
        .unwrap_or((stem, "fp32"))
}

/// The `.onnx` that an external-data file belongs to: `onnx/model.onnx_data_2` ->
/// `onnx/model.onnx`.
fn onnx_data_owner(path: &str) -> Option<String> {
    if let Some(owner) = path.strip_suffix(".onnx.data") {
        return Some(format!("{owner}.onnx"));
    }
    let at = path.rfind(".onnx_data")?;
    let rest = &path[at + ".onnx_data".len()..];
    let numbered = rest
        .strip_prefix('_')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    (rest.is_empty() || numbered).then(|| format!("{}.onnx", &path[..at]))
}

fn onnx_component_dirs<'a>(paths: &BTreeSet<&'a str>) -> BTreeSet<&'a str> {
    let dirs: BTreeSet<&str> = paths
        .iter()
        .filter(|path| path.ends_with(".onnx"))
        .map(|path| split_dir(path).0)
        .collect();
    for preferred in ["onnx", ""] {
        if dirs.contains(preferred) {
            return BTreeSet::from([preferred]);
        }
    }
    dirs
}

fn add_onnx_variants(
    paths: &BTreeSet<&str>,
    component_dirs: &BTreeSet<&str>,
    variants: &mut BTreeMap<String, BTreeSet<String>>,
) {
    // (folder, component) -> dtype key -> path
    let mut components: BTreeMap<(&str, &str), BTreeMap<&str, &str>> = BTreeMap::new();
    for path in paths {
        let (dir, name) = split_dir(path);
        let Some(stem) = name.strip_suffix(".onnx") else {
            continue;
        };
        if !component_dirs.contains(dir) {
            continue;
        }
        let (component, key) = onnx_component_and_dtype(stem);
        components
            .entry((dir, component))
            .or_default()
            .insert(key, path);
    }
    let mut external_data: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for path in paths {
        if let Some(owner) = onnx_data_owner(path) {
            external_data.entry(owner).or_default().push(path);
        }
    }

    let keys: BTreeSet<&str> = components
        .values()
        .flat_map(|by_key| by_key.keys().copied())
        .collect();
    for key in keys {
        let Some(models) = components
            .values()
            .map(|by_key| by_key.get(key).copied())
            .collect::<Option<Vec<&str>>>()
        else {
            continue;
        };
        let files = variants.entry(key.to_string()).or_default();
        for model in models {
            files.insert(model.to_string());
            let data = external_data.get(model).into_iter().flatten();
            files.extend(data.map(|path| path.to_string()));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// GGUF

/// Every GGUF quant type name, longest first so that `Q4_K_M` is tried before `Q4_K`.
static GGUF_TYPES: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut types: Vec<String> = ["F64", "F32", "F16", "BF16", "MXFP4", "MXFP4_MOE"]
        .iter()
        .chain(&["TQ1_0", "TQ2_0", "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8"])
        .map(|t| t.to_string())
        .collect();
    for bits in [4, 5, 8] {
        types.push(format!("Q{bits}_0"));
        types.push(format!("Q{bits}_1"));
    }
    for bits in 2..=8 {
        types.push(format!("Q{bits}_K"));
        for size in ["XXS", "XS", "S", "M", "L", "XL"] {
            types.push(format!("Q{bits}_K_{size}"));
        }
    }
    for bits in 1..=4 {
        for size in ["XXS", "XS", "S", "M", "NL", "XL"] {
            types.push(format!("IQ{bits}_{size}"));
        }
    }
    types.sort_by_key(|t| std::cmp::Reverse(t.len()));
    types
});

/// The quant type named in `name` (see the module rules), in canonical spelling.
pub fn gguf_quant_type(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let standalone_before = |at: usize| at == 0 || !bytes[at - 1].is_ascii_alphanumeric();
    let standalone_after = |at: usize| at == bytes.len() || !bytes[at].is_ascii_alphanumeric();
    let mut last = None;
    let mut at = 0;
    while at < bytes.len() {
        let matched = standalone_before(at)
            .then(|| {
                GGUF_TYPES.iter().find(|t| {
                    let end = at + t.len();
                    end <= bytes.len()
                        && bytes[at..end].eq_ignore_ascii_case(t.as_bytes())
                        && standalone_after(end)
                })
            })
            .flatten();
        match matched {
            Some(quant) => {
                let unsloth_dynamic = at >= 3
                    && bytes[at - 3..at].eq_ignore_ascii_case(b"UD-")
                    && standalone_before(at - 3);
                last = Some(if unsloth_dynamic {
                    format!("UD-{quant}")
                } else {
                    quant.clone()
                });
                at += quant.len();
            }
            None => at += 1,
        }
    }
    last
}

/// `name-00001-of-00003` -> `name`; anything else unchanged.
fn strip_shard_suffix(stem: &str) -> &str {
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    stem.rsplit_once("-of-")
        .filter(|(_, total)| all_digits(total))
        .and_then(|(head, _)| head.rsplit_once('-'))
        .filter(|(_, index)| all_digits(index))
        .map_or(stem, |(base, _)| base)
}

fn add_gguf_variants(
    paths: &BTreeSet<&str>,
    variants: &mut BTreeMap<String, BTreeSet<String>>,
    addons: &mut BTreeMap<String, BTreeSet<String>>,
) {
    for path in paths {
        let ext_at = path.len().saturating_sub(".gguf".len());
        if path.len() <= ".gguf".len()
            || !path.is_char_boundary(ext_at)
            || !path[ext_at..].eq_ignore_ascii_case(".gguf")
        {
            continue;
        }
        let unsharded = strip_shard_suffix(&path[..ext_at]);
        let (dir, stem) = split_dir(unsharded);
        if stem.to_ascii_lowercase().contains("mmproj") {
            addons
                .entry(stem.to_string())
                .or_default()
                .insert(path.to_string());
            continue;
        }
        let key = gguf_quant_type(stem)
            .or_else(|| dir.rsplit('/').find_map(gguf_quant_type))
            .unwrap_or_else(|| unsharded.to_string());
        variants.entry(key).or_default().insert(path.to_string());
    }
}

// ---------------------------------------------------------------------------------------------
// safetensors / pytorch

fn add_transformers_variants(
    paths: &BTreeSet<&str>,
    variants: &mut BTreeMap<String, BTreeSet<String>>,
) {
    for path in paths.iter().filter(|path| !path.contains('/')) {
        let key = if (path.ends_with(".safetensors") || path.ends_with(".safetensors.index.json"))
            && !path.starts_with("consolidated")
        {
            "safetensors"
        } else if path.starts_with("pytorch_model")
            && (path.ends_with(".bin") || path.ends_with(".bin.index.json"))
        {
            "pytorch"
        } else {
            continue;
        };
        variants
            .entry(key.to_string())
            .or_default()
            .insert(path.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onnx_suffixes_parse_longest_first() {
        let cases = [
            ("model", ("model", "fp32")),
            ("model_fp16", ("model", "fp16")),
            ("model_q4", ("model", "q4")),
            ("model_q4f16", ("model", "q4f16")),
            ("model_q2", ("model", "q2")),
            ("model_q2f16", ("model", "q2f16")),
            ("model_q1", ("model", "q1")),
            ("model_q1f16", ("model", "q1f16")),
            ("model_int8", ("model", "int8")),
            ("model_uint8", ("model", "uint8")),
            ("model_quantized", ("model", "q8")),
            ("model_bnb4", ("model", "bnb4")),
            ("decoder_model_merged", ("decoder_model_merged", "fp32")),
            (
                "decoder_model_merged_q4f16",
                ("decoder_model_merged", "q4f16"),
            ),
            (
                "decoder_with_past_model_quantized",
                ("decoder_with_past_model", "q8"),
            ),
            ("embed_tokens_uint8", ("embed_tokens", "uint8")),
            ("model_O3", ("model", "O3")),
            ("model_qint8_avx512", ("model", "qint8_avx512")),
            ("model_qint8_avx512_vnni", ("model", "qint8_avx512_vnni")),
            ("model_quint8_avx2", ("model", "quint8_avx2")),
        ];
        for (stem, expected) in cases {
            assert_eq!(onnx_component_and_dtype(stem), expected, "stem {stem:?}");
        }
    }

    #[test]
    fn onnx_suffix_needs_underscore_case_and_a_component() {
        // A suffix alone is a component name, not an empty component in some dtype.
        assert_eq!(onnx_component_and_dtype("_fp16"), ("_fp16", "fp32"));
        // Case matters: transformers.js never writes `_FP16`, so this is its own component.
        assert_eq!(
            onnx_component_and_dtype("model_FP16"),
            ("model_FP16", "fp32")
        );
        // `q4` inside a name is not a suffix.
        assert_eq!(
            onnx_component_and_dtype("my_q4_model"),
            ("my_q4_model", "fp32")
        );
        assert_eq!(onnx_component_and_dtype("modelq4"), ("modelq4", "fp32"));
        // `_uint8` must not read as `_int8` with a `u` left on the component.
        assert_eq!(
            onnx_component_and_dtype("vision_uint8"),
            ("vision", "uint8")
        );
    }

    #[test]
    fn onnx_external_data_owner() {
        let owner = |p| onnx_data_owner(p);
        assert_eq!(
            owner("onnx/model.onnx_data").as_deref(),
            Some("onnx/model.onnx")
        );
        assert_eq!(
            owner("onnx/model_q4.onnx_data_12").as_deref(),
            Some("onnx/model_q4.onnx")
        );
        assert_eq!(owner("model.onnx.data").as_deref(), Some("model.onnx"));
        assert_eq!(owner("onnx/model.onnx_data_"), None);
        assert_eq!(owner("onnx/model.onnx_data_x"), None);
        assert_eq!(owner("onnx/model.onnx"), None);
    }

    #[test]
    fn a_dtype_missing_for_one_component_is_not_a_variant() {
        let c = classify([
            "onnx/model.onnx",
            "onnx/model_q4.onnx",
            "onnx/model_q4.onnx_data",
            "onnx/embed_tokens.onnx",
            "onnx/embed_tokens_fp16.onnx",
            "onnx/model_fp16.onnx",
            "onnx/model_fp16.onnx_data",
            "onnx/model_fp16.onnx_data_1",
            "onnx/orphan.onnx_data",
        ]);
        let keys: Vec<&str> = c.variants.keys().map(String::as_str).collect();
        assert_eq!(keys, ["fp16", "fp32"]);
        assert_eq!(
            c.variants["fp16"],
            [
                "onnx/embed_tokens_fp16.onnx",
                "onnx/model_fp16.onnx",
                "onnx/model_fp16.onnx_data",
                "onnx/model_fp16.onnx_data_1",
            ]
        );
        assert_eq!(
            c.variants["fp32"],
            ["onnx/embed_tokens.onnx", "onnx/model.onnx"]
        );
    }

    #[test]
    fn onnx_folder_wins_over_root_and_pipelines_use_every_folder() {
        let c = classify(["model.onnx", "onnx/model.onnx", "onnx/model_q4.onnx"]);
        assert_eq!(c.variants["fp32"], ["onnx/model.onnx"]);
        assert_eq!(c.variants["q4"], ["onnx/model_q4.onnx"]);

        let c = classify([
            "model_index.json",
            "text_encoder/config.json",
            "text_encoder/model.onnx",
            "text_encoder/model_fp16.onnx",
            "unet/config.json",
            "unet/model.onnx",
            "unet/model.onnx_data",
            "vae_decoder/model.onnx",
            "vae_decoder/model_fp16.onnx",
        ]);
        let keys: Vec<&str> = c.variants.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["fp32"],
            "unet has no fp16, so the pipeline has no fp16"
        );
        assert_eq!(
            c.variants["fp32"],
            [
                "text_encoder/model.onnx",
                "unet/model.onnx",
                "unet/model.onnx_data",
                "vae_decoder/model.onnx",
            ]
        );
        assert_eq!(
            c.shared,
            [
                "model_index.json",
                "text_encoder/config.json",
                "unet/config.json"
            ]
        );
    }

    #[test]
    fn gguf_quant_types() {
        let cases = [
            ("llama-2-7b-chat.Q4_K_M", Some("Q4_K_M")),
            ("Llama-3.2-3B-Instruct-f16", Some("F16")),
            ("model-bf16", Some("BF16")),
            ("model.BF16", Some("BF16")),
            ("Llama-3.2-3B-Instruct-Q4_0_4_8", Some("Q4_0_4_8")),
            ("Llama-3.2-3B-Instruct-Q4_0", Some("Q4_0")),
            ("Llama-3.2-3B-Instruct-IQ4_XS", Some("IQ4_XS")),
            ("x-iq2_xxs", Some("IQ2_XXS")),
            ("x-Q3_K_XL", Some("Q3_K_XL")),
            ("x-TQ1_0", Some("TQ1_0")),
            ("gpt-oss-20b-mxfp4", Some("MXFP4")),
            ("DeepSeek-R1-UD-IQ1_S", Some("UD-IQ1_S")),
            ("DeepSeek-R1-UD-Q2_K_XL", Some("UD-Q2_K_XL")),
            ("DeepSeek-R1-ud-q4_k_xl", Some("UD-Q4_K_XL")),
            // `UD` must stand alone to be the unsloth prefix.
            ("CRUD-Q4_0", Some("Q4_0")),
            // The last type in the name wins.
            ("model-f16-Q4_K_M", Some("Q4_K_M")),
            ("model-Q8_0-to-Q4_0", Some("Q4_0")),
            // Types inside words or followed by letters are not types.
            ("Qwen2-7B", None),
            ("BF16x", None),
            ("modelQ4_0", None),
            ("ggml-model", None),
            ("", None),
            ("naïve-Q5_K_S", Some("Q5_K_S")),
        ];
        for (name, expected) in cases {
            assert_eq!(gguf_quant_type(name).as_deref(), expected, "name {name:?}");
        }
    }

    #[test]
    fn gguf_shards_folders_mmproj_and_unparseable_names() {
        let c = classify([
            "gemma-3-4b-it-Q4_K_M.gguf",
            "gemma-3-4b-it-f16-00001-of-00002.gguf",
            "gemma-3-4b-it-f16-00002-of-00002.gguf",
            "Q8_0/model-00001-of-00002.gguf",
            "Q8_0/model-00002-of-00002.gguf",
            "mmproj-F16.gguf",
            "mmproj-model-f32.gguf",
            "ggml-model.gguf",
            "extra/ggml-model.gguf",
            "README.md",
        ]);
        let keys: Vec<&str> = c.variants.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["F16", "Q4_K_M", "Q8_0", "extra/ggml-model", "ggml-model"]
        );
        assert_eq!(
            c.variants["F16"],
            [
                "gemma-3-4b-it-f16-00001-of-00002.gguf",
                "gemma-3-4b-it-f16-00002-of-00002.gguf"
            ]
        );
        assert_eq!(
            c.variants["Q8_0"],
            [
                "Q8_0/model-00001-of-00002.gguf",
                "Q8_0/model-00002-of-00002.gguf"
            ]
        );
        let addon_names: Vec<&str> = c.addons.keys().map(String::as_str).collect();
        assert_eq!(addon_names, ["mmproj-F16", "mmproj-model-f32"]);
        assert_eq!(c.addons["mmproj-F16"], ["mmproj-F16.gguf"]);
        assert!(c.shared.is_empty());
    }

    #[test]
    fn shard_suffix() {
        assert_eq!(strip_shard_suffix("a-Q2_K-00001-of-00005"), "a-Q2_K");
        assert_eq!(strip_shard_suffix("a-00000-of-00002"), "a");
        assert_eq!(strip_shard_suffix("a-of-00002"), "a-of-00002");
        assert_eq!(strip_shard_suffix("a-x1-of-2"), "a-x1-of-2");
        assert_eq!(strip_shard_suffix("plain"), "plain");
    }

    #[test]
    fn files_for_puts_own_files_before_shared_ones() {
        let c = classify([
            "tokenizer.json",
            "config.json",
            "pytorch_model.bin",
            "README.md",
        ]);
        assert_eq!(
            c.files_for("pytorch").unwrap(),
            ["pytorch_model.bin", "config.json", "tokenizer.json"]
        );
        assert_eq!(c.files_for("safetensors"), None);
    }

    #[test]
    fn empty_listing_has_nothing() {
        assert_eq!(classify([]), Classification::default());
    }
}
