// The worker's export-format registry (worker/export_format.hpp): one
// complete row per EXPORT_FORMAT the spec accepts, and the layout check the
// Llama-graph formats run before any quantization.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "spec/export_formats.hpp"
#include "spec/job_spec.hpp"
#include "jobs/model/model_config.hpp"
#include "worker/export_format.hpp"
#include "jobs/numeric/bit_pack.hpp"

namespace qjobs::worker {
namespace {

using nlohmann::json;

TEST(ExportFormats, OneCompleteRowPerFormatTheSpecAccepts) {
  std::set<std::string> rows;
  for (const auto* f : export_formats()) {
    rows.insert(std::string(f->name));
    EXPECT_NE(f->write, nullptr) << f->name;
    EXPECT_NE(f->read_back, nullptr) << f->name;
    EXPECT_NE(f->report_note, nullptr) << f->name;
    EXPECT_EQ(&export_format(f->name), f);
  }
  const auto& accepted = export_format_names();
  EXPECT_EQ(rows, std::set<std::string>(accepted.begin(), accepted.end()));
  EXPECT_EQ(rows.size(), export_formats().size()) << "two rows share a name";
  try {
    export_format("safetensors");
    FAIL() << "an unknown format was found";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid_input);
    EXPECT_NE(std::string(e.what()).find("compressed-tensors"), std::string::npos)
        << "lists the known ones: " << e.what();
  }
  // What the quantize stage keeps as floats follows the row.
  EXPECT_FALSE(export_fake_quant().packed);
  EXPECT_TRUE(export_compressed_tensors().packed);
  // Only compressed-tensors has no per-column group map (act-order runs with static groups).
  EXPECT_TRUE(export_compressed_tensors().column_order_groups);
  EXPECT_FALSE(export_gptq().column_order_groups);
  EXPECT_FALSE(export_gguf().packed);
}

TEST(ExportFormats, LlamaGraphFormatsRefuseOtherBlocksBeforeQuantizing) {
  const json llama = {{"architectures", {"LlamaForCausalLM"}},
                      {"hidden_size", 64},
                      {"intermediate_size", 128},
                      {"num_hidden_layers", 2},
                      {"num_attention_heads", 4},
                      {"vocab_size", 512}};
  auto phi3 = llama;
  phi3["architectures"] = {"Phi3ForCausalLM"};
  auto mixtral = llama;
  mixtral["architectures"] = {"MixtralForCausalLM"};
  mixtral["num_local_experts"] = 4;
  mixtral["num_experts_per_tok"] = 2;
  JobSpec spec;
  for (const std::string format : {"gguf", "onnx"}) {
    spec.export_format = format;
    const auto& row = export_format(format);
    ASSERT_NE(row.check, nullptr) << format;
    EXPECT_NO_THROW(row.check(spec, model::ModelConfig::from_json(llama))) << format;
    for (const auto& other : {phi3, mixtral}) {
      try {
        row.check(spec, model::ModelConfig::from_json(other));
        ADD_FAILURE() << format << " accepted " << other["architectures"][0];
      } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::invalid_input);
        const std::string msg = e.what();
        EXPECT_NE(msg.find(other["architectures"][0].get<std::string>()), std::string::npos) << msg;
        EXPECT_NE(msg.find("export it as compressed-tensors"), std::string::npos) << msg;
      }
    }
  }
  // The safetensors formats hold every family.
  for (const auto* f : {&export_compressed_tensors(), &export_awq(), &export_gptq(), &export_fake_quant()})
    EXPECT_EQ(f->check, nullptr) << f->name;
}

}  // namespace
}  // namespace qjobs::worker

namespace qjobs {
namespace {

// compressed-tensors' dense pack-quantized layout (its pack_to_int32), for
// the widths that do not divide a word (issue 31: HQQ at 3 bits had no
// packed form). Worked by hand: 11 values of 3 bits take ceil(33 / 32) = 2
// words; value i sits at bits 3i of the row's stream, so word 0 holds
// values 0..9 and the low two bits of value 10, word 1 its top bit.
TEST(PackDense, ThreeBitValuesStraddleWordsAsCompressedTensorsPacksThem) {
  const auto row = at::tensor({7, 1, 2, 3, 4, 5, 6, 7, 0, 1, 5}, at::kInt).view({1, 11});
  const auto words = numeric::pack_dense(row, 3);
  // 7 + (1<<3) + (2<<6) + (3<<9) + (4<<12) + (5<<15) + (6<<18) + (7<<21)
  //   + (0<<24) + (1<<27) + ((5 & 3)<<30) = 1224394383; word 1: 5 >> 2 = 1.
  ASSERT_EQ(words.sizes(), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(words[0][0].item<int32_t>(), 1224394383);
  EXPECT_EQ(words[0][1].item<int32_t>(), 1);
  EXPECT_TRUE(at::equal(numeric::unpack_dense(words, 3, 11), row));
  // A full word reads as a signed int32, as the checkpoints store it.
  EXPECT_EQ(numeric::pack_dense(at::full({1, 8}, 15, at::kInt), 4)[0][0].item<int32_t>(), -1);
  // Where the width divides 32 the layout is the one 4 and 8 bits always had.
  const auto codes = at::randint(0, 4, {5, 37}, at::kInt);
  EXPECT_TRUE(at::equal(numeric::pack_dense(codes, 2), numeric::pack_last(codes, 2, nullptr)));
  // Every width of 1 to 8 bits round-trips at a width no word divides.
  for (int bits = 1; bits <= 8; ++bits) {
    const auto v = at::randint(0, 1 << bits, {3, 45}, at::kInt);
    const auto w = numeric::pack_dense(v, bits);
    EXPECT_EQ(w.size(1), (45 * bits + 31) / 32) << bits;
    EXPECT_TRUE(at::equal(numeric::unpack_dense(w, bits, 45), v)) << bits;
  }
  // A checkpoint whose words hold fewer values than its weight_shape says.
  // 2 words hold 64 bits: 21 values of 3 bits, not the 22 a damaged
  // weight_shape could claim.
  EXPECT_EQ(numeric::unpack_dense(words, 3, 21).size(1), 21);
  EXPECT_THROW(numeric::unpack_dense(words, 3, 22), Error);
}

}  // namespace
}  // namespace qjobs
