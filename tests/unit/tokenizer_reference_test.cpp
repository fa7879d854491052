// Tokenizers against transformers.js / HF outputs in
// $QJOBS_REFERENCE_DIR/tokenizers, one fixture per tokenizer.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "common/job_dir.hpp"
#include "jobs/model/safetensors.hpp"
#include "jobs/tokenizer/tokenizer.hpp"
#include "unit/reference.hpp"

namespace qjobs::tokenizer {
namespace {

std::string show(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (auto x : v) s += std::to_string(x) + ",";
  return s + "]";
}

class TokenizerReference : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerReference, EveryCaseGivesTheSameIdsAndText) {
  QJOBS_REQUIRE_REFERENCE(ref);
  const auto dir = ref / "tokenizers" / GetParam();
  const auto tok = Tokenizer::load(dir);
  ASSERT_TRUE(tok.bos_id());
  std::ifstream in(dir / "cases.jsonl");
  int cases = 0, id_ok = 0;
  for (std::string line; std::getline(in, line);) {
    const auto c = nlohmann::json::parse(line);
    const std::string text = c["text"];
    const auto want = c["ids"].get<std::vector<int64_t>>();
    const auto got = tok.encode(text);
    ++cases;
    id_ok += got == want;
    EXPECT_EQ(show(got), show(want)) << "case " << c["case"] << ": " << c["text"].dump();
    std::vector<int64_t> with_bos = {*tok.bos_id()};
    with_bos.insert(with_bos.end(), got.begin(), got.end());
    EXPECT_EQ(with_bos, c["ids_with_bos"].get<std::vector<int64_t>>()) << "case " << c["case"];
    EXPECT_EQ(tok.decode(want), c["decoded"].get<std::string>()) << "case " << c["case"];
    EXPECT_EQ(tok.decode(want, false, true), c["decoded_cleanup"].get<std::string>()) << "case " << c["case"];
    EXPECT_EQ(tok.decode(c["ids_with_bos"].get<std::vector<int64_t>>(), true),
              c["decoded_with_bos_skip_special"].get<std::string>())
        << "case " << c["case"];
    if (c["roundtrip"].get<bool>()) EXPECT_EQ(tok.decode(got), text) << "case " << c["case"];
    std::vector<std::string> tokens;
    for (auto id : want) tokens.push_back(tok.id_to_token(id));
    EXPECT_EQ(tokens, c["tokens"].get<std::vector<std::string>>()) << "case " << c["case"];
  }
  EXPECT_EQ(cases, 50);
  RecordProperty("identical_ids", std::to_string(id_ok) + "/" + std::to_string(cases));
}

TEST_P(TokenizerReference, WikiText2TokenStreamIsIdentical) {
  QJOBS_REQUIRE_REFERENCE(ref);
  const auto dir = ref / "tokenizers" / GetParam();
  const auto tok = Tokenizer::load(dir);
  const auto text = read_file(ref / "data/wikitext-2-raw-v1/test.txt");
  std::vector<int64_t> got = {*tok.bos_id()};
  const auto ids = tok.encode(text);
  got.insert(got.end(), ids.begin(), ids.end());
  const auto want_t =
      model::SafetensorsFile::open(dir / "wikitext2_test_ids.safetensors").tensor("input_ids").flatten().to(at::kLong);
  const std::vector<int64_t> want(want_t.data_ptr<int64_t>(), want_t.data_ptr<int64_t>() + want_t.numel());
  ASSERT_EQ(got.size(), want.size());
  std::size_t first_diff = got.size();
  for (std::size_t i = 0; i < got.size(); ++i)
    if (got[i] != want[i]) {
      first_diff = i;
      break;
    }
  EXPECT_EQ(first_diff, got.size()) << "first difference at " << first_diff;
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, TokenizerReference, ::testing::Values("llama3", "llama2"));

TEST(TokenizerReferenceStories, WikiText2TokenStreamIsIdentical) {
  QJOBS_REQUIRE_REFERENCE(ref);
  const auto dir = ref / "models/stories260K";
  const auto tok = Tokenizer::load(dir);
  const auto text = read_file(ref / "data/wikitext-2-raw-v1/test.txt");
  const auto got = tok.encode_with_template(text);  // the template adds <s>
  const auto want_t =
      model::SafetensorsFile::open(dir / "wikitext2_test_ids.safetensors").tensor("input_ids").flatten().to(at::kLong);
  ASSERT_EQ(static_cast<int64_t>(got.size()), want_t.numel());
  EXPECT_TRUE(at::equal(at::tensor(got, at::kLong), want_t));
  // The greedy sample decodes as published.
  std::ifstream in(dir / "expected.json");
  const auto g = nlohmann::json::parse(in)["greedy"];
  EXPECT_EQ(tok.encode_with_template(g["prompt"].get<std::string>()), g["prompt_ids"].get<std::vector<int64_t>>());
  EXPECT_EQ(tok.decode(g["all_ids"].get<std::vector<int64_t>>(), true), g["full_text"].get<std::string>());
}

}  // namespace
}  // namespace qjobs::tokenizer
