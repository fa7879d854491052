// Text rows from the spec's dataset keys, and what evaluation and
// calibration make of them. No network: a known hub dataset without a local
// copy fails with the exact file to place and where.
//
// Sources, in order: DATA_PATH (a .txt, .jsonl or .json file, or a folder of
// split files), else DATASET_NAME[/DATASET_SUBNAME] under the data root
// ($QJOBS_DATA_DIR, default ./datasets): <root>/<name>/<subname>/<split>.{jsonl,json,txt}.
//   .txt   the whole file is one row (a ready evaluation text stays exact)
//   .jsonl one JSON object per line
//   .json  a list of objects, or an object whose keys are splits
// A row's text is FORMAT_STRING with {column} placeholders filled, else the
// TEXT_COLUMN values joined with "\n" (default column: "text").
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

namespace qjobs::tokenizer {
class Tokenizer;
}

namespace qjobs::data {

struct DatasetSpec {
  std::string name;     // DATASET_NAME, e.g. "wikitext"
  std::string subname;  // DATASET_SUBNAME, e.g. "wikitext-2-raw-v1"
  std::string path;     // DATA_PATH
  std::string split = "train";
  std::vector<std::string> text_columns;  // empty: {"text"}
  std::string format_string;
  std::filesystem::path root = "datasets";  // where `name` is looked for (Environment::data_dir)
  // What a row of this data looks like, for the message when it is missing.
  std::string row_format = "one {\"text\": ...} object per line";
};

// The row format of a multiple-choice `format` (plain, mmlu, arc, tinymmlu),
// as the README's "Datasets" section documents it.
std::string mc_row_format(const std::string& format);

// Throws Error(not_found) saying where the data was looked for, and
// Error(data_corruption) naming the file and line of a bad row.
std::vector<std::string> load_rows(const DatasetSpec& spec);

// The file the spec's rows are read from. Same errors as load_rows.
std::filesystem::path resolve_file(const DatasetSpec& spec);

// The rows as JSON objects (for tasks that read fields, such as multiple
// choice); a .txt file is an error. Same sources and errors as load_rows.
std::vector<nlohmann::json> load_records(const DatasetSpec& spec);

// The GPTQ/AWQ evaluation string: rows joined with "\n\n".
std::string evaluation_text(const std::vector<std::string>& rows);

// n windows of seqlen tokens drawn with `seed` from the tokenized rows
// (rows joined with "\n\n", one BOS at the start): int64 [n, seqlen].
// Throws Error(invalid_input) when the text is shorter than one window.
at::Tensor calibration_windows(const tokenizer::Tokenizer& tok, const std::vector<std::string>& rows, int64_t n,
                               int64_t seqlen, uint64_t seed);

}  // namespace qjobs::data
