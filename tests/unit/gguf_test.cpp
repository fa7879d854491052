// GGUF (jobs/export/gguf): block layouts against ones written out by hand
// from ggml's definitions, and the file's header read back.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "common/error.hpp"
#include "jobs/export/gguf.hpp"
#include "jobs/export/gguf_llama.hpp"

namespace qjobs::exporter::gguf {
namespace {

// One Q8_0 block: x_j = (j - 16) / 2, max|x| = 8, d = 8/127 stored as the
// half 0x2C08 (= 0.06298828125); q_j = round(x_j * 127 / 8).
TEST(Gguf, Q8_0BlockIsWhatGgmlDefines) {
  float x[32];
  for (int j = 0; j < 32; ++j) x[j] = (j - 16) * 0.5f;
  const auto b = encode(TensorType::q8_0, x, 1, 32);
  ASSERT_EQ(b.size(), 34u);
  EXPECT_EQ(b[0], 0x08);
  EXPECT_EQ(b[1], 0x2C);
  EXPECT_EQ(static_cast<int8_t>(b[2 + 0]), -127);
  EXPECT_EQ(static_cast<int8_t>(b[2 + 1]), -119);  // -15 * 7.9375 = -119.06
  EXPECT_EQ(static_cast<int8_t>(b[2 + 16]), 0);
  EXPECT_EQ(static_cast<int8_t>(b[2 + 18]), 16);  // 2 * 7.9375 = 15.875
  EXPECT_EQ(static_cast<int8_t>(b[2 + 31]), 119);
  const auto y = decode(TensorType::q8_0, b.data(), b.size(), 1, 32);
  EXPECT_FLOAT_EQ(y[0], -127 * 0.06298828125f);
  EXPECT_FLOAT_EQ(y[18], 16 * 0.06298828125f);
}

// One Q4_0 block: x_j = j - 8 (j < 16) makes m = x_0 = -8, so d = 1 (half
// 0x3C00) and q_j = j; the second half x_{16+j} = (j - 8) / 4 gives
// q = trunc(x + 8.5) = 6 6 7 7 7 7 8 8 8 8 9 9 9 9 10 10; byte j packs
// q_j low and q_{16+j} high.
TEST(Gguf, Q4_0BlockIsWhatGgmlDefines) {
  float x[32];
  for (int j = 0; j < 16; ++j) {
    x[j] = static_cast<float>(j - 8);
    x[16 + j] = (j - 8) * 0.25f;
  }
  const auto b = encode(TensorType::q4_0, x, 1, 32);
  ASSERT_EQ(b.size(), 18u);
  EXPECT_EQ(b[0], 0x00);
  EXPECT_EQ(b[1], 0x3C);
  const int high[16] = {6, 6, 7, 7, 7, 7, 8, 8, 8, 8, 9, 9, 9, 9, 10, 10};
  for (int j = 0; j < 16; ++j) EXPECT_EQ(b[2 + j], j | (high[j] << 4)) << j;
  EXPECT_EQ(b[2 + 0], 0x60);
  EXPECT_EQ(b[2 + 15], 0xAF);
  const auto y = decode(TensorType::q4_0, b.data(), b.size(), 1, 32);
  for (int j = 0; j < 16; ++j) EXPECT_FLOAT_EQ(y[j], static_cast<float>(j - 8));
  EXPECT_FLOAT_EQ(y[16], -2.0f);
  EXPECT_FLOAT_EQ(y[17], -2.0f);  // -1.75 rounds to code 6
  EXPECT_FLOAT_EQ(y[31], 2.0f);   // 1.75 to code 10
  // A block of zeros: d = 0, every code 8.
  float z[32] = {};
  const auto bz = encode(TensorType::q4_0, z, 1, 32);
  for (int j = 0; j < 16; ++j) EXPECT_EQ(bz[2 + j], 0x88);
  EXPECT_THROW(row_bytes(TensorType::q4_0, 48), Error) << "rows of 48 are no whole blocks";
}

TEST(Gguf, FileRoundTripsThroughTheHeaderReader) {
  const auto path = std::filesystem::temp_directory_path() / ("qjobs_gguf_" + std::to_string(::getpid()) + ".gguf");
  Writer w;
  w.set_string("general.architecture", "llama");
  w.set_u32("llama.block_count", 2);
  w.set_f32("llama.rope.freq_base", 10000.0f);
  w.set_bool("tokenizer.ggml.add_bos_token", true);
  w.set_strings("tokenizer.ggml.tokens", {"a", "b", "<s>"});
  w.set_i32s("tokenizer.ggml.token_type", {1, 1, 3});
  std::vector<float> m(2 * 64);
  for (std::size_t i = 0; i < m.size(); ++i) m[i] = std::sin(static_cast<float>(i));
  w.add_tensor("blk.0.ffn_up.weight", {2, 64}, TensorType::q8_0,
               [&] { return encode(TensorType::q8_0, m.data(), 2, 64); });
  w.add_tensor("output_norm.weight", {3}, TensorType::f32, [] {
    const float v[3] = {1, 2, 3};
    return encode(TensorType::f32, v, 1, 3);
  });
  w.write(path);
  const auto h = read_header(path);
  EXPECT_EQ(h.version, 3u);
  EXPECT_EQ(h.alignment, 32u);
  EXPECT_EQ(h.metadata["general.architecture"], "llama");
  EXPECT_EQ(h.metadata["llama.block_count"], 2);
  EXPECT_EQ(h.metadata["tokenizer.ggml.tokens"], nlohmann::json({"a", "b", "<s>"}));
  EXPECT_EQ(h.metadata["tokenizer.ggml.add_bos_token"], true);
  ASSERT_EQ(h.tensors.size(), 2u);
  EXPECT_EQ(h.tensors[0].shape, (std::vector<int64_t>{2, 64}));
  EXPECT_EQ(h.tensors[0].type, TensorType::q8_0);
  EXPECT_EQ(h.tensors[0].bytes, 2u * 2u * 34u);
  EXPECT_EQ(h.tensors[0].offset % 32, 0u);
  EXPECT_EQ(h.tensors[1].offset % 32, 0u);
  std::ifstream in(path, std::ios::binary);
  std::vector<uint8_t> bytes(h.tensors[0].bytes);
  in.seekg(static_cast<std::streamoff>(h.tensors[0].offset));
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  const auto back = decode(TensorType::q8_0, bytes.data(), bytes.size(), 2, 64);
  for (std::size_t i = 0; i < m.size(); ++i) EXPECT_NEAR(back[i], m[i], 1.0 / 127 / 2 + 1e-3) << i;

  // A truncated file is refused with the offset, never read past its end.
  std::filesystem::resize_file(path, 100);
  try {
    read_header(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::data_corruption);
    EXPECT_NE(std::string(e.what()).find("GGUF at byte"), std::string::npos) << e.what();
  }
  std::filesystem::remove(path);
}

// llama.cpp's llama graph rotates adjacent pairs: per head, GGUF row 2i is
// Hugging Face row i and row 2i+1 is row i + d/2.
TEST(Gguf, RopeRowsInterleavePerHead) {
  EXPECT_EQ(rope_interleave_rows(2, 4), (std::vector<int64_t>{0, 2, 1, 3, 4, 6, 5, 7}));
}

}  // namespace
}  // namespace qjobs::exporter::gguf
