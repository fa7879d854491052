// Runs an ONNX graph qjobs wrote (jobs/export/onnx_llama.hpp) in
// onnxruntime-node, in two calls through its KV cache: tokens [0, AR) with
// an empty past, then [AR, 2AR) with the first call's keys and values as the
// past. Compares the logits with `qjobs-worker logits` of the same 2AR tokens.
//   node check.mjs MODEL.onnx CONFIG.json TOKENS.json LOGITS.safetensors AR CL TOLERANCE
// Exits 1 when max|onnx - qjobs| / max|qjobs| exceeds TOLERANCE on either call.
import fs from 'node:fs';
import * as ort from 'onnxruntime-node';

const [model, configPath, tokensPath, logitsPath, arS, clS, tolS] = process.argv.slice(2);
const AR = Number(arS), CL = Number(clS), tol = Number(tolS), P = CL - AR;
const config = JSON.parse(fs.readFileSync(configPath, 'utf8'));
const layers = config.num_hidden_layers, KVH = config.num_key_value_heads ?? config.num_attention_heads;
const D = config.head_dim ?? config.hidden_size / config.num_attention_heads, V = config.vocab_size;
const tokens = JSON.parse(fs.readFileSync(tokensPath, 'utf8'));
if (tokens.length !== 2 * AR) throw new Error(`expected ${2 * AR} tokens, got ${tokens.length}`);

// safetensors: 8-byte little-endian header length, JSON header, data.
function readSafetensors(path) {
  const buf = fs.readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const out = {};
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    if (info.dtype !== 'F32') throw new Error(`${name}: ${info.dtype}`);
    const [a, b] = info.data_offsets;
    const bytes = buf.subarray(8 + n + a, 8 + n + b);
    out[name] = { shape: info.shape, data: new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length)) };
  }
  return out;
}
const ref = readSafetensors(logitsPath).logits;  // [1, 2AR, V]

const session = await ort.InferenceSession.create(model, { graphOptimizationLevel: 'disabled' });
const NEG = -1e9;
let pastK = [], pastV = [];
for (let l = 0; l < layers; ++l) {
  pastK.push(new Float32Array(KVH * P * D));
  pastV.push(new Float32Array(KVH * P * D));
}
let worst = 0;
for (let call = 0; call < 2; ++call) {
  const start = call * AR;
  const ids = BigInt64Array.from(tokens.slice(start, start + AR).map(BigInt));
  const pos = BigInt64Array.from(Array.from({ length: AR }, (_, i) => BigInt(start + i)));
  // Columns [0, P): the past slots (the first `start` hold tokens 0..start-1);
  // columns [P, CL): the new tokens, causal.
  const mask = new Float32Array(AR * CL).fill(NEG);
  for (let i = 0; i < AR; ++i) {
    for (let j = 0; j < start; ++j) mask[i * CL + j] = 0;
    for (let j = 0; j <= i; ++j) mask[i * CL + P + j] = 0;
  }
  const feeds = {
    input_ids: new ort.Tensor('int64', ids, [1, AR]),
    position_ids: new ort.Tensor('int64', pos, [1, AR]),
    attention_mask: new ort.Tensor('float32', mask, [1, 1, AR, CL]),
  };
  for (let l = 0; l < layers; ++l) {
    feeds[`past_key_${l}_in`] = new ort.Tensor('float32', pastK[l], [1, KVH, P, D]);
    feeds[`past_value_${l}_in`] = new ort.Tensor('float32', pastV[l], [1, KVH, P, D]);
  }
  const out = await session.run(feeds);
  const logits = out.logits.data;
  let maxDiff = 0, maxRef = 0;
  const perToken = [];
  for (let t = 0; t < AR; ++t) {
    let d = 0;
    for (let v = 0; v < V; ++v) {
      const r = ref.data[(start + t) * V + v];
      d = Math.max(d, Math.abs(logits[t * V + v] - r));
      maxRef = Math.max(maxRef, Math.abs(r));
    }
    perToken.push(Number(d.toPrecision(3)));
    maxDiff = Math.max(maxDiff, d);
  }
  const rel = maxDiff / maxRef;
  worst = Math.max(worst, rel);
  console.log(JSON.stringify({ model, call, positions: [start, start + AR], max_abs_diff: maxDiff, max_abs_logit: maxRef, relative: rel, per_token_max_abs_diff: perToken }));
  // The new keys/values go into the past slots [start, start + AR).
  for (let l = 0; l < layers; ++l) {
    const k = out[`past_key_${l}_out`].data, v = out[`past_value_${l}_out`].data;
    for (let h = 0; h < KVH; ++h)
      for (let t = 0; t < AR; ++t)
        for (let d = 0; d < D; ++d) {
          pastK[l][(h * P + start + t) * D + d] = k[(h * AR + t) * D + d];
          pastV[l][(h * P + start + t) * D + d] = v[(h * AR + t) * D + d];
        }
  }
}
if (!(worst <= tol)) {
  console.error(`onnx check: ${model}: relative logit error ${worst} above ${tol}`);
  process.exit(1);
}
console.log(JSON.stringify({ model, ok: true, relative: worst, tolerance: tol }));
