// The evaluation tasks' runners (jobs/eval/tasks/), reached through their
// rows (spec/eval_tasks/), on the example model.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/error.hpp"
#include "jobs/data/dataset.hpp"
#include "jobs/eval/perplexity.hpp"
#include "jobs/eval/tasks.hpp"
#include "jobs/model/checkpoint.hpp"
#include "spec/job_spec.hpp"

namespace qjobs::eval {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kExample = fs::path(QJOBS_SOURCE_DIR) / "examples/kjv-llama";

class EvalTaskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("qjobs_eval_tasks_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }
  // A task entry as the spec hands it over: the row's defaults applied.
  static json entry(json task) {
    const auto* row = find_eval_task(task["type"].get<std::string>());
    EXPECT_NE(row, nullptr);
    if (row != nullptr) EXPECT_TRUE(check_eval_task(*row, task).empty()) << task.dump();
    return task;
  }
  static void jsonl(const fs::path& p, const std::vector<std::string>& texts) {
    fs::create_directories(p.parent_path());
    std::ofstream out(p);
    for (const auto& t : texts) out << json{{"text", t}}.dump() << "\n";
  }
  fs::path root_;
  model::LlamaModel model_ = model::LlamaModel::load(model::Checkpoint::open(kExample));
  tokenizer::Tokenizer tok_ = tokenizer::Tokenizer::load(kExample);
  std::function<void(int64_t, int64_t)> progress_;
};

// Every row has a runner: each type reaches its own (the errors are the
// runners' own, about their data), and an unknown type names the known ones.
TEST_F(EvalTaskTest, EveryRowReachesItsRunner) {
  for (const auto& row : eval_task_catalog()) {
    json task = entry({{"type", row.type}});
    try {
      run_task(model_, tok_, task, root_ / "no-data-here", progress_);
      ADD_FAILURE() << row.type << " ran without data or prompts";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).find("unknown eval task type"), std::string::npos)
          << row.type << ": " << e.what();
    }
  }
  try {
    run_task(model_, tok_, json{{"type", "hellaswag"}}, root_, progress_);
    ADD_FAILURE() << "an unknown type ran";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(eval_task_types_text()), std::string::npos) << e.what();
  }
}

// ppl from a file and wikitext-ppl from the data root are perplexity.hpp's
// protocol on the rows joined with blank lines.
TEST_F(EvalTaskTest, PerplexityTasksReadTheirDataAndKeepTheProtocol) {
  const std::vector<std::string> rows = {"In the beginning God created the heaven and the earth.", "",
                                         "And the earth was without form, and void."};
  jsonl(root_ / "t.jsonl", rows);
  jsonl(root_ / "wikitext/wikitext-2-raw-v1/test.jsonl", rows);
  PerplexityOptions o;
  o.seqlen = 8;
  const auto want = perplexity(model_, perplexity_ids(tok_, data::evaluation_text(rows)), o);
  const auto ppl =
      run_task(model_, tok_, entry({{"type", "ppl"}, {"data_path", (root_ / "t.jsonl").string()}, {"seqlen", 8}}),
               root_, progress_);
  EXPECT_DOUBLE_EQ(ppl["ppl"].get<double>(), want.ppl);
  EXPECT_EQ(ppl["windows"], want.windows);
  const auto wiki = run_task(model_, tok_, entry({{"type", "wikitext-ppl"}, {"seqlen", 8}}), root_, progress_);
  EXPECT_DOUBLE_EQ(wiki["ppl"].get<double>(), want.ppl);
  EXPECT_EQ(wiki["data"], "wikitext/wikitext-2-raw-v1:test");
  EXPECT_EQ(wiki["name"], "wikitext-ppl");
}

// c4-ppl: the first `documents` documents joined with single spaces, the
// first num_samples windows (GPTQ's c4: 1,100 documents, 256 windows); the
// data is checked at submission at the task's type.
TEST_F(EvalTaskTest, C4TakesTheFirstDocumentsJoinedWithSpaces) {
  const std::vector<std::string> docs = {"In the beginning God created the heaven and the earth.",
                                         "And the earth was without form, and void.",
                                         "And God said, Let there be light: and there was light.",
                                         "A fourth document, past the limit, that the task must not read at all."};
  const auto defaults = entry({{"type", "c4-ppl"}});
  EXPECT_EQ(defaults["documents"], 1100);
  EXPECT_EQ(defaults["num_samples"], 256);
  EXPECT_EQ(defaults["seqlen"], 2048);

  const std::string spec =
      "MODEL: m\nALGORITHM: RTN\neval:\n  tasks:\n    - type: c4-ppl\n      documents: 3\n      seqlen: 8\n";
  Environment env;
  env.data_dir = root_;
  const auto missing = parse_job_spec(spec, SpecContext{.local_files = true, .env = &env});
  ASSERT_EQ(missing.issues.size(), 1u);
  EXPECT_EQ(missing.issues[0].path, "eval.tasks[0].type");
  EXPECT_NE(missing.issues[0].message.find((root_ / "allenai/c4/en/validation.jsonl").string()), std::string::npos)
      << missing.issues[0].message;
  jsonl(root_ / "allenai/c4/en/validation.jsonl", docs);
  EXPECT_TRUE(parse_job_spec(spec, SpecContext{.local_files = true, .env = &env}).spec);

  const std::string joined = docs[0] + " " + docs[1] + " " + docs[2];
  for (const int64_t windows : {int64_t{3}, int64_t{-1}}) {
    PerplexityOptions o;
    o.seqlen = 8;
    o.num_samples = windows;
    const auto want = perplexity(model_, perplexity_ids(tok_, joined), o);
    const auto got =
        run_task(model_, tok_, entry({{"type", "c4-ppl"}, {"documents", 3}, {"seqlen", 8}, {"num_samples", windows}}),
                 root_, progress_);
    EXPECT_DOUBLE_EQ(got["ppl"].get<double>(), want.ppl) << windows;
    EXPECT_EQ(got["windows"], want.windows) << windows;
    EXPECT_EQ(got["data"], "allenai/c4/en:validation");
  }
  // All windows of three documents, fewer than with the fourth read too.
  PerplexityOptions all;
  all.seqlen = 8;
  EXPECT_LT(perplexity(model_, perplexity_ids(tok_, joined), all).windows,
            perplexity(model_, perplexity_ids(tok_, joined + " " + docs[3]), all).windows);
}

}  // namespace
}  // namespace qjobs::eval
