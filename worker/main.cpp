// qjobs-worker: runs one job attempt, or works with a model outside a job.
//   qjobs-worker run SPEC.yaml --job-dir DIR
#include <csignal>
#include <iostream>

#include <CLI/CLI.hpp>

#include "common/error.hpp"
#include "jobs/model/random_model.hpp"
#include "worker/pipeline.hpp"
#include "worker/status_reporter.hpp"

namespace {
void on_stop_signal(int) { qjobs::worker::g_stop_requested.store(true); }
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"qjobs-worker: quantize and evaluate language models"};
  app.require_subcommand(1);

  std::string spec, job_dir;
  auto* run = app.add_subcommand("run", "run one job attempt from a YAML spec");
  run->add_option("spec", spec, "the job's YAML spec")->required()->check(CLI::ExistingFile);
  run->add_option("--job-dir", job_dir, "the job directory to write into")->required();

  qjobs::model::RandomModelOptions rm;
  std::string rm_out;
  auto* init = app.add_subcommand("init-model", "write a random Llama checkpoint in the Hugging Face layout");
  init->add_option("--out", rm_out, "destination folder")->required();
  init->add_option("--hidden", rm.hidden)->capture_default_str();
  init->add_option("--intermediate", rm.intermediate)->capture_default_str();
  init->add_option("--layers", rm.layers)->capture_default_str();
  init->add_option("--heads", rm.heads)->capture_default_str();
  init->add_option("--kv-heads", rm.kv_heads)->capture_default_str();
  init->add_option("--vocab", rm.vocab)->capture_default_str();
  init->add_option("--dtype", rm.dtype)->check(CLI::IsMember({"float32", "bfloat16", "float16"}))->capture_default_str();
  init->add_option("--seed", rm.seed)->capture_default_str();
  init->add_option("--shards", rm.shards)->capture_default_str();
  init->add_option("--init-std", rm.init_std)->capture_default_str();
  init->add_flag("--tie-embeddings", rm.tie_embeddings);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);

  if (*run) return qjobs::worker::run_job(spec, job_dir);
  if (*init) {
    try {
      qjobs::model::write_random_llama(rm_out, rm);
      std::cout << rm_out << "\n";
      return 0;
    } catch (const std::exception& e) {
      std::cerr << "error: " << e.what() << "\n";
      return 1;
    }
  }
  return 2;
}
