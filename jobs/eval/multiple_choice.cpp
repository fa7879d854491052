#include "jobs/eval/multiple_choice.hpp"

#include <chrono>
#include <cmath>
#include <random>
#include <ATen/core/grad_mode.h>

#include "common/error.hpp"
#include "common/strings.hpp"

namespace qjobs::eval {
using nlohmann::json;

namespace {

int64_t code_points(const std::string& s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

std::vector<int64_t> with_bos(const tokenizer::Tokenizer& tok, const std::string& text) {
  std::vector<int64_t> ids;
  if (auto bos = tok.bos_id()) ids.push_back(*bos);
  const auto body = tok.encode(text);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

Error bad_row(std::size_t i, const std::string& field, const std::string& why) {
  return Error(ErrorKind::data_corruption, "row " + std::to_string(i + 1) + ": field '" + field + "' " + why);
}

const json& field(const json& row, std::size_t i, const std::string& name) {
  if (!row.is_object() || !row.contains(name)) throw bad_row(i, name, "is missing");
  return row[name];
}

std::string str_field(const json& row, std::size_t i, const std::string& name) {
  const auto& v = field(row, i, name);
  if (!v.is_string()) throw bad_row(i, name, "is not a string");
  return v.get<std::string>();
}

std::vector<std::string> str_list(const json& v, std::size_t i, const std::string& name) {
  if (!v.is_array() || v.empty()) throw bad_row(i, name, "is not a non-empty list");
  std::vector<std::string> out;
  for (const auto& e : v) {
    if (!e.is_string()) throw bad_row(i, name, "holds a non-string");
    out.push_back(e.get<std::string>());
  }
  return out;
}

// An answer given as an index or as a letter "A".."Z".
int64_t answer_index(const json& v, std::size_t i, const std::string& name, std::size_t n) {
  int64_t k = -1;
  if (v.is_number_integer()) k = v.get<int64_t>();
  else if (v.is_string() && v.get<std::string>().size() == 1 && v.get<std::string>()[0] >= 'A' &&
           v.get<std::string>()[0] <= 'Z')
    k = v.get<std::string>()[0] - 'A';
  if (k < 0 || k >= static_cast<int64_t>(n))
    throw bad_row(i, name, "is " + v.dump() + ", not an answer among " + std::to_string(n) + " choices");
  return k;
}

const char* kLetters[] = {"A", "B", "C", "D", "E", "F", "G", "H"};

// One row as a prompt, its choices (as scored), their texts for acc_norm,
// and the gold index.
struct Doc {
  std::string prompt;
  std::vector<std::string> choices;
  std::vector<std::string> norm_text;
  int64_t gold = -1;
  std::string description;  // said once before the shots (MMLU)
};

Doc parse_doc(const json& row, std::size_t i, const std::string& format) {
  Doc d;
  if (format == "plain") {
    d.prompt = row.is_object() && row.contains("context") ? str_field(row, i, "context") : str_field(row, i, "query");
    d.choices = str_list(field(row, i, "choices"), i, "choices");
    d.norm_text = d.choices;
    d.gold = answer_index(row.contains("gold") ? row["gold"] : field(row, i, "label"), i,
                          row.contains("gold") ? "gold" : "label", d.choices.size());
  } else if (format == "mmlu") {
    const auto choices = str_list(field(row, i, "choices"), i, "choices");
    if (choices.size() > 8) throw bad_row(i, "choices", "has more than 8 entries");
    d.prompt = trim(str_field(row, i, "question"));
    for (std::size_t k = 0; k < choices.size(); ++k) {
      d.prompt += std::string("\n") + kLetters[k] + ". " + choices[k];
      d.choices.push_back(std::string(" ") + kLetters[k]);
      d.norm_text.push_back(kLetters[k]);
    }
    d.prompt += "\nAnswer:";
    d.gold = answer_index(field(row, i, "answer"), i, "answer", choices.size());
    if (row.contains("subject") && row["subject"].is_string()) {
      std::string s = row["subject"].get<std::string>();
      std::replace(s.begin(), s.end(), '_', ' ');
      d.description = "The following are multiple choice questions (with answers) about " + s + ".\n\n";
    }
  } else if (format == "arc") {
    const auto& ch = field(row, i, "choices");
    const auto texts = str_list(ch.is_object() && ch.contains("text") ? ch["text"] : json(), i, "choices.text");
    const auto labels = str_list(ch.is_object() && ch.contains("label") ? ch["label"] : json(), i, "choices.label");
    if (labels.size() != texts.size())
      throw bad_row(i, "choices",
                    "has " + std::to_string(texts.size()) + " texts and " + std::to_string(labels.size()) + " labels");
    const auto key = str_field(row, i, "answerKey");
    const auto it = std::find(labels.begin(), labels.end(), key);
    if (it == labels.end()) throw bad_row(i, "answerKey", "'" + key + "' is not among the labels");
    d.gold = it - labels.begin();
    d.prompt = "Question: " + str_field(row, i, "question") + "\nAnswer:";
    for (const auto& t : texts) {
      d.choices.push_back(" " + t);
      d.norm_text.push_back(t);
    }
  } else if (format == "tinymmlu") {
    d.prompt = str_field(row, i, "input_formatted");
    for (int k = 0; k < 4; ++k) {
      d.choices.push_back(std::string(" ") + kLetters[k]);
      d.norm_text.push_back(kLetters[k]);
    }
    d.gold = answer_index(field(row, i, "answer"), i, "answer", 4);
  } else {
    throw Error(ErrorKind::invalid_input,
                "unknown multiple-choice format '" + format + "' (plain, mmlu, arc, tinymmlu)");
  }
  return d;
}

}  // namespace

std::pair<std::vector<int64_t>, std::vector<int64_t>> encode_pair(const tokenizer::Tokenizer& tok,
                                                                  const std::string& context,
                                                                  const std::string& continuation) {
  std::size_t n = 0;
  while (n < context.size() && is_space(context[context.size() - 1 - n])) ++n;
  std::string ctx = context, cont = continuation;
  if (n > 0) {
    cont = context.substr(context.size() - n) + continuation;
    ctx = context.substr(0, context.size() - n);
  }
  const auto whole = with_bos(tok, ctx + cont);
  auto ctx_ids = with_bos(tok, ctx);
  std::vector<int64_t> cont_ids;
  if (whole.size() > ctx_ids.size())
    cont_ids.assign(whole.begin() + static_cast<std::ptrdiff_t>(ctx_ids.size()), whole.end());
  return {std::move(ctx_ids), std::move(cont_ids)};
}

McItemResult score_item(const model::LlamaModel& model, const tokenizer::Tokenizer& tok, const McItem& item) {
  at::NoGradGuard no_grad;
  McItemResult r;
  const int64_t max_len = model.config().max_position > 0 ? model.config().max_position : 4096;
  std::vector<std::vector<int64_t>> inputs;
  for (std::size_t c = 0; c < item.choices.size(); ++c) {
    McChoiceScore s;
    std::tie(s.context_ids, s.continuation_ids) = encode_pair(tok, item.context, item.choices[c]);
    if (s.continuation_ids.empty())
      throw Error(ErrorKind::invalid_input,
                  "item " + item.id + ": choice " + std::to_string(c) + " tokenizes to nothing");
    const std::string& nt = c < item.norm_text.size() ? item.norm_text[c] : item.choices[c];
    s.num_chars = code_points(nt);
    s.num_bytes = static_cast<int64_t>(nt.size());
    std::vector<int64_t> seq = s.context_ids;
    seq.insert(seq.end(), s.continuation_ids.begin(), s.continuation_ids.end());
    if (static_cast<int64_t>(seq.size()) > max_len + 1) seq.erase(seq.begin(), seq.end() - (max_len + 1));
    seq.pop_back();  // the last token is only predicted
    inputs.push_back(std::move(seq));
    r.choices.push_back(std::move(s));
  }
  // One right-padded batch: padding sits after every real position, so a
  // causal model's outputs there are unchanged. lm_head runs only on the
  // positions that predict continuation tokens.
  std::size_t T = 0;
  for (const auto& s : inputs) T = std::max(T, s.size());
  const auto B = static_cast<int64_t>(inputs.size());
  auto ids = at::zeros({B, static_cast<int64_t>(T)}, at::kLong);
  for (int64_t b = 0; b < B; ++b)
    for (std::size_t t = 0; t < inputs[b].size(); ++t) ids[b][static_cast<int64_t>(t)] = inputs[b][t];
  auto h = model.embed(ids);
  for (int64_t l = 0; l < model.config().layers; ++l) h = model.layer_forward(l, h, 0);
  for (int64_t b = 0; b < B; ++b) {
    auto& s = r.choices[static_cast<std::size_t>(b)];
    const auto nk = static_cast<int64_t>(s.continuation_ids.size());
    const auto len = static_cast<int64_t>(inputs[b].size());
    const auto logits = model.head(h[b].narrow(0, len - nk, nk).unsqueeze(0))[0].to(at::kDouble);  // [nk, V]
    const auto logp = logits.log_softmax(-1);
    const auto target = at::tensor(s.continuation_ids, at::kLong).to(logp.device());
    s.loglikelihood = logp.gather(1, target.unsqueeze(1)).sum().item<double>();
    s.is_greedy = at::equal(logits.argmax(-1), target);
  }
  double best = -INFINITY, best_norm = -INFINITY;
  for (std::size_t c = 0; c < r.choices.size(); ++c) {
    const auto& s = r.choices[c];
    if (s.loglikelihood > best) {
      best = s.loglikelihood;
      r.pred_acc = static_cast<int64_t>(c);
    }
    const double norm = s.loglikelihood / static_cast<double>(std::max<int64_t>(1, s.num_chars));
    if (norm > best_norm) {
      best_norm = norm;
      r.pred_acc_norm = static_cast<int64_t>(c);
    }
  }
  return r;
}

std::vector<McItem> build_items(const std::vector<json>& rows, const std::vector<json>& shots_pool,
                                const McTaskOptions& o) {
  if (o.num_fewshot < 0 || o.num_fewshot > 64) throw Error(ErrorKind::invalid_input, "num_fewshot must be in [0, 64]");
  if (o.format == "tinymmlu" && o.num_fewshot > 0)
    throw Error(ErrorKind::invalid_input, "tinymmlu prompts already hold their shots; num_fewshot must be 0");
  std::vector<Doc> shots;
  if (o.num_fewshot > 0) {
    for (std::size_t i = 0; i < shots_pool.size(); ++i) shots.push_back(parse_doc(shots_pool[i], i, o.format));
  }
  std::mt19937_64 rng(o.seed);
  std::vector<McItem> items;
  const std::size_t n =
      o.num_samples < 0 ? rows.size() : std::min(rows.size(), static_cast<std::size_t>(o.num_samples));
  for (std::size_t i = 0; i < n; ++i) {
    const Doc d = parse_doc(rows[i], i, o.format);
    McItem item;
    item.id = rows[i].is_object() && rows[i].contains("id") && rows[i]["id"].is_string()
                  ? rows[i]["id"].get<std::string>()
                  : std::to_string(i);
    item.choices = d.choices;
    item.norm_text = d.norm_text;
    item.gold = d.gold;
    std::string ctx = d.description;
    if (o.num_fewshot > 0) {
      // k distinct shots, never the item itself (when the pool is its split).
      std::vector<std::size_t> idx;
      for (std::size_t k = 0; k < shots.size(); ++k)
        if (shots_pool[k] != rows[i]) idx.push_back(k);
      if (idx.size() < static_cast<std::size_t>(o.num_fewshot))
        throw Error(ErrorKind::invalid_input, std::to_string(o.num_fewshot) +
                                                  "-shot needs that many examples; the shot split has " +
                                                  std::to_string(idx.size()));
      for (std::size_t k = 0; k < static_cast<std::size_t>(o.num_fewshot); ++k) {
        std::uniform_int_distribution<std::size_t> pick(k, idx.size() - 1);
        std::swap(idx[k], idx[pick(rng)]);
        const auto& s = shots[idx[k]];
        ctx += s.prompt + s.choices[static_cast<std::size_t>(s.gold)] + "\n\n";
      }
    }
    item.context = ctx + d.prompt;
    items.push_back(std::move(item));
  }
  return items;
}

json run_multiple_choice(const model::LlamaModel& model, const tokenizer::Tokenizer& tok,
                         const std::vector<McItem>& items, const std::function<void(int64_t, int64_t)>& progress) {
  if (items.empty()) throw Error(ErrorKind::invalid_input, "the multiple-choice task has no items");
  const auto t0 = std::chrono::steady_clock::now();
  const auto n = static_cast<int64_t>(items.size());
  int64_t right = 0, right_norm = 0, done = 0;
  json preds = json::array();
  if (progress) progress(0, n);
  for (const auto& item : items) {
    const auto r = score_item(model, tok, item);
    right += r.pred_acc == item.gold;
    right_norm += r.pred_acc_norm == item.gold;
    preds.push_back({{"id", item.id}, {"gold", item.gold}, {"pred", r.pred_acc}, {"pred_norm", r.pred_acc_norm}});
    if (progress) progress(++done, n);
  }
  const auto stderr_of = [&](double p) { return n > 1 ? std::sqrt(p * (1 - p) / static_cast<double>(n - 1)) : 0.0; };
  const double acc = static_cast<double>(right) / static_cast<double>(n);
  const double acc_norm = static_cast<double>(right_norm) / static_cast<double>(n);
  return {{"acc", acc},
          {"acc_norm", acc_norm},
          {"acc_stderr", stderr_of(acc)},
          {"acc_norm_stderr", stderr_of(acc_norm)},
          {"n", n},
          {"predictions", preds},
          {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()},
          {"protocol",
           "lm-eval loglikelihood: sum of log-probabilities of each choice's tokens after the context "
           "(one BOS; trailing context whitespace moved into the choice); acc = argmax, acc_norm = argmax of "
           "loglikelihood / characters of the choice"}};
}

}  // namespace qjobs::eval
