// A SQLite VFS that fails or stalls writes on demand, for tests of what the
// server does when its disk fills up, turns read-only or hangs (the way
// LevelDB's fault_injection_test wraps its Env).
//
// It wraps the default VFS. Before every write, truncate and sync of any
// file the database opens, it reads the control file named at install time:
//   absent or empty  writes go through
//   "full"           the call fails with SQLITE_FULL   ("database or disk is full")
//   "readonly"       the call fails with SQLITE_READONLY
//   "ioerr"          the call fails with SQLITE_IOERR_WRITE
//   "hang"           the call waits until the file says something else
// The server installs it only when QJOBS_TEST_STORE_FAULTS names a control
// file; production runs never register it.
#pragma once

#include <filesystem>

namespace qjobs::server {

// Registers the VFS (once per process) and returns its name, to pass to
// Store's constructor. A later call only changes the control file (tests
// that open one store each).
const char* install_store_faults(const std::filesystem::path& control_file);

}  // namespace qjobs::server
