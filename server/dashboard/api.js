// The job server's HTTP API, as the page calls it: every request carries the
// bearer token kept in localStorage, and a refusal becomes an ApiError with
// the server's message and its per-key details.
import { el } from './dom.js';
import { encPath, jobApi } from './format.js';

export class ApiError extends Error {
  constructor(status, body, message) {
    super(message);
    this.status = status;
    this.body = body;
    this.kind = body && body.kind;
    this.details = (body && Array.isArray(body.details)) ? body.details : [];
  }
}

export const TOKEN_KEY = 'qjobs_token';

// Told whether the last answer was a 401 (app.js shows it by the token box).
let authListener = () => {};
export function onAuthProblem(fn) { authListener = fn; }

export const getToken = () => (localStorage.getItem(TOKEN_KEY) || '').trim();

export async function api(path, { method = 'GET', body, headers = {}, as = 'json' } = {}) {
  const h = { ...headers };
  const token = getToken();
  if (token) h.Authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(path, { method, body, headers: h, cache: 'no-store' });
  } catch (e) {
    throw new ApiError(0, null, `cannot reach the server (${e.message})`);
  }
  if (res.status === 401) {
    let data = null;
    try { data = await res.json(); } catch (_) { /* not JSON */ }
    authListener(true);
    throw new ApiError(401, data, 'token required');
  }
  authListener(false);
  if (!res.ok) {
    const text = await res.text();
    let data = null;
    try { data = JSON.parse(text); } catch (_) { /* plain text */ }
    const msg = (data && data.error) || text.trim() || `${res.status} ${res.statusText}`;
    throw new ApiError(res.status, data, msg);
  }
  if (as === 'json') return res.json();
  if (as === 'text') return res.text();
  if (as === 'blob') return res.blob();
  return res;
}

export function errorText(e) {
  if (e instanceof ApiError && e.status === 401) {
    return 'token required: enter a valid API token in the field at the top right.';
  }
  return e && e.message ? e.message : String(e);
}

// Fetches a job's artifact with the token and hands back an object URL.
export async function artifactBlobUrl(jobId, path) {
  const url = `${jobApi(jobId)}/artifacts/${encPath(path)}`;
  let blob;
  if (/\.svg$/i.test(path)) {
    const text = await api(url, { as: 'text' });
    blob = new Blob([text], { type: 'image/svg+xml' });
  } else {
    const raw = await api(url, { as: 'blob' });
    blob = new Blob([raw], { type: mimeFor(path) });
  }
  return URL.createObjectURL(blob);
}

export function mimeFor(path) {
  const ext = (path.split('.').pop() || '').toLowerCase();
  return ({
    png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', gif: 'image/gif', webp: 'image/webp',
    svg: 'image/svg+xml', json: 'application/json', md: 'text/markdown', txt: 'text/plain',
    log: 'text/plain', yaml: 'application/yaml', yml: 'application/yaml', jsonl: 'application/x-ndjson',
  })[ext] || 'application/octet-stream';
}

export async function downloadArtifact(jobId, path) {
  const url = await artifactBlobUrl(jobId, path);
  const a = el('a', { href: url, download: path.split('/').pop() || 'artifact', hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}
