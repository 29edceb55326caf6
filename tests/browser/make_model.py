"""A tiny BERT-like feature-extraction model that transformers.js accepts, with known weights,
and the embedding it must produce, computed here independently of any ONNX runtime.

    python make_model.py OUT_DIR

writes the repo files (config.json, tokenizer.json, tokenizer_config.json, onnx/model.onnx)
under OUT_DIR/repo/ and OUT_DIR/expected.json ({"text", "input_ids", "dims", "embedding"}).
tests/browser.rs puts the repo into the hub emulator, downloads it through tabcache, serves it
and has Chromium run it with transformers.js; the page's output must equal "embedding".

The graph is small but of BERT's shape, so that transformers.js drives it as it drives a real
BERT: word + token-type + position embeddings, LayerNorm, a dense layer with tanh, and the
attention mask applied to the output (inputs input_ids, attention_mask, token_type_ids; output
last_hidden_state). The expected output is computed with numpy from the same weights, then
onnxruntime (from PyPI) runs the written file, so a fault in the graph is told apart from a
fault in the browser before the browser starts.
"""

import json
import pathlib
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HIDDEN = 16
MAX_POSITIONS = 32
TYPE_VOCAB = 2
EPSILON = 1e-12
SEED = 15  # issue 15

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["hello", ",", "!", ".", "tab", "##cache", "serves", "the", "browser", "model", "##s"]
VOCAB = SPECIAL + WORDS

# BERT's lower-casing, punctuation split and greedy WordPiece ("tabcache" -> "tab" "##cache")
# give these tokens; the test checks that the page's tokenizer agrees.
TEXT = "Hello, TabCache serves the browser models!"
TOKENS = [
    "[CLS]", "hello", ",", "tab", "##cache", "serves", "the", "browser", "model", "##s", "!",
    "[SEP]",
]


def weights():
    rng = np.random.default_rng(SEED)

    def normal(*shape, scale):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    return {
        "word_embeddings": normal(len(VOCAB), HIDDEN, scale=0.5),
        "position_embeddings": normal(MAX_POSITIONS, HIDDEN, scale=0.1),
        "token_type_embeddings": normal(TYPE_VOCAB, HIDDEN, scale=0.1),
        "ln_gamma": (1.0 + normal(HIDDEN, scale=0.1)).astype(np.float32),
        "ln_beta": normal(HIDDEN, scale=0.1),
        "dense_weight": normal(HIDDEN, HIDDEN, scale=0.4),
        "dense_bias": normal(HIDDEN, scale=0.1),
    }


def reference(w, input_ids, attention_mask, token_type_ids):
    """The forward pass in numpy (float64, then float32), independent of the ONNX graph."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    seq = input_ids.shape[1]
    x = (
        w["word_embeddings"][input_ids]
        + w["token_type_embeddings"][token_type_ids]
        + w["position_embeddings"][np.arange(seq)][None, :, :]
    )
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    x = (x - mean) / np.sqrt(var + EPSILON) * w["ln_gamma"] + w["ln_beta"]
    x = np.tanh(x @ w["dense_weight"] + w["dense_bias"])
    return (x * attention_mask[:, :, None]).astype(np.float32)


def graph(w):
    ids = ["batch", "sequence"]
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ids)
        for name in ("input_ids", "attention_mask", "token_type_ids")
    ]
    output = helper.make_tensor_value_info(
        "last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", HIDDEN]
    )
    init = [numpy_helper.from_array(v, k) for k, v in w.items()]
    init += [
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array(1, np.int64), "one"),
        numpy_helper.from_array(np.array([-1], np.int64), "last_axis"),
    ]
    node = helper.make_node
    nodes = [
        node("Gather", ["word_embeddings", "input_ids"], ["words"]),
        node("Gather", ["token_type_embeddings", "token_type_ids"], ["types"]),
        node("Shape", ["input_ids"], ["shape"]),
        node("Gather", ["shape", "one"], ["seq_len"]),
        node("Range", ["zero", "seq_len", "one"], ["position_ids"]),
        node("Gather", ["position_embeddings", "position_ids"], ["positions"]),
        node("Add", ["words", "types"], ["sum1"]),
        node("Add", ["sum1", "positions"], ["embeddings"]),
        node(
            "LayerNormalization",
            ["embeddings", "ln_gamma", "ln_beta"],
            ["normed"],
            axis=-1,
            epsilon=EPSILON,
        ),
        node("MatMul", ["normed", "dense_weight"], ["dense"]),
        node("Add", ["dense", "dense_bias"], ["dense_b"]),
        node("Tanh", ["dense_b"], ["activated"]),
        node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        node("Unsqueeze", ["mask_f", "last_axis"], ["mask"]),
        node("Mul", ["activated", "mask"], ["last_hidden_state"]),
    ]
    g = helper.make_graph(nodes, "tiny-bert", inputs, [output], init)
    # Opset 17 (LayerNormalization) and IR 8: well inside what onnxruntime-web reads.
    model = helper.make_model(
        g, opset_imports=[helper.make_opsetid("", 17)], producer_name="tabcache-test"
    )
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def tokenizer_json():
    special = [
        {
            "id": VOCAB.index(t),
            "content": t,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for t in SPECIAL
    ]

    def special_ref(t):
        return {"id": t, "ids": [VOCAB.index(t)], "tokens": [t]}

    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": special,
        "normalizer": {
            "type": "BertNormalizer",
            "clean_text": True,
            "handle_chinese_chars": True,
            "strip_accents": None,
            "lowercase": True,
        },
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [
                {"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
            ],
            "pair": [
                {"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
                {"Sequence": {"id": "B", "type_id": 1}},
                {"SpecialToken": {"id": "[SEP]", "type_id": 1}},
            ],
            "special_tokens": {t: special_ref(t) for t in ("[CLS]", "[SEP]")},
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {
            "type": "WordPiece",
            "unk_token": "[UNK]",
            "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100,
            "vocab": {t: i for i, t in enumerate(VOCAB)},
        },
    }


def main():
    out = pathlib.Path(sys.argv[1])
    repo = out / "repo"
    (repo / "onnx").mkdir(parents=True, exist_ok=True)
    w = weights()
    model = graph(w)
    onnx.save(model, repo / "onnx" / "model.onnx")

    config = {
        "model_type": "bert",
        "architectures": ["BertModel"],
        "vocab_size": len(VOCAB),
        "hidden_size": HIDDEN,
        "num_hidden_layers": 1,
        "num_attention_heads": 1,
        "intermediate_size": HIDDEN,
        "max_position_embeddings": MAX_POSITIONS,
        "type_vocab_size": TYPE_VOCAB,
        "layer_norm_eps": EPSILON,
        "pad_token_id": 0,
    }
    tokenizer_config = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": True,
        "model_max_length": MAX_POSITIONS,
        "cls_token": "[CLS]",
        "sep_token": "[SEP]",
        "pad_token": "[PAD]",
        "unk_token": "[UNK]",
        "mask_token": "[MASK]",
    }
    for name, value in [
        ("config.json", config),
        ("tokenizer.json", tokenizer_json()),
        ("tokenizer_config.json", tokenizer_config),
    ]:
        (repo / name).write_text(json.dumps(value, indent=2) + "\n")

    input_ids = np.array([[VOCAB.index(t) for t in TOKENS]], np.int64)
    mask = np.ones_like(input_ids)
    types = np.zeros_like(input_ids)
    expected = reference(w, input_ids, mask, types)

    # The written file, run by onnxruntime, must agree with numpy: otherwise the graph (not
    # the browser) is wrong, and this says so before any browser starts.
    import onnxruntime

    session = onnxruntime.InferenceSession(
        str(repo / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    (ort_out,) = session.run(
        ["last_hidden_state"],
        {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": types},
    )
    np.testing.assert_allclose(ort_out, expected, rtol=1e-5, atol=1e-5)
    # Not all zeros, not saturated: a wrong input order or a dropped term shows up.
    assert 0.05 < float(np.abs(expected).mean()) < 0.95, float(np.abs(expected).mean())

    (out / "expected.json").write_text(
        json.dumps(
            {
                "text": TEXT,
                "input_ids": input_ids[0].tolist(),
                "dims": list(expected.shape),
                "embedding": [float(v) for v in expected.reshape(-1)],
            }
        )
    )


if __name__ == "__main__":
    main()
