// The runtime from the outside: qjobs-worker's model commands and a job with
// evaluation, on the project's own example model (examples/kjv-llama).
#include <gtest/gtest.h>

#include <signal.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>

#include <nlohmann/json.hpp>
#include <ATen/core/grad_mode.h>

#include "common/job_dir.hpp"
#include "integration/harness.hpp"
#include "jobs/data/dataset.hpp"
#include "jobs/eval/perplexity.hpp"
#include "jobs/eval/tasks.hpp"
#include "jobs/export/packed.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/model/llama_model.hpp"
#include "jobs/model/quantized_checkpoint.hpp"
#include "jobs/model/safetensors.hpp"
#include "jobs/tokenizer/tokenizer.hpp"

namespace qjobs::testing {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kExample = fs::path(QJOBS_SOURCE_DIR) / "examples/kjv-llama";
const fs::path kHeldOut = fs::path(QJOBS_SOURCE_DIR) / "examples/data/kjv/test.jsonl";
std::string worker() { return (bin_dir() / "qjobs-worker").string(); }

TEST(ExampleModel, IsALlamaOfTheRequiredSize) {
  const auto cfg = model::ModelConfig::from_json(model::Checkpoint::open(kExample).config());
  EXPECT_EQ(cfg.family->hf_class, "LlamaForCausalLM");
  EXPECT_GE(cfg.hidden, 128);
  EXPECT_GE(cfg.layers, 4);
  // The tokenizer reads its own tokenizer.json and round-trips text.
  const auto tok = tokenizer::Tokenizer::load(kExample);
  const std::string text = "And God said, Let there be light: and there was light.";
  EXPECT_EQ(tok.decode(tok.encode(text)), text);
}

TEST(ExampleModel, HeldOutPerplexityIsFarBelowAUnigramModel) {
  const auto tok = tokenizer::Tokenizer::load(kExample);
  const auto m = model::LlamaModel::load(model::Checkpoint::open(kExample));
  data::DatasetSpec ds;
  ds.path = kHeldOut.string();
  const auto ids = eval::perplexity_ids(tok, data::evaluation_text(data::load_rows(ds)));
  eval::PerplexityOptions o;
  o.seqlen = 256;
  o.batch_size = 8;
  const auto r = eval::perplexity(m, ids, o);
  // A unigram model fitted on the held-out tokens themselves: an optimistic
  // baseline, scored on the same predictions (every window's tokens 1..T-1).
  std::map<int64_t, double> counts;
  std::vector<int64_t> predicted;
  const auto* p = ids.data_ptr<int64_t>();
  for (int64_t w = 0; w < r.windows; ++w)
    for (int64_t t = 1; t < o.seqlen; ++t) predicted.push_back(p[w * o.seqlen + t]);
  for (auto id : predicted) counts[id] += 1;
  double nll = 0;
  for (auto id : predicted) nll -= std::log(counts[id] / static_cast<double>(predicted.size()));
  const double unigram = std::exp(nll / static_cast<double>(predicted.size()));
  RecordProperty("heldout_ppl", std::to_string(r.ppl));
  RecordProperty("unigram_ppl", std::to_string(unigram));
  EXPECT_LT(r.ppl, 0.4 * unigram) << "model " << r.ppl << " vs unigram " << unigram;
}

TEST(WorkerCommands, TokenizeLogitsPplDemo) {
  const fs::path tmp = make_temp_dir("cmds");
  const auto tok = tokenizer::Tokenizer::load(kExample);

  auto r = run_cmd({worker(), "tokenize", "--tokenizer", kExample.string(), "--bos", "--text", "In the beginning"});
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto ids = json::parse(r.out).get<std::vector<int64_t>>();
  ASSERT_GE(ids.size(), 2u);
  EXPECT_EQ(ids[0], *tok.bos_id());
  EXPECT_EQ(tok.decode(std::vector<int64_t>(ids.begin() + 1, ids.end())), "In the beginning");

  std::ofstream(tmp / "tokens.json") << json({ids, ids}).dump();
  r = run_cmd({worker(), "logits", "--checkpoint", kExample.string(), "--tokens", (tmp / "tokens.json").string(),
               "--out", (tmp / "logits.safetensors").string()});
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto logits = model::SafetensorsFile::open(tmp / "logits.safetensors").tensor("logits");
  ASSERT_EQ(logits.sizes().vec(), (std::vector<int64_t>{2, static_cast<int64_t>(ids.size()), tok.vocab_size()}));
  EXPECT_EQ(logits.scalar_type(), at::kFloat);
  // Two copies of one row give the same logits up to the BLAS kernel's
  // blocking: OpenBLAS on some CPUs (AVX-512 EPYC) sums rows of a batch in a
  // different order, 1.3e-5 apart at logits of magnitude ~10.
  EXPECT_TRUE(at::allclose(logits[0], logits[1], 1e-5, 1e-4)) << (logits[0] - logits[1]).abs().max().item<float>();

  r = run_cmd({worker(), "ppl", "--checkpoint", kExample.string(), "--data", kHeldOut.string(), "--seqlen", "256",
               "--num-samples", "10"});
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto ppl = json::parse(r.out);
  EXPECT_EQ(ppl["windows"], 10);
  EXPECT_GT(ppl["ppl"].get<double>(), 1.0);
  EXPECT_GT(ppl["tokens"].get<int64_t>(), 2560);

  r = run_cmd({worker(), "demo", "--checkpoint", kExample.string(), "--prompt", "And God said", "--raw",
               "--max-new-tokens", "12"});
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto demo = json::parse(r.out);
  EXPECT_FALSE(demo["response"].get<std::string>().empty());
  const auto again = run_cmd({worker(), "demo", "--checkpoint", kExample.string(), "--prompt", "And God said", "--raw",
                              "--max-new-tokens", "12"});
  EXPECT_EQ(json::parse(again.out)["response"], demo["response"]) << "greedy decoding is deterministic";

  r = run_cmd({worker(), "ppl", "--checkpoint", (tmp / "nothing").string(), "--data", kHeldOut.string()});
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("error"), std::string::npos);
  fs::remove_all(tmp);
}

TEST(RuntimeJob, RtnOnTheExampleModelReportsPerplexityBeforeAndAfter) {
  const fs::path root = make_temp_dir("rtn_eval");
  ServerProcess server(root / "ud", {"--slots", "1"});
  const fs::path spec = root / "job.yaml";
  std::ofstream(spec)
      << "MODEL: \"" << kExample.string() << "\"\nALGORITHM: RTN\nllm:\n  RTN:\n    W_BIT: 4\n"
      << "    Q_GROUP_SIZE: 32\neval:\n  tasks:\n    - type: ppl\n      name: kjv\n"
      << "      data_path: \"" << kHeldOut.string() << "\"\n      seqlen: 256\n      num_samples: 8\n"
      << "    - type: demo\n      raw: true\n      max_new_tokens: 8\n      prompts: [\"In the beginning\"]\n";
  const auto r =
      run_cmd({(bin_dir() / "jobctl").string(), "--server", server.url(), "submit", spec.string(), "--wait"});
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  const std::string id = r.out.substr(0, r.out.find('\n'));
  const fs::path dir = root / "ud/jobs" / id;
  const auto report = json::parse(read_file(dir / "report.json"));
  const double before = report["eval"]["original"]["kjv"]["ppl"];
  const double after = report["eval"]["quantized"]["kjv"]["ppl"];
  EXPECT_EQ(report["eval"]["original"]["kjv"]["windows"], 8);
  EXPECT_GT(after, before * 0.98);
  EXPECT_LT(after, before * 3.0);
  EXPECT_EQ(report["eval"]["quantized"]["demo"]["answers"].size(), 1u);
  const auto job = server.job(id);
  EXPECT_NEAR(job["metrics"]["ppl_original_kjv"].get<double>(), before, 1e-9);
  EXPECT_NEAR(job["metrics"]["ppl_quantized_kjv"].get<double>(), after, 1e-9);
  const std::string md = read_file(dir / "report.md");
  EXPECT_NE(md.find("kjv perplexity"), std::string::npos) << md;
  EXPECT_TRUE(fs::exists(dir / "eval/original-kjv.json"));
  EXPECT_TRUE(fs::exists(dir / "eval/quantized-kjv.json"));

  // The same perplexity, independently: the packaged checkpoint evaluated
  // by the worker's own ppl command.
  const auto p = run_cmd({(bin_dir() / "qjobs-worker").string(), "ppl", "--checkpoint", (dir / "model").string(),
                          "--data", kHeldOut.string(), "--seqlen", "256", "--num-samples", "8"});
  ASSERT_EQ(p.rc, 0) << p.err;
  EXPECT_NEAR(json::parse(p.out)["ppl"].get<double>(), after, 1e-6 * after);
  server.terminate();
  fs::remove_all(root);
}

}  // namespace
}  // namespace qjobs::testing

namespace qjobs::testing {
namespace {

// Issue 27: a compressed-tensors checkpoint read by the reference stack as a
// user's would be (tests/reference/ct_check.py, in the project's virtual
// environment): compressed-tensors validates its config, every Linear is in
// one group or ignored, its decompressor gives the fake_quant twin's
// weights, and transformers' forward pass of them gives qjobs' logits. The
// libraries simulate activations with other conventions than the serving
// kernels and run a 16-bit KV cache, so the logits compared are those of the
// weights alone: qjobs' from a copy whose config has no input_activations
// and no KV-cache quantization. Tolerances: 0 and 1e-4, but NVFP4, which
// compressed-tensors decompresses in bfloat16 (2^-8 relative per weight).
void reference_check(const fs::path& root, const fs::path& packed, const fs::path& fake) {
  const fs::path tokens = root / "tokens.json";
  {
    std::ofstream t(tokens);
    t << "[";
    for (int r = 0; r < 2; ++r) {
      t << (r ? ",[" : "[");
      for (int i = 0; i < 48; ++i) t << (i ? "," : "") << (r * 389 + i * 97 + 5) % 1024;
      t << "]";
    }
    t << "]";
  }
  const fs::path weights_only = root / "weights_only";
  fs::create_directories(weights_only);
  for (const auto& e : fs::directory_iterator(packed)) fs::copy(e.path(), weights_only / e.path().filename());
  auto config = json::parse(read_file(weights_only / "config.json"));
  config.erase("qjobs_quantization");
  auto& qc = config["quantization_config"];
  qc["kv_cache_scheme"] = nullptr;
  for (auto& [name, group] : qc["config_groups"].items()) group["input_activations"] = nullptr;
  std::ofstream(weights_only / "config.json", std::ios::trunc) << config.dump(2);
  const fs::path logits = root / "qjobs_logits.safetensors";
  const auto l = run_cmd({(bin_dir() / "qjobs-worker").string(), "logits", "--checkpoint", weights_only.string(),
                          "--tokens", tokens.string(), "--out", logits.string()});
  ASSERT_EQ(l.rc, 0) << l.err;
  const bool bf16 = qc.value("format", "") == "nvfp4-pack-quantized";
  const auto c = run_cmd({python(), (fs::path(QJOBS_SOURCE_DIR) / "tests/reference/ct_check.py").string(),
                          packed.string(), fake.string(), tokens.string(), logits.string(), "--no-act-sim",
                          "--weight-tol", bf16 ? "0.0078125" : "0", "--logit-rtol", bf16 ? "1e-2" : "1e-4"});
  EXPECT_EQ(c.rc, 0) << c.out << c.err.substr(c.err.size() > 4000 ? c.err.size() - 4000 : 0);
  std::cout << "reference " << packed.parent_path().filename().string() << ": " << c.out;
  fs::remove_all(weights_only);
}

// A packed checkpoint read back gives the logits of the fake-quantized one.
class ExportReadback : public ::testing::TestWithParam<std::tuple<std::string, std::string, std::string>> {};

TEST_P(ExportReadback, LogitsMatchTheFakeQuantModel) {
  const auto& [algo, format, extra] = GetParam();
  const bool int_keys = algo == "RTN" || algo == "AutoAWQ" || algo == "GPTQ" || algo == "HQQ";
  const fs::path root = make_temp_dir("export");
  // Issue 27: the fake_quant twin is the same job in another form. Ragged
  // widths (down_proj's 352 inputs at g64, QoQ's g128) follow one rule in
  // every form, with nothing added here. HQQ's packed form needs integer
  // zero points; act-order in compressed-tensors runs with static groups
  // (the submission says both).
  const bool ragged = extra.find("Q_GROUP_SIZE: 64") != std::string::npos || algo == "LMQuant";
  const bool act_order = extra.find("DESC_ACT: true") != std::string::npos;
  const auto run_job = [&](const std::string& fmt) {
    const fs::path spec = root / (fmt + ".yaml");
    std::string more = extra;
    if (fmt == "fake_quant" && algo == "HQQ") more += "    ZERO_POINTS: integer\n";
    if (fmt == "fake_quant" && act_order && format == "compressed-tensors") more += "    STATIC_GROUPS: true\n";
    std::ofstream(spec) << "MODEL: \"" << kExample.string() << "\"\nALGORITHM: " << algo << "\nEXPORT_FORMAT: " << fmt
                        << "\nDATA_PATH: \"" << (fs::path(QJOBS_SOURCE_DIR) / "examples/data/kjv/calib.jsonl").string()
                        << "\"\ncalibration:\n  n_samples: 8\n  seqlen: 128\nllm:\n  " << algo << ":\n"
                        << (int_keys && extra.find("W_BIT") == std::string::npos ? "    W_BIT: 4\n" : "")
                        << (int_keys && extra.find("Q_GROUP_SIZE") == std::string::npos ? "    Q_GROUP_SIZE: 32\n" : "")
                        << more << (more.empty() && !int_keys ? "    {}\n" : "");
    const auto r =
        run_cmd({(bin_dir() / "qjobs-worker").string(), "run", spec.string(), "--job-dir", (root / fmt).string()});
    EXPECT_EQ(r.rc, 0) << read_file(root / fmt / "logs/worker.log");
    return root / fmt / "model";
  };
  const auto fake = run_job("fake_quant");
  const auto packed = run_job(format);
  const auto config = json::parse(read_file(packed / "config.json"));
  EXPECT_EQ(config["quantization_config"]["quant_method"], format);
  const auto ckpt = model::Checkpoint::open(packed);
  const auto qc = config["quantization_config"];
  EXPECT_TRUE(ckpt.has(format == "compressed-tensors" ? "model.layers.1.mlp.down_proj.weight_packed"
                                                      : "model.layers.1.mlp.down_proj.qweight"));
  EXPECT_FALSE(ckpt.has("model.layers.1.mlp.down_proj.weight"));
  // The size on disk drops as the bits say: the float32 example model's
  // decoder Linears are most of it.
  EXPECT_LT(dir_size(packed), dir_size(fake) * 0.6) << algo << " " << format << " " << extra;
  if (format == "compressed-tensors") {
    // Every Linear is in exactly one group or in ignore (issue 27: a skipped
    // Linear in neither was left on the meta device by transformers).
    const auto ignored = [&](const std::string& name) {
      for (const auto& i : qc["ignore"])
        if (i == name) return true;
      return false;
    };
    for (int l = 0; l < 4; ++l)
      for (const char* n : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                            "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}) {
        const std::string name = "model.layers." + std::to_string(l) + "." + n;
        const bool quantized = !ckpt.has(name + ".weight") || ckpt.has(name + ".weight_scale");
        EXPECT_EQ(model::scheme_group(qc, name) != nullptr, quantized) << name;
        EXPECT_EQ(ignored(name), !quantized) << name << " " << qc["ignore"].dump();
      }
    // Issue 27: act-order as current compressed-tensors defines it.
    const auto& w0 = qc["config_groups"].begin().value()["weights"];
    EXPECT_EQ(w0["actorder"], act_order ? json("weight") : json(nullptr)) << qc.dump(1);
    EXPECT_FALSE(ckpt.has("model.layers.1.mlp.down_proj.weight_g_idx"));
  }
  if (extra.find("W_BIT: 3") != std::string::npos || extra.find("W_BIT: 2") != std::string::npos) {
    // Widths a word does not divide (3 bits) or that vLLM does not take: the
    // verify stage decoded every Linear with compressed-tensors' own
    // pack_to_int32 layout and found the weights the job computed.
    const int bits = extra.find("W_BIT: 3") != std::string::npos ? 3 : 2;
    EXPECT_EQ(qc["config_groups"].begin().value()["weights"]["num_bits"], bits);
    EXPECT_EQ(ckpt.info("model.layers.1.mlp.down_proj.weight_packed").shape,
              (std::vector<int64_t>{128, (352 * bits + 31) / 32}));
    const auto report = json::parse(read_file(packed.parent_path() / "report.json"));
    ASSERT_TRUE(report["verify"].is_object()) << report["verify"].dump();
    EXPECT_EQ(report["verify"]["status"], "passed") << report["verify"].dump();
    EXPECT_LE(report["verify"]["weight_max_rel_diff"].get<double>(), 1e-9);
  }
  if (ragged && algo != "LMQuant") {
    // Issue 14: down_proj's 352 inputs are no multiple of 64: it gets its
    // own per-channel group, which vLLM serves, and nothing ragged is written.
    ASSERT_EQ(qc["config_groups"].size(), 2u) << qc.dump(1);
    const auto* down = model::scheme_group(qc, "model.layers.2.mlp.down_proj");
    const auto* up = model::scheme_group(qc, "model.layers.2.mlp.up_proj");
    ASSERT_TRUE(down && up);
    EXPECT_EQ((*down)["weights"]["strategy"], "channel");
    EXPECT_EQ((*up)["weights"]["group_size"], 64);
    EXPECT_EQ(ckpt.tensor("model.layers.2.mlp.down_proj.weight_scale").size(1), 1);
    EXPECT_EQ(qc["format"], "pack-quantized");
  }
  if (extra.find("LAYER_OVERRIDES") != std::string::npos) {
    // Mixed precision: 8-bit down_proj, layer 0 kept in full precision.
    const auto* down = model::scheme_group(qc, "model.layers.3.mlp.down_proj");
    ASSERT_NE(down, nullptr);
    EXPECT_EQ((*down)["weights"]["num_bits"], 8);
    EXPECT_EQ((*model::scheme_group(qc, "model.layers.3.mlp.up_proj"))["weights"]["num_bits"], 4);
    EXPECT_EQ(model::scheme_group(qc, "model.layers.0.mlp.up_proj"), nullptr);
    EXPECT_TRUE(ckpt.has("model.layers.0.mlp.up_proj.weight"));
  }
  if (algo == "NVFP4" || algo == "MXFP4" || extra.find("W_FORMAT") != std::string::npos) {
    const bool nv = algo == "NVFP4" || extra.find("nvfp4") != std::string::npos;
    const std::string p = "model.layers.1.mlp.down_proj.";
    EXPECT_EQ(qc["format"], nv ? "nvfp4-pack-quantized" : "mxfp4-pack-quantized");
    EXPECT_EQ(ckpt.info(p + "weight_packed").dtype, model::StDtype::U8);
    EXPECT_EQ(ckpt.info(p + "weight_packed").shape, (std::vector<int64_t>{128, 176}));
    EXPECT_EQ(ckpt.info(p + "weight_scale").dtype, nv ? model::StDtype::F8_E4M3 : model::StDtype::U8);
    EXPECT_EQ(ckpt.info(p + "weight_scale").shape, (std::vector<int64_t>{128, nv ? 22 : 11}));
    EXPECT_EQ(ckpt.has(p + "weight_global_scale"), nv);
    if (nv) {
      // One global scale per fused projection, as vLLM's fused q/k/v and gate/up kernels keep one.
      const auto gs = [&](const std::string& n) {
        return ckpt.tensor("model.layers.1." + n + ".weight_global_scale").item<float>();
      };
      EXPECT_EQ(gs("self_attn.q_proj"), gs("self_attn.k_proj"));
      EXPECT_EQ(gs("self_attn.q_proj"), gs("self_attn.v_proj"));
      EXPECT_EQ(gs("mlp.gate_proj"), gs("mlp.up_proj"));
      EXPECT_NE(gs("mlp.gate_proj"), gs("mlp.down_proj"));
    }
    const bool w4a4 = extra.find("dynamic") != std::string::npos;
    EXPECT_EQ(ckpt.has(p + "input_global_scale"), nv && w4a4);
    EXPECT_EQ(qc["config_groups"]["group_0"]["input_activations"].is_null(), !w4a4);
  }
  if (algo == "LMQuant") {
    // W4A8: 4-bit packed weights, int8 per-token dynamic activations, the KV4 cache scheme.
    const auto& g = qc["config_groups"]["group_0"];
    EXPECT_EQ(g["weights"]["num_bits"], 4);
    EXPECT_EQ(g["input_activations"]["num_bits"], 8);
    EXPECT_EQ(g["input_activations"]["strategy"], "token");
    EXPECT_EQ(g["input_activations"]["dynamic"], true);
    // Issue 27: the KV4 cache has no form compressed-tensors' schema holds: it
    // is qjobs' own key, and the job says what engines do without it.
    EXPECT_TRUE(qc["kv_cache_scheme"].is_null()) << qc.dump(1);
    EXPECT_EQ(config["qjobs_quantization"]["kv_cache"]["kind"], "int") << config.dump(1);
    EXPECT_EQ(config["qjobs_quantization"]["kv_cache"]["bits"], 4);
    EXPECT_NE(read_file(root / format / "events.jsonl").find("16-bit KV cache"), std::string::npos);
  }
  if (algo == "HQQ") {
    // The cost of rounding HQQ's zero points, measured and recorded.
    const auto rep = json::parse(read_file(root / format / "report.json"));
    const std::string text = rep.dump();
    EXPECT_NE(text.find("mean_rel_err_real_zero"), std::string::npos) << text.substr(0, 2000);
  }
  if (algo == "AutoAWQ" || algo == "GPTQ") {
    // Calibrating algorithms log one line per block (issue 16).
    const std::string log = read_file(root / format / "logs/worker.log");
    for (const char* line : {"block 1/4 done in", "block 4/4 done in"})
      EXPECT_NE(log.find(line), std::string::npos) << line << " missing from\n" << log.substr(0, 4000);
    EXPECT_NE(log.find("ETA 0 s"), std::string::npos);
  }
  if (format == "gptq") {
    // Issue 14: AutoGPTQ / GPTQModel from_quantized read quantize_config.json.
    ASSERT_TRUE(fs::exists(packed / "quantize_config.json"));
    const auto qcfg = json::parse(read_file(packed / "quantize_config.json"));
    const bool sym = extra.find("ZERO_POINT: false") != std::string::npos;
    EXPECT_EQ(qcfg["bits"], 4);
    EXPECT_EQ(qcfg["group_size"], extra.find("Q_GROUP_SIZE: -1") != std::string::npos ? -1 : 32);
    EXPECT_EQ(qcfg["desc_act"], extra.find("DESC_ACT: true") != std::string::npos);
    EXPECT_EQ(qcfg["sym"], sym);
    EXPECT_EQ(qcfg["checkpoint_format"], "gptq");
    EXPECT_EQ(qcfg["model_file_base_name"], "model");
    const std::string events = read_file(root / format / "events.jsonl");
    EXPECT_EQ(events.find("asymmetric GPTQ") != std::string::npos, !sym) << "vLLM Marlin warning iff asymmetric";
  } else {
    EXPECT_FALSE(fs::exists(packed / "quantize_config.json"));
  }
  if (format == "compressed-tensors") reference_check(root, packed, fake);
  const auto ids = at::randint(0, 1024, {2, 64}, at::kLong);
  at::NoGradGuard g;
  const auto a = model::LlamaModel::load(model::Checkpoint::open(fake)).forward(ids);
  const auto b = model::LlamaModel::load(ckpt).forward(ids);
  const double rel = ((a - b).abs().max() / a.abs().max()).item<double>();
  EXPECT_LE(rel, 1e-3) << algo << " " << format;
  fs::remove_all(root);
}

INSTANTIATE_TEST_SUITE_P(
    Formats, ExportReadback,
    ::testing::Values(std::make_tuple("RTN", "awq", ""), std::make_tuple("AutoAWQ", "awq", ""),
                      std::make_tuple("GPTQ", "gptq", "    DESC_ACT: true\n"),
                      std::make_tuple("RTN", "gptq", "    ZERO_POINT: false\n"),
                      std::make_tuple("AutoAWQ", "compressed-tensors", ""),
                      std::make_tuple("GPTQ", "compressed-tensors", "    ZERO_POINT: false\n    DESC_ACT: true\n"),
                      std::make_tuple("RTN", "compressed-tensors", "    W_BIT: 8\n    ZERO_POINT: false\n"),
                      std::make_tuple("RTN", "gptq", "    Q_GROUP_SIZE: -1\n"),
                      std::make_tuple("RTN", "compressed-tensors", "    Q_GROUP_SIZE: -1\n"),
                      std::make_tuple("GPTQ", "compressed-tensors", "    Q_GROUP_SIZE: 64\n"),
                      std::make_tuple("RTN", "compressed-tensors",
                                      "    LAYER_OVERRIDES:\n      - pattern: \"*.mlp.down_proj\"\n"
                                      "        W_BIT: 8\n      - pattern: \"model.layers.0.*\"\n"
                                      "        SKIP: true\n"),
                      std::make_tuple("HQQ", "compressed-tensors", ""),
                      // 3 and 2 bits, packed densely (the verify stage reads
                      // them with compressed-tensors' own decompressor).
                      std::make_tuple("HQQ", "compressed-tensors", "    W_BIT: 3\n"),
                      std::make_tuple("RTN", "compressed-tensors", "    W_BIT: 2\n"),
                      std::make_tuple("NVFP4", "compressed-tensors", ""),
                      std::make_tuple("NVFP4", "compressed-tensors", "    ACT: dynamic\n"),
                      std::make_tuple("MXFP4", "compressed-tensors", ""),
                      std::make_tuple("MXFP4", "compressed-tensors", "    ACT: dynamic\n"),
                      std::make_tuple("LMQuant", "compressed-tensors", "    quant_type: g128\n"),
                      std::make_tuple("GPTQ", "compressed-tensors", "    W_FORMAT: nvfp4\n"),
                      std::make_tuple("GPTQ", "compressed-tensors", "    W_FORMAT: mxfp4\n")),
    [](const auto& info) {
      std::string f = std::get<1>(info.param);
      std::replace(f.begin(), f.end(), '-', '_');
      return std::get<0>(info.param) + "_" + f + "_" + std::to_string(info.index);
    });

}  // namespace
}  // namespace qjobs::testing

namespace qjobs::testing {
namespace {

// A job of `algorithm` (its section `section`) through the server, its
// worker killed after two of four blocks, resumes and scores as an
// uninterrupted run.
void killed_during_calibration_resumes(const std::string& algorithm, const std::string& section,
                                       const std::string& format) {
  const fs::path root = make_temp_dir("resume");
  const std::string spec_text = "MODEL: \"" + kExample.string() + "\"\nALGORITHM: " + algorithm + "\nDATA_PATH: \"" +
                                (fs::path(QJOBS_SOURCE_DIR) / "examples/data/kjv/calib.jsonl").string() +
                                "\"\nEXPORT_FORMAT: " + format +
                                "\ncalibration:\n  n_samples: 16\n  seqlen: 256\nllm:\n  " + algorithm + ":\n" +
                                section + "eval:\n  tasks:\n    - type: ppl\n      name: kjv\n      data_path: \"" +
                                kHeldOut.string() + "\"\n      seqlen: 256\n      num_samples: 8\n";
  std::ofstream(root / "job.yaml") << spec_text;
  // Uninterrupted, without a server.
  const auto plain = run_cmd({worker(), "run", (root / "job.yaml").string(), "--job-dir", (root / "plain").string()});
  ASSERT_EQ(plain.rc, 0) << read_file(root / "plain/logs/worker.log");
  const double want = json::parse(read_file(root / "plain/report.json"))["eval"]["quantized"]["kjv"]["ppl"];

  // Through the server, with the worker killed after two of four blocks.
  ServerProcess server(root / "ud", {"--slots", "1"}, {{"QJOBS_TEST_STEP_DELAY_MS", "400"}});
  const auto r = server.client().request("POST", "/jobs", spec_text);
  ASSERT_EQ(r.status, 201) << r.body;
  const std::string id = json::parse(r.body)["id"];
  int pid = 0;
  ASSERT_TRUE(wait_until(
      [&] {
        const auto st = JobDir(root / "ud/jobs" / id).read_status();
        if (!st || st->value("stage", "") != "quantize" || st->value("done", 0) < 2) return false;
        pid = st->value("pid", 0);
        return pid > 0;
      },
      std::chrono::seconds(120)));
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  json job;
  ASSERT_TRUE(wait_until(
      [&] {
        job = server.job(id);
        const std::string s = job["state"];
        return s == "SUCCEEDED" || s == "FAILED";
      },
      std::chrono::seconds(180)));
  EXPECT_EQ(job["state"], "SUCCEEDED") << job.dump();
  EXPECT_EQ(job["attempts"], 2);
  const std::string events = read_file(root / "ud/jobs" / id / "events.jsonl");
  EXPECT_NE(events.find("\"type\":\"resumed\""), std::string::npos) << events;
  const double got = json::parse(read_file(root / "ud/jobs" / id / "report.json"))["eval"]["quantized"]["kjv"]["ppl"];
  EXPECT_NEAR(got, want, 1e-9 * want);
  if (format == "compressed-tensors") {
    // Packed: every Linear has its integer form, and the static input scales are there.
    const json qc = json::parse(read_file(root / "ud/jobs" / id / "model/config.json"))["quantization_config"];
    EXPECT_EQ(qc["format"], "pack-quantized") << qc.dump();
    EXPECT_NE(qc.dump().find("\"input_activations\":{"), std::string::npos) << qc.dump();
  }
  server.terminate();
  fs::remove_all(root);
}

TEST(RuntimeJob, KilledDuringCalibrationResumesAtTheNextBlockWithTheSamePerplexity) {
  killed_during_calibration_resumes("GPTQ", "    W_BIT: 3\n    Q_GROUP_SIZE: 32\n", "fake_quant");
}

TEST(RuntimeJob, SequentialMseW4A16KilledMidRunResumesWithTheSamePerplexity) {
  // AI Hub's mixed recipe: w4a16 with the down projections w8a16, packed
  // into compressed-tensors with the static 16-bit input scales.
  killed_during_calibration_resumes("SequentialMSE",
                                    "    W_BIT: 4\n    Q_GROUP_SIZE: 32\n    ZERO_POINT: false\n    A_BIT: 16\n"
                                    "    LAYER_OVERRIDES:\n      - pattern: \"*.down_proj\"\n        W_BIT: 8\n",
                                    "compressed-tensors");
}

}  // namespace
}  // namespace qjobs::testing

namespace qjobs::testing {
namespace {

// Writes `body` as root/<name>.yaml, submits it with `jobctl submit --wait`
// and returns the job id.
std::string submit_and_wait(const ServerProcess& server, const fs::path& root, const std::string& name,
                            const std::string& body) {
  const fs::path spec = root / (name + ".yaml");
  std::ofstream(spec) << body;
  const auto r =
      run_cmd({(bin_dir() / "jobctl").string(), "--server", server.url(), "submit", spec.string(), "--wait"});
  EXPECT_EQ(r.rc, 0) << r.out << r.err;
  return r.out.substr(0, r.out.find('\n'));
}

// Issue 6 end to end: perplexity, a multiple-choice task and two demo
// prompts on the original and the quantized model, through the server and
// jobctl; a second job on the same model reuses the cached baseline; an
// Evaluate job on the packaged checkpoint gives the producing job's numbers;
// `jobctl report` and `jobctl compare` print them.
TEST(EvalJob, BaselineAndQuantizedReportCacheEvaluateAndCompare) {
  const fs::path root = make_temp_dir("eval_e2e");
  ServerProcess server(root / "ud", {"--slots", "1"});
  const fs::path mc = root / "kjv_mc.jsonl";
  std::ofstream(mc)
      << R"({"id": "gen1", "context": "In the beginning God created the", "choices": [" heaven and the earth.", " computer and the telephone."], "gold": 0})"
         "\n"
      << R"({"id": "gen1-3", "context": "And God said, Let there be", "choices": [" pizza", " light"], "gold": 1})"
         "\n"
      << R"({"id": "ps23", "context": "The LORD is my shepherd; I shall not", "choices": [" want.", " skateboard."], "gold": 0})"
         "\n";
  const auto tasks = [&] {
    std::ostringstream t;
    t << "eval:\n  tasks:\n    - type: ppl\n      name: kjv\n      data_path: \"" << kHeldOut.string()
      << "\"\n      seqlen: 256\n      num_samples: 6\n"
      << "    - type: mc\n      name: verses\n      data_path: \"" << mc.string() << "\"\n"
      << "    - type: demo\n      raw: true\n      max_new_tokens: 10\n      prompts: [\"In the beginning\", \"And "
         "Moses said\"]\n";
    return t.str();
  };
  const auto submit = [&](const std::string& name, const std::string& body) {
    return submit_and_wait(server, root, name, body);
  };
  const std::string model_line = "MODEL: \"" + kExample.string() + "\"\n";
  const std::string calib = "DATA_PATH: \"" + (fs::path(QJOBS_SOURCE_DIR) / "examples/data/kjv/calib.jsonl").string() +
                            "\"\ncalibration:\n  n_samples: 8\n  seqlen: 128\n";
  const std::string gptq = submit("gptq", model_line + "ALGORITHM: GPTQ\nEXPORT_FORMAT: compressed-tensors\n" + calib +
                                              "llm:\n  GPTQ:\n    W_BIT: 4\n    Q_GROUP_SIZE: 32\n" + tasks());
  const std::string rtn =
      submit("rtn", model_line + "ALGORITHM: RTN\nllm:\n  RTN:\n    W_BIT: 4\n    Q_GROUP_SIZE: 32\n" + tasks());
  const auto rep1 = json::parse(read_file(root / "ud/jobs" / gptq / "report.json"));
  const auto rep2 = json::parse(read_file(root / "ud/jobs" / rtn / "report.json"));

  // Both columns, every task.
  for (const char* which : {"original", "quantized"}) {
    EXPECT_EQ(rep1["eval"][which]["kjv"]["windows"], 6) << which;
    EXPECT_EQ(rep1["eval"][which]["verses"]["n"], 3) << which;
    EXPECT_EQ(rep1["eval"][which]["demo"]["answers"].size(), 2u) << which;
  }
  // The original model knows these verses.
  EXPECT_DOUBLE_EQ(rep1["eval"]["original"]["verses"]["acc"].get<double>(), 1.0);
  // The second job took the original model's results from the cache,
  // unchanged; the first computed them.
  EXPECT_FALSE(rep1["eval"]["original"]["kjv"].contains("cached"));
  for (const char* t : {"kjv", "verses", "demo"}) EXPECT_TRUE(rep2["eval"]["original"][t].contains("cached")) << t;
  EXPECT_EQ(rep2["eval"]["original"]["kjv"]["ppl"], rep1["eval"]["original"]["kjv"]["ppl"]);
  EXPECT_EQ(rep2["eval"]["original"]["demo"]["answers"], rep1["eval"]["original"]["demo"]["answers"]);

  // report.md: the before/after table, the demo answers, the chart.
  const fs::path dir1 = root / "ud/jobs" / gptq;
  const std::string md = read_file(dir1 / "report.md");
  EXPECT_NE(md.find("| | original | quantized | change |"), std::string::npos) << md;
  EXPECT_NE(md.find("kjv perplexity (seqlen 256, 6 windows)"), std::string::npos) << md;
  EXPECT_NE(md.find("verses (plain, 0-shot, n=3) acc"), std::string::npos) << md;
  EXPECT_NE(md.find("**Prompt:** And Moses said"), std::string::npos) << md;
  EXPECT_NE(md.find("layer_errors.svg"), std::string::npos) << md;
  const std::string svg = read_file(dir1 / "layer_errors.svg");
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("model.layers.3.mlp.down_proj"), std::string::npos);

  // Evaluate the packaged compressed-tensors checkpoint as its own job: the
  // same numbers as the job that produced it.
  const std::string ev =
      submit("evaluate", "MODEL: \"" + (dir1 / "model").string() + "\"\nALGORITHM: Evaluate\n" + tasks());
  const auto rep3 = json::parse(read_file(root / "ud/jobs" / ev / "report.json"));
  EXPECT_EQ(rep3["eval"]["model"]["kjv"]["ppl"], rep1["eval"]["quantized"]["kjv"]["ppl"]);
  EXPECT_EQ(rep3["eval"]["model"]["verses"]["acc"], rep1["eval"]["quantized"]["verses"]["acc"]);
  EXPECT_EQ(rep3["eval"]["model"]["demo"]["answers"], rep1["eval"]["quantized"]["demo"]["answers"]);
  const fs::path ev_model = root / "ud/jobs" / ev / "model";
  EXPECT_TRUE(!fs::exists(ev_model) || fs::is_empty(ev_model)) << "Evaluate packages nothing";

  // jobctl report and compare.
  const auto jr = run_cmd({(bin_dir() / "jobctl").string(), "--server", server.url(), "report", gptq});
  ASSERT_EQ(jr.rc, 0) << jr.err;
  EXPECT_EQ(jr.out.substr(0, md.size()), md);
  const auto jc =
      run_cmd({(bin_dir() / "jobctl").string(), "--server", server.url(), "--json", "compare", gptq, rtn, ev});
  ASSERT_EQ(jc.rc, 0) << jc.err;
  const auto table = json::parse(jc.out);
  ASSERT_EQ(table["columns"].size(), 3u);
  EXPECT_EQ(table["columns"][0]["label"], "GPTQ W4 g32 asym compressed-tensors");
  EXPECT_EQ(table["columns"][1]["label"], "RTN W4 g32 asym compressed-tensors");
  EXPECT_EQ(table["columns"][2]["label"], "Evaluate");
  // Like with like: the Evaluate job measured another model (the packed
  // checkpoint), so its number has its own row.
  int rows = 0;
  for (const auto& t : table["tables"]) {
    if (t["task"] != "kjv" || t["metric"] != "ppl") continue;
    ++rows;
    if (t["model"] == kExample.string()) {
      EXPECT_EQ(t["original"], rep1["eval"]["original"]["kjv"]["ppl"]);
      EXPECT_EQ(t["values"][0], rep1["eval"]["quantized"]["kjv"]["ppl"]);
      EXPECT_EQ(t["values"][1], rep2["eval"]["quantized"]["kjv"]["ppl"]);
      EXPECT_TRUE(t["values"][2].is_null());
    } else {
      EXPECT_EQ(t["model"], (dir1 / "model").string());
      EXPECT_TRUE(t["original"].is_null());
      EXPECT_EQ(t["values"][2], rep3["eval"]["model"]["kjv"]["ppl"]);
    }
  }
  EXPECT_EQ(rows, 2) << jc.out;
  const auto jm = run_cmd({(bin_dir() / "jobctl").string(), "--server", server.url(), "compare", gptq, rtn});
  EXPECT_NE(jm.out.find("| kjv ppl (seqlen 256, 6 windows"), std::string::npos) << jm.out;
  EXPECT_NE(jm.out.find("| GPTQ W4 g32 asym compressed-tensors | RTN W4 g32 asym compressed-tensors |"),
            std::string::npos)
      << jm.out;
  // The second job's original numbers came from the cache: its report says so.
  const std::string md2 = read_file(root / "ud/jobs" / rtn / "report.md");
  EXPECT_NE(md2.find("(cached)"), std::string::npos) << md2;
  EXPECT_EQ(md2.find("| kjv tokens/s"), std::string::npos) << "throughput is not in the comparison table";
  EXPECT_NE(md2.find("not the speed of a serving engine"), std::string::npos) << md2;
  server.terminate();
  fs::remove_all(root);
}

// Issue 5 end to end: a Nyuntam LMQuant section with quant_type g128 runs
// as a job through the server and jobctl; the packaged fake-quant model
// records W4A8KV4 and loads back with the same perplexity (an Evaluate job);
// QoQ beats the plain RTN W4A8KV4 baseline on held-out text.
TEST(ActQuantJob, NyuntamLmquantG128ThroughTheServerBeatsRtnW4A8Kv4) {
  const fs::path root = make_temp_dir("lmquant_e2e");
  ServerProcess server(root / "ud", {"--slots", "1"});
  const std::string eval = "eval:\n  tasks:\n    - type: ppl\n      name: kjv\n      data_path: \"" +
                           kHeldOut.string() + "\"\n      seqlen: 512\n      num_samples: 40\n";
  const auto submit = [&](const std::string& name, const std::string& body) {
    return submit_and_wait(server, root, name, body);
  };
  // Nyuntam's shipped LMQuant section, quant_type g128, local calibration data.
  const auto nyuntam = [&](const std::string& extra) {
    return "MODEL: \"" + kExample.string() +
           "\"\nDATASET_NAME: \"\"\nDATASET_SUBNAME: \"\"\nTEXT_COLUMN: \"text\"\nSPLIT: \"train\"\n" +
           "DATA_PATH: \"" + (fs::path(QJOBS_SOURCE_DIR) / "examples/data/kjv/calib.jsonl").string() +
           "\"\nFORMAT_STRING:\n" + "calibration:\n  n_samples: 32\n  seqlen: 256\n" +
           "llm:\n  LMQuant:\n    save_model: True\n    keep_scales: True\n    loads_with_qserve: False\n    dtype: "
           "float32\n"
           "    quant_type: \"g128\"\n    quant.develop_dtype: torch.float32\n    "
           "quant.wgts.calib_range.outputs_device: cpu\n"
           "    quant.reorder.outputs_device: cpu\n    quant.smooth.xw.outputs_device: cpu\n    "
           "quant.smooth.yx.outputs_device: cpu\n" +
           extra +
           "CUDA_ID: \"0\"\nALGORITHM: \"LMQuant\"\nJOB_SERVICE: \"Kompress\"\nALGO_TYPE: \"llm\"\nTASK: \"llm\"\n" +
           eval;
  };
  const std::string qoq = submit("qoq", nyuntam(""));
  const std::string rtn =
      submit("rtn", nyuntam("    quant.enable_rotation: false\n    quant.enable_smooth: false\n"
                            "    quant.enable_reorder: false\n    quant.wgts.progressive: false\n"
                            "    quant.wgts.enable_calib_range: false\n    quant.wgts.enable_kernel_gptq: false\n"));
  const fs::path dir = root / "ud/jobs" / qoq;
  const auto job = server.job(qoq);
  EXPECT_EQ(job["state"], "SUCCEEDED") << job.dump();
  const auto config = json::parse(read_file(dir / "model/config.json"));
  // Packed by default (issue 14): compressed-tensors W4A8 with the KV4 scheme.
  const auto& qc = config["quantization_config"];
  EXPECT_EQ(qc["quant_method"], "compressed-tensors");
  EXPECT_EQ(qc["format"], "pack-quantized");
  // The KV4 cache under qjobs' key: compressed-tensors' schema has no form for it (issue 27).
  EXPECT_TRUE(qc["kv_cache_scheme"].is_null());
  EXPECT_EQ(config["qjobs_quantization"]["kv_cache"]["bits"], 4) << config.dump(1);
  ASSERT_EQ(qc["config_groups"].size(), 1u);  // 4 layers x 7 Linears, one scheme
  EXPECT_EQ(qc["config_groups"]["group_0"]["targets"], json::array({"Linear"}));
  EXPECT_EQ(qc["config_groups"]["group_0"]["weights"]["num_bits"], 4);
  // g128 over 128 inputs is one group a row, and down_proj's 352 (no multiple
  // of 128) goes per channel: every Linear is per channel on this model.
  EXPECT_EQ(qc["config_groups"]["group_0"]["weights"]["strategy"], "channel");
  EXPECT_EQ(qc["config_groups"]["group_0"]["input_activations"]["num_bits"], 8);  // int8 per token
  EXPECT_EQ(qc["config_groups"]["group_0"]["input_activations"]["strategy"], "token");
  EXPECT_TRUE(model::Checkpoint::open(dir / "model").has("model.layers.3.mlp.down_proj.weight_packed"));
  EXPECT_EQ(config["tie_word_embeddings"], false);  // the rotated head is its own tensor
  EXPECT_TRUE(model::Checkpoint::open(dir / "model").has("lm_head.weight"));

  const auto rep = json::parse(read_file(dir / "report.json"));
  const double fp = rep["eval"]["original"]["kjv"]["ppl"].get<double>();
  const double q = rep["eval"]["quantized"]["kjv"]["ppl"].get<double>();
  const double base =
      json::parse(read_file(root / "ud/jobs" / rtn / "report.json"))["eval"]["quantized"]["kjv"]["ppl"].get<double>();
  RecordProperty("ppl_fp", std::to_string(fp));
  RecordProperty("ppl_qoq_g128", std::to_string(q));
  RecordProperty("ppl_rtn_w4a8kv4", std::to_string(base));
  EXPECT_GT(q, fp);
  EXPECT_LT(q, base) << "QoQ " << q << " vs RTN W4A8KV4 " << base << " (fp " << fp << ")";

  // The packaged model simulates what it recorded: evaluated on its own it
  // gives the job's perplexity.
  const std::string ev =
      submit("evaluate", "MODEL: \"" + (dir / "model").string() + "\"\nALGORITHM: Evaluate\n" + eval);
  EXPECT_EQ(json::parse(read_file(root / "ud/jobs" / ev / "report.json"))["eval"]["model"]["kjv"]["ppl"], q);
  server.terminate();
  fs::remove_all(root);
}

// W8A8 exported as compressed-tensors (FP8 float-quantized with static
// activation scales and an FP8 KV cache; SmoothQuant int-quantized with
// static int8 activation scales) reads back with the logits of the
// fake-quant model.
void expect_w8a8_readback(const std::string& algo, const std::string& params, const std::string& format,
                          at::ScalarType stored) {
  const fs::path root = make_temp_dir("w8a8_export");
  const auto run_job = [&](const std::string& fmt) {
    const fs::path spec = root / (fmt + ".yaml");
    std::ofstream(spec) << "MODEL: \"" << kExample.string() << "\"\nALGORITHM: " << algo << "\nEXPORT_FORMAT: " << fmt
                        << "\nDATA_PATH: \"" << (fs::path(QJOBS_SOURCE_DIR) / "examples/data/kjv/calib.jsonl").string()
                        << "\"\ncalibration:\n  n_samples: 8\n  seqlen: 128\nllm:\n  " << algo << ":\n"
                        << params;
    const auto r =
        run_cmd({(bin_dir() / "qjobs-worker").string(), "run", spec.string(), "--job-dir", (root / fmt).string()});
    EXPECT_EQ(r.rc, 0) << read_file(root / fmt / "logs/worker.log");
    return root / fmt / "model";
  };
  const auto fake = run_job("fake_quant");
  const auto packed = run_job("compressed-tensors");
  const auto qc = json::parse(read_file(packed / "config.json"))["quantization_config"];
  EXPECT_EQ(qc["format"], format);
  EXPECT_EQ(qc["config_groups"]["group_0"]["weights"]["type"], format == "float-quantized" ? "float" : "int");
  EXPECT_EQ(qc["config_groups"]["group_0"]["input_activations"]["dynamic"], false);
  const auto ckpt = model::Checkpoint::open(packed);
  EXPECT_EQ(ckpt.tensor("model.layers.0.mlp.down_proj.weight").scalar_type(), stored);
  const bool per_tensor = params.find("WEIGHT_SCALE: tensor") != std::string::npos;
  EXPECT_EQ(ckpt.tensor("model.layers.0.mlp.down_proj.weight_scale").sizes().vec(),
            (per_tensor ? std::vector<int64_t>{1} : std::vector<int64_t>{128, 1}));
  EXPECT_EQ(qc["config_groups"]["group_0"]["weights"]["strategy"], per_tensor ? "tensor" : "channel");
  EXPECT_EQ(ckpt.tensor("model.layers.0.mlp.down_proj.input_scale").numel(), 1);
  if (format == "float-quantized") {
    EXPECT_TRUE(qc["kv_cache_scheme"].is_object());
    // compressed-tensors writes the KV scales with shape [1] (issue 14).
    EXPECT_EQ(ckpt.tensor("model.layers.3.self_attn.k_scale").sizes().vec(), (std::vector<int64_t>{1}));
    EXPECT_EQ(ckpt.tensor("model.layers.3.self_attn.v_scale").sizes().vec(), (std::vector<int64_t>{1}));
  }
  reference_check(root, packed, fake);
  const auto ids = at::randint(0, 1024, {2, 64}, at::kLong);
  at::NoGradGuard g;
  const auto a = model::LlamaModel::load(model::Checkpoint::open(fake)).forward(ids);
  const auto b = model::LlamaModel::load(ckpt).forward(ids);
  EXPECT_LE(((a - b).abs().max() / a.abs().max()).item<double>(), 1e-5) << algo;
  // And both differ from the original: the simulation is on.
  const auto o = model::LlamaModel::load(model::Checkpoint::open(kExample)).forward(ids);
  EXPECT_GT(((a - o).abs().max() / o.abs().max()).item<double>(), 1e-4) << algo;
  fs::remove_all(root);
}

// Issue 14: the shipped configs and the demo, unchanged but for MODEL, the
// calibration data and what this machine lacks (4 GPUs, lm_eval tasks), run
// through the server and jobctl with no EXPORT_FORMAT: each writes a packed
// checkpoint whose size on disk is what its bits and groups say.
TEST(RuntimeJob, ShippedConfigsPackModelsWhoseSizeDropsAsTheBitsSay) {
  const fs::path root = make_temp_dir("configs");
  ServerProcess server(root / "ud", {"--slots", "1"});
  const fs::path src(QJOBS_SOURCE_DIR);
  struct Case {
    fs::path file;
    int bits;
    int64_t group;  // -1: per channel
    bool zero_point;
  };
  const std::vector<Case> cases = {{src / "configs/nyuntam-awq.yaml", 4, 128, true},
                                   {src / "configs/nyuntam-lmquant-gchn.yaml", 4, -1, true},
                                   {src / "configs/rtn-w4-g128.yaml", 4, 128, true},
                                   {src / "configs/rtn-w8-per-channel.yaml", 8, -1, false},
                                   {src / "examples/rtn-demo.yaml", 4, 32, true}};
  const auto original = model::Checkpoint::open(kExample);
  for (const auto& c : cases) {
    std::istringstream in(read_file(c.file));
    std::string body, line;
    bool skipping = false;
    while (std::getline(in, line)) {
      const bool top = !line.empty() && line[0] != ' ';
      if (top) skipping = false;
      if (line.rfind("MODEL:", 0) == 0) line = "MODEL: \"" + kExample.string() + "\"";
      else if (line.rfind("DATASET_NAME:", 0) == 0) line = "DATASET_NAME: \"\"";
      else if (line.rfind("DATA_PATH:", 0) == 0)
        line = "DATA_PATH: \"" + (src / "examples/data/kjv/calib.jsonl").string() + "\"";
      else if (line.rfind("CUDA_ID:", 0) == 0) continue;
      else if (line.find("eval.") != std::string::npos && !top) {
        skipping = line.find("eval.tasks") != std::string::npos;
        continue;
      } else if (skipping && line.find("  - ") != std::string::npos) continue;
      // Paths relative to the repository (the demo's) from wherever the server runs.
      for (std::size_t at = line.find("\"examples/"); at != std::string::npos; at = line.find("\"examples/", at + 1))
        line.replace(at + 1, 0, src.string() + "/");
      body += line + "\n";
    }
    if (body.find("calibration:") == std::string::npos) body += "calibration:\n  n_samples: 8\n  seqlen: 128\n";
    const std::string id = submit_and_wait(server, root, c.file.stem().string(), body);
    const auto job = server.job(id);
    ASSERT_EQ(job["state"], "SUCCEEDED") << c.file << "\n" << job.dump();
    const fs::path model = root / "ud/jobs" / id / "model";
    const auto qc = json::parse(read_file(model / "config.json"))["quantization_config"];
    EXPECT_EQ(qc["quant_method"], "compressed-tensors") << c.file;
    // Expected bytes: the original folder less its float32 decoder Linears
    // (embedding, norms, tokenizer files), an lm_head when the job untied it
    // (QoQ's rotation fuses the final norm into it), and every Linear at
    // `bits` per weight plus a float32 scale (and a packed zero point) per
    // group; a width the group does not divide goes per channel.
    const auto out_config = json::parse(read_file(model / "config.json"));
    uint64_t other = dir_size(kExample), linear = 0;
    if (!out_config.value("tie_word_embeddings", true))
      other += original.info("model.embed_tokens.weight").end - original.info("model.embed_tokens.weight").begin;
    for (const auto& name : model::quantized_linear_weights(model::ModelConfig::from_json(original.config()))) {
      const auto& info = original.info(name);
      const uint64_t n = static_cast<uint64_t>(info.shape[0] * info.shape[1]);
      other -= n * 4;
      const int64_t out = info.shape[0], width = info.shape[1];
      const int64_t groups = c.group > 0 && width % c.group == 0 ? width / c.group : 1;
      linear += n * c.bits / 8 + out * groups * (4 + (c.zero_point ? c.bits / 8.0 : 0));
    }
    const double want = static_cast<double>(other + linear);
    const double got = static_cast<double>(dir_size(model));
    EXPECT_GT(got, want * 0.97) << c.file;
    EXPECT_LT(got, want * 1.08) << c.file << ": " << got << " bytes, the bits say " << want;
    EXPECT_LT(got, dir_size(kExample) * (c.bits == 8 ? 0.45 : 0.5)) << c.file;
  }
  server.terminate();
  fs::remove_all(root);
}

TEST(ActQuantJob, Fp8CompressedTensorsReadsBackAsTheFakeQuantModel) {
  expect_w8a8_readback("FP8", "    ACT: static\n    kv_cache: true\n", "float-quantized", at::kByte);
}

TEST(ActQuantJob, SmoothQuantInt8CompressedTensorsReadsBackAsTheFakeQuantModel) {
  expect_w8a8_readback("SmoothQuant", "    ACT: static\n", "int-quantized", at::kChar);
}

// Issue 14: AMD Quark's int8 W8A8 recipe, per-tensor weight scales and no smoothing.
TEST(ActQuantJob, QuarkInt8PerTensorWithoutSmoothingReadsBack) {
  expect_w8a8_readback("SmoothQuant", "    ACT: static\n    SMOOTHING: false\n    WEIGHT_SCALE: tensor\n",
                       "int-quantized", at::kChar);
}

}  // namespace
// Issue 16: LMQuant's sq_static with quant.enable_smooth: false is SmoothQuant
// without smoothing (it used to change nothing): the same weights as
// ALGORITHM SmoothQuant with SMOOTHING: false, and not those of the smoothed run.
TEST(ActQuantJob, LmquantSqStaticEnableSmoothFalseIsW8A8WithoutSmoothing) {
  const fs::path root = make_temp_dir("sq_enable_smooth");
  ServerProcess server(root / "ud", {"--slots", "1"});
  const std::string head = "MODEL: \"" + kExample.string() + "\"\nDATA_PATH: \"" +
                           (fs::path(QJOBS_SOURCE_DIR) / "examples/data/kjv/calib.jsonl").string() +
                           "\"\ncalibration:\n  n_samples: 8\n  seqlen: 128\n";
  const auto weights = [&](const std::string& name, const std::string& body) {
    const std::string id = submit_and_wait(server, root, name, head + body);
    return read_file(root / "ud/jobs" / id / "model/model.safetensors");
  };
  const std::string off = weights("off",
                                  "ALGORITHM: LMQuant\nllm:\n  LMQuant:\n    quant_type: sq_static\n"
                                  "    quant.enable_smooth: false\n");
  const std::string plain =
      weights("plain", "ALGORITHM: SmoothQuant\nllm:\n  SmoothQuant:\n    ACT: static\n    SMOOTHING: false\n");
  const std::string on = weights("on", "ALGORITHM: LMQuant\nllm:\n  LMQuant:\n    quant_type: sq_static\n");
  ASSERT_FALSE(off.empty());
  EXPECT_EQ(off, plain) << "enable_smooth: false must be SmoothQuant without smoothing";
  EXPECT_NE(off, on) << "smoothing must change the weights";
  server.terminate();
  fs::remove_all(root);
}

// Issue 16: every recipe of configs/recipes/ runs on the example model as
// shipped, from the repository root as the README says, and packs a model
// smaller than the original.
TEST(RuntimeJob, RecipesRunOnTheExampleModelAsShipped) {
  // Every shipped config names its job apart (issue 31: two shared
  // awq_quantization, and a name means that name's newest job).
  std::map<std::string, std::string> names;
  for (const char* dir : {"configs", "configs/recipes"})
    for (const auto& e : fs::directory_iterator(fs::path(QJOBS_SOURCE_DIR) / dir)) {
      if (e.path().extension() != ".yaml") continue;
      const std::string text = read_file(e.path());
      std::smatch m;
      if (!std::regex_search(text, m, std::regex("\nJOB_ID: \"([^\"]+)\""))) continue;
      const auto [at, fresh] = names.emplace(m[1].str(), e.path().string());
      EXPECT_TRUE(fresh) << m[1].str() << ": " << e.path() << " and " << at->second;
    }
  EXPECT_GE(names.size(), 10u);
  const fs::path root = make_temp_dir("recipes");
  const fs::path here = fs::current_path();
  fs::current_path(QJOBS_SOURCE_DIR);
  ServerProcess server(root / "ud", {"--slots", "2"});
  fs::current_path(here);
  std::vector<std::pair<std::string, std::string>> ids;  // file, id
  for (const auto& e : fs::directory_iterator(fs::path(QJOBS_SOURCE_DIR) / "configs/recipes")) {
    const auto r = run_cmd({(bin_dir() / "jobctl").string(), "--server", server.url(), "submit", e.path().string()});
    ASSERT_EQ(r.rc, 0) << e.path() << "\n" << r.err;
    ids.push_back({e.path().filename().string(), r.out.substr(0, r.out.find('\n'))});
  }
  ASSERT_GE(ids.size(), 6u);
  for (const auto& [file, id] : ids) {
    const auto w = run_cmd({(bin_dir() / "jobctl").string(), "--server", server.url(), "wait", id});
    EXPECT_EQ(w.rc, 0) << file << ": " << w.out;
    const auto rep = json::parse(read_file(root / "ud/jobs" / id / "report.json"));
    if (rep["export_format"] == "onnx") {
      // The float graph and encodings for compilers, and the QDQ graph whose codes are one byte each.
      const fs::path m = root / "ud/jobs" / id / "model";
      ASSERT_TRUE(fs::exists(m / "model_ar128_cl1024.encodings")) << file;
      EXPECT_LT(fs::file_size(m / "model_ar128_cl1024_qdq.data"), 0.5 * fs::file_size(m / "model_ar128_cl1024.data"))
          << file;
    } else {
      EXPECT_LT(rep["size_mib"]["after"].get<double>(), 0.7 * rep["size_mib"]["before"].get<double>()) << file;
      EXPECT_EQ(rep["export_format"], "compressed-tensors") << file;
    }
    EXPECT_TRUE(rep["eval"]["quantized"]["kjv-heldout"]["ppl"].is_number()) << file;
    EXPECT_LT(rep["eval"]["quantized"]["kjv-heldout"]["ppl"].get<double>(),
              1.5 * rep["eval"]["original"]["kjv-heldout"]["ppl"].get<double>())
        << file;
  }
  server.terminate();
  fs::remove_all(root);
}

// Issue 17 (GGUF): a GPTQ job through the server and jobctl writes the
// example model as llama.cpp's GGUF (Q4_0), whose size drops; the file is
// byte for byte what `qjobs-worker gguf` makes of the same job's fake-quant
// weights; the reported perplexity is that of the file's weights read back;
// and Hugging Face's GGUF reader with an independent block decoder finds
// every Linear within a Q4_0 step of the job's weights.
TEST(GgufExport, GptqJobWritesAGgufWhoseWeightsAreTheJobsAndScoreAsReported) {
  const fs::path root = make_temp_dir("gguf_job");
  ServerProcess server(root / "ud", {"--slots", "1"});
  const std::string body =
      "MODEL: \"" + kExample.string() + "\"\nALGORITHM: GPTQ\nDATA_PATH: \"" +
      (fs::path(QJOBS_SOURCE_DIR) / "examples/data/kjv/calib.jsonl").string() +
      "\"\ncalibration:\n  n_samples: 16\n  seqlen: 256\nllm:\n  GPTQ:\n    W_BIT: 4\n    Q_GROUP_SIZE: 32\n"
      "    ZERO_POINT: false\neval:\n  tasks:\n    - type: ppl\n      name: kjv\n      data_path: \"" +
      kHeldOut.string() + "\"\n      seqlen: 256\n      num_samples: 20\n";
  const std::string gg = submit_and_wait(server, root, "gguf", "EXPORT_FORMAT: gguf\n" + body);
  const std::string fq = submit_and_wait(server, root, "fake", "EXPORT_FORMAT: fake_quant\n" + body);
  const fs::path model = root / "ud/jobs" / gg / "model";
  const fs::path file = model / "kjv-llama-Q4_0.gguf";
  ASSERT_TRUE(fs::exists(file));
  for (const auto& e : fs::directory_iterator(model))
    EXPECT_NE(e.path().extension(), ".safetensors") << "model/ holds the GGUF, not the float weights";
  const auto rep = json::parse(read_file(root / "ud/jobs" / gg / "report.json"));
  EXPECT_EQ(rep["export_format"], "gguf");
  EXPECT_EQ(rep["quantization_config"]["type"], "Q4_0");
  EXPECT_LT(rep["size_mib"]["after"].get<double>(), 0.35 * rep["size_mib"]["before"].get<double>());

  // The same weights through the standalone converter: the same bytes.
  const fs::path again = root / "again.gguf", readback = root / "readback";
  const auto conv = run_cmd({worker(), "gguf", "--checkpoint", (root / "ud/jobs" / fq / "model").string(), "--type",
                             "q4_0", "--name", "kjv-llama", "--out", again.string(), "--readback", readback.string()});
  ASSERT_EQ(conv.rc, 0) << conv.err;
  EXPECT_TRUE(read_file(again) == read_file(file)) << "the job's GGUF differs from the converter's";
  // The reported perplexity is the file's.
  const auto p = run_cmd({worker(), "ppl", "--checkpoint", readback.string(), "--data", kHeldOut.string(), "--seqlen",
                          "256", "--num-samples", "20"});
  ASSERT_EQ(p.rc, 0) << p.err;
  EXPECT_NEAR(json::parse(p.out)["ppl"].get<double>(), rep["eval"]["quantized"]["kjv"]["ppl"].get<double>(), 1e-9);
  // Re-encoding costs something: the file scores at or above GPTQ's own grid.
  const auto frep = json::parse(read_file(root / "ud/jobs" / fq / "report.json"));
  EXPECT_GE(rep["eval"]["quantized"]["kjv"]["ppl"].get<double>(),
            0.99 * frep["eval"]["quantized"]["kjv"]["ppl"].get<double>());

  // llama.cpp's own reader and decoder (pip gguf), the job's own weights.
  const fs::path check = fs::path(QJOBS_SOURCE_DIR) / "tests/gguf/check.py";
  const auto c = run_cmd({python(), check.string(), file.string(), (root / "ud/jobs" / fq / "model").string(), "q4_0"});
  EXPECT_EQ(c.rc, 0) << c.out << c.err;
  EXPECT_NE(c.out.find("28 Linears dequantized (q4_0)"), std::string::npos) << c.out;
  server.terminate();
  fs::remove_all(root);
}

// Issue 17: AI Hub's w4a16 (down projections w8a16) with Sequential MSE,
// exported as ONNX through the server; the graphs run in onnxruntime
// (pip onnxruntime, CPU) through their KV cache, and pass onnx.checker at
// opset 17 (tests/onnx/check.py, in the project's virtual environment). The float graph computes the job's weights
// (<= 1e-4 of qjobs' logits), the QDQ graph its simulated quantization
// (<= 1e-3), and the encodings describe exactly the grid the weights sit on.
TEST(OnnxExport, SequentialMseW4A16JobRunsInOnnxRuntimeWithEncodingsOfItsGrid) {
  const fs::path onnx_dir = fs::path(QJOBS_SOURCE_DIR) / "tests/onnx";
  const fs::path root = make_temp_dir("onnx_job");
  ServerProcess server(root / "ud", {"--slots", "1"});
  const std::string body =
      "MODEL: \"" + kExample.string() + "\"\nALGORITHM: SequentialMSE\nDATA_PATH: \"" +
      (fs::path(QJOBS_SOURCE_DIR) / "examples/data/kjv/calib.jsonl").string() +
      "\"\ncalibration:\n  n_samples: 16\n  seqlen: 256\nllm:\n  SequentialMSE:\n    W_BIT: 4\n"
      "    Q_GROUP_SIZE: 32\n    ZERO_POINT: false\n    A_BIT: 16\n    LAYER_OVERRIDES:\n"
      "      - pattern: \"*.down_proj\"\n        W_BIT: 8\neval:\n  tasks:\n    - type: ppl\n      name: kjv\n"
      "      data_path: \"" +
      kHeldOut.string() + "\"\n      seqlen: 256\n      num_samples: 8\n";
  const std::string ox =
      submit_and_wait(server, root, "onnx", "EXPORT_FORMAT: onnx\nONNX_SEQ_LEN: 16\nONNX_CONTEXT_LEN: 64\n" + body);
  const std::string fq = submit_and_wait(server, root, "fake", "EXPORT_FORMAT: fake_quant\n" + body);
  const fs::path model = root / "ud/jobs" / ox / "model";
  const fs::path fg = model / "model_ar16_cl64.onnx", qg = model / "model_ar16_cl64_qdq.onnx";
  for (const auto& f : {fg, qg, model / "model_ar16_cl64.data", model / "model_ar16_cl64_qdq.data",
                        model / "model_ar16_cl64.encodings"})
    ASSERT_TRUE(fs::exists(f)) << f;
  for (const auto& e : fs::directory_iterator(model)) EXPECT_NE(e.path().extension(), ".safetensors") << e.path();
  // The QDQ graph's weights are one byte per code (opset 17 has no int4): below the float graph's.
  EXPECT_LT(fs::file_size(model / "model_ar16_cl64_qdq.data"), 0.5 * fs::file_size(model / "model_ar16_cl64.data"));
  const auto rep = json::parse(read_file(root / "ud/jobs" / ox / "report.json"));
  const auto frep = json::parse(read_file(root / "ud/jobs" / fq / "report.json"));
  EXPECT_EQ(rep["export_format"], "onnx");
  EXPECT_EQ(rep["quantization_config"]["opset"], 17);
  EXPECT_EQ(rep["quantization_config"]["graph"], "ar16_cl64");
  // Its size is what ONNX Runtime loads, the QDQ graph and its data (not the
  // float graph for device compilers added to it: +63% on the example model).
  EXPECT_EQ(rep["quantization_config"]["runtime_files"],
            json::array({"model_ar16_cl64_qdq.data", "model_ar16_cl64_qdq.onnx"}));
  const double qdq_bytes = static_cast<double>(fs::file_size(qg) + fs::file_size(model / "model_ar16_cl64_qdq.data"));
  EXPECT_NEAR(rep["size_mib"]["after"].get<double>() * 1048576, qdq_bytes, 1.0);
  EXPECT_LT(rep["size_mib"]["after"].get<double>(), rep["size_mib"]["before"].get<double>());
  // The score reported is that of the model the QDQ graph computes (checked below).
  EXPECT_NEAR(rep["eval"]["quantized"]["kjv"]["ppl"].get<double>(),
              frep["eval"]["quantized"]["kjv"]["ppl"].get<double>(), 1e-9);

  // Reference logits: the fake_quant twin with its 16-bit inputs simulated,
  // and with weights only (what the float graph holds).
  const fs::path twin = root / "ud/jobs" / fq / "model", weights_only = root / "weights_only";
  fs::create_directories(weights_only);
  for (const auto& e : fs::directory_iterator(twin)) fs::copy_file(e.path(), weights_only / e.path().filename());
  auto cfg = json::parse(read_file(twin / "config.json"));
  ASSERT_TRUE(cfg["qjobs_quantization"].contains("activations"));
  cfg["qjobs_quantization"].erase("activations");
  std::ofstream(weights_only / "config.json") << cfg.dump();
  std::vector<int64_t> tokens;
  for (int64_t i = 0; i < 32; ++i) tokens.push_back((i * 37 + 11) % 1024);
  std::ofstream(root / "tokens.json") << json(tokens).dump();
  std::ofstream(root / "batch.json") << json::array({tokens}).dump();
  const auto logits = [&](const fs::path& ckpt, const fs::path& out) {
    const auto r = run_cmd({worker(), "logits", "--checkpoint", ckpt.string(), "--tokens",
                            (root / "batch.json").string(), "--out", out.string()});
    ASSERT_EQ(r.rc, 0) << r.err;
  };
  logits(twin, root / "ref_q.safetensors");
  logits(weights_only, root / "ref_w.safetensors");
  logits(kExample, root / "ref_fp.safetensors");
  // The unquantized model's float graph from the standalone converter.
  const fs::path base = root / "base.onnx";
  const auto conv = run_cmd({worker(), "onnx", "--checkpoint", kExample.string(), "--out", base.string(), "--seq-len",
                             "16", "--context-len", "64"});
  ASSERT_EQ(conv.rc, 0) << conv.err;
  const auto check = [&](const fs::path& graph, const fs::path& ref, const char* tol) {
    const auto c =
        run_cmd({python(), (onnx_dir / "check.py").string(), graph.string(), (kExample / "config.json").string(),
                 (root / "tokens.json").string(), ref.string(), "16", "64", tol});
    EXPECT_EQ(c.rc, 0) << c.out << c.err;
    EXPECT_NE(c.out.find("\"ok\":true"), std::string::npos) << c.out;
    RecordProperty(graph.filename().string(), c.out.substr(c.out.rfind('{')));
  };
  check(base, root / "ref_fp.safetensors", "1e-4");
  check(fg, root / "ref_w.safetensors", "1e-4");
  check(qg, root / "ref_q.safetensors", "1e-3");
  // The encodings: every weight of the float graph is (q + offset) * scale
  // with q an integer in [0, 2^bw - 1], per output channel and block of 32.
  const auto enc = json::parse(read_file(model / "model_ar16_cl64.encodings"));
  EXPECT_EQ(enc["version"], "1.0.0");
  ASSERT_EQ(enc["param_encodings"].size(), 28u);
  const auto twin_ckpt = model::Checkpoint::open(twin);
  for (const auto& e : enc["param_encodings"]) {
    const std::string name = e["name"];
    const int bw = e["bw"];
    EXPECT_EQ(bw, name.find("down_proj") != std::string::npos ? 8 : 4) << name;
    EXPECT_EQ(e["enc_type"], "PER_BLOCK") << name;
    EXPECT_EQ(e["block_size"], 32) << name;
    EXPECT_EQ(e["is_sym"], true) << name;
    const auto w = twin_ckpt.tensor(name).to(at::kDouble);
    const int64_t rows = w.size(0), blocks = w.size(1) / 32;
    ASSERT_EQ(e["scale"].size(), static_cast<std::size_t>(rows * blocks)) << name;
    const auto scale = at::tensor(e["scale"].get<std::vector<double>>(), at::kDouble).reshape({rows, blocks, 1});
    const auto offset =
        at::tensor(e["offset"].get<std::vector<int64_t>>(), at::kLong).to(at::kDouble).reshape({rows, blocks, 1});
    EXPECT_TRUE((offset == -(1 << (bw - 1))).all().item<bool>()) << name;
    const auto q = w.reshape({rows, blocks, 32}) / scale - offset;
    EXPECT_LT((q - q.round()).abs().max().item<double>(), 1e-3) << name;
    EXPECT_GE(q.round().min().item<double>(), 0) << name;
    EXPECT_LE(q.round().max().item<double>(), (1 << bw) - 1) << name;
  }
  // One 16-bit input encoding per distinct Linear input: 4 per layer.
  ASSERT_EQ(enc["activation_encodings"].size(), 16u);
  const auto acts = json::parse(read_file(twin / "config.json"))["qjobs_quantization"]["activations"];
  for (const auto& a : enc["activation_encodings"]) {
    EXPECT_EQ(a["bw"], 16);
    EXPECT_EQ(a["offset"][0], -32768);
    EXPECT_GT(a["scale"][0].get<double>(), 0);
  }
  EXPECT_DOUBLE_EQ(enc["activation_encodings"][0]["scale"][0].get<double>(),
                   acts["model.layers.0.self_attn.q_proj"]["scale"].get<double>());
  server.terminate();
  fs::remove_all(root);
}

// EXPORT_FORMAT mlx: mlx-lm (pip mlx-lm, MLX's CPU build) loads the job's
// model/ as it is. A mixed recipe (block 0 at 8 bits in groups of 64, the
// rest 4 bits in groups of 32) becomes QuantizedLinears of those schemes,
// whose weights decode to the fake_quant twin's and whose logits are qjobs'
// logits of that twin; the reported perplexity is that of the file's weights.
TEST(MlxExport, MixedRtnJobLoadsInMlxLmAsTheFakeQuantTwin) {
  const fs::path root = make_temp_dir("mlx_job");
  ServerProcess server(root / "ud", {"--slots", "1"});
  const std::string body =
      "MODEL: \"" + kExample.string() +
      "\"\nALGORITHM: RTN\nllm:\n  RTN:\n    W_BIT: 4\n    Q_GROUP_SIZE: 32\n"
      "    LAYER_OVERRIDES: [{pattern: 'model.layers.0.self_attn.*', W_BIT: 8, Q_GROUP_SIZE: 64}]\n"
      "eval:\n  tasks:\n    - type: ppl\n      name: kjv\n      data_path: \"" +
      kHeldOut.string() + "\"\n      seqlen: 256\n      num_samples: 8\n";
  const std::string mx = submit_and_wait(server, root, "mlx", "EXPORT_FORMAT: mlx\n" + body);
  const std::string fq = submit_and_wait(server, root, "fake", "EXPORT_FORMAT: fake_quant\n" + body);
  const fs::path packed = root / "ud/jobs" / mx / "model", fake = root / "ud/jobs" / fq / "model";
  const auto config = json::parse(read_file(packed / "config.json"));
  EXPECT_EQ(config["quantization"]["bits"], 4);
  EXPECT_EQ(config["quantization"]["group_size"], 32);
  EXPECT_EQ(config["quantization"]["model.layers.0.self_attn.o_proj"], json({{"group_size", 64}, {"bits", 8}}));
  EXPECT_FALSE(config["quantization"].contains("model.layers.0.mlp.down_proj"));
  // Groups of 64 do not divide down_proj's 352 inputs: refused at submission.
  const fs::path ragged = root / "ragged.yaml";
  std::ofstream(ragged) << "EXPORT_FORMAT: mlx\n" << std::regex_replace(body, std::regex("self_attn\\.\\*"), "*");
  const auto refused =
      run_cmd({(bin_dir() / "jobctl").string(), "--server", server.url(), "validate", ragged.string()});
  EXPECT_EQ(refused.rc, 5) << refused.out << refused.err;
  EXPECT_NE(refused.err.find("MLX's groups must divide every Linear's inputs; mlp.down_proj has 352 inputs"),
            std::string::npos)
      << refused.err;
  const auto ckpt_files = dir_size(packed);
  EXPECT_LT(ckpt_files, dir_size(fake) * 0.6) << "4-bit codes with a scale and bias per 32 (float32 model)";
  const auto rep = json::parse(read_file(root / "ud/jobs" / mx / "report.json"));
  const auto frep = json::parse(read_file(root / "ud/jobs" / fq / "report.json"));
  EXPECT_EQ(rep["export_format"], "mlx");
  // report.md says what each Linear became (issue 31: no bits column), and
  // the recorded config as an indented block, not one long line.
  const std::string md = read_file(root / "ud/jobs" / mx / "report.md");
  EXPECT_NE(md.find("| model.layers.0.self_attn.o_proj.weight | int8 g64 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| model.layers.1.mlp.down_proj.weight | int4 g32 |"), std::string::npos) << md;
  EXPECT_NE(md.find("config.json's quantization:\n\n```json\n{\n  \"bits\": 4,"), std::string::npos) << md;
  // The file's weights are the twin's (float32 scales and biases: exact to
  // rounding), so the perplexity is too.
  EXPECT_NEAR(rep["eval"]["quantized"]["kjv"]["ppl"].get<double>(),
              frep["eval"]["quantized"]["kjv"]["ppl"].get<double>(),
              1e-4 * frep["eval"]["quantized"]["kjv"]["ppl"].get<double>());

  const fs::path tokens = root / "tokens.json", logits = root / "logits.safetensors";
  std::ofstream(tokens)
      << "[[1, 45, 300, 7, 99, 512, 3, 18, 640, 2, 77, 901], [1, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]]";
  const auto l = run_cmd(
      {worker(), "logits", "--checkpoint", fake.string(), "--tokens", tokens.string(), "--out", logits.string()});
  ASSERT_EQ(l.rc, 0) << l.err;
  const auto c = run_cmd({python(), (fs::path(QJOBS_SOURCE_DIR) / "tests/reference/mlx_check.py").string(),
                          packed.string(), fake.string(), tokens.string(), logits.string()});
  EXPECT_EQ(c.rc, 0) << c.out << c.err.substr(c.err.size() > 4000 ? c.err.size() - 4000 : 0);
  std::cout << "mlx-lm: " << c.out << "sizes: mlx " << dir_size(packed) << " B, fake_quant " << dir_size(fake)
            << " B\n";
  const auto figures = json::parse(c.out.substr(0, c.out.find('\n')), nullptr, false);
  ASSERT_TRUE(figures.is_object()) << c.out;
  EXPECT_EQ(figures["linears"], 28);
  server.terminate();
  fs::remove_all(root);
}

}  // namespace qjobs::testing
