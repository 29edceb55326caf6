"""Real consumers read what the cache hands out: onnxruntime from get_file bytes and, with
external data, from file_path; the gguf package from file_path. The models are generated here
with the onnx and gguf packages."""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import tabagent_model_cache


def add_model() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2, 3])
    z = helper.make_tensor_value_info("Z", TensorProto.FLOAT, [2, 3])
    graph = helper.make_graph([helper.make_node("Add", ["X", "Y"], ["Z"])], "add", [x, y], [z])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def matmul_model(weights: np.ndarray) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, weights.shape[0]])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, weights.shape[1]])
    w = numpy_helper.from_array(weights, name="W")
    graph = helper.make_graph([helper.make_node("MatMul", ["X", "W"], ["Y"])], "matmul", [x], [y], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_onnxruntime_from_get_file_bytes(hub, tmp_path):
    repo = hub.new_repo_id("onnx-add")
    folder = hub.root / repo / "onnx"
    folder.mkdir(parents=True)
    onnx.save_model(add_model(), str(folder / "model.onnx"))
    with tabagent_model_cache.ModelCache(str(tmp_path / "db")) as cache:
        manifest = cache.scan_repo(repo)
        assert "fp32" in manifest["quants"]
        cache.download_quant(repo, "fp32")
        model_bytes = cache.get_file(repo, "onnx/model.onnx")
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.full((2, 3), 10, dtype=np.float32)
    (result,) = session.run(None, {"X": a, "Y": b})
    np.testing.assert_array_equal(result, a + b)


def test_onnxruntime_external_data_from_file_path(hub, tmp_path):
    repo = hub.new_repo_id("onnx-external")
    folder = hub.root / repo / "onnx"
    folder.mkdir(parents=True)
    weights = np.random.default_rng(1).standard_normal((128, 64)).astype(np.float32)
    onnx.save_model(
        matmul_model(weights),
        str(folder / "model.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="model.onnx_data",
        size_threshold=0,
    )
    assert (folder / "model.onnx_data").stat().st_size == weights.nbytes
    with tabagent_model_cache.ModelCache(str(tmp_path / "db")) as cache:
        manifest = cache.scan_repo(repo)
        assert set(manifest["quants"]["fp32"]["files"]) >= {"onnx/model.onnx", "onnx/model.onnx_data"}
        cache.download_quant(repo, "fp32")
        path = cache.file_path(repo, "onnx/model.onnx")
    assert path is not None and os.path.isfile(path)
    assert os.path.isfile(os.path.join(os.path.dirname(path), "model.onnx_data"))
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(2).standard_normal((1, 128)).astype(np.float32)
    (result,) = session.run(None, {"X": x})
    np.testing.assert_allclose(result, x @ weights, rtol=1e-5, atol=1e-5)


def test_gguf_reader_from_file_path(hub, tmp_path):
    import gguf

    repo = hub.new_repo_id("tiny-gguf")
    target = hub.root / repo / "tiny-F32.gguf"
    target.parent.mkdir(parents=True)
    tensor = np.arange(4 * 8, dtype=np.float32).reshape(4, 8)
    writer = gguf.GGUFWriter(str(target), "llama")
    writer.add_block_count(1)
    writer.add_context_length(128)
    writer.add_string("tabcache.test", "hello")
    writer.add_tensor("token_embd.weight", tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    hub.write(repo, "config.json", b"{}")
    with tabagent_model_cache.ModelCache(str(tmp_path / "db")) as cache:
        manifest = cache.scan_repo(repo)
        assert "F32" in manifest["quants"]
        cache.download_quant(repo, "F32")
        path = cache.file_path(repo, "tiny-F32.gguf")
    reader = gguf.GGUFReader(path)
    field = reader.get_field("tabcache.test")
    assert bytes(field.parts[field.data[0]]).decode() == "hello"
    (stored,) = [t for t in reader.tensors if t.name == "token_embd.weight"]
    np.testing.assert_array_equal(np.asarray(stored.data).reshape(tensor.shape), tensor)
