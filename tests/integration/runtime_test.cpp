// The runtime from the outside: qjobs-worker's model commands and a job with
// evaluation, on the project's own example model (examples/kjv-llama).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/job_dir.hpp"
#include "integration/harness.hpp"
#include "jobs/data/dataset.hpp"
#include "jobs/eval/perplexity.hpp"
#include "jobs/eval/tasks.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/model/llama_model.hpp"
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
  EXPECT_EQ(cfg.arch.hf_class, "LlamaForCausalLM");
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
  EXPECT_TRUE(at::equal(logits[0], logits[1]));

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
  std::ofstream(spec) << "MODEL: \"" << kExample.string() << "\"\nALGORITHM: RTN\nllm:\n  RTN:\n    W_BIT: 4\n"
                      << "    Q_GROUP_SIZE: 32\neval:\n  tasks:\n    - type: ppl\n      name: kjv\n"
                      << "      data_path: \"" << kHeldOut.string() << "\"\n      seqlen: 256\n      num_samples: 8\n"
                      << "    - type: demo\n      raw: true\n      max_new_tokens: 8\n      prompts: [\"In the beginning\"]\n";
  const auto r = run_cmd({(bin_dir() / "jobctl").string(), "--server", server.url(), "submit", spec.string(), "--wait"});
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
