#include "jobs/eval/tasks.hpp"

#include <filesystem>

#include "common/error.hpp"
#include "common/strings.hpp"
#include "jobs/data/dataset.hpp"
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

data::DatasetSpec task_dataset(const EvalContext& c, const EvalTaskInfo& row) {
  data::DatasetSpec ds;
  ds.root = c.data_root;
  ds.path = c.task.value("data_path", "");
  const auto named = row.datasets(c.task);
  if (!named.empty()) {
    ds.name = named[0].name;
    ds.subname = named[0].subset;
    ds.split = named[0].split;
  }
  for (const auto& col : split(c.task.value("text_column", ""), ','))
    if (auto t = trim(col); !t.empty()) ds.text_columns.push_back(t);
  return ds;
}

std::string data_label(const data::DatasetSpec& ds) {
  return ds.path.empty() ? ds.name + (ds.subname.empty() ? "" : "/" + ds.subname) + ":" + ds.split : ds.path;
}

json perplexity_result(const EvalContext& c, const std::string& text, const std::string& data) {
  PerplexityOptions o;
  o.seqlen = c.task.value("seqlen", 2048);
  o.num_samples = c.task.value("num_samples", -1);
  o.batch_size = c.task.value("batch_size", 1);
  const auto r = perplexity(c.model, perplexity_ids(c.tok, text), o, c.progress);
  const std::string type = c.task.value("type", "");
  return {{"type", type},
          {"name", c.task.value("name", type)},
          {"ppl", r.ppl},
          {"mean_nll", r.mean_nll},
          {"tokens", r.tokens},
          {"windows", r.windows},
          {"seqlen", o.seqlen},
          {"seconds", r.seconds},
          {"tokens_per_s", r.tokens_per_s},
          {"protocol", "GPTQ/AWQ: one BOS, non-overlapping windows of " + std::to_string(o.seqlen) +
                           " tokens, remainder dropped, exp(mean NLL of next-token predictions)"},
          {"data", data}};
}

json run_task(const model::LlamaModel& model, const tokenizer::Tokenizer& tok, const json& task,
              const std::filesystem::path& data_root, const std::function<void(int64_t, int64_t)>& progress) {
  using Runner = json (*)(const EvalContext&);
#define QJOBS_EVAL_RUNNER(name) std::pair<std::string, Runner>{eval_task_##name().type, &run_eval_##name},
  static const std::vector<std::pair<std::string, Runner>> runners = {QJOBS_EVAL_TASKS(QJOBS_EVAL_RUNNER)};
#undef QJOBS_EVAL_RUNNER
  const std::string type = task.value("type", "");
  for (const auto& [name, run] : runners)
    if (name == type) return run(EvalContext{model, tok, task, data_root, progress});
  throw Error(ErrorKind::invalid_input, "unknown eval task type '" + type + "' (" + eval_task_types_text() + ")");
}

}  // namespace qjobs::eval
