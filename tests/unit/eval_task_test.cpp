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

}  // namespace
}  // namespace qjobs::eval
