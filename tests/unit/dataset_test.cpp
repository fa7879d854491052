// Rows from local data files, the evaluation text, calibration windows.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/error.hpp"
#include "jobs/data/dataset.hpp"

namespace qjobs::data {
namespace {
namespace fs = std::filesystem;

class DatasetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("qjobs_data_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "folder");
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path write(const std::string& name, const std::string& body) {
    std::ofstream(dir_ / name) << body;
    return dir_ / name;
  }
  fs::path dir_;
};

TEST_F(DatasetTest, FormatsAndColumns) {
  DatasetSpec s;
  s.path = write("a.jsonl", "{\"text\": \" first\\n\"}\n\n{\"text\": \"\"}\n{\"text\": \"third\"}\n").string();
  EXPECT_EQ(load_rows(s), (std::vector<std::string>{" first\n", "", "third"}));
  EXPECT_EQ(evaluation_text(load_rows(s)), " first\n\n\n\n\nthird");

  s.path = write("q.jsonl", "{\"q\": \"2+2\", \"a\": 4}\n").string();
  s.format_string = "Q: {q} A: {a}";
  EXPECT_EQ(load_rows(s), std::vector<std::string>{"Q: 2+2 A: 4"});
  s.format_string.clear();
  s.text_columns = {"q", "a"};
  EXPECT_EQ(load_rows(s), std::vector<std::string>{"2+2\n4"});
  s.text_columns = {"missing"};
  EXPECT_THROW(load_rows(s), Error);

  DatasetSpec j;
  j.path = write("splits.json", R"({"train": [{"text": "t"}], "test": [{"text": "x"}, {"text": "y"}]})").string();
  j.split = "test";
  EXPECT_EQ(load_rows(j), (std::vector<std::string>{"x", "y"}));
  j.split = "validation";
  EXPECT_THROW(load_rows(j), Error);

  DatasetSpec t;
  t.path = write("whole.txt", "line one\n\nline two\n").string();
  EXPECT_EQ(evaluation_text(load_rows(t)), "line one\n\nline two\n");  // kept exactly

  std::ofstream(dir_ / "folder" / "test.jsonl") << "{\"text\": \"from folder\"}\n";
  DatasetSpec d;
  d.path = (dir_ / "folder").string();
  d.split = "test";
  EXPECT_EQ(load_rows(d), std::vector<std::string>{"from folder"});
}

TEST_F(DatasetTest, BadRowNamesFileAndLine) {
  DatasetSpec s;
  s.path = write("bad.jsonl", "{\"text\": \"ok\"}\nnot json\n").string();
  try {
    load_rows(s);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::data_corruption);
    EXPECT_NE(std::string(e.what()).find("bad.jsonl:2"), std::string::npos) << e.what();
  }
}

TEST_F(DatasetTest, KnownDatasetWithoutLocalCopySaysWhereToPutIt) {
  DatasetSpec s;
  s.root = dir_ / "root";
  s.name = "wikitext";
  s.subname = "wikitext-2-raw-v1";
  s.split = "test";
  try {
    load_rows(s);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::not_found);
    const std::string msg = e.what();
    EXPECT_NE(msg.find((dir_ / "root/wikitext/wikitext-2-raw-v1/test.jsonl").string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("does not download"), std::string::npos) << msg;
  }
  fs::create_directories(dir_ / "root/wikitext/wikitext-2-raw-v1");
  std::ofstream(dir_ / "root/wikitext/wikitext-2-raw-v1/test.jsonl") << "{\"text\": \"placed\"}\n";
  EXPECT_EQ(load_rows(s), std::vector<std::string>{"placed"});
}

// Issue 16: the message for missing multiple-choice data describes that
// format's rows (it used to suggest {"text": ...} for ARC).
TEST_F(DatasetTest, MissingMultipleChoiceDataNamesItsRowFormat) {
  DatasetSpec s;
  s.root = dir_ / "root";
  s.name = "ai2_arc";
  s.subname = "ARC-Challenge";
  s.split = "test";
  s.row_format = mc_row_format("arc");
  try {
    load_records(s);
    FAIL();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find((dir_ / "root/ai2_arc/ARC-Challenge/test.jsonl").string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("\"answerKey\""), std::string::npos) << msg;
    EXPECT_EQ(msg.find("{\"text\": ...}"), std::string::npos) << msg;
  }
  EXPECT_NE(mc_row_format("mmlu").find("\"subject\""), std::string::npos);
  EXPECT_NE(mc_row_format("plain").find("\"gold\""), std::string::npos);
}

}  // namespace
}  // namespace qjobs::data
