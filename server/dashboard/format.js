// Formatting of the API's values for the page: durations, ages, times,
// bytes, numbers, a job's progress. Pure functions (no DOM), so that
// tests/dashboard/ runs them under node --test.
export const STATES = ['QUEUED', 'RUNNING', 'CANCELLING', 'SUCCEEDED', 'FAILED', 'CANCELLED'];
export const TERMINAL = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED']);
export const CANCELLABLE = new Set(['QUEUED', 'RUNNING']);

export const nowS = () => Date.now() / 1000;
const pad2 = (n) => String(n).padStart(2, '0');

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${pad2(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${pad2(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86400)}d${pad2(Math.floor((s % 86400) / 3600))}h`;
}

export function fmtAge(t, now = nowS()) {
  if (!t) return '';
  const s = now - t;
  if (s < 5) return 'just now';
  if (s < 60) return `${Math.floor(s)}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

export function fmtTime(t) {
  if (!t) return '';
  const d = new Date(t * 1000);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ` +
    `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

export function fmtClock(t) {
  if (!t) return '';
  const d = new Date(t * 1000);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}.` +
    String(d.getMilliseconds()).padStart(3, '0');
}

export function fmtBytes(n) {
  if (n === null || n === undefined || !Number.isFinite(Number(n))) return '';
  let v = Number(n);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

export function fmtNum(v) {
  if (v === null || v === undefined) return '—';
  if (typeof v !== 'number') return String(v);
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v)) return String(v);
  if (Math.abs(v) >= 1e5) return v.toFixed(0);
  return String(Number(v.toPrecision(5)));
}

export function fmtValue(v) {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'number') return fmtNum(v);
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

export function jobDuration(job, now = nowS()) {
  if (!job.started_at) return null;
  const end = job.finished_at || (TERMINAL.has(job.state) ? job.updated_at : now);
  return end - job.started_at;
}

export const jobHref = (id) => `#/jobs/${encodeURIComponent(id)}`;
export const encPath = (p) => p.split('/').map(encodeURIComponent).join('/');
export const jobApi = (id) => `/jobs/${encodeURIComponent(id)}`;

export function progressPercent(job) {
  const p = job.progress || {};
  if (typeof p.percent === 'number') return Math.max(0, Math.min(100, p.percent));
  if (job.state === 'SUCCEEDED') return 100;
  return null;
}

export function etaText(job) {
  const p = job.progress || {};
  if (TERMINAL.has(job.state) || p.eta_s === null || p.eta_s === undefined) return '';
  return `ETA ${fmtDuration(p.eta_s)}`;
}
