// Reads a GGUF file qjobs wrote with Hugging Face's reader (@huggingface/gguf)
// and checks it against the Hugging Face checkpoint it came from, read here
// independently (safetensors parsed by hand, tokenizer.json as JSON):
// metadata, the tensor table, and every decoder Linear dequantized from its
// Q8_0 / Q4_0 blocks by this file's own decoder, within the block's step of
// the original weight (q and k rows in llama.cpp's interleaved RoPE order).
//   node check.mjs FILE.gguf CHECKPOINT_DIR TYPE(q8_0|q4_0)
import { gguf } from '@huggingface/gguf';
import { readFileSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';

const [file, dir, type] = process.argv.slice(2);
const { metadata: md, tensorInfos, tensorDataOffset } = await gguf(file, { allowLocalFile: true });
const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
const tok = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));

assert.equal(md.version, 3);
assert.equal(md['general.architecture'], 'llama');
assert.equal(md['llama.block_count'], config.num_hidden_layers);
assert.equal(md['llama.embedding_length'], config.hidden_size);
assert.equal(md['llama.feed_forward_length'], config.intermediate_size);
assert.equal(md['llama.attention.head_count'], config.num_attention_heads);
assert.equal(md['llama.attention.head_count_kv'], config.num_key_value_heads);
assert.equal(md['llama.context_length'], config.max_position_embeddings);
assert.ok(Math.abs(md['llama.attention.layer_norm_rms_epsilon'] - config.rms_norm_eps) < 1e-9);
assert.equal(md['general.file_type'], { q8_0: 7, q4_0: 2 }[type]);
assert.equal(md['tokenizer.ggml.model'], 'gpt2');
const tokens = md['tokenizer.ggml.tokens'];
assert.equal(tokens.length, config.vocab_size);
for (const [t, id] of Object.entries(tok.model.vocab)) assert.equal(tokens[id], t, `token ${id}`);
assert.equal(md['tokenizer.ggml.merges'].length, tok.model.merges.length);
assert.equal(md['tokenizer.ggml.bos_token_id'], tok.model.vocab['<s>'] ?? tok.added_tokens.find((a) => a.content === '<s>').id);
console.log(`ok metadata: llama, ${tokens.length} tokens, ${md['tokenizer.ggml.merges'].length} merges`);

// The original weights, from model.safetensors (F32 here).
const st = readFileSync(join(dir, 'model.safetensors'));
const hlen = Number(st.readBigUInt64LE(0));
const header = JSON.parse(st.subarray(8, 8 + hlen).toString('utf8'));
const original = (name) => {
  const h = header[name];
  assert.ok(h, `${name} in model.safetensors`);
  assert.equal(h.dtype, 'F32');
  const [a, b] = h.data_offsets;
  const buf = st.subarray(8 + hlen + a, 8 + hlen + b);
  return { shape: h.shape, data: new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length)) };
};

const fd = openSync(file, 'r');
const bytesOf = (info, n) => {
  const b = Buffer.alloc(n);
  readSync(fd, b, 0, n, Number(tensorDataOffset + info.offset));
  return b;
};
// IEEE half -> float, written out here (not qjobs' code).
const half = (h) => {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
};
const dequant = (kind, b, n) => {
  const out = new Float32Array(n), steps = new Float32Array(n / 32);
  const bs = kind === 8 ? 34 : 18;
  for (let k = 0; k < n / 32; k++) {
    const d = half(b.readUInt16LE(k * bs));
    steps[k] = Math.abs(d);
    for (let j = 0; j < 32; j++) {
      if (kind === 8) out[k * 32 + j] = d * b.readInt8(k * bs + 2 + j);
      else {
        const byte = b[k * bs + 2 + (j % 16)];
        out[k * 32 + j] = d * ((j < 16 ? byte & 15 : byte >> 4) - 8);
      }
    }
  }
  return { out, steps };
};

const names = { attn_q: 'self_attn.q_proj', attn_k: 'self_attn.k_proj', attn_v: 'self_attn.v_proj', attn_output: 'self_attn.o_proj',
  ffn_gate: 'mlp.gate_proj', ffn_up: 'mlp.up_proj', ffn_down: 'mlp.down_proj' };
const want = 2 + config.num_hidden_layers * 9 + (config.tie_word_embeddings ? 0 : 1);
assert.equal(tensorInfos.length, want, 'tensor count');
const headDim = config.head_dim ?? config.hidden_size / config.num_attention_heads;
let checked = 0, worst = 0;
for (const info of tensorInfos) {
  const m = /^blk\.(\d+)\.(\w+)\.weight$/.exec(info.name);
  if (!m || !names[m[2]]) {
    assert.equal(info.dtype, 0, `${info.name} stays F32`);
    continue;
  }
  const kind = { q8_0: 8, q4_0: 2 }[type];
  assert.equal(info.dtype, kind, `${info.name} type`);
  const hf = original(`model.layers.${m[1]}.${names[m[2]]}.weight`);
  const [rows, cols] = hf.shape;
  assert.deepEqual(info.shape.map(Number), [cols, rows], `${info.name}: ne = [in, out]`);
  const { out, steps } = dequant(kind, bytesOf(info, rows * (cols / 32) * (kind === 8 ? 34 : 18)), rows * cols);
  const heads = m[2] === 'attn_q' ? config.num_attention_heads : m[2] === 'attn_k' ? config.num_key_value_heads : 0;
  for (let r = 0; r < rows; r++) {
    // GGUF row r holds HF row src (RoPE pairs interleaved per head).
    let src = r;
    if (heads) {
      const h = Math.floor(r / headDim), i = r % headDim;
      src = h * headDim + (i % 2 === 0 ? i / 2 : (i - 1) / 2 + headDim / 2);
    }
    for (let c = 0; c < cols; c++) {
      const err = Math.abs(out[r * cols + c] - hf.data[src * cols + c]);
      const step = steps[(r * cols + c) >> 5];
      // Half a step, plus the half rounding of d (2^-11 relative) at the block's edge.
      const bound = (kind === 8 ? 0.5 : 1.0) * step * (1 + 1e-3) + 1e-7 + (kind === 8 ? 127 : 8) * step * 2 ** -11;
      assert.ok(err <= bound, `${info.name}[${r}, ${c}] off by ${err} (step ${step})`);
      worst = Math.max(worst, err / (step || 1));
    }
  }
  checked++;
}
assert.equal(checked, config.num_hidden_layers * 7);
console.log(`ok ${checked} Linears dequantized (${type}) within the block step; worst error ${worst.toFixed(3)} steps`);
