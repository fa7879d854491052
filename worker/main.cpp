// qjobs-worker: runs one job attempt, or works with a model outside a job.
//   qjobs-worker run SPEC.yaml --job-dir DIR
#include <csignal>
#include <iostream>

#include <CLI/CLI.hpp>

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
  return 2;
}
