#include "jobs/eval/tasks.hpp"

#include <filesystem>

#include "common/error.hpp"
#include "common/strings.hpp"
#include "jobs/data/dataset.hpp"
#include "jobs/eval/multiple_choice.hpp"
#include "jobs/eval/perplexity.hpp"
#include "jobs/model/generate.hpp"

namespace qjobs::eval {
using nlohmann::json;

at::Tensor perplexity_ids(const tokenizer::Tokenizer& tok, const std::string& text) {
  std::vector<int64_t> ids;
  if (auto bos = tok.bos_id()) ids.push_back(*bos);
  const auto body = tok.encode(text);
  ids.insert(ids.end(), body.begin(), body.end());
  return at::tensor(ids, at::kLong);
}

std::vector<int64_t> prompt_ids(const tokenizer::Tokenizer& tok, const std::string& prompt, bool raw) {
  std::vector<int64_t> ids;
  if (raw || tok.chat_family() == tokenizer::ChatFamily::none) {
    if (auto bos = tok.bos_id()) ids.push_back(*bos);
    const auto body = tok.encode(prompt);
    ids.insert(ids.end(), body.begin(), body.end());
    return ids;
  }
  ids = tok.encode(tok.format_chat({{"user", prompt}}));
  if (tok.chat_family() == tokenizer::ChatFamily::chatml)
    if (auto bos = tok.bos_id()) ids.insert(ids.begin(), *bos);
  return ids;
}

std::string answer(const model::LlamaModel& model, const tokenizer::Tokenizer& tok, const std::string& prompt, bool raw,
                   int64_t max_new_tokens) {
  const auto ids = prompt_ids(tok, prompt, raw);
  model::GenerateOptions o;
  o.max_new_tokens = max_new_tokens;
  o.stop_tokens = tok.eos_ids();
  auto out = model::generate(model, ids, o);
  if (!out.empty() && std::find(o.stop_tokens.begin(), o.stop_tokens.end(), out.back()) != o.stop_tokens.end())
    out.pop_back();
  return tok.decode(out, true);
}

json run_task(const model::LlamaModel& model, const tokenizer::Tokenizer& tok, const json& task,
              const std::filesystem::path& data_root, const std::function<void(int64_t, int64_t)>& progress) {
  const std::string type = task.value("type", "");
  json out = {{"type", type}, {"name", task.value("name", type)}};
  if (type == "ppl" || type == "wikitext-ppl") {
    data::DatasetSpec ds;
    ds.root = data_root;
    if (type == "wikitext-ppl") {
      ds.name = "wikitext";
      ds.subname = "wikitext-2-raw-v1";
      ds.split = "test";
    }
    ds.path = task.value("data_path", "");
    if (task.contains("dataset")) ds.name = task["dataset"];
    if (task.contains("subset")) ds.subname = task["subset"];
    if (task.contains("split")) ds.split = task["split"];
    for (const auto& c : split(task.value("text_column", ""), ','))
      if (auto t = trim(c); !t.empty()) ds.text_columns.push_back(t);
    const std::string text = data::evaluation_text(data::load_rows(ds));
    PerplexityOptions o;
    o.seqlen = task.value("seqlen", 2048);
    o.num_samples = task.value("num_samples", -1);
    o.batch_size = task.value("batch_size", 1);
    const auto r = perplexity(model, perplexity_ids(tok, text), o, progress);
    out["ppl"] = r.ppl;
    out["mean_nll"] = r.mean_nll;
    out["tokens"] = r.tokens;
    out["windows"] = r.windows;
    out["seqlen"] = o.seqlen;
    out["seconds"] = r.seconds;
    out["tokens_per_s"] = r.tokens_per_s;
    out["protocol"] = "GPTQ/AWQ: one BOS, non-overlapping windows of " + std::to_string(o.seqlen) +
                      " tokens, remainder dropped, exp(mean NLL of next-token predictions)";
    out["data"] = ds.path.empty() ? ds.name + (ds.subname.empty() ? "" : "/" + ds.subname) + ":" + ds.split : ds.path;
    return out;
  }
  if (type == "mc") {
    McTaskOptions o;
    o.format = task.value("format", std::string("plain"));
    o.num_fewshot = task.value("num_fewshot", 0);
    o.num_samples = task.value("num_samples", -1);
    o.seed = task.value("seed", 1234);
    data::DatasetSpec ds;
    ds.root = data_root;
    ds.path = task.value("data_path", "");
    ds.name = task.value("dataset", "");
    ds.subname = task.value("subset", "");
    ds.split = task.value("split", std::string("test"));
    ds.row_format = data::mc_row_format(o.format) + "; see the README's \"Datasets\" section";
    const auto rows = data::load_records(ds);
    std::vector<json> pool;
    std::string shot_split = ds.split;
    if (o.num_fewshot > 0) {
      data::DatasetSpec shots = ds;
      shots.split = task.value("fewshot_split", std::string(o.format == "mmlu" ? "dev" : "train"));
      // A single file holds one split: shots come from it, never the item itself.
      if (!ds.path.empty() && std::filesystem::is_regular_file(ds.path)) shots.split = ds.split;
      shot_split = shots.split;
      pool = data::load_records(shots);
    }
    out = run_multiple_choice(model, tok, build_items(rows, pool, o), progress);
    out["type"] = type;
    out["name"] = task.value("name", type);
    out["format"] = o.format;
    out["num_fewshot"] = o.num_fewshot;
    if (o.num_fewshot > 0) out["fewshot"] = {{"split", shot_split}, {"seed", o.seed}};
    out["data"] = ds.path.empty() ? ds.name + (ds.subname.empty() ? "" : "/" + ds.subname) + ":" + ds.split : ds.path;
    return out;
  }
  if (type == "demo") {
    const auto prompts = task.value("prompts", std::vector<std::string>{});
    if (prompts.empty()) throw Error(ErrorKind::invalid_input, "demo task has no prompts");
    json answers = json::array();
    int64_t i = 0;
    if (progress) progress(0, static_cast<int64_t>(prompts.size()));
    for (const auto& p : prompts) {
      answers.push_back(
          {{"prompt", p},
           {"response", answer(model, tok, p, task.value("raw", false), task.value("max_new_tokens", 64))}});
      if (progress) progress(++i, static_cast<int64_t>(prompts.size()));
    }
    out["answers"] = answers;
    out["protocol"] = "greedy decoding, stop at end-of-turn";
    return out;
  }
  throw Error(ErrorKind::invalid_input, "unknown eval task type '" + type + "'");
}

}  // namespace qjobs::eval
