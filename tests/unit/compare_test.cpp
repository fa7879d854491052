// jobs side by side (server/report_compare): like with like only.
#include <gtest/gtest.h>

#include <algorithm>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "spec/catalog_docs.hpp"
#include "server/report_compare.hpp"

namespace qjobs::server {
namespace {
using nlohmann::json;

json ppl(double v, int seqlen, int windows, bool cached = false) {
  json r = {{"ppl", v},
            {"seqlen", seqlen},
            {"windows", windows},
            {"tokens_per_s", 1234.0},
            {"protocol", "GPTQ/AWQ: one BOS, non-overlapping windows"},
            {"data", "kjv/test.jsonl"}};
  if (cached) r["cached"] = {{"fingerprint", "f"}};
  return r;
}

json report(const std::string& algo, const std::string& model, json params, json original, json quantized,
            double size_before, double size_after) {
  return {{"algorithm", algo},
          {"model", {{"source", model}}},
          {"export_format", "compressed-tensors"},
          {"spec", {{"ALGORITHM", algo}, {"params", std::move(params)}}},
          {"size_mib", {{"before", size_before}, {"after", size_after}}},
          {"stage_seconds", {{"quantize", 2.5}}},
          {"eval", {{"original", std::move(original)}, {"quantized", std::move(quantized)}}}};
}

// Issue 16: a 512- and a 256-window perplexity, or two models, never share a
// row; columns say what was done; cached numbers are marked; tokens/s is
// not compared.
TEST(Compare, OnlyLikeWithLikeSharesARow) {
  const json rtn = report("RTN", "m", {{"W_BIT", 4}, {"Q_GROUP_SIZE", 32}}, {{"kjv", ppl(10.0, 256, 6)}},
                          {{"kjv", ppl(11.0, 256, 6)}}, 3.3, 1.0);
  const json gptq = report("GPTQ", "m", {{"W_BIT", 4}, {"Q_GROUP_SIZE", -1}}, {{"kjv", ppl(10.0, 256, 6, true)}},
                           {{"kjv", ppl(10.5, 256, 6)}}, 3.3, 0.9);
  const json long_window = report("RTN", "m", {{"W_BIT", 8}, {"Q_GROUP_SIZE", 32}}, {{"kjv", ppl(9.0, 512, 3)}},
                                  {{"kjv", ppl(9.1, 512, 3)}}, 3.3, 1.6);
  json other = {{"algorithm", "Evaluate"},
                {"model", {{"source", "n"}}},
                {"export_format", nullptr},
                {"size_mib", {{"before", 7.0}, {"after", nullptr}}},
                {"eval", {{"model", {{"kjv", ppl(20.0, 256, 6)}}}}}};
  const auto c = compare_reports({{"a", "", "SUCCEEDED", rtn},
                                  {"b", "mine", "SUCCEEDED", gptq},
                                  {"c", "", "SUCCEEDED", long_window},
                                  {"d", "", "SUCCEEDED", other},
                                  {"e", "", "RUNNING", nullptr}});
  ASSERT_EQ(c["columns"].size(), 5u);
  EXPECT_EQ(c["columns"][0]["label"], "RTN W4 g32 asym compressed-tensors");
  EXPECT_EQ(c["columns"][1]["label"], "GPTQ W4 per-channel asym compressed-tensors");
  EXPECT_EQ(c["columns"][2]["label"], "RTN W8 g32 asym compressed-tensors");
  EXPECT_EQ(c["columns"][3]["label"], "Evaluate");
  EXPECT_EQ(c["columns"][0]["size_mib"], 1.0);
  EXPECT_EQ(c["columns"][3]["size_mib"], 7.0) << "an Evaluate job's size is its model's";
  EXPECT_TRUE(c["columns"][4]["size_mib"].is_null());
  EXPECT_EQ(c["original_size_mib"]["m"], 3.3);
  EXPECT_FALSE(c["original_size_mib"].contains("n")) << "an Evaluate job has no original";

  // Three rows of kjv ppl: (m, 256 x 6), (m, 512 x 3), (n, 256 x 6).
  ASSERT_EQ(c["tables"].size(), 3u) << c.dump(2);
  const json& t256 = c["tables"][0];
  EXPECT_EQ(t256["model"], "m");
  EXPECT_EQ(t256["metric"], "ppl");
  EXPECT_EQ(t256["original"], 10.0);
  EXPECT_EQ(t256["values"], json({11.0, 10.5, nullptr, nullptr, nullptr}));
  EXPECT_FALSE(t256["original_cached"]) << "the first job computed it";
  const json& t512 = c["tables"][1];
  EXPECT_EQ(t512["original"], 9.0);
  EXPECT_EQ(t512["values"], json({nullptr, nullptr, 9.1, nullptr, nullptr}));
  const json& tn = c["tables"][2];
  EXPECT_EQ(tn["model"], "n");
  EXPECT_TRUE(tn["original"].is_null());
  EXPECT_EQ(tn["values"], json({nullptr, nullptr, nullptr, 20.0, nullptr}));
  std::string notes;
  for (const auto& n : c["notes"]) notes += n.get<std::string>() + "\n";
  EXPECT_NE(notes.find("task kjv on m was measured with 2 different protocols"), std::string::npos) << notes;
  EXPECT_NE(notes.find("2 different models"), std::string::npos) << notes;
  EXPECT_NE(notes.find("job e (RUNNING) has no report yet"), std::string::npos) << notes;

  const std::string md = compare_markdown(c);
  EXPECT_NE(
      md.find("| | original | RTN W4 g32 asym compressed-tensors | GPTQ W4 per-channel asym compressed-tensors |"),
      std::string::npos)
      << md;
  EXPECT_NE(
      md.find("| kjv ppl (seqlen 256, 6 windows, data kjv/test.jsonl; m) | 10.0000 | 11.0000 | 10.5000 | - | - | - |"),
      std::string::npos)
      << md;
  EXPECT_NE(md.find("| kjv ppl (seqlen 512, 3 windows, data kjv/test.jsonl; m) | 9.0000 | - | - | 9.1000 | - | - |"),
            std::string::npos)
      << md;
  EXPECT_EQ(md.find("tokens"), std::string::npos) << "throughput is not compared";
  EXPECT_NE(md.find("GPTQ W4 per-channel asym compressed-tensors = b (mine)"), std::string::npos) << md;

  // Cached numbers are marked: the second job's original alone.
  const auto cached = compare_reports({{"b", "", "SUCCEEDED", gptq}});
  EXPECT_TRUE(cached["tables"][0]["original_cached"]);
  EXPECT_NE(compare_markdown(cached).find("10.0000*"), std::string::npos);
}

// Two columns that would read the same are told apart by name, else id.
TEST(Compare, EqualLabelsAreToldApart) {
  const json r = report("RTN", "m", {{"W_BIT", 4}, {"Q_GROUP_SIZE", 32}}, json::object(), json::object(), 1, 1);
  const auto c = compare_reports({{"id1", "", "SUCCEEDED", r}, {"id2", "second", "SUCCEEDED", r}});
  EXPECT_EQ(c["columns"][0]["label"], "RTN W4 g32 asym compressed-tensors [id1]");
  EXPECT_EQ(c["columns"][1]["label"], "RTN W4 g32 asym compressed-tensors [second]");
  // Absent keys take the catalog's defaults (RTN: W4 g128).
  const json defaults = report("RTN", "m", json::object(), json::object(), json::object(), 1, 1);
  EXPECT_EQ(compare_label(defaults), "RTN W4 g128 asym compressed-tensors");
}

// Issue 31: labels come from what each Linear became and the recorded
// activation and KV schemes, read through report_summary from report.json
// text as the worker writes it. The shipped recipes that shared a label
// (the w4a16 + w8a16 mix, Quark's symmetric and Nyuntam's asymmetric AWQ,
// QoQ, FP8 with an FP8 KV cache) now read apart without a name suffix.
TEST(Compare, LabelsSayWhatEachLinearBecame) {
  const auto text = [](const std::string& algo, const json& params, const json& forms, const json& recipe,
                       const std::string& format) {
    json layers = json::array();
    for (const auto& [form, n] : forms.items())
      for (int i = 0; i < n.get<int>(); ++i)
        layers.push_back(
            {{"name", "model.layers." + std::to_string(i) + "." + form}, {"weights", form}, {"rel_fro_err", 0.01}});
    return json{{"algorithm", algo},          {"export_format", format},
                {"model", {{"source", "m"}}}, {"spec", {{"params", params}}},
                {"layers", layers},           {"recipe", recipe}}
        .dump();
  };
  const auto label_of = [](const std::string& t) {
    std::string problem;
    const auto summary = report_summary(t, &problem);
    EXPECT_TRUE(summary) << problem;
    return summary ? compare_label(*summary) : std::string();
  };
  const std::string mix = label_of(text("GPTQ", {{"W_BIT", 4}, {"Q_GROUP_SIZE", 32}, {"ZERO_POINT", false}},
                                        {{"int4 g32", 20}, {"int8 g32", 8}}, json::object(), "compressed-tensors"));
  EXPECT_EQ(mix, "GPTQ W4 g32 + W8 g32 sym compressed-tensors");
  // The settings table beside the metrics: the scheme with counts, then the keys.
  const auto mixed =
      compare_reports({{"m", "", "SUCCEEDED",
                        *report_summary(text("GPTQ", {{"W_BIT", 4}, {"Q_GROUP_SIZE", 32}, {"ZERO_POINT", false}},
                                             {{"int4 g32", 20}, {"int8 g32", 8}}, json::object(), "compressed-tensors"),
                                        nullptr)}});
  const json& settings = mixed["columns"][0]["settings"];
  EXPECT_EQ(settings[0], json::array({"algorithm", "GPTQ"})) << "the scheme first, then the keys";
  EXPECT_EQ(settings[1], json::array({"weights", "W4 g32 ×20, W8 g32 ×8"})) << settings.dump();
  EXPECT_EQ(settings[2], json::array({"activations", "float"}));
  EXPECT_EQ(settings[3], json::array({"KV cache", "float"}));
  EXPECT_EQ(settings[4], json::array({"format", "compressed-tensors"}));
  EXPECT_NE(std::find(settings.begin(), settings.end(), json::array({"ZERO_POINT", "false"})), settings.end());
  EXPECT_NE(std::find(settings.begin(), settings.end(), json::array({"Q_GROUP_SIZE", "32"})), settings.end());
  const std::string quark =
      label_of(text("AutoAWQ", {{"ZERO_POINT", false}}, {{"int4 g128", 28}}, json::object(), "compressed-tensors"));
  const std::string nyuntam =
      label_of(text("AutoAWQ", {{"ZERO_POINT", true}}, {{"int4 g128", 28}}, json::object(), "compressed-tensors"));
  EXPECT_EQ(quark, "AutoAWQ W4 g128 sym compressed-tensors");
  EXPECT_EQ(nyuntam, "AutoAWQ W4 g128 asym compressed-tensors");
  const json qoq_acts = {{"model.layers.0.self_attn.q_proj", {{"kind", "int_token"}, {"bits", 8}}},
                         {"model.layers.0.mlp.up_proj", {{"kind", "int_token"}, {"bits", 8}}}};
  EXPECT_EQ(label_of(text("LMQuant", {{"quant_type", "g128"}}, {{"int4 g128", 28}},
                          {{"activations", qoq_acts}, {"kv_cache", {{"kind", "int"}, {"bits", 4}, {"group", 128}}}},
                          "fake_quant")),
            "LMQuant W4 g128 A8 dynamic KV4 fake_quant");
  const json fp8_acts = {{"model.layers.0.self_attn.q_proj", {{"kind", "fp8_tensor"}, {"scale", 0.1}}}};
  EXPECT_EQ(label_of(text("FP8", {{"ACT", "static"}, {"kv_cache", true}}, {{"FP8", 28}},
                          {{"activations", fp8_acts}, {"kv_cache", {{"kind", "fp8"}, {"k_scale", {1.0}}}}},
                          "compressed-tensors")),
            "FP8 W-FP8 A-FP8 static KV-FP8 compressed-tensors");
  // The same FP8 job without a KV cache reads differently.
  EXPECT_EQ(
      label_of(text("FP8", {{"ACT", "static"}}, {{"FP8", 28}}, {{"activations", fp8_acts}}, "compressed-tensors")),
      "FP8 W-FP8 A-FP8 static compressed-tensors");
  // Act order and per-channel overrides are said; a job whose Linears have
  // no integer form (HQQ fake_quant) is labelled from its keys.
  EXPECT_EQ(label_of(text("GPTQ", {{"DESC_ACT", true}, {"ZERO_POINT", false}},
                          {{"int4 g128", 24}, {"int8 per channel", 4}}, json::object(), "gptq")),
            "GPTQ W4 g128 + W8 per-channel sym act-order gptq");
  EXPECT_EQ(label_of(text("HQQ", {{"W_BIT", 3}, {"Q_GROUP_SIZE", 64}}, {{"float", 28}}, json::object(), "fake_quant")),
            "HQQ W3 g64 fake_quant");

  const auto c = compare_reports({{"a", "", "SUCCEEDED",
                                   *report_summary(text("AutoAWQ", {{"ZERO_POINT", false}}, {{"int4 g128", 28}},
                                                        json::object(), "compressed-tensors"),
                                                   nullptr)},
                                  {"b", "", "SUCCEEDED",
                                   *report_summary(text("AutoAWQ", {{"ZERO_POINT", true}}, {{"int4 g128", 28}},
                                                        json::object(), "compressed-tensors"),
                                                   nullptr)}});
  EXPECT_NE(c["columns"][0]["label"], c["columns"][1]["label"]);
  EXPECT_EQ(c["columns"][0]["label"].get<std::string>().find('['), std::string::npos) << "told apart by a suffix";
}

// Issue 16: README.md's spec reference is `jobctl algorithms --markdown`
// (spec/catalog_docs), and it is current.
// Issue 29: a report.json is anyone's file. {"algorithm": 7} made compare
// throw (a 500); a value nested 100,000 deep crashed the server in a
// recursive copy. A field of the wrong type is ignored; the summary keeps
// only what compare shows; deep text is refused before it is parsed.
// Issue 31: per-block error curves of the compared jobs on one plot. Each
// block's value is the mean of its Linears' errors (hand-computed below);
// the output error where every Linear has one, else the weight error.
TEST(Compare, BlockErrorsAreEachBlocksMeanOverItsLinears) {
  const json layers = json::parse(R"([
      {"name": "model.layers.0.self_attn.q_proj", "rel_fro_err": 0.10, "rel_out_err": 0.02},
      {"name": "model.layers.0.mlp.down_proj", "rel_fro_err": 0.20, "rel_out_err": 0.04},
      {"name": "model.layers.2.mlp.experts.7.up_proj", "rel_fro_err": 0.30, "rel_out_err": 0.09},
      {"name": "lm_head", "rel_fro_err": 5.0, "rel_out_err": 5.0},
      {"name": "model.layers.99999999.q", "rel_fro_err": 1.0},
      {"name": 3, "rel_fro_err": 1.0}])");
  std::string problem;
  const auto calibrated = report_summary(json{{"algorithm", "GPTQ"}, {"layers", layers}}.dump(), &problem);
  ASSERT_TRUE(calibrated) << problem;
  // block 0: (0.02 + 0.04) / 2; block 1: no Linear; block 2: the expert's
  // 0.09 (its block is the first number, not the expert's 7). lm_head and
  // the 8-digit index are not blocks; the name that is no string is skipped.
  const json& be = (*calibrated)["block_errors"];
  EXPECT_EQ(be["metric"], "rel_out_err");
  ASSERT_EQ(be["values"].size(), 3u);
  EXPECT_NEAR(be["values"][0].get<double>(), 0.03, 1e-12);
  EXPECT_TRUE(be["values"][1].is_null());
  EXPECT_NEAR(be["values"][2].get<double>(), 0.09, 1e-12);

  // RTN: no output error on some Linears, so the weight error for all.
  json rtn = layers;
  rtn[1]["rel_out_err"] = nullptr;
  const auto weights_only = report_summary(json{{"layers", rtn}}.dump(), &problem);
  ASSERT_TRUE(weights_only) << problem;
  EXPECT_EQ((*weights_only)["block_errors"]["metric"], "rel_fro_err");
  EXPECT_NEAR((*weights_only)["block_errors"]["values"][0].get<double>(), 0.15, 1e-12);

  // In compare: each column carries its curve, or null without one.
  const auto c = compare_reports({{"a", "", "SUCCEEDED", *calibrated, ""}, {"b", "", "SUCCEEDED", json::object(), ""}});
  EXPECT_EQ(c["columns"][0]["block_errors"], be);
  EXPECT_TRUE(c["columns"][1]["block_errors"].is_null());
}

TEST(Compare, WrongTypesAreIgnoredAndDeepReportsRefused) {
  const json hostile = json::parse(R"({"algorithm": 7, "export_format": [1], "model": {"source": 3},
      "size_mib": {"after": "x", "before": {}}, "stage_seconds": {"quantize": [1]},
      "spec": {"params": {"W_BIT": "4", "Q_GROUP_SIZE": {"a": 1}}},
      "eval": {"quantized": {"kjv": {"ppl": 1.5, "format": 3, "seqlen": [1], "num_fewshot": {}}}}})");
  json c;
  ASSERT_NO_THROW(c = compare_reports({{"a", "", "SUCCEEDED", hostile, ""}}));
  EXPECT_EQ(c["columns"][0]["algorithm"], nullptr);
  EXPECT_EQ(c["columns"][0]["label"], "?");
  EXPECT_EQ(c["columns"][0]["size_mib"], nullptr);
  EXPECT_EQ(c["columns"][0]["quantize_s"], nullptr);
  EXPECT_NO_THROW(compare_markdown(c));

  std::string problem;
  const auto summary = report_summary(hostile.dump(), &problem);
  ASSERT_TRUE(summary) << problem;
  EXPECT_FALSE(summary->contains("algorithm"));
  EXPECT_FALSE(summary->contains("export_format"));
  EXPECT_EQ((*summary)["spec"]["params"], json({{"W_BIT", "4"}}));
  EXPECT_EQ((*summary)["eval"]["quantized"]["kjv"], json({{"ppl", 1.5}, {"format", 3}}));
  const auto kept = report_summary(R"({"algorithm": "GPTQ", "layers": [{"name": "q", "err": 1}], "eval": {"quantized":
      {"kjv": {"ppl": 2.0, "cached": {"fingerprint": "f"}, "per_window": [1, 2, 3]}}}})",
                                   &problem);
  ASSERT_TRUE(kept) << problem;
  EXPECT_EQ(*kept,
            json::parse(R"({"algorithm": "GPTQ", "eval": {"quantized": {"kjv": {"ppl": 2.0, "cached": true}}}})"));

  EXPECT_FALSE(report_summary("{\"eval\": " + std::string(100000, '[') + std::string(100000, ']') + "}", &problem));
  EXPECT_NE(problem.find("nested deeper than 32 levels"), std::string::npos) << problem;
  EXPECT_FALSE(report_summary("[1, 2]", &problem));
  EXPECT_NE(problem.find("not a JSON object"), std::string::npos) << problem;
}

TEST(CatalogDocs, ReadmeSpecReferenceIsCurrent) {
  std::ifstream in(std::filesystem::path(QJOBS_SOURCE_DIR) / "README.md");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string readme = ss.str();
  const std::string begin = "<!-- jobctl algorithms --markdown: begin -->\n",
                    end = "<!-- jobctl algorithms --markdown: end -->";
  const auto a = readme.find(begin), b = readme.find(end);
  ASSERT_NE(a, std::string::npos);
  ASSERT_NE(b, std::string::npos);
  EXPECT_EQ(readme.substr(a + begin.size(), b - a - begin.size()), catalog_markdown())
      << "README.md is stale: regenerate the section with build/bin/jobctl algorithms --markdown";
  // Every available algorithm has its section, with HQQ's default group as
  // the catalog says (one place for defaults).
  for (const auto& algo : algorithm_catalog())
    if (algo.available) EXPECT_NE(readme.find("### `" + algo.name + "`"), std::string::npos) << algo.name;
  EXPECT_NE(catalog_markdown().find("| `Q_GROUP_SIZE` | integer | `64` |"), std::string::npos);
}

// The README's evaluation tasks are `jobctl tasks --markdown`, from the rows.
TEST(CatalogDocs, ReadmeEvalTasksAreCurrent) {
  std::ifstream in(std::filesystem::path(QJOBS_SOURCE_DIR) / "README.md");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string readme = ss.str();
  const std::string begin = "<!-- jobctl tasks --markdown: begin -->\n", end = "<!-- jobctl tasks --markdown: end -->";
  const auto a = readme.find(begin), b = readme.find(end);
  ASSERT_NE(a, std::string::npos);
  ASSERT_NE(b, std::string::npos);
  EXPECT_EQ(readme.substr(a + begin.size(), b - a - begin.size()), eval_tasks_markdown())
      << "README.md is stale: regenerate the section with build/bin/jobctl tasks --markdown";
  for (const auto& t : eval_task_catalog())
    EXPECT_NE(readme.find("### `type: " + t.type + "`"), std::string::npos) << t.type;
  EXPECT_NE(eval_tasks_markdown().find("| `seqlen` | integer | `2048` |"), std::string::npos);
}

}  // namespace
}  // namespace qjobs::server
