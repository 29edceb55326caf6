// What a browser extension does with a tabcache server: transformers.js (served from this
// page's origin, as an extension ships it) reads the model from the server through
// env.remoteHost, with onnxruntime-web's wasm from this origin too, and no second copy of the
// model in the browser's own storage.
import { env, pipeline } from '/transformers/transformers.js';

// The server's answer for a model is the only source: no local models, no Cache API copy.
env.allowLocalModels = false;
env.allowRemoteModels = true;
env.useBrowserCache = false;
// Without this onnxruntime-web fetches its runtime from a CDN. The asyncify build is the one
// transformers.js picks by default; ours is the same file, from this origin.
env.backends.onnx.wasm.wasmPaths = {
  mjs: new URL('/ort/ort-wasm-simd-threaded.asyncify.mjs', location.origin).href,
  wasm: new URL('/ort/ort-wasm-simd-threaded.asyncify.wasm', location.origin).href,
};
// The page is not cross-origin isolated (no SharedArrayBuffer): one thread, said outright.
env.backends.onnx.wasm.numThreads = 1;

window.tabcacheRun = async ({ server, repo, text }) => {
  env.remoteHost = server + '/';
  try {
    // fp32: onnx/model.onnx (on wasm transformers.js would otherwise ask for the q8 file).
    const extractor = await pipeline('feature-extraction', repo, { device: 'wasm', dtype: 'fp32' });
    const encoded = await extractor.tokenizer(text);
    const output = await extractor(text);
    return {
      ok: true,
      input_ids: Array.from(encoded.input_ids.data, Number),
      dims: output.dims,
      embedding: Array.from(output.data),
      ort_version: env.backends.onnx.versions?.web ?? null,
    };
  } catch (e) {
    return { ok: false, error: String(e && e.stack ? e.stack : e) };
  }
};

// A plain fetch of one file of the model, for the page whose origin the server must refuse.
window.tabcacheFetch = async (url) => {
  try {
    const response = await fetch(url);
    return { ok: true, status: response.status, body: await response.text() };
  } catch (e) {
    return { ok: false, error: String(e) };
  }
};

window.tabcacheReady = true;
