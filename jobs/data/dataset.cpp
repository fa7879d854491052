#include "jobs/data/dataset.hpp"

#include <cstdlib>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/job_dir.hpp"
#include "common/model_locator.hpp"
#include "jobs/tokenizer/tokenizer.hpp"

namespace qjobs::data {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string cell(const json& row, const std::string& col, const fs::path& file, std::size_t line) {
  if (!row.is_object() || !row.contains(col))
    throw Error(ErrorKind::data_corruption,
                file.string() + (line ? ":" + std::to_string(line) : "") + ": row has no column '" + col + "'");
  const auto& v = row[col];
  return v.is_string() ? v.get<std::string>() : v.dump();
}

std::string row_text(const json& row, const DatasetSpec& s, const fs::path& file, std::size_t line) {
  if (!s.format_string.empty()) {
    std::string out;
    const std::string& f = s.format_string;
    for (std::size_t i = 0; i < f.size(); ++i) {
      if (f[i] == '{') {
        const auto close = f.find('}', i);
        if (close != std::string::npos) {
          out += cell(row, f.substr(i + 1, close - i - 1), file, line);
          i = close;
          continue;
        }
      }
      out.push_back(f[i]);
    }
    return out;
  }
  const std::vector<std::string> cols = s.text_columns.empty() ? std::vector<std::string>{"text"} : s.text_columns;
  std::string out;
  for (std::size_t i = 0; i < cols.size(); ++i) out += (i ? "\n" : "") + cell(row, cols[i], file, line);
  return out;
}

// The JSON rows of a .jsonl or .json file, each with its line (0 in .json).
std::vector<std::pair<json, std::size_t>> read_file_records(const fs::path& file, const DatasetSpec& s) {
  const auto ext = file.extension().string();
  std::vector<std::pair<json, std::size_t>> rows;
  if (ext == ".jsonl") {
    std::ifstream in(file);
    std::size_t n = 0;
    for (std::string line; std::getline(in, line);) {
      ++n;
      if (line.empty()) continue;
      auto row = json::parse(line, nullptr, false);
      if (row.is_discarded())
        throw Error(ErrorKind::data_corruption, file.string() + ":" + std::to_string(n) + ": not a JSON object");
      rows.emplace_back(std::move(row), n);
    }
    return rows;
  }
  if (ext == ".json") {
    const auto j = json::parse(read_file(file), nullptr, false);
    if (j.is_discarded()) throw Error(ErrorKind::data_corruption, file.string() + ": not valid JSON");
    const json* list = &j;
    if (j.is_object()) {
      if (!j.contains(s.split)) throw Error(ErrorKind::not_found, file.string() + " has no split '" + s.split + "'");
      list = &j[s.split];
    }
    if (!list->is_array()) throw Error(ErrorKind::data_corruption, file.string() + ": expected a list of rows");
    for (const auto& row : *list) rows.emplace_back(row, 0);
    return rows;
  }
  throw Error(ErrorKind::invalid_input,
              file.string() + ": unsupported data file (use .jsonl or .json for rows with fields)");
}

std::vector<std::string> read_file_rows(const fs::path& file, const DatasetSpec& s) {
  if (file.extension() == ".txt") return {read_file(file)};
  std::vector<std::string> rows;
  for (const auto& [row, line] : read_file_records(file, s)) rows.push_back(row_text(row, s, file, line));
  return rows;
}

}  // namespace

fs::path resolve_file(const DatasetSpec& s) {
  if (!s.path.empty()) {
    const fs::path p(s.path);
    if (fs::is_regular_file(p)) return p;
    if (fs::is_directory(p)) {
      if (auto f = find_split_file(p, s.split)) return *f;
      throw Error(ErrorKind::not_found, "DATA_PATH " + p.string() + " has no file for split '" + s.split +
                                            "' (expected " + s.split + ".jsonl, .json or .txt)");
    }
    throw Error(ErrorKind::not_found, "DATA_PATH " + p.string() + " does not exist");
  }
  if (s.name.empty()) throw Error(ErrorKind::invalid_input, "no data: set DATA_PATH or DATASET_NAME");
  fs::path dir = s.root / s.name;
  if (!s.subname.empty()) dir /= s.subname;
  if (auto f = find_split_file(dir, s.split)) return *f;
  std::string msg = "dataset '" + s.name + (s.subname.empty() ? "" : "/" + s.subname) + "' split '" + s.split +
                    "' is not available locally and this service does not download data. Place it at " +
                    (dir / (s.split + ".jsonl")).string() + " (" + s.row_format;
  if (s.name == "wikitext")
    msg += "; for wikitext-2-raw-v1 these are the rows of the Hugging Face dataset's '" + s.split +
           "' split in order, blank rows included";
  msg += "), or set DATA_PATH to a .txt/.jsonl/.json file; the data root is $QJOBS_DATA_DIR (now " +
         fs::absolute(s.root).string() + ")";
  throw Error(ErrorKind::not_found, msg);
}

std::string mc_row_format(const std::string& format) {
  if (format == "mmlu")
    return "mmlu rows: one {\"question\": ..., \"choices\": [4 strings], \"answer\": 0-3 or \"A\"-\"D\", \"subject\": "
           "...} "
           "object per line; n-shot examples from the dev split";
  if (format == "arc")
    return "arc rows: one {\"question\": ..., \"choices\": {\"text\": [...], \"label\": [...]}, \"answerKey\": ...} "
           "object per line, as the Hugging Face ai2_arc files hold them";
  if (format == "tinymmlu") return "tinymmlu rows: one {\"input_formatted\": ..., \"answer\": 0-3} object per line";
  return "plain multiple-choice rows: one {\"context\": ..., \"choices\": [...], \"gold\": i} object per line";
}

std::vector<std::string> load_rows(const DatasetSpec& s) { return read_file_rows(resolve_file(s), s); }

std::vector<json> load_records(const DatasetSpec& s) {
  std::vector<json> out;
  for (auto& [row, line] : read_file_records(resolve_file(s), s)) out.push_back(std::move(row));
  return out;
}

std::string evaluation_text(const std::vector<std::string>& rows) {
  std::string out;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (i) out += "\n\n";
    out += rows[i];
  }
  return out;
}

at::Tensor calibration_windows(const tokenizer::Tokenizer& tok, const std::vector<std::string>& rows, int64_t n,
                               int64_t seqlen, uint64_t seed) {
  std::vector<int64_t> ids;
  if (auto bos = tok.bos_id()) ids.push_back(*bos);
  const auto body = tok.encode(evaluation_text(rows));
  ids.insert(ids.end(), body.begin(), body.end());
  const auto total = static_cast<int64_t>(ids.size());
  if (total < seqlen)
    throw Error(ErrorKind::invalid_input, "calibration data has " + std::to_string(total) +
                                              " tokens, fewer than one window of " + std::to_string(seqlen));
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> start(0, total - seqlen);
  auto out = at::empty({n, seqlen}, at::kLong);
  auto* p = out.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t s0 = start(rng);
    std::copy(ids.begin() + s0, ids.begin() + s0 + seqlen, p + i * seqlen);
  }
  return out;
}

}  // namespace qjobs::data
