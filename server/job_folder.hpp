// A job's folder (user_data/jobs/<id>) is made when something first needs
// it, not at submission: a submission stores only its row, so concurrent
// submissions cost one commit (one fsync) and no files. Creating four
// folders and three files per job put their inodes in every journal commit
// and held valid submissions to about 560/s on this project's disk; the row
// alone runs at about 3,500/s. The row holds everything the folder starts
// with (spec.yaml, spec.json, and the events stored so far).
//
// What needs it: the scheduler before it starts an attempt or records a
// state change, and the API before it lists or streams a job's files.
#pragma once

#include <filesystem>

#include "common/job_dir.hpp"
#include "server/job_record.hpp"
#include "server/store.hpp"

namespace qjobs::server {

// The folder of `job` under `jobs_root`. For a job that has not been handed
// to a backend yet (QUEUED, no handle), makes it when absent (layout,
// spec.yaml, spec.json, events.jsonl from the stored events), atomically:
// it is built under a temporary name and renamed into place, so a reader
// never sees half a folder and two callers at once make it once. Present,
// its spec files are rewritten from the row where they differ (a crash of
// the machine can lose or tear unsynced files). Any other job's folder is
// returned as it is, absent or not: a folder removed from a running or
// finished job stays removed. Throws Error when a file cannot be written.
JobDir ensure_job_folder(Store& store, const std::filesystem::path& jobs_root, const JobRecord& job);

// Rewrites (synced) spec.yaml and spec.json of `dir` from the row where they
// differ from it; returns whether it did. Throws Error on a failed write.
bool mend_spec_files(const JobDir& dir, const JobRecord& job);

}  // namespace qjobs::server
