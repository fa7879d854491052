#include "jobs/model/hub_download.hpp"

#include <curl/curl.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>

#include <nlohmann/json.hpp>

#include "common/digest.hpp"
#include "common/error.hpp"
#include "common/job_dir.hpp"

namespace qjobs::model {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

void curl_init_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Response {
  long status = 0;
  std::string body;
  std::string error;
};

size_t to_string(char* p, size_t size, size_t n, void* ud) {
  static_cast<std::string*>(ud)->append(p, size * n);
  return size * n;
}

size_t to_file(char* p, size_t size, size_t n, void* ud) {
  return std::fwrite(p, size, n, static_cast<FILE*>(ud)) * size;
}

CURL* make_handle(const std::string& url, const HubOptions& o, curl_slist** headers) {
  CURL* c = curl_easy_init();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);  // abort a stalled transfer
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "qjobs/0.1");
  if (!o.token.empty()) *headers = curl_slist_append(*headers, ("Authorization: Bearer " + o.token).c_str());
  if (*headers) curl_easy_setopt(c, CURLOPT_HTTPHEADER, *headers);
  // The token goes to the hub only, not to a CDN it redirects to.
  curl_easy_setopt(c, CURLOPT_UNRESTRICTED_AUTH, 0L);
  return c;
}

Response get(const std::string& url, const HubOptions& o) {
  curl_init_once();
  curl_slist* headers = nullptr;
  CURL* c = make_handle(url, o, &headers);
  Response r;
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, to_string);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
  const CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) r.error = curl_easy_strerror(rc);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  curl_easy_cleanup(c);
  curl_slist_free_all(headers);
  return r;
}

[[noreturn]] void http_failure(const std::string& repo, const std::string& what, long status, const std::string& body) {
  if (status == 401 || status == 403)
    throw Error(ErrorKind::invalid_input, "model '" + repo + "': " + what + " is gated or private (HTTP " +
                                              std::to_string(status) + "); set HF_TOKEN to a token with access");
  if (status == 404)
    throw Error(ErrorKind::not_found, "model '" + repo + "': " + what + " not found on the hub (HTTP 404)");
  throw Error(ErrorKind::io,
              "model '" + repo + "': " + what + ": HTTP " + std::to_string(status) + " " + body.substr(0, 200));
}

// sha256 of the file, or the git blob sha1 ("blob <size>\0" + content).
std::string file_hash(const fs::path& p, bool git_blob) {
  Digest d(git_blob ? Digest::Algo::sha1 : Digest::Algo::sha256);
  if (git_blob) {
    const std::string head = "blob " + std::to_string(fs::file_size(p));
    d.update(head.data(), head.size() + 1);  // with the NUL
  }
  return d.update_file(p).hex();
}

bool wanted(const std::string& f, bool has_safetensors) {
  if (f.find('/') != std::string::npos) return false;  // subfolders (original/, onnx/...) are not the HF checkpoint
  static const std::vector<std::string> exact = {
      "config.json",       "generation_config.json",      "tokenizer.json", "tokenizer_config.json",
      "tokenizer.model",   "special_tokens_map.json",     "vocab.json",     "merges.txt",
      "added_tokens.json", "model.safetensors.index.json"};
  if (std::find(exact.begin(), exact.end(), f) != exact.end()) return true;
  const auto ends = [&](const std::string& suf) {
    return f.size() >= suf.size() && f.compare(f.size() - suf.size(), suf.size(), suf) == 0;
  };
  if (ends(".safetensors")) return true;
  if (!has_safetensors && (f.rfind("pytorch_model", 0) == 0) && (ends(".bin") || ends(".bin.index.json"))) return true;
  return false;
}

}  // namespace

HubOptions hub_options(const Environment& env) {
  HubOptions o;
  o.endpoint = env.hf_endpoint;
  while (!o.endpoint.empty() && o.endpoint.back() == '/') o.endpoint.pop_back();
  o.token = env.hf_token;
  o.cache = env.hub_caches.empty() ? fs::path("hub") : env.hub_caches.front();
  return o;
}

fs::path download_model(const std::string& repo, const HubOptions& o,
                        const std::function<void(uint64_t, uint64_t)>& progress) {
  const auto slash = repo.find('/');
  if (slash == std::string::npos) throw Error(ErrorKind::invalid_input, "hub id must be ORG/NAME, got '" + repo + "'");
  const fs::path root = o.cache / ("models--" + repo.substr(0, slash) + "--" + repo.substr(slash + 1));

  const auto info_r = get(o.endpoint + "/api/models/" + repo + "/revision/" + o.revision + "?blobs=true", o);
  if (!info_r.error.empty())
    throw Error(ErrorKind::io, "model '" + repo + "': cannot reach " + o.endpoint + ": " + info_r.error);
  if (info_r.status != 200) http_failure(repo, "repository", info_r.status, info_r.body);
  const auto info = json::parse(info_r.body, nullptr, false);
  if (info.is_discarded() || !info.contains("sha") || !info.contains("siblings"))
    throw Error(ErrorKind::data_corruption, "model '" + repo + "': the hub's answer has no sha/siblings");
  const std::string commit = info["sha"].get<std::string>();

  bool has_safetensors = false;
  for (const auto& s : info["siblings"]) {
    const std::string f = s.value("rfilename", "");
    if (f.find('/') == std::string::npos && f.size() > 12 && f.compare(f.size() - 12, 12, ".safetensors") == 0)
      has_safetensors = true;
  }
  struct File {
    std::string name;
    uint64_t size = 0;
    std::string hash;  // expected: sha256 (LFS) or git blob sha1
    bool lfs = false;
  };
  std::vector<File> files;
  uint64_t total = 0;
  for (const auto& s : info["siblings"]) {
    const std::string f = s.value("rfilename", "");
    if (!wanted(f, has_safetensors)) continue;
    File file{f, s.value("size", uint64_t{0}), s.value("blobId", ""), false};
    if (s.contains("lfs") && s["lfs"].is_object()) {
      file.lfs = true;
      file.hash = s["lfs"].value("sha256", "");
      file.size = s["lfs"].value("size", file.size);
    }
    total += file.size;
    files.push_back(file);
  }
  if (std::none_of(files.begin(), files.end(), [](const File& f) { return f.name == "config.json"; }))
    throw Error(ErrorKind::not_found, "model '" + repo + "': the repository has no config.json");

  fs::create_directories(root / "blobs");
  const fs::path snapshot = root / "snapshots" / commit;
  fs::create_directories(snapshot);
  uint64_t done = 0;
  for (const auto& f : files) {
    if (f.hash.empty()) throw Error(ErrorKind::data_corruption, "model '" + repo + "': no hash for " + f.name);
    const fs::path blob = root / "blobs" / f.hash;
    if (!fs::exists(blob)) {
      const fs::path part = blob.string() + ".incomplete";
      const uint64_t have = fs::exists(part) ? fs::file_size(part) : 0;
      FILE* out = std::fopen(part.c_str(), have ? "ab" : "wb");
      if (!out) throw Error(ErrorKind::io, "cannot write " + part.string());
      curl_init_once();
      curl_slist* headers = nullptr;
      CURL* c = make_handle(o.endpoint + "/" + repo + "/resolve/" + commit + "/" + f.name, o, &headers);
      curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, to_file);
      curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
      if (have > 0) curl_easy_setopt(c, CURLOPT_RESUME_FROM_LARGE, static_cast<curl_off_t>(have));
      const CURLcode rc = curl_easy_perform(c);
      long status = 0;
      curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
      curl_easy_cleanup(c);
      curl_slist_free_all(headers);
      std::fclose(out);
      if (rc != CURLE_OK)
        throw Error(ErrorKind::io, "model '" + repo + "': download of " + f.name + " interrupted after " +
                                       std::to_string(fs::file_size(part)) + " bytes (" + curl_easy_strerror(rc) +
                                       "); the next attempt resumes");
      if (status == 416 || (have > 0 && status == 200)) {
        // The server ignored or refused the range: start that file over.
        fs::remove(part);
        throw Error(ErrorKind::io, "model '" + repo + "': " + f.name + ": resume refused (HTTP " +
                                       std::to_string(status) + "); the next attempt starts the file again");
      }
      if (status != 200 && status != 206) {
        fs::remove(part);
        http_failure(repo, f.name, status, "");
      }
      const std::string got = file_hash(part, !f.lfs);
      if (got != f.hash) {
        fs::remove(part);
        throw Error(ErrorKind::data_corruption, "model '" + repo + "': " + f.name + " is corrupt (expected " +
                                                    (f.lfs ? "sha256 " : "git sha1 ") + f.hash + ", got " + got + ")");
      }
      fs::rename(part, blob);
    }
    const fs::path link = snapshot / f.name;
    std::error_code ec;
    fs::remove(link, ec);
    fs::create_symlink(fs::path("../../blobs") / f.hash, link);
    done += f.size;
    if (progress) progress(done, total);
  }
  fs::create_directories(root / "refs");
  write_file_atomic(root / "refs" / o.revision, commit);
  return snapshot;
}

}  // namespace qjobs::model
