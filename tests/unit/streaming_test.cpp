// Layer-by-layer onloading: a streamed model computes what a resident one
// computes; the calibration loop, spilled to disk or not, streamed or not,
// produces the same outputs; the pieces under it (the streaming safetensors
// writer, page release, placement) do what they say.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <ATen/core/grad_mode.h>

#include "common/error.hpp"
#include "jobs/quant/layer_plan.hpp"
#include "jobs/eval/perplexity.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/export/packed.hpp"
#include "jobs/model/device.hpp"
#include "jobs/model/llama_model.hpp"
#include "jobs/model/mapped_file.hpp"
#include "jobs/model/quantized_checkpoint.hpp"
#include "jobs/model/random_model.hpp"
#include "jobs/model/safetensors.hpp"
#include "jobs/quant/registry.hpp"

namespace qjobs {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kExample = fs::path(QJOBS_SOURCE_DIR) / "examples/kjv-llama";

fs::path temp_dir(const std::string& tag) {
  auto d = fs::temp_directory_path() / ("qjobs-stream-" + tag + "-" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

model::LoadOptions streamed(at::ScalarType dtype = at::kFloat) {
  model::LoadOptions o;
  o.dtype = dtype;
  o.stream_layers = true;
  return o;
}

int64_t rss_file_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("RssFile:", 0) == 0) return std::stoll(line.substr(8));
  return -1;
}

TEST(StreamedModel, ExampleModelLogitsAndPerplexityAreBitwiseTheResidentOnes) {
  const auto ckpt = model::Checkpoint::open(kExample);
  const auto resident = model::LlamaModel::load(ckpt);
  const auto stream = model::LlamaModel::load(ckpt, streamed());
  ASSERT_TRUE(stream.streamed());
  EXPECT_FALSE(stream.resident(0));
  at::manual_seed(3);
  const auto ids = at::randint(0, 1024, {2, 48}, at::kLong);
  at::NoGradGuard g;
  EXPECT_TRUE(at::equal(resident.forward(ids), stream.forward(ids)));
  const auto stream_ids = at::randint(0, 1024, {4 * 64 + 5}, at::kLong);
  eval::PerplexityOptions po;
  po.seqlen = 64;
  po.batch_size = 2;
  const auto a = eval::perplexity(resident, stream_ids, po);
  const auto b = eval::perplexity(stream, stream_ids, po);
  EXPECT_EQ(a.windows, 4);
  EXPECT_EQ(a.ppl, b.ppl);  // bitwise: the same ops on the same batches, in another order over layers
  EXPECT_EQ(a.mean_nll, b.mean_nll);
}

TEST(StreamedModel, Bf16CheckpointInFloat32MatchesTheResidentConversion) {
  const auto dir = temp_dir("bf16");
  model::RandomModelOptions o;
  o.dtype = "bfloat16";
  o.layers = 3;
  o.vocab = 300;
  o.seed = 11;
  model::write_random_llama(dir / "m", o);
  const auto ckpt = model::Checkpoint::open(dir / "m");
  const auto resident = model::LlamaModel::load(ckpt);  // float32 copy of everything
  const auto stream = model::LlamaModel::load(ckpt, streamed());
  const auto ids = at::randint(0, 300, {2, 40}, at::kLong);
  at::NoGradGuard g;
  const auto want = resident.forward(ids), got = stream.forward(ids);
  // lm_head is converted in row chunks on the streamed side: the same dot products.
  EXPECT_LE((want - got).abs().max().item<double>(), 1e-6 * std::max(1.0, want.abs().max().item<double>()));
  // Onloaded, a layer is the model's own copy: editing it leaves the checkpoint alone.
  auto m = model::LlamaModel::load(ckpt, streamed());
  m.onload(1);
  ASSERT_TRUE(m.resident(1));
  EXPECT_EQ(m.layers()[1].q_proj.weight.scalar_type(), at::kFloat);
  m.layers()[1].q_proj.weight.mul_(0);
  EXPECT_GT(ckpt.tensor("model.layers.1.self_attn.q_proj.weight").to(at::kFloat).abs().sum().item<double>(), 0);
  m.offload(1);
  EXPECT_FALSE(m.resident(1));
  EXPECT_THROW(m.attention_forward(1, at::zeros({1, 2, o.hidden}), 0), Error);  // not onloaded: a clear error
  fs::remove_all(dir);
}

// Every output an algorithm hands to packaging, compared bitwise.
void expect_same_outputs(const quant::QuantOutput& a, const quant::QuantOutput& b, const std::string& what) {
  ASSERT_EQ(a.int_weights.size(), b.int_weights.size()) << what;
  for (const auto& [name, w] : a.int_weights) {
    const auto& v = b.int_weights.at(name);
    EXPECT_TRUE(at::equal(w.codes.to(at::kLong), v.codes.to(at::kLong))) << what << " " << name;
    EXPECT_TRUE(at::equal(w.scales, v.scales)) << what << " " << name;
    EXPECT_TRUE(at::equal(w.zeros.to(at::kLong), v.zeros.to(at::kLong))) << what << " " << name;
  }
  ASSERT_EQ(a.replaced.size(), b.replaced.size()) << what;
  for (const auto& [name, t] : a.replaced) EXPECT_TRUE(at::equal(t, b.replaced.at(name))) << what << " " << name;
  ASSERT_EQ(a.w8a8_weights.size(), b.w8a8_weights.size()) << what;
  for (const auto& [name, w] : a.w8a8_weights)
    EXPECT_TRUE(at::equal(w.codes, b.w8a8_weights.at(name).codes)) << what << " " << name;
  ASSERT_EQ(a.layer_errors.size(), b.layer_errors.size()) << what;
  for (std::size_t i = 0; i < a.layer_errors.size(); ++i)
    EXPECT_EQ(a.layer_errors[i].rel_fro_err, b.layer_errors[i].rel_fro_err) << what;
}

TEST(CalibrationLoop, StreamedAndSpilledOutputsAreBitwiseTheWholeModelOnes) {
  const auto dir = temp_dir("loop");
  const auto ckpt = model::Checkpoint::open(kExample);
  at::manual_seed(4);
  const auto ids = at::randint(0, 1024, {8, 64}, at::kLong);
  const std::vector<std::pair<std::string, json>> runs = {
      {"RTN", {{"W_BIT", 4}, {"Q_GROUP_SIZE", 32}, {"ZERO_POINT", true}}},
      {"AutoAWQ",
       {{"W_BIT", 4},
        {"Q_GROUP_SIZE", 32},
        {"ZERO_POINT", true},
        {"N_GRID", 8},
        {"DUO_SCALING", true},
        {"CLIP", true}}},
      {"GPTQ",
       {{"W_BIT", 4},
        {"Q_GROUP_SIZE", 32},
        {"ZERO_POINT", true},
        {"DAMP_PERCENT", 0.01},
        {"BLOCK_SIZE", 32},
        {"DESC_ACT", false},
        {"STATIC_GROUPS", false},
        {"TRUE_SEQUENTIAL", true}}},
      {"SmoothQuant", {{"alpha", 0.5}, {"ACT", "static"}}},
      {"FP8", {{"ACT", "static"}, {"WEIGHT_SCALE", "channel"}, {"kv_cache", true}}},
  };
  for (const auto& [algo, params] : runs) {
    const auto run = [&](bool stream, const fs::path& state) {
      quant::QuantInputs in;
      in.ckpt = &ckpt;
      in.params = params;
      in.plan = quant::plan_linears(algo, params, ckpt);
      in.compute.stream_layers = stream;
      in.calibration = [&] { return ids; };
      in.state_dir = state;
      in.progress = [](int64_t, int64_t, const std::string&) {};
      return quant::make_algorithm(algo)->run(in);
    };
    const auto whole = run(false, {});
    fs::remove_all(dir / algo);
    const auto spilled = run(true, dir / algo);
    expect_same_outputs(whole, spilled, algo);
    // Spilled outputs are views of block files, not memory.
    if (!spilled.int_weights.empty())
      EXPECT_EQ(spilled.int_weights.begin()->second.codes.scalar_type(), at::kByte) << algo;
    EXPECT_TRUE(fs::exists(dir / algo)) << algo;
  }
  fs::remove_all(dir);
}

TEST(SafetensorsWriter, WritesWhatSaveWritesAndSurvivesATooSmallHeaderRoom) {
  const auto dir = temp_dir("writer");
  at::manual_seed(5);
  const auto a = at::randn({7, 5}), b = at::randint(0, 255, {33}, at::kByte), c = at::randn({3}).to(at::kBFloat16);
  for (std::size_t room : {std::size_t{16}, model::SafetensorsWriter::room_for(3, 16)}) {
    const auto p = dir / ("w" + std::to_string(room) + ".safetensors");
    {
      model::SafetensorsWriter w(p, room);
      w.add({"a", a, {}});
      w.add({"b", b, {}});
      w.add({"c.weight", c, {}});
      EXPECT_FALSE(fs::exists(p));  // nothing visible until finished
      w.finish({{"format", "pt"}, {"k", "v"}});
    }
    const auto f = model::SafetensorsFile::open(p);
    EXPECT_TRUE(at::equal(f.tensor("a"), a));
    EXPECT_TRUE(at::equal(f.tensor("b"), b));
    EXPECT_TRUE(at::equal(f.tensor("c.weight"), c));
    EXPECT_EQ(f.metadata().at("k"), "v");
  }
  {
    model::SafetensorsWriter w(dir / "abandoned.safetensors", 64);
    w.add({"a", a, {}});
  }
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 2);  // no temporary left
  fs::remove_all(dir);
}

TEST(ReleaseMapped, GivesMappedPagesBackAndLeavesHeapMemoryAlone) {
  const auto dir = temp_dir("release");
  const auto big = at::arange(16 << 20, at::kFloat);  // 64 MiB
  model::save_safetensors(dir / "big.safetensors", {{"x", big, {}}});
  {
    const auto f = model::SafetensorsFile::open(dir / "big.safetensors");
    const auto x = f.tensor("x");
    const double sum = x.sum().item<double>();  // every page touched
    const auto before = rss_file_kib();
    model::release_mapped(x);
    const auto after = rss_file_kib();
    EXPECT_GT(before - after, 48 * 1024) << before << " -> " << after;
    EXPECT_EQ(x.sum().item<double>(), sum);  // read again from the file
  }
  auto heap = at::ones({1 << 20});
  model::release_mapped(heap);  // not a mapping: nothing happens
  EXPECT_EQ(heap.sum().item<double>(), static_cast<double>(1 << 20));
  fs::remove_all(dir);
}

TEST(Placement, CpuBuildComputesInFloat32UnlessTold) {
  const auto p = model::choose_placement("auto", nullptr);
  EXPECT_TRUE(p.device.is_cpu());
  EXPECT_EQ(p.dtype, at::kFloat);
  EXPECT_EQ(model::choose_placement("bfloat16", "").dtype, at::kBFloat16);
  EXPECT_EQ(model::choose_placement("float16", nullptr).dtype, at::kHalf);
  EXPECT_THROW(model::choose_placement("fp64", nullptr), Error);
  EXPECT_FALSE(model::device_peak_bytes({at::kCPU}).has_value());
  const auto cuda = model::cuda_status();
  if (!cuda.usable) {
    // GPUs asked for where CUDA is unusable: an error with the reason, never the CPU.
    EXPECT_FALSE(cuda.reason.empty());
    try {
      model::choose_placement("auto", "0,1");
      ADD_FAILURE() << "choose_placement gave a placement for GPUs CUDA cannot use";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::internal);
      EXPECT_NE(std::string(e.what()).find(cuda.reason), std::string::npos) << e.what();
    }
  }
  EXPECT_GT(model::host_peak_bytes(), 0);
}

TEST(PackedExport, CompressedTensorsWithANarrowerLastGroupReadsBackExactly) {
  // 352 input columns in groups of 128: 128, 128, 96. The reader takes the
  // group size from the config, not in / groups (which would be 117).
  const auto dir = temp_dir("tail");
  at::manual_seed(6);
  numeric::IntWeight w;
  w.bits = 4;
  w.group_size = 128;
  w.codes = at::randint(0, 16, {32, 352}, at::kInt);
  w.scales = at::rand({32, 3}) + 0.1;
  w.zeros = at::randint(0, 16, {32, 3}, at::kInt);
  w.g_idx = at::arange(352, at::kLong).div(128, "floor").to(at::kInt);
  const std::string p = "model.layers.0.mlp.down_proj";
  std::vector<model::NamedTensor> tensors;
  for (auto& [suffix, t] : exporter::pack(w, exporter::PackedFormat::compressed_tensors, at::kFloat))
    tensors.push_back({p + "." + suffix, t, {}});
  fs::create_directories(dir / "m");
  model::save_safetensors(dir / "m" / "model.safetensors", tensors);
  const auto qc = exporter::compressed_tensors_config({{p, exporter::int_scheme(w, false)}}, {}, nullptr);
  std::ofstream(dir / "m" / "config.json") << json{{"quantization_config", qc}}.dump();
  const auto ckpt = model::Checkpoint::open(dir / "m");
  EXPECT_TRUE(at::equal(model::unpack_weight(ckpt, p, qc), w.dequantize()));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace qjobs
