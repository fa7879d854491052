// Multiple-choice scoring against lm-eval-style vectors made with Hugging
// Face transformers on stories260K ($QJOBS_REFERENCE_DIR/eval), prompt
// construction against strings written by hand, and accuracy on a small
// hand-written task whose right answers the test knows.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "jobs/eval/multiple_choice.hpp"
#include "jobs/model/checkpoint.hpp"
#include "unit/reference.hpp"

namespace qjobs::eval {
namespace {
using nlohmann::json;
namespace fs = std::filesystem;

std::vector<json> read_jsonl(const fs::path& p) {
  std::ifstream in(p);
  std::vector<json> out;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

TEST(MultipleChoiceReference, LoglikelihoodsAndPredictionsMatchTransformers) {
  QJOBS_REQUIRE_REFERENCE(ref);
  const auto dir = ref / "models" / "stories260K";
  const auto model = model::LlamaModel::load(model::Checkpoint::open(dir));
  const auto tok = tokenizer::Tokenizer::load(dir);
  const auto cases = read_jsonl(ref / "eval" / "mc_cases.jsonl");
  const auto expected = read_jsonl(ref / "eval" / "mc_expected.jsonl");
  ASSERT_EQ(cases.size(), expected.size());
  ASSERT_FALSE(cases.empty());
  int acc = 0, acc_norm = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const auto& e = expected[i];
    McItem item;
    item.id = c["id"];
    item.context = c["context"];
    item.choices = c["choices"].get<std::vector<std::string>>();
    item.norm_text = item.choices;
    item.gold = c["gold"];
    const auto r = score_item(model, tok, item);
    ASSERT_EQ(r.choices.size(), e["choices"].size()) << item.id;
    for (std::size_t k = 0; k < r.choices.size(); ++k) {
      const auto& want = e["choices"][k];
      const auto& got = r.choices[k];
      const std::string where = item.id + " choice " + std::to_string(k);
      EXPECT_EQ(got.context_ids, want["context_ids"].get<std::vector<int64_t>>()) << where;
      EXPECT_EQ(got.continuation_ids, want["continuation_ids"].get<std::vector<int64_t>>()) << where;
      EXPECT_NEAR(got.loglikelihood, want["loglikelihood"].get<double>(), 1e-4) << where;
      EXPECT_EQ(got.is_greedy, want["is_greedy"].get<bool>()) << where;
      EXPECT_EQ(got.num_bytes, want["num_bytes"].get<int64_t>()) << where;
    }
    EXPECT_EQ(r.pred_acc, e["pred_acc"].get<int64_t>()) << item.id;
    // acc_norm here divides by characters (lm-eval); the vectors by bytes.
    // Their README: no prediction in this set changes between the two.
    EXPECT_EQ(r.pred_acc_norm, e["pred_acc_norm"].get<int64_t>()) << item.id;
    acc += r.pred_acc == item.gold;
    acc_norm += r.pred_acc_norm == item.gold;
  }
  EXPECT_EQ(acc, 8);
  EXPECT_EQ(acc_norm, 6);
}

TEST(MultipleChoicePrompts, FormatsBuildTheStringsWrittenByHand) {
  const std::vector<json> mmlu = {{{"question", " What is 2+2? "},
                                   {"choices", {"3", "4", "5", "6"}},
                                   {"answer", 1},
                                   {"subject", "elementary_mathematics"}}};
  auto items = build_items(mmlu, {}, {.format = "mmlu"});
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].context,
            "The following are multiple choice questions (with answers) about elementary mathematics.\n\n"
            "What is 2+2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:");
  EXPECT_EQ(items[0].choices, (std::vector<std::string>{" A", " B", " C", " D"}));
  EXPECT_EQ(items[0].gold, 1);

  const std::vector<json> arc = {{{"id", "q1"},
                                  {"question", "Which is a gas?"},
                                  {"choices", {{"text", {"ice", "steam"}}, {"label", {"A", "B"}}}},
                                  {"answerKey", "B"}},
                                 {{"id", "q2"},
                                  {"question", "Which is hot?"},
                                  {"choices", {{"text", {"fire", "snow"}}, {"label", {"1", "2"}}}},
                                  {"answerKey", "1"}}};
  items = build_items(arc, arc, {.format = "arc", .num_fewshot = 1});
  ASSERT_EQ(items.size(), 2u);
  // One shot, never the item itself: each item's shot is the other one.
  EXPECT_EQ(items[0].context, "Question: Which is hot?\nAnswer: fire\n\nQuestion: Which is a gas?\nAnswer:");
  EXPECT_EQ(items[1].context, "Question: Which is a gas?\nAnswer: steam\n\nQuestion: Which is hot?\nAnswer:");
  EXPECT_EQ(items[0].choices, (std::vector<std::string>{" ice", " steam"}));
  EXPECT_EQ(items[0].norm_text, (std::vector<std::string>{"ice", "steam"}));
  EXPECT_EQ(items[0].gold, 1);
  EXPECT_EQ(items[1].gold, 0);
  EXPECT_EQ(items[0].id, "q1");

  const std::vector<json> tiny = {{{"input_formatted", "Q: x?\nA. a\nB. b\nC. c\nD. d\nAnswer:"}, {"answer", 3}}};
  items = build_items(tiny, {}, {.format = "tinymmlu"});
  EXPECT_EQ(items[0].context, "Q: x?\nA. a\nB. b\nC. c\nD. d\nAnswer:");
  EXPECT_EQ(items[0].gold, 3);

  // A malformed row names its row and field.
  try {
    build_items({{{"question", "q"}, {"choices", {"a"}}, {"answer", 7}}}, {}, {.format = "mmlu"});
    FAIL() << "answer 7 of 1 choice accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("row 1: field 'answer'"), std::string::npos) << e.what();
  }
}

TEST(MultipleChoiceAccuracy, HandWrittenTaskOnTheExampleModel) {
  // The example model was trained on the King James Bible. Each item pairs
  // a well-known verse opening with its true continuation and with words
  // the Bible never puts there; the model must prefer the verse. The gold
  // labels of items 3 and 5 point at the wrong choice on purpose, so the
  // accuracy the test knows is 3 of 5 — acc must count exactly that.
  const fs::path dir = fs::path(QJOBS_SOURCE_DIR) / "examples" / "kjv-llama";
  const auto model = model::LlamaModel::load(model::Checkpoint::open(dir));
  const auto tok = tokenizer::Tokenizer::load(dir);
  struct Case {
    std::string context;
    std::vector<std::string> choices;
    int64_t verse;  // index of the true continuation
    int64_t gold;
  };
  const std::vector<Case> cases = {
      {"In the beginning God created the", {" heaven and the earth.", " computer and the telephone."}, 0, 0},
      {"And God said, Let there be", {" pizza", " light"}, 1, 1},
      {"The LORD is my shepherd; I shall not", {" want.", " skateboard."}, 0, 1},
      {"And the LORD spake unto Moses,", {" saying,", " laughing electronically,"}, 0, 0},
      {"For God so loved the", {" world,", " spreadsheet,"}, 0, 1},
  };
  std::vector<McItem> items;
  for (std::size_t i = 0; i < cases.size(); ++i)
    items.push_back({std::to_string(i), cases[i].context, cases[i].choices, cases[i].choices, cases[i].gold});
  for (std::size_t i = 0; i < cases.size(); ++i)
    EXPECT_EQ(score_item(model, tok, items[i]).pred_acc, cases[i].verse) << cases[i].context;
  const auto r = run_multiple_choice(model, tok, items, nullptr);
  EXPECT_DOUBLE_EQ(r["acc"].get<double>(), 3.0 / 5.0);
  EXPECT_EQ(r["n"], 5);
  EXPECT_EQ(r["predictions"].size(), 5u);
  EXPECT_NEAR(r["acc_stderr"].get<double>(), std::sqrt(0.6 * 0.4 / 4.0), 1e-12);
}

}  // namespace
}  // namespace qjobs::eval
