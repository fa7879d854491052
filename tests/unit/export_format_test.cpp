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
