#include "server/store_faults.hpp"

#include <sqlite3.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>

#include "common/error.hpp"

namespace qjobs::server {
namespace {

std::mutex g_mu;
std::string g_control;  // guarded by g_mu
sqlite3_vfs* g_base = nullptr;
sqlite3_vfs g_vfs;

// The fault the control file asks for now: "" for none.
std::string fault_now() {
  std::string path;
  {
    std::lock_guard lock(g_mu);
    path = g_control;
  }
  std::ifstream in(path);
  std::string word;
  in >> word;
  return word;
}

// SQLITE_OK, or the error code the current fault stands for. "hang" blocks.
int check_fault() {
  while (true) {
    const std::string f = fault_now();
    if (f == "full") return SQLITE_FULL;
    if (f == "readonly") return SQLITE_READONLY;
    if (f == "ioerr") return SQLITE_IOERR_WRITE;
    if (f != "hang") return SQLITE_OK;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// A file of the wrapped VFS followed by ours; io methods forward to it.
struct FaultFile {
  sqlite3_file base;             // our methods
  sqlite3_file* real = nullptr;  // the default VFS's file, allocated after us
};

sqlite3_file* real(sqlite3_file* f) { return reinterpret_cast<FaultFile*>(f)->real; }

int f_close(sqlite3_file* f) {
  const int rc = real(f)->pMethods ? real(f)->pMethods->xClose(real(f)) : SQLITE_OK;
  return rc;
}
int f_read(sqlite3_file* f, void* p, int n, sqlite3_int64 off) { return real(f)->pMethods->xRead(real(f), p, n, off); }
int f_write(sqlite3_file* f, const void* p, int n, sqlite3_int64 off) {
  if (const int rc = check_fault(); rc != SQLITE_OK) return rc;
  return real(f)->pMethods->xWrite(real(f), p, n, off);
}
int f_truncate(sqlite3_file* f, sqlite3_int64 size) {
  if (const int rc = check_fault(); rc != SQLITE_OK) return rc == SQLITE_IOERR_WRITE ? SQLITE_IOERR_TRUNCATE : rc;
  return real(f)->pMethods->xTruncate(real(f), size);
}
int f_sync(sqlite3_file* f, int flags) {
  if (const int rc = check_fault(); rc != SQLITE_OK) return rc == SQLITE_IOERR_WRITE ? SQLITE_IOERR_FSYNC : rc;
  return real(f)->pMethods->xSync(real(f), flags);
}
int f_size(sqlite3_file* f, sqlite3_int64* size) { return real(f)->pMethods->xFileSize(real(f), size); }
int f_lock(sqlite3_file* f, int l) { return real(f)->pMethods->xLock(real(f), l); }
int f_unlock(sqlite3_file* f, int l) { return real(f)->pMethods->xUnlock(real(f), l); }
int f_check(sqlite3_file* f, int* out) { return real(f)->pMethods->xCheckReservedLock(real(f), out); }
int f_control(sqlite3_file* f, int op, void* arg) { return real(f)->pMethods->xFileControl(real(f), op, arg); }
int f_sector(sqlite3_file* f) { return real(f)->pMethods->xSectorSize(real(f)); }
int f_caps(sqlite3_file* f) { return real(f)->pMethods->xDeviceCharacteristics(real(f)); }
int f_shm_map(sqlite3_file* f, int pg, int sz, int extend, void volatile** p) {
  return real(f)->pMethods->xShmMap(real(f), pg, sz, extend, p);
}
int f_shm_lock(sqlite3_file* f, int off, int n, int flags) {
  return real(f)->pMethods->xShmLock(real(f), off, n, flags);
}
void f_shm_barrier(sqlite3_file* f) { real(f)->pMethods->xShmBarrier(real(f)); }
int f_shm_unmap(sqlite3_file* f, int del) { return real(f)->pMethods->xShmUnmap(real(f), del); }

// Version 2 methods: WAL needs the shared-memory calls; no mmap (version 3).
const sqlite3_io_methods kMethods = {
    2,         f_close,  f_read, f_write,   f_truncate, f_sync,        f_size,      f_lock,  f_unlock, f_check,
    f_control, f_sector, f_caps, f_shm_map, f_shm_lock, f_shm_barrier, f_shm_unmap, nullptr, nullptr,
};

int v_open(sqlite3_vfs*, const char* name, sqlite3_file* file, int flags, int* out_flags) {
  auto* ff = reinterpret_cast<FaultFile*>(file);
  ff->real = reinterpret_cast<sqlite3_file*>(ff + 1);
  ff->base.pMethods = nullptr;
  const int rc = g_base->xOpen(g_base, name, ff->real, flags, out_flags);
  if (rc == SQLITE_OK) ff->base.pMethods = &kMethods;
  return rc;
}
int v_delete(sqlite3_vfs*, const char* name, int sync) { return g_base->xDelete(g_base, name, sync); }
int v_access(sqlite3_vfs*, const char* name, int flags, int* out) { return g_base->xAccess(g_base, name, flags, out); }
int v_full(sqlite3_vfs*, const char* name, int n, char* out) { return g_base->xFullPathname(g_base, name, n, out); }
void* v_dlopen(sqlite3_vfs*, const char* name) { return g_base->xDlOpen(g_base, name); }
void v_dlerror(sqlite3_vfs*, int n, char* out) { g_base->xDlError(g_base, n, out); }
void (*v_dlsym(sqlite3_vfs*, void* h, const char* sym))(void) { return g_base->xDlSym(g_base, h, sym); }
void v_dlclose(sqlite3_vfs*, void* h) { g_base->xDlClose(g_base, h); }
int v_random(sqlite3_vfs*, int n, char* out) { return g_base->xRandomness(g_base, n, out); }
int v_sleep(sqlite3_vfs*, int us) { return g_base->xSleep(g_base, us); }
int v_time(sqlite3_vfs*, double* out) { return g_base->xCurrentTime(g_base, out); }
int v_error(sqlite3_vfs*, int n, char* out) {
  return g_base->xGetLastError ? g_base->xGetLastError(g_base, n, out) : 0;
}
int v_time64(sqlite3_vfs*, sqlite3_int64* out) { return g_base->xCurrentTimeInt64(g_base, out); }

}  // namespace

const char* install_store_faults(const std::filesystem::path& control_file) {
  static const char* kName = "qjobs-faults";
  {
    std::lock_guard lock(g_mu);
    g_control = control_file.string();
  }
  if (g_base != nullptr) return kName;
  g_base = sqlite3_vfs_find(nullptr);
  if (g_base == nullptr) throw Error(ErrorKind::internal, "no default SQLite VFS");
  std::memset(&g_vfs, 0, sizeof g_vfs);
  g_vfs.iVersion = 2;
  g_vfs.szOsFile = static_cast<int>(sizeof(FaultFile)) + g_base->szOsFile;
  g_vfs.mxPathname = g_base->mxPathname;
  g_vfs.zName = kName;
  g_vfs.xOpen = v_open;
  g_vfs.xDelete = v_delete;
  g_vfs.xAccess = v_access;
  g_vfs.xFullPathname = v_full;
  g_vfs.xDlOpen = v_dlopen;
  g_vfs.xDlError = v_dlerror;
  g_vfs.xDlSym = v_dlsym;
  g_vfs.xDlClose = v_dlclose;
  g_vfs.xRandomness = v_random;
  g_vfs.xSleep = v_sleep;
  g_vfs.xCurrentTime = v_time;
  g_vfs.xGetLastError = v_error;
  g_vfs.xCurrentTimeInt64 = v_time64;
  if (sqlite3_vfs_register(&g_vfs, 0) != SQLITE_OK) throw Error(ErrorKind::internal, "cannot register the fault VFS");
  return kName;
}

}  // namespace qjobs::server
