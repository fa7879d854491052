// qjobs dashboard: a single-page front-end for the job server's HTTP API.
// Plain ES2020, no dependencies. Pages are chosen by the URL hash so the
// server only has to serve "/": #/ (jobs), #/jobs/<id>, #/compare?ids=a,b,
// #/submit. Every API call carries the bearer token kept in localStorage.
//
// Untrusted text (job names, logs, events, report text) only reaches the
// page as text nodes or through esc(); the markdown renderer escapes its
// input before adding any markup of its own.
'use strict';

(() => {
  const TOKEN_KEY = 'qjobs_token';
  const DRAFT_KEY = 'qjobs_draft';
  const POLL_MS = 1500;
  const STATES = ['QUEUED', 'RUNNING', 'CANCELLING', 'SUCCEEDED', 'FAILED', 'CANCELLED'];
  const TERMINAL = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED']);
  const CANCELLABLE = new Set(['QUEUED', 'RUNNING']);
  const SVG_NS = 'http://www.w3.org/2000/svg';

  const DEMO_SPEC = [
    '# RTN W4 (groups of 32) on the example model, with perplexity on',
    '# held-out chapters before and after.',
    'MODEL: "examples/kjv-llama"',
    'ALGORITHM: RTN',
    'JOB_ID: "demo"',
    'llm:',
    '  RTN:',
    '    W_BIT: 4',
    '    Q_GROUP_SIZE: 32',
    '    ZERO_POINT: true',
    'eval:',
    '  tasks:',
    '    - type: ppl',
    '      name: kjv-heldout',
    '      data_path: "examples/data/kjv/test.jsonl"',
    '      seqlen: 256',
    '      batch_size: 4',
    '',
  ].join('\n');

  // ------------------------------------------------------------------
  // DOM helpers

  function esc(value) {
    return String(value ?? '').replace(/[&<>"']/g, (c) => ({
      '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
    }[c]));
  }

  function setAttrs(node, attrs) {
    if (!attrs) return;
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') node.setAttribute('class', v);
      else if (k === 'text') node.textContent = String(v);
      else if (k === 'testid') node.setAttribute('data-testid', v);
      else if (k === 'dataset') for (const [dk, dv] of Object.entries(v)) node.dataset[dk] = String(dv);
      else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? '' : String(v));
    }
  }

  function appendAll(parent, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      parent.append(c instanceof Node ? c : String(c)); // strings become text nodes
    }
    return parent;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    return appendAll(node, children);
  }

  function svgEl(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    return appendAll(node, children);
  }

  function setText(node, text) {
    const t = String(text ?? '');
    if (node.textContent !== t) node.textContent = t;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  function replaceChildren(node, ...children) {
    clear(node);
    return appendAll(node, children);
  }

  // ------------------------------------------------------------------
  // Formatting

  const nowS = () => Date.now() / 1000;
  const pad2 = (n) => String(n).padStart(2, '0');

  function fmtDuration(seconds) {
    if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '';
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m${pad2(s % 60)}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h${pad2(Math.floor((s % 3600) / 60))}m`;
    return `${Math.floor(s / 86400)}d${pad2(Math.floor((s % 86400) / 3600))}h`;
  }

  function fmtAge(t) {
    if (!t) return '';
    const s = nowS() - t;
    if (s < 5) return 'just now';
    if (s < 60) return `${Math.floor(s)}s ago`;
    if (s < 3600) return `${Math.floor(s / 60)}m ago`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
    return `${Math.floor(s / 86400)}d ago`;
  }

  function fmtTime(t) {
    if (!t) return '';
    const d = new Date(t * 1000);
    return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ` +
      `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  }

  function fmtClock(t) {
    if (!t) return '';
    const d = new Date(t * 1000);
    return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}.` +
      String(d.getMilliseconds()).padStart(3, '0');
  }

  function fmtBytes(n) {
    if (n === null || n === undefined || !Number.isFinite(Number(n))) return '';
    let v = Number(n);
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
    return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
  }

  function fmtNum(v) {
    if (v === null || v === undefined) return '—';
    if (typeof v !== 'number') return String(v);
    if (!Number.isFinite(v)) return String(v);
    if (Number.isInteger(v)) return String(v);
    if (Math.abs(v) >= 1e5) return v.toFixed(0);
    return String(Number(v.toPrecision(5)));
  }

  function fmtValue(v) {
    if (v === null || v === undefined) return '—';
    if (typeof v === 'number') return fmtNum(v);
    if (typeof v === 'object') return JSON.stringify(v);
    return String(v);
  }

  function jobDuration(job) {
    if (!job.started_at) return null;
    const end = job.finished_at || (TERMINAL.has(job.state) ? job.updated_at : nowS());
    return end - job.started_at;
  }

  const jobHref = (id) => `#/jobs/${encodeURIComponent(id)}`;
  const encPath = (p) => p.split('/').map(encodeURIComponent).join('/');
  const jobApi = (id) => `/jobs/${encodeURIComponent(id)}`;

  // ------------------------------------------------------------------
  // API access

  class ApiError extends Error {
    constructor(status, body, message) {
      super(message);
      this.status = status;
      this.body = body;
      this.kind = body && body.kind;
      this.details = (body && Array.isArray(body.details)) ? body.details : [];
    }
  }

  const getToken = () => (localStorage.getItem(TOKEN_KEY) || '').trim();

  async function api(path, { method = 'GET', body, headers = {}, as = 'json' } = {}) {
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
      showAuthProblem(true);
      throw new ApiError(401, data, 'token required');
    }
    showAuthProblem(false);
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

  function errorText(e) {
    if (e instanceof ApiError && e.status === 401) {
      return 'token required: enter a valid API token in the field at the top right.';
    }
    return e && e.message ? e.message : String(e);
  }

  // Fetches a job's artifact with the token and hands back an object URL.
  async function artifactBlobUrl(jobId, path) {
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

  function mimeFor(path) {
    const ext = (path.split('.').pop() || '').toLowerCase();
    return ({
      png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', gif: 'image/gif', webp: 'image/webp',
      svg: 'image/svg+xml', json: 'application/json', md: 'text/markdown', txt: 'text/plain',
      log: 'text/plain', yaml: 'application/yaml', yml: 'application/yaml', jsonl: 'application/x-ndjson',
    })[ext] || 'application/octet-stream';
  }

  async function downloadArtifact(jobId, path) {
    const url = await artifactBlobUrl(jobId, path);
    const a = el('a', { href: url, download: path.split('/').pop() || 'artifact', hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  // ------------------------------------------------------------------
  // Token field and the "token required" message

  const tokenInput = document.getElementById('token');
  const authMessage = document.getElementById('auth-message');

  function showAuthProblem(on) {
    if (!on) {
      if (!authMessage.hidden) authMessage.hidden = true;
      tokenInput.classList.remove('bad');
      return;
    }
    setText(authMessage, getToken() ? 'token required: the server refused this token' : 'token required');
    authMessage.hidden = false;
    tokenInput.classList.add('bad');
  }

  function applyToken() {
    const value = tokenInput.value.trim();
    if (value === getToken()) return;
    if (value) localStorage.setItem(TOKEN_KEY, value);
    else localStorage.removeItem(TOKEN_KEY);
    route(); // reload the current page with the new token
  }

  tokenInput.value = getToken();
  tokenInput.addEventListener('change', applyToken);
  tokenInput.addEventListener('keydown', (e) => { if (e.key === 'Enter') applyToken(); });
  // another tab changed the token: follow it
  window.addEventListener('storage', (e) => {
    if (e.key !== TOKEN_KEY) return;
    tokenInput.value = getToken();
    route();
  });

  // ------------------------------------------------------------------
  // Page lifecycle: each page gets a context whose timers stop when the
  // page is left.

  function makeContext() {
    const disposers = [];
    return {
      alive: true,
      onDispose(fn) { disposers.push(fn); },
      dispose() {
        this.alive = false;
        for (const fn of disposers.splice(0)) {
          try { fn(); } catch (_) { /* ignore */ }
        }
      },
    };
  }

  // Calls fn now and then every `ms` until it returns false or the page is
  // left. Never overlaps itself; poke() runs it again as soon as possible.
  function poller(ctx, fn, ms = POLL_MS) {
    let timer = null;
    let running = false;
    let again = false;
    let stopped = false;
    const tick = async () => {
      timer = null;
      if (!ctx.alive || stopped) return;
      if (document.hidden) { timer = setTimeout(tick, ms); return; }
      running = true;
      let keep = true;
      try { keep = (await fn()) !== false; } catch (e) { console.warn('poll:', e); }
      running = false;
      if (!ctx.alive) return;
      if (!keep) { stopped = true; return; }
      timer = setTimeout(tick, again ? 0 : ms);
      again = false;
    };
    ctx.onDispose(() => { clearTimeout(timer); stopped = true; });
    tick();
    return {
      poke() {
        stopped = false;
        if (running) { again = true; return; }
        clearTimeout(timer);
        tick();
      },
    };
  }

  // ------------------------------------------------------------------
  // Shared widgets

  function stateBadge(state, testid) {
    const b = el('span', { class: 'badge', testid: testid || 'state-badge' });
    updateBadge(b, state);
    return b;
  }

  function updateBadge(b, state) {
    if (b.dataset.state !== state) b.dataset.state = state || '';
    setText(b, state || '?');
  }

  function progressBar() {
    const fill = el('div', { class: 'progress-fill' });
    const label = el('span', { class: 'progress-label' });
    const bar = el('div', {
      class: 'progress', testid: 'progress-bar', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100',
    }, fill, label);
    bar._fill = fill;
    bar._label = label;
    return bar;
  }

  function progressPercent(job) {
    const p = job.progress || {};
    if (typeof p.percent === 'number') return Math.max(0, Math.min(100, p.percent));
    if (job.state === 'SUCCEEDED') return 100;
    return null;
  }

  function etaText(job) {
    const p = job.progress || {};
    if (TERMINAL.has(job.state) || p.eta_s === null || p.eta_s === undefined) return '';
    return `ETA ${fmtDuration(p.eta_s)}`;
  }

  function updateProgress(bar, job) {
    const pct = progressPercent(job);
    const width = `${pct === null ? 0 : pct.toFixed(1)}%`;
    if (bar._fill.style.width !== width) bar._fill.style.width = width;
    if (bar.dataset.state !== job.state) bar.dataset.state = job.state;
    bar.dataset.percent = pct === null ? '' : pct.toFixed(1);
    if (pct === null) bar.removeAttribute('aria-valuenow');
    else bar.setAttribute('aria-valuenow', pct.toFixed(0));
    let text = '';
    if (pct !== null) text = `${Math.floor(pct)}%`;
    else if (job.state === 'RUNNING' && !((job.progress || {}).stage || job.stage)) text = 'starting…';
    else if (job.state === 'QUEUED') text = 'queued';
    const eta = etaText(job);
    if (eta) text += `${text ? ' · ' : ''}${eta}`;
    setText(bar._label, text);
  }

  function notice(kind, ...children) {
    return el('div', { class: `notice ${kind}` }, ...children);
  }

  function card(title, testid, ...children) {
    return el('section', { class: 'card', testid },
      title ? el('h2', null, title) : null, ...children);
  }

  // ------------------------------------------------------------------
  // Page: job list

  function pageList(root, ctx, params) {
    document.title = 'qjobs · jobs';
    const selected = new Set();
    let filter = (params.get('state') || '').toUpperCase();
    let nameFilter = params.get('name') || '';
    let limit = 100;
    const rows = new Map();

    const filterSelect = el('select', { id: 'state-filter', testid: 'state-filter', 'aria-label': 'state filter' },
      ['', ...STATES].map((s) => el('option', { value: s, text: s || 'All states' })));
    filterSelect.value = STATES.includes(filter) ? filter : '';
    const nameInput = el('input', {
      type: 'search', placeholder: 'name', testid: 'name-filter', 'aria-label': 'name filter', value: nameFilter,
    });
    const compareBtn = el('button', { class: 'btn', testid: 'compare-selected', disabled: true }, 'Compare selected');
    const countText = el('span', { class: 'muted', testid: 'job-count' });
    const message = el('div', { testid: 'list-message' });
    const empty = el('div', { class: 'empty', testid: 'jobs-empty', hidden: true },
      'No jobs yet. ', el('a', { href: '#/submit' }, 'Submit one'), '.');
    const moreBtn = el('button', { class: 'btn small', testid: 'more', hidden: true }, 'Show more');
    const tbody = el('tbody');
    const table = el('table', { class: 'grid jobs', testid: 'job-table' },
      el('thead', null, el('tr', null,
        el('th', { class: 'sel' }), el('th', null, 'State'), el('th', null, 'Name'), el('th', null, 'ID'),
        el('th', null, 'Algorithm'), el('th', null, 'Model'), el('th', null, 'Stage'),
        el('th', null, 'Progress'), el('th', null, 'Age'), el('th', null, 'Duration'))),
      tbody);

    replaceChildren(root,
      el('div', { class: 'toolbar' },
        el('h1', null, 'Jobs'), filterSelect, nameInput, countText,
        el('span', { class: 'spacer' }),
        compareBtn,
        el('a', { class: 'btn', href: '#/compare' }, 'Compare'),
        el('a', { class: 'btn primary', href: '#/submit' }, 'Submit a job')),
      message,
      el('div', { class: 'card flush' }, el('div', { class: 'table-scroll' }, table), empty),
      el('div', { class: 'more-row' }, moreBtn));

    const syncHash = () => {
      const q = new URLSearchParams();
      if (filter) q.set('state', filter);
      if (nameFilter) q.set('name', nameFilter);
      const qs = q.toString();
      history.replaceState(null, '', `#/${qs ? `?${qs}` : ''}`);
    };
    const updateCompare = () => {
      compareBtn.disabled = selected.size < 1;
      setText(compareBtn, selected.size ? `Compare selected (${selected.size})` : 'Compare selected');
    };
    compareBtn.addEventListener('click', () => {
      if (!selected.size) return;
      location.hash = `#/compare?ids=${[...selected].map(encodeURIComponent).join(',')}`;
    });

    function makeRow(job) {
      const cb = el('input', { type: 'checkbox', testid: 'job-select', 'aria-label': `select job ${job.id}` });
      cb.checked = selected.has(job.id);
      cb.addEventListener('change', () => {
        if (cb.checked) selected.add(job.id); else selected.delete(job.id);
        r.tr.classList.toggle('selected', cb.checked);
        updateCompare();
      });
      const r = {
        badge: stateBadge(job.state, 'job-state'),
        name: el('a', { href: jobHref(job.id), class: 'name' }),
        id: el('a', { href: jobHref(job.id), class: 'mono', testid: 'job-link' }, job.id),
        algorithm: el('td'),
        model: el('td', { class: 'model' }),
        stage: el('td', { testid: 'job-stage' }),
        bar: progressBar(),
        age: el('td', { class: 'nowrap' }),
        duration: el('td', { class: 'nowrap num' }),
      };
      r.tr = el('tr', { testid: 'job-row', dataset: { id: job.id } },
        el('td', { class: 'sel' }, cb), el('td', null, r.badge), el('td', null, r.name), el('td', null, r.id),
        r.algorithm, r.model, r.stage, el('td', null, r.bar), r.age, r.duration);
      return r;
    }

    function updateRow(r, job) {
      if (r.tr.dataset.state !== job.state) r.tr.dataset.state = job.state;
      updateBadge(r.badge, job.state);
      setText(r.name, job.name || '—');
      r.name.classList.toggle('muted', !job.name);
      setText(r.algorithm, job.algorithm);
      setText(r.model, job.model);
      r.model.title = job.model || '';
      const p = job.progress || {};
      let stage = p.stage || job.stage || '';
      if (Array.isArray(p.stages) && typeof p.stage_index === 'number' && p.stages.length) {
        stage += ` (${p.stage_index + 1}/${p.stages.length})`;
      }
      // A failed job says why where its stage is (the whole message on hover).
      const why = job.state === 'FAILED' ? [job.error_type, job.error].filter(Boolean).join(': ') : '';
      setText(r.stage, why ? `${stage}${stage ? ' · ' : ''}${why.length > 90 ? `${why.slice(0, 89)}…` : why}` : stage);
      r.stage.title = why;
      r.stage.classList.toggle('error-text', Boolean(why));
      updateProgress(r.bar, job);
      setText(r.age, fmtAge(job.created_at));
      r.age.title = fmtTime(job.created_at);
      setText(r.duration, fmtDuration(jobDuration(job)));
    }

    async function refresh() {
      const q = new URLSearchParams({ limit: String(limit) });
      if (filter) q.set('state', filter);
      if (nameFilter) q.set('name', nameFilter);
      let data;
      try {
        data = await api(`/jobs?${q}`);
      } catch (e) {
        replaceChildren(message, notice(e.status === 401 ? 'warn' : 'error', errorText(e)));
        return true;
      }
      if (!ctx.alive) return false;
      clear(message);
      const jobs = Array.isArray(data.jobs) ? data.jobs : [];
      const seen = new Set();
      let prev = null;
      for (const job of jobs) {
        seen.add(job.id);
        let r = rows.get(job.id);
        if (!r) { r = makeRow(job); rows.set(job.id, r); }
        updateRow(r, job);
        const want = prev ? prev.nextSibling : tbody.firstChild;
        if (want !== r.tr) tbody.insertBefore(r.tr, want);
        prev = r.tr;
      }
      for (const [id, r] of rows) {
        if (!seen.has(id)) { r.tr.remove(); rows.delete(id); selected.delete(id); }
      }
      updateCompare();
      empty.hidden = jobs.length > 0;
      if (!jobs.length) {
        clear(empty);
        if (filter || nameFilter) appendAll(empty, 'No jobs match this filter.');
        else appendAll(empty, 'No jobs yet. ', el('a', { href: '#/submit' }, 'Submit one'), '.');
      }
      table.hidden = jobs.length === 0;
      moreBtn.hidden = !data.next_cursor || limit >= 1000;
      setText(countText, jobs.length ? `${jobs.length}${data.next_cursor ? '+' : ''} job${jobs.length === 1 ? '' : 's'}` : '');
      return true;
    }

    const poll = poller(ctx, refresh);
    filterSelect.addEventListener('change', () => { filter = filterSelect.value; syncHash(); poll.poke(); });
    let nameTimer = null;
    nameInput.addEventListener('input', () => {
      clearTimeout(nameTimer);
      nameTimer = setTimeout(() => { nameFilter = nameInput.value.trim(); syncHash(); poll.poke(); }, 300);
    });
    ctx.onDispose(() => clearTimeout(nameTimer));
    moreBtn.addEventListener('click', () => { limit = Math.min(1000, limit + 100); poll.poke(); });
  }

  // ------------------------------------------------------------------
  // Page: one job

  let flash = null; // {id, warnings}: shown once on the job page after a submission

  function pageJob(root, ctx, idParam) {
    document.title = `qjobs · ${idParam}`;
    let jobId = idParam; // the resolved id once loaded (idParam may be a name)
    let job = null;
    let terminalDone = false;
    let specShown = false;
    const objectUrls = [];
    ctx.onDispose(() => objectUrls.forEach((u) => URL.revokeObjectURL(u)));

    const title = el('h1', { testid: 'job-title' }, idParam);
    const badge = stateBadge('', 'job-state');
    const idText = el('code', { class: 'mono', testid: 'job-id' }, idParam);
    const cancelBtn = el('button', { class: 'btn', testid: 'cancel', hidden: true }, 'Cancel');
    const deleteBtn = el('button', { class: 'btn danger', testid: 'delete', hidden: true }, 'Delete');
    const actionMsg = el('div', { testid: 'action-message' });
    const flashBox = el('div', { testid: 'flash' });
    const meta = el('dl', { class: 'meta', testid: 'job-meta' });
    const bar = progressBar();
    const stageText = el('span', { testid: 'job-stage', class: 'stage' });
    const countsText = el('span', { testid: 'job-counts', class: 'muted' });
    const etaSpan = el('span', { testid: 'job-eta', class: 'muted' });
    const errorBox = el('div', { class: 'notice error', testid: 'job-error', hidden: true });
    const loadMsg = el('div', { testid: 'job-message' });

    const metricsBody = el('div', null, el('p', { class: 'muted' }, 'No metrics yet.'));
    const reportBody = el('div', { class: 'markdown' }, el('p', { class: 'muted' }, 'The report appears when the job finishes.'));
    const artifactsBody = el('div', null, el('p', { class: 'muted' }, 'Loading…'));
    const eventsBody = el('div', { class: 'table-scroll events-scroll' });
    const logPre = el('pre', { class: 'log', testid: 'log' });
    const specPre = el('pre', { class: 'spec', testid: 'spec' });

    replaceChildren(root,
      el('div', { class: 'crumbs' }, el('a', { href: '#/' }, '← Jobs')),
      loadMsg,
      flashBox,
      el('section', { class: 'card job-head', testid: 'job-header' },
        el('div', { class: 'job-title-row' }, title, badge,
          el('span', { class: 'spacer' }), cancelBtn, deleteBtn),
        el('div', { class: 'muted' }, 'id ', idText),
        actionMsg,
        el('div', { class: 'job-progress' }, bar, stageText, countsText, etaSpan),
        meta,
        errorBox),
      card('Metrics', 'metrics', metricsBody),
      card('Report', 'report', reportBody),
      card('Artifacts', 'artifacts', artifactsBody),
      card('Log', 'log-section', el('div', { class: 'muted small' }, 'worker log, last 200 lines'), logPre),
      card('Events', 'events', eventsBody),
      card('Spec', 'spec-section', specPre));

    cancelBtn.addEventListener('click', async () => {
      cancelBtn.disabled = true;
      clear(actionMsg);
      try {
        await api(`${jobApi(jobId)}/cancel`, { method: 'POST' });
      } catch (e) {
        replaceChildren(actionMsg, notice('error', `cancel failed: ${errorText(e)}`));
      }
      cancelBtn.disabled = false;
      poll.poke();
    });

    deleteBtn.addEventListener('click', async () => {
      const label = job && job.name ? `${job.name} (${jobId})` : jobId;
      if (!window.confirm(`Delete job ${label} and all its files?`)) return;
      deleteBtn.disabled = true;
      try {
        await api(jobApi(jobId), { method: 'DELETE' });
        location.hash = '#/';
      } catch (e) {
        deleteBtn.disabled = false;
        replaceChildren(actionMsg, notice('error', `delete failed: ${errorText(e)}`));
      }
    });

    function renderHeader() {
      const label = job.name || job.id;
      setText(title, label);
      document.title = `qjobs · ${label}`;
      setText(idText, job.id);
      updateBadge(badge, job.state);
      cancelBtn.hidden = !CANCELLABLE.has(job.state);
      deleteBtn.hidden = !TERMINAL.has(job.state);
      updateProgress(bar, job);
      const p = job.progress || {};
      let stage = p.stage || job.stage || '';
      if (Array.isArray(p.stages) && p.stages.length && typeof p.stage_index === 'number') {
        stage = `stage ${stage} (${p.stage_index + 1}/${p.stages.length}: ${p.stages.join(' → ')})`;
      } else if (stage) {
        stage = `stage ${stage}`;
      }
      setText(stageText, stage);
      setText(countsText, p.total ? `${p.done}/${p.total}` : '');
      setText(etaSpan, etaText(job));

      const items = [
        ['algorithm', job.algorithm], ['model', job.model], ['priority', job.priority],
        ['attempts', `${job.attempts ?? 0} of ${job.max_attempts ?? '?'}`],
        ['devices', Array.isArray(job.devices) ? (job.devices.join(', ') || '—') : fmtValue(job.devices)],
        ['created', `${fmtTime(job.created_at)} (${fmtAge(job.created_at)})`],
        ['started', fmtTime(job.started_at) || '—'],
        ['finished', fmtTime(job.finished_at) || '—'],
        ['duration', fmtDuration(jobDuration(job)) || '—'],
      ];
      const key = JSON.stringify(items);
      if (meta.dataset.key !== key) {
        meta.dataset.key = key;
        replaceChildren(meta, items.map(([k, v]) => el('div', null, el('dt', null, k), el('dd', null, fmtValue(v)))));
      }
      const err = job.state === 'FAILED' || job.error
        ? [job.error_type, job.error].filter(Boolean).join(': ') : '';
      errorBox.hidden = !err;
      setText(errorBox, err ? `Error: ${err}` : '');
    }

    function renderMetrics() {
      const flat = [];
      const walk = (obj, prefix) => {
        for (const [k, v] of Object.entries(obj || {})) {
          const key = prefix ? `${prefix}.${k}` : k;
          if (v && typeof v === 'object' && !Array.isArray(v)) walk(v, key);
          else flat.push([key, v]);
        }
      };
      walk(job.metrics, '');
      const sig = JSON.stringify(flat);
      if (metricsBody.dataset.sig === sig) return;
      metricsBody.dataset.sig = sig;
      if (!flat.length) {
        replaceChildren(metricsBody, el('p', { class: 'muted' }, 'No metrics yet.'));
        return;
      }
      replaceChildren(metricsBody, el('table', { class: 'grid kv', testid: 'metrics-table' },
        el('tbody', null, flat.map(([k, v]) => el('tr', null, el('th', null, k), el('td', { class: 'num' }, fmtValue(v)))))));
    }

    function renderSpec() {
      if (specShown) return;
      if (typeof job.spec_yaml === 'string') setText(specPre, job.spec_yaml);
      else if (job.spec) setText(specPre, JSON.stringify(job.spec, null, 2));
      else { setText(specPre, '(the server did not return the spec)'); return; }
      specShown = true;
    }

    async function loadEvents() {
      let text;
      try { text = await api(`${jobApi(jobId)}/events`, { as: 'text' }); } catch (e) {
        replaceChildren(eventsBody, notice('error', errorText(e)));
        return;
      }
      if (eventsBody.dataset.len === String(text.length)) return;
      eventsBody.dataset.len = String(text.length);
      const lines = text.split('\n').filter((l) => l.trim());
      const shown = lines.slice(-500);
      const rowsOut = shown.map((line) => {
        let ev;
        try { ev = JSON.parse(line); } catch (_) { ev = null; }
        if (!ev || typeof ev !== 'object') {
          return el('tr', null, el('td'), el('td'), el('td', { class: 'mono' }, line));
        }
        const t = ev.t ?? ev.time ?? ev.ts;
        const rest = Object.entries(ev).filter(([k]) => !['type', 't', 'time', 'ts'].includes(k))
          .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join('  ');
        const type = String(ev.type ?? '');
        return el('tr', { dataset: { type } },
          el('td', { class: 'nowrap mono', title: typeof t === 'number' ? fmtTime(t) : String(t ?? '') },
            typeof t === 'number' ? fmtClock(t) : String(t ?? '')),
          el('td', { class: `nowrap ev-type ev-${type.replace(/[^\w-]/g, '')}` }, type),
          el('td', { class: 'ev-rest mono' }, rest));
      });
      const stick = eventsBody.scrollHeight - eventsBody.scrollTop - eventsBody.clientHeight < 30;
      replaceChildren(eventsBody,
        lines.length > shown.length ? el('p', { class: 'muted' }, `showing the last ${shown.length} of ${lines.length} events`) : null,
        lines.length
          ? el('table', { class: 'grid events', testid: 'events-table' },
            el('thead', null, el('tr', null, el('th', null, 'time'), el('th', null, 'type'), el('th', null, 'details'))),
            el('tbody', null, rowsOut))
          : el('p', { class: 'muted' }, 'No events.'));
      if (stick) eventsBody.scrollTop = eventsBody.scrollHeight;
    }

    async function loadLog() {
      let text;
      try { text = await api(`${jobApi(jobId)}/logs?tail=200`, { as: 'text' }); } catch (e) {
        text = e.status === 404 ? '' : `(${errorText(e)})`;
      }
      const stick = logPre.scrollHeight - logPre.scrollTop - logPre.clientHeight < 30;
      setText(logPre, text || '(no log yet)');
      if (stick) logPre.scrollTop = logPre.scrollHeight;
    }

    async function loadArtifacts() {
      let list;
      try {
        const data = await api(`${jobApi(jobId)}/artifacts`);
        list = Array.isArray(data.artifacts) ? data.artifacts : [];
      } catch (e) {
        replaceChildren(artifactsBody, notice('error', errorText(e)));
        return [];
      }
      if (!list.length) {
        replaceChildren(artifactsBody, el('p', { class: 'muted' }, 'No artifacts.'));
        return list;
      }
      const total = list.reduce((s, a) => s + (Number(a.size) || 0), 0);
      replaceChildren(artifactsBody,
        el('table', { class: 'grid artifacts', testid: 'artifacts-table' },
          el('thead', null, el('tr', null, el('th', null, 'path'), el('th', { class: 'num' }, 'size'), el('th', null, 'sha256'))),
          el('tbody', null, list.map((a) => {
            const link = el('a', { href: '#', class: 'mono', testid: 'artifact-link', dataset: { path: a.path } }, a.path);
            link.addEventListener('click', (ev) => {
              ev.preventDefault();
              downloadArtifact(jobId, a.path).catch((e) => replaceChildren(actionMsg, notice('error', `download failed: ${errorText(e)}`)));
            });
            return el('tr', { testid: 'artifact-row', dataset: { path: a.path } },
              el('td', null, link),
              el('td', { class: 'num nowrap', title: `${a.size} bytes` }, fmtBytes(a.size)),
              el('td', { class: 'mono muted', title: a.sha256 || (a.sha256_pending ? 'the server is computing this checksum' : '') },
                a.sha256 ? a.sha256.slice(0, 12) : (a.sha256_pending ? 'computing…' : '')));
          })),
          el('tfoot', null, el('tr', null, el('td', null, `${list.length} file${list.length === 1 ? '' : 's'}`), el('td', { class: 'num nowrap' }, fmtBytes(total)), el('td')))));
      return list;
    }

    async function loadReport(list) {
      const paths = new Set(list.map((a) => a.path));
      if (!paths.has('report.md')) {
        replaceChildren(reportBody, el('p', { class: 'muted' },
          TERMINAL.has(job.state) ? 'This job wrote no report.' : 'The report appears when the job finishes.'));
        return;
      }
      let md;
      try { md = await api(`${jobApi(jobId)}/artifacts/report.md`, { as: 'text' }); } catch (e) {
        replaceChildren(reportBody, e.status === 404 ? el('p', { class: 'muted' }, 'No report.') : notice('error', errorText(e)));
        return;
      }
      reportBody.innerHTML = renderMarkdown(md); // renderMarkdown escapes all text it is given
      for (const img of reportBody.querySelectorAll('img[data-artifact]')) {
        const path = img.dataset.artifact;
        if (!paths.has(path)) { img.replaceWith(el('span', { class: 'muted' }, `[missing image: ${img.alt || path}]`)); continue; }
        artifactBlobUrl(jobId, path).then((url) => {
          if (!ctx.alive) { URL.revokeObjectURL(url); return; }
          objectUrls.push(url);
          img.src = url;
        }).catch((e) => img.replaceWith(el('span', { class: 'muted' }, `[image ${path}: ${errorText(e)}]`)));
      }
      for (const a of reportBody.querySelectorAll('a[data-artifact]')) {
        a.addEventListener('click', (ev) => {
          ev.preventDefault();
          downloadArtifact(jobId, a.dataset.artifact).catch((e) => replaceChildren(actionMsg, notice('error', errorText(e))));
        });
      }
    }

    async function refresh() {
      try {
        job = await api(jobApi(jobId));
      } catch (e) {
        if (e.status === 404) {
          replaceChildren(loadMsg, notice('error', `No job ${idParam}. `, el('a', { href: '#/' }, 'Back to the list.')));
          return false;
        }
        replaceChildren(loadMsg, notice(e.status === 401 ? 'warn' : 'error', errorText(e)));
        return true;
      }
      if (!ctx.alive) return false;
      clear(loadMsg);
      jobId = job.id;
      if (flash && (flash.id === jobId || flash.id === idParam)) {
        const warnings = flash.warnings || [];
        flash = null;
        replaceChildren(flashBox, notice('ok', 'Job submitted.',
          warnings.length ? el('ul', { testid: 'submit-warnings' }, warnings.map((w) => el('li', null, String(w)))) : null));
      }
      renderHeader();
      renderMetrics();
      renderSpec();
      await Promise.all([loadEvents(), loadLog()]);
      if (TERMINAL.has(job.state)) {
        if (!terminalDone) {
          terminalDone = true;
          const list = await loadArtifacts();
          await loadReport(list);
        }
        return false; // a finished job does not change: stop polling
      }
      if (!artifactsBody.dataset.loaded) {
        artifactsBody.dataset.loaded = '1';
        const list = await loadArtifacts();
        await loadReport(list);
      }
      return true;
    }

    const poll = poller(ctx, refresh);
  }

  // ------------------------------------------------------------------
  // Markdown: headings, paragraphs, emphasis, code spans, fenced code,
  // lists, pipe tables, links and images (artifacts of the job).

  function safeArtifactPath(src) {
    let p = src.trim();
    if (!p || /^[a-z][a-z0-9+.-]*:/i.test(p) || p.startsWith('/') || p.startsWith('#')) return null;
    p = p.replace(/^(\.\/)+/, '');
    const parts = p.split('/');
    if (parts.some((s) => s === '' || s === '.' || s === '..')) return null;
    try { return decodeURIComponent(p); } catch (_) { return p; }
  }

  function renderInline(text) {
    const source = String(text).replace(/[\u0001\u0002]/g, '');
    const slots = [];
    const keep = (html) => `\u0001${slots.push(html) - 1}\u0002`;
    // code spans first: their content is literal
    let s = source.replace(/(`+)([\s\S]*?[^`])\1(?!`)/g, (_, ticks, code) => {
      const c = /^ .* $/.test(code) ? code.slice(1, -1) : code;
      return keep(`<code>${esc(c)}</code>`);
    });
    s = s.replace(/\\([\\`*_{}[\]()#+\-.!|~<>])/g, (_, c) => keep(esc(c)));
    s = esc(s);
    const emphasis = (t) => t
      .replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, '<strong>$1</strong>')
      .replace(/(^|[^\w])__(?=\S)([\s\S]*?\S)__(?!\w)/g, '$1<strong>$2</strong>')
      .replace(/\*(?=[^\s*])([^*]*?[^\s*]|[^\s*])\*/g, '<em>$1</em>')
      .replace(/(^|[^\w])_(?=[^\s_])([^_]*?[^\s_]|[^\s_])_(?!\w)/g, '$1<em>$2</em>');
    // images and links (on the escaped text; URLs are attribute-safe already)
    s = s.replace(/!\[([^\]]*)\]\(\s*([^)\s]+)(?:\s+&quot;[^)]*?&quot;)?\s*\)/g, (_, alt, src) => {
      const path = safeArtifactPath(src.replace(/&amp;/g, '&'));
      if (!path) return keep(`<span class="muted">[image: ${alt}]</span>`);
      return keep(`<img alt="${alt}" data-artifact="${esc(path)}" class="md-img">`);
    });
    s = s.replace(/\[([^\]]+)\]\(\s*([^)\s]+)\s*\)/g, (_, label, href) => {
      const raw = href.replace(/&amp;/g, '&');
      if (/^https?:\/\//i.test(raw)) {
        return keep(`<a href="${esc(raw)}" target="_blank" rel="noopener noreferrer">${emphasis(label)}</a>`);
      }
      const path = safeArtifactPath(raw);
      if (path) return keep(`<a href="#" data-artifact="${esc(path)}">${emphasis(label)}</a>`);
      return keep(emphasis(label));
    });
    s = emphasis(s);
    s = s.replace(/ {2,}\n|\\\n/g, '<br>');
    let prev;
    do { prev = s; s = s.replace(/\u0001(\d+)\u0002/g, (_, n) => slots[Number(n)]); } while (s !== prev);
    return s;
  }

  function splitTableRow(line) {
    let t = line.trim();
    if (t.startsWith('|')) t = t.slice(1);
    if (t.endsWith('|') && !t.endsWith('\\|')) t = t.slice(0, -1);
    const cells = [];
    let cur = '';
    for (let i = 0; i < t.length; i += 1) {
      const c = t[i];
      if (c === '\\' && t[i + 1] === '|') { cur += '|'; i += 1; } else if (c === '|') { cells.push(cur.trim()); cur = ''; } else cur += c;
    }
    cells.push(cur.trim());
    return cells;
  }

  function renderMarkdown(src) {
    const lines = String(src).replace(/\r\n?/g, '\n').split('\n');
    const out = [];
    const reFence = /^\s{0,3}(`{3,}|~{3,})\s*([^`\s]*)/;
    const reHeading = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
    const reBullet = /^\s{0,3}[-*+]\s+(.*)$/;
    const reOrdered = /^\s{0,3}(\d{1,9})[.)]\s+(.*)$/;
    const reRule = /^\s{0,3}([-*_])(\s*\1){2,}\s*$/;
    const reSep = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;
    const blank = (l) => /^\s*$/.test(l);
    const isTableStart = (i) => i + 1 < lines.length && lines[i].includes('|') &&
      lines[i + 1].includes('|') && reSep.test(lines[i + 1]);
    const startsBlock = (i) => reFence.test(lines[i]) || reHeading.test(lines[i]) || reBullet.test(lines[i]) ||
      reOrdered.test(lines[i]) || reRule.test(lines[i]) || isTableStart(i);
    const numeric = /^[-+]?(\d[\d,]*(\.\d+)?|\.\d+)(e[-+]?\d+)?\s*%?$/i;

    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      let m;
      if (blank(line)) { i += 1; continue; }
      if ((m = reFence.exec(line))) {
        const marker = m[1];
        const lang = m[2];
        const body = [];
        i += 1;
        while (i < lines.length && !(lines[i].trim().startsWith(marker) && lines[i].trim().replace(/[`~]/g, '') === '')) {
          body.push(lines[i]);
          i += 1;
        }
        i += 1;
        out.push(`<pre class="md-code"><code${lang ? ` data-lang="${esc(lang)}"` : ''}>${esc(body.join('\n'))}</code></pre>`);
        continue;
      }
      if ((m = reHeading.exec(line))) {
        const level = Math.min(6, m[1].length + 2); // the page has h1/h2 already
        out.push(`<h${level} class="md-h${m[1].length}">${renderInline(m[2])}</h${level}>`);
        i += 1;
        continue;
      }
      if (reRule.test(line)) { out.push('<hr>'); i += 1; continue; }
      if (isTableStart(i)) {
        const head = splitTableRow(line);
        const aligns = splitTableRow(lines[i + 1]).map((c) => {
          const l = c.startsWith(':');
          const r = c.endsWith(':');
          return l && r ? 'center' : r ? 'right' : l ? 'left' : '';
        });
        i += 2;
        const body = [];
        while (i < lines.length && !blank(lines[i]) && lines[i].includes('|')) {
          body.push(splitTableRow(lines[i]));
          i += 1;
        }
        const cls = (k, text) => {
          const c = [];
          if (aligns[k]) c.push(`al-${aligns[k]}`);
          else if (text !== undefined && numeric.test(text)) c.push('num');
          return c.length ? ` class="${c.join(' ')}"` : '';
        };
        let html = '<div class="table-scroll"><table class="md-table"><thead><tr>';
        head.forEach((c, k) => { html += `<th${cls(k)}>${renderInline(c)}</th>`; });
        html += '</tr></thead><tbody>';
        for (const row of body) {
          html += '<tr>';
          for (let k = 0; k < head.length; k += 1) {
            const c = row[k] ?? '';
            html += `<td${cls(k, c)}>${renderInline(c)}</td>`;
          }
          html += '</tr>';
        }
        out.push(`${html}</tbody></table></div>`);
        continue;
      }
      const bullet = reBullet.test(line);
      if (bullet || reOrdered.test(line)) {
        const re = bullet ? reBullet : reOrdered;
        const items = [];
        let start = 1;
        if (!bullet) start = Number(reOrdered.exec(line)[1]);
        while (i < lines.length) {
          const l = lines[i];
          const mm = re.exec(l);
          if (mm) { items.push(bullet ? mm[1] : mm[2]); i += 1; continue; }
          if (blank(l)) {
            // a blank line ends the list unless the next line continues it
            if (i + 1 < lines.length && re.test(lines[i + 1])) { i += 1; continue; }
            break;
          }
          if (/^\s{2,}\S/.test(l) && items.length && !startsBlock(i)) { items[items.length - 1] += `\n${l.trim()}`; i += 1; continue; }
          break;
        }
        const tag = bullet ? 'ul' : 'ol';
        const startAttr = !bullet && start !== 1 ? ` start="${start}"` : '';
        out.push(`<${tag}${startAttr}>${items.map((it) => `<li>${renderInline(it)}</li>`).join('')}</${tag}>`);
        continue;
      }
      const para = [];
      while (i < lines.length && !blank(lines[i]) && (para.length === 0 || !startsBlock(i))) {
        para.push(lines[i]);
        i += 1;
      }
      out.push(`<p>${renderInline(para.join('\n'))}</p>`);
    }
    return out.join('\n');
  }

  // ------------------------------------------------------------------
  // Page: compare

  function niceTicks(lo, hi, count = 5) {
    if (!Number.isFinite(lo) || !Number.isFinite(hi)) { lo = 0; hi = 1; }
    if (hi - lo < 1e-12) { const d = Math.abs(lo) * 0.1 || 1; lo -= d; hi += d; }
    const raw = (hi - lo) / count;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const f = raw / mag;
    const step = (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
    const start = Math.floor(lo / step + 1e-9) * step;
    const end = Math.ceil(hi / step - 1e-9) * step;
    const ticks = [];
    for (let v = start; v <= end + step * 1e-6; v += step) ticks.push(Number(v.toPrecision(12)));
    return { lo: start, hi: end, ticks, step };
  }

  function tickLabel(v, step) {
    const digits = Math.max(0, Math.min(6, -Math.floor(Math.log10(step) + 1e-9)));
    return v.toFixed(digits);
  }

  // One colour per algorithm, in order of first appearance.
  const PALETTE = ['#1f6feb', '#d9480f', '#2f9e44', '#9c36b5', '#c92a2a', '#1098ad', '#e67700', '#5c7cfa'];

  // The points no other point beats on both axes (smaller and lower), by x:
  // the sizes at which nothing gives a lower value.
  function paretoFront(points) {
    const sorted = [...points].sort((a, b) => a.x - b.x || a.y - b.y);
    const front = [];
    for (const p of sorted) if (!front.length || p.y < front[front.length - 1].y) front.push(p);
    return front;
  }

  // points: [{x, y, label, original, group}]; group picks the colour
  function scatterChart(points, { xTitle, yTitle, title }) {
    const W = 760;
    const H = 400;
    const m = { l: 70, r: 30, t: 34, b: 56 };
    const xs = points.map((p) => p.x);
    const ys = points.map((p) => p.y);
    const xMax = Math.max(...xs);
    const xr = niceTicks(0, xMax * 1.08);
    const yLo = Math.min(...ys);
    const yHi = Math.max(...ys);
    const pad = (yHi - yLo) * 0.12 || Math.abs(yHi) * 0.05 || 1;
    const yr = niceTicks(yLo - pad, yHi + pad);
    const px = (x) => m.l + ((x - xr.lo) / (xr.hi - xr.lo)) * (W - m.l - m.r);
    const py = (y) => H - m.b - ((y - yr.lo) / (yr.hi - yr.lo)) * (H - m.t - m.b);

    const svg = svgEl('svg', {
      class: 'chart', testid: 'compare-chart', viewBox: `0 0 ${W} ${H}`, width: W, height: H,
      role: 'img', 'aria-label': title,
    });
    svg.append(svgEl('text', { x: m.l, y: 18, class: 'chart-title' }, title));
    const grid = svgEl('g', { class: 'grid-lines' });
    const axes = svgEl('g', { class: 'axes' });
    for (const t of xr.ticks) {
      const x = px(t);
      grid.append(svgEl('line', { x1: x, x2: x, y1: m.t, y2: H - m.b }));
      axes.append(svgEl('line', { x1: x, x2: x, y1: H - m.b, y2: H - m.b + 5 }));
      axes.append(svgEl('text', { x, y: H - m.b + 18, 'text-anchor': 'middle', class: 'tick' }, tickLabel(t, xr.step)));
    }
    for (const t of yr.ticks) {
      const y = py(t);
      grid.append(svgEl('line', { x1: m.l, x2: W - m.r, y1: y, y2: y }));
      axes.append(svgEl('line', { x1: m.l - 5, x2: m.l, y1: y, y2: y }));
      axes.append(svgEl('text', { x: m.l - 8, y: y + 4, 'text-anchor': 'end', class: 'tick' }, tickLabel(t, yr.step)));
    }
    axes.append(svgEl('line', { x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b, class: 'axis' }));
    axes.append(svgEl('line', { x1: m.l, x2: m.l, y1: m.t, y2: H - m.b, class: 'axis' }));
    axes.append(svgEl('text', { x: (m.l + W - m.r) / 2, y: H - 12, 'text-anchor': 'middle', class: 'axis-title' }, xTitle));
    axes.append(svgEl('text', {
      x: 0, y: 0, transform: `translate(18 ${(m.t + H - m.b) / 2}) rotate(-90)`, 'text-anchor': 'middle', class: 'axis-title',
    }, yTitle));
    svg.append(grid, axes);

    // the Pareto front, under the points
    const front = paretoFront(points);
    const onFront = new Set(front);
    if (front.length > 1) {
      svg.append(svgEl('polyline', {
        class: 'pareto', testid: 'pareto-front',
        points: front.map((p) => `${px(p.x)},${py(p.y)}`).join(' '),
      }));
    }
    const groups = [...new Set(points.filter((p) => !p.original).map((p) => p.group || ''))];
    const colour = (p) => PALETTE[groups.indexOf(p.group || '') % PALETTE.length];
    if (groups.length) {
      const legend = svgEl('g', { class: 'legend', testid: 'chart-legend' });
      groups.forEach((g, k) => {
        const x = W - m.r - 150;
        const y = m.t + 4 + k * 16;
        legend.append(svgEl('circle', { cx: x, cy: y, r: 5, fill: PALETTE[k % PALETTE.length] }),
          svgEl('text', { x: x + 10, y: y + 4, class: 'tick' }, g || '?'));
      });
      legend.append(svgEl('line', { x1: W - m.r - 155, x2: W - m.r - 145, y1: m.t + 4 + groups.length * 16,
        y2: m.t + 4 + groups.length * 16, class: 'pareto' }),
      svgEl('text', { x: W - m.r - 140, y: m.t + 8 + groups.length * 16, class: 'tick' }, 'Pareto front'));
      svg.append(legend);
    }

    // labels: placed right of the point (left near the right edge), nudged
    // down until they do not overlap a label already placed
    const placed = [];
    const overlaps = (b) => placed.some((o) => b.x1 < o.x2 && b.x2 > o.x1 && b.y1 < o.y2 && b.y2 > o.y1);
    const dots = svgEl('g', { class: 'points' });
    const sorted = points.map((p, k) => ({ ...p, k })).sort((a, b) => py(a.y) - py(b.y));
    for (const p of sorted) {
      const x = px(p.x);
      const y = py(p.y);
      const text = p.label;
      const w = text.length * 6.6 + 4;
      const right = x + 9 + w < W - 4;
      let ly = y + 4;
      let box;
      for (let tries = 0; tries < 8; tries += 1) {
        box = right ? { x1: x + 8, x2: x + 8 + w, y1: ly - 11, y2: ly + 3 } : { x1: x - 8 - w, x2: x - 8, y1: ly - 11, y2: ly + 3 };
        if (!overlaps(box)) break;
        ly += 14;
      }
      placed.push(box);
      const isFront = onFront.has(points[p.k]);
      const g = svgEl('g', {
        class: `${p.original ? 'pt original' : 'pt'}${isFront ? ' front' : ''}`, testid: 'chart-point',
        dataset: { label: p.label, group: p.group || '', front: isFront ? '1' : '0' },
      },
        svgEl('title', null, `${p.label}: ${fmtNum(p.y)} at ${fmtNum(p.x)} MiB${isFront ? ' (on the Pareto front)' : ''}`),
        p.original
          ? svgEl('rect', { x: x - 5, y: y - 5, width: 10, height: 10 })
          : svgEl('circle', { cx: x, cy: y, r: 5.5, style: `fill: ${colour(p)}` }),
        svgEl('text', { x: right ? x + 9 : x - 9, y: ly, 'text-anchor': right ? 'start' : 'end', class: 'pt-label' }, text));
      dots.append(g);
    }
    svg.append(dots);
    return svg;
  }

  function pageCompare(root, ctx, params) {
    document.title = 'qjobs · compare';
    let ids = (params.get('ids') || '').split(',').map((s) => s.trim()).filter(Boolean);
    let seq = 0;
    const pickerBody = el('div', null, el('p', { class: 'muted' }, 'Loading jobs…'));
    const result = el('div', { testid: 'compare-result' });
    replaceChildren(root,
      el('div', { class: 'toolbar' }, el('h1', null, 'Compare'), el('span', { class: 'spacer' }),
        el('a', { class: 'btn', href: '#/' }, 'Jobs')),
      card('Jobs to compare', 'compare-picker', pickerBody),
      result);

    function setIds(next) {
      ids = next;
      history.replaceState(null, '', `#/compare${ids.length ? `?ids=${ids.map(encodeURIComponent).join(',')}` : ''}`);
      loadCompare();
    }

    async function loadPicker() {
      let jobs;
      try {
        jobs = (await api('/jobs?limit=100')).jobs || [];
      } catch (e) {
        replaceChildren(pickerBody, notice(e.status === 401 ? 'warn' : 'error', errorText(e)));
        return;
      }
      if (!ctx.alive) return;
      const rank = (j) => (j.state === 'SUCCEEDED' ? 0 : 1);
      jobs.sort((a, b) => rank(a) - rank(b) || (b.created_at || 0) - (a.created_at || 0));
      // A name in ?ids= means that name's newest succeeded job (else its
      // newest), as GET /compare reads it: its own row is checked, not a
      // blank one added for the name.
      const known = new Set(jobs.map((j) => j.id));
      const byName = (name) => jobs.find((j) => j.name === name && j.state === 'SUCCEEDED')
        || jobs.find((j) => j.name === name);
      const resolved = [...new Set(ids.map((id) => (known.has(id) ? id : (byName(id) || { id }).id)))];
      if (resolved.join(',') !== ids.join(',')) setIds(resolved);
      const extra = ids.filter((id) => !known.has(id));
      const row = (id, job) => {
        const cb = el('input', { type: 'checkbox', testid: 'pick', dataset: { id }, 'aria-label': `compare ${id}` });
        cb.checked = ids.includes(id);
        cb.addEventListener('change', () => {
          const set = new Set(ids);
          if (cb.checked) set.add(id); else set.delete(id);
          // keep the picker's order so columns stay put
          const order = [...pickerBody.querySelectorAll('input[data-testid="pick"]')].map((c) => c.dataset.id);
          setIds(order.filter((x) => set.has(x)));
        });
        return el('tr', { testid: 'pick-row', dataset: { id, state: job ? job.state : '' } },
          el('td', { class: 'sel' }, cb),
          el('td', null, job ? stateBadge(job.state) : ''),
          el('td', null, job ? (job.name || '—') : ''),
          el('td', null, el('a', { href: jobHref(id), class: 'mono' }, id)),
          el('td', null, job ? job.algorithm : ''),
          el('td', null, job ? job.model : ''),
          el('td', { class: 'nowrap' }, job ? fmtAge(job.created_at) : ''));
      };
      if (!jobs.length && !extra.length) {
        replaceChildren(pickerBody, el('p', { class: 'muted' }, 'No jobs yet.'));
        return;
      }
      replaceChildren(pickerBody, el('div', { class: 'table-scroll picker' },
        el('table', { class: 'grid' },
          el('thead', null, el('tr', null, el('th', { class: 'sel' }), el('th', null, 'State'), el('th', null, 'Name'),
            el('th', null, 'ID'), el('th', null, 'Algorithm'), el('th', null, 'Model'), el('th', null, 'Age'))),
          el('tbody', null, extra.map((id) => row(id, null)), jobs.map((j) => row(j.id, j))))));
    }

    async function loadCompare() {
      const mine = ++seq;
      if (!ids.length) {
        replaceChildren(result, el('p', { class: 'muted' }, 'Pick jobs above to compare their results.'));
        return;
      }
      replaceChildren(result, el('p', { class: 'muted' }, 'Loading…'));
      let data;
      try {
        data = await api(`/compare?ids=${ids.map(encodeURIComponent).join(',')}`);
      } catch (e) {
        if (mine === seq) replaceChildren(result, notice(e.status === 401 ? 'warn' : 'error', errorText(e)));
        return;
      }
      if (mine !== seq || !ctx.alive) return;
      renderCompare(data);
    }

    function renderCompare(data) {
      const columns = Array.isArray(data.columns) ? data.columns : [];
      const tables = Array.isArray(data.tables) ? data.tables : [];
      const sizes = data.original_size_mib || {};
      const notes = Array.isArray(data.notes) ? data.notes : [];
      const parts = [];
      if (!tables.length) parts.push(notice('warn', 'These jobs have no comparable numbers (no shared model, task and protocol).'));

      for (const t of tables) {
        const values = Array.isArray(t.values) ? t.values : [];
        const lowerBetter = /ppl|perplex|loss|err/i.test(t.metric || '');
        const present = values.filter((v) => typeof v === 'number');
        const best = present.length ? (lowerBetter ? Math.min(...present) : Math.max(...present)) : null;
        const orig = typeof t.original === 'number' ? t.original : null;
        const cached = Array.isArray(t.cached) ? t.cached : [];
        const star = (on) => (on ? el('span', { class: 'cached', title: 'reused from the baseline cache' }, '*') : null);
        const cell = (v, isBest, isCached) => {
          if (typeof v !== 'number') return el('td', { class: 'num muted' }, '—');
          const delta = orig !== null && orig !== 0 ? ` (${v >= orig ? '+' : ''}${(100 * (v / orig - 1)).toFixed(1)}%)` : '';
          return el('td', { class: `num${isBest ? ' best' : ''}` }, fmtNum(v), star(isCached), el('span', { class: 'delta' }, delta));
        };
        const origSize = typeof sizes[t.model] === 'number' ? sizes[t.model] : null;
        const caption = [t.model, t.task, t.protocol].filter(Boolean).join(' · ');
        parts.push(el('section', { class: 'card' },
          el('div', { class: 'table-scroll' },
            el('table', { class: 'grid compare', testid: 'compare-table', dataset: { metric: t.metric || '', task: t.task || '' } },
              el('caption', null, caption),
              el('thead', null, el('tr', null,
                el('th', null, ''),
                el('th', { class: 'num' }, 'original'),
                columns.map((c) => el('th', { class: 'num', testid: 'compare-column', dataset: { id: c.id } },
                  el('a', { href: jobHref(c.id) }, c.label || c.name || c.id),
                  el('div', { class: 'sub' }, [c.name, c.state].filter(Boolean).join(' · ')))))),
              el('tbody', null,
                el('tr', null, el('th', null, t.metric || 'value'),
                  el('td', { class: 'num' }, orig === null ? '—' : fmtNum(orig), star(orig !== null && t.original_cached === true)),
                  columns.map((c, k) => cell(values[k], values[k] === best && present.length > 1, cached[k] === true))),
                el('tr', { class: 'size-row' }, el('th', null, 'size on disk (MiB)'),
                  el('td', { class: 'num' }, origSize === null ? '—' : fmtNum(origSize)),
                  columns.map((c) => (c.model === t.model && typeof c.size_mib === 'number'
                    ? el('td', { class: 'num' }, fmtNum(c.size_mib))
                    : el('td', { class: 'num muted' }, '—')))),
                columns.some((c) => typeof c.quantize_s === 'number')
                  ? el('tr', { class: 'size-row' }, el('th', null, 'quantize time (s)'), el('td', { class: 'num muted' }, '—'),
                    columns.map((c) => el('td', { class: 'num' }, typeof c.quantize_s === 'number' ? c.quantize_s.toFixed(2) : '—')))
                  : null)))));
      }

      // What each job did, side by side: the recorded scheme, then every
      // key its spec set; a row whose values differ is marked.
      const keys = [];
      const settingsOf = (c) => new Map(Array.isArray(c.settings) ? c.settings : []);
      for (const c of columns) for (const k of settingsOf(c).keys()) if (!keys.includes(k)) keys.push(k);
      if (keys.length) {
        parts.push(el('section', { class: 'card' }, el('h2', null, 'Settings'),
          el('div', { class: 'table-scroll' },
            el('table', { class: 'grid compare', testid: 'settings-table' },
              el('thead', null, el('tr', null, el('th', null, ''),
                columns.map((c) => el('th', null, el('a', { href: jobHref(c.id) }, c.label || c.name || c.id))))),
              el('tbody', null, keys.map((k) => {
                const vals = columns.map((c) => (settingsOf(c).has(k) ? String(settingsOf(c).get(k)) : '—'));
                const differ = new Set(vals).size > 1;
                return el('tr', { testid: 'setting-row', dataset: { key: k, differ: differ ? '1' : '0' }, class: differ ? 'differ' : '' },
                  el('th', null, k), vals.map((v) => el('td', { class: 'mono' }, v)));
              }))))));
      }

      const pplTable = tables.find((t) => t.metric === 'ppl');
      if (pplTable) {
        const pts = [];
        const os = sizes[pplTable.model];
        if (typeof pplTable.original === 'number' && typeof os === 'number') {
          pts.push({ x: os, y: pplTable.original, label: 'original', original: true });
        }
        columns.forEach((c, k) => {
          const v = (pplTable.values || [])[k];
          if (typeof v === 'number' && typeof c.size_mib === 'number') {
            pts.push({ x: c.size_mib, y: v, label: c.label || c.name || c.id, group: c.algorithm || '' });
          }
        });
        if (pts.length) {
          parts.push(el('section', { class: 'card chart-card' },
            el('h2', null, 'Perplexity against size on disk'),
            scatterChart(pts, {
              title: [pplTable.model, pplTable.task].filter(Boolean).join(' · '),
              xTitle: 'size on disk (MiB)',
              yTitle: `perplexity${pplTable.task ? ` (${pplTable.task})` : ''} — lower is better`,
            })));
        }
      }
      if (notes.length) {
        parts.push(card('Notes', 'compare-notes', el('ul', null, notes.map((n) => el('li', null, String(n))))));
      }
      replaceChildren(result, parts);
    }

    loadPicker();
    loadCompare();
  }

  // ------------------------------------------------------------------
  // Page: submit

  function pageSubmit(root, ctx) {
    document.title = 'qjobs · submit';
    const LINE_H = 20; // must match .editor line-height in style.css
    const PAD_T = 8;   // must match .editor padding-top
    let badLines = new Set();
    let currentLine = 0;
    let checkSeq = 0;
    let timer = null;
    ctx.onDispose(() => clearTimeout(timer));

    const ta = el('textarea', {
      id: 'spec-editor', testid: 'spec-editor', spellcheck: 'false', wrap: 'off', autocomplete: 'off',
      autocapitalize: 'off', 'aria-label': 'job spec (YAML)',
    });
    const saved = localStorage.getItem(DRAFT_KEY);
    ta.value = saved !== null ? saved : DEMO_SPEC;
    const gutter = el('div', { class: 'gutter', 'aria-hidden': 'true', testid: 'gutter' });
    const marks = el('div', { class: 'line-marks', 'aria-hidden': 'true' });
    const cursorPos = el('span', { class: 'muted mono', testid: 'cursor-pos' });
    const fileInput = el('input', { type: 'file', accept: '.yaml,.yml,application/yaml,text/yaml,text/plain', testid: 'spec-file', id: 'spec-file' });
    const template = el('select', { testid: 'template', 'aria-label': 'template' },
      el('option', { value: '' }, 'Template…'), el('option', { value: '@demo' }, 'Demo: RTN W4 g32 on examples/kjv-llama'));
    const checkBtn = el('button', { class: 'btn', testid: 'check' }, 'Check');
    const submitBtn = el('button', { class: 'btn primary', testid: 'submit' }, 'Submit');
    const status = el('div', { class: 'check-status', testid: 'check-status' });
    const warnings = el('ul', { class: 'warnings', testid: 'warnings' });
    const problems = el('ul', { class: 'problems', testid: 'problems' });
    // What the job will cost, from the dry run (spec/estimate.hpp).
    const estimate = el('div', { class: 'estimate', testid: 'estimate' });
    let algorithms = [];
    // The evaluation tasks' keys, from their rows (GET /eval-tasks), so the
    // help never disagrees with what the check accepts.
    const taskHelp = el('details', { class: 'card task-help', testid: 'eval-task-help' },
      el('summary', null, 'Evaluation tasks: what each eval.tasks[].type reads, reports and takes'));

    replaceChildren(root,
      el('div', { class: 'toolbar' }, el('h1', null, 'Submit a job'), el('span', { class: 'spacer' }),
        template,
        el('label', { class: 'btn file-btn', for: 'spec-file' }, 'Open .yaml…'), fileInput),
      el('section', { class: 'card' },
        el('div', { class: 'editor' }, gutter, el('div', { class: 'editor-main' }, marks, ta)),
        el('div', { class: 'editor-foot' }, cursorPos, el('span', { class: 'spacer' }),
          el('span', { class: 'muted small' }, 'checked automatically as you type'), checkBtn, submitBtn),
        status, estimate, problems, warnings),
      taskHelp);

    function lineCount() { return ta.value.split('\n').length; }

    function renderGutter() {
      const n = lineCount();
      if (gutter.childElementCount !== n) {
        const frag = document.createDocumentFragment();
        for (let k = gutter.childElementCount; k < n; k += 1) frag.append(el('div', { dataset: { line: k + 1 } }, String(k + 1)));
        gutter.append(frag);
        while (gutter.childElementCount > n) gutter.lastElementChild.remove();
      }
      for (const d of gutter.children) {
        const ln = Number(d.dataset.line);
        d.classList.toggle('bad', badLines.has(ln));
        d.classList.toggle('current', ln === currentLine);
      }
      clear(marks);
      for (const ln of badLines) {
        marks.append(el('div', { class: `mark${ln === currentLine ? ' current' : ''}`, dataset: { line: ln } }));
      }
      for (const m of marks.children) m.style.top = `${PAD_T + (Number(m.dataset.line) - 1) * LINE_H}px`;
      syncScroll();
    }

    function syncScroll() {
      gutter.scrollTop = ta.scrollTop;
      marks.style.transform = `translateY(${-ta.scrollTop}px)`;
    }

    function updateCursor() {
      const before = ta.value.slice(0, ta.selectionStart);
      const line = before.split('\n').length;
      const col = before.length - before.lastIndexOf('\n');
      setText(cursorPos, `Ln ${line}, Col ${col}`);
      cursorPos.dataset.line = String(line);
      cursorPos.dataset.column = String(col);
    }

    function gotoProblem(line, column, path) {
      const lines = ta.value.split('\n');
      let ln = Number(line) || 0;
      if (ln < 1 && path) {
        // no position from the server: look for the last key of the path
        const key = String(path).split('.').pop().replace(/\[\d+\]$/, '');
        const k = lines.findIndex((l) => new RegExp(`^\\s*-?\\s*["']?${key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}["']?\\s*:`).test(l));
        if (k >= 0) ln = k + 1;
      }
      if (ln < 1) return;
      ln = Math.min(ln, lines.length);
      const col = Math.max(1, Math.min(Number(column) || 1, lines[ln - 1].length + 1));
      let offset = 0;
      for (let k = 0; k < ln - 1; k += 1) offset += lines[k].length + 1;
      offset += col - 1;
      ta.focus();
      ta.setSelectionRange(offset, offset);
      const top = PAD_T + (ln - 1) * LINE_H;
      if (top < ta.scrollTop || top + LINE_H > ta.scrollTop + ta.clientHeight) {
        ta.scrollTop = Math.max(0, top - ta.clientHeight / 2);
      }
      currentLine = ln;
      renderGutter();
      updateCursor();
    }

    function showWarnings(list) {
      replaceChildren(warnings, (list || []).map((w) => el('li', { testid: 'warning' }, String(w))));
    }

    function showProblems(details, message) {
      const list = details && details.length ? details : [{ path: '', line: 0, column: 0, message }];
      badLines = new Set(list.map((d) => Number(d.line) || 0).filter((n) => n > 0));
      currentLine = 0;
      setText(status, `${list.length} problem${list.length === 1 ? '' : 's'}`);
      status.dataset.state = 'invalid';
      submitBtn.disabled = true;
      submitBtn.title = 'fix the problems listed first';
      showWarnings([]);
      replaceChildren(problems, list.map((d) => {
        const where = d.line ? `${d.line}:${d.column || 0}` : '';
        const li = el('li', {
          testid: 'problem', tabindex: '0', role: 'button',
          dataset: { path: d.path || '', line: d.line || 0, column: d.column || 0 },
          title: d.line ? 'go to this line' : '',
        },
        el('span', { class: 'p-path mono' }, d.path || '(spec)'), ' ',
        el('span', { class: 'p-where mono' }, where), ' ',
        el('span', { class: 'p-msg' }, d.message || ''));
        const go = () => gotoProblem(d.line, d.column, d.path);
        li.addEventListener('click', go);
        li.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); go(); } });
        return li;
      }));
      renderGutter();
    }

    function showEstimate(e) {
      delete estimate.dataset.stale;
      if (!e) { clear(estimate); return; }
      const r = e.rates || {};
      const figure = (label, value, testid) =>
        el('span', { class: 'figure', testid }, el('span', { class: 'muted' }, label), ' ', value);
      const time = e.seconds === null || e.seconds === undefined
        ? figure('time', 'not estimated', 'estimate-time')
        : figure('time', `${fmtDuration(e.seconds)} on ${r.device || '?'}`, 'estimate-time');
      replaceChildren(estimate,
        el('div', { class: 'figures' },
          el('strong', null, 'Estimate'), time,
          figure('host memory', fmtBytes(e.host_bytes), 'estimate-host'),
          e.device_bytes > 0 ? figure('device memory', fmtBytes(e.device_bytes), 'estimate-device') : null,
          figure('disk', `${fmtBytes(e.disk_bytes)} (output ${fmtBytes(e.output_bytes)} of ${fmtBytes(e.original_bytes)})`,
            'estimate-disk')),
        r.gemm_gflops ? el('div', { class: 'muted small' },
          `From the model's shapes and the rates measured on ${r.device}: float32 GEMM ${Math.round(r.gemm_gflops)} GFLOP/s.`) : null,
        (e.notes || []).length
          ? el('ul', { class: 'muted small', testid: 'estimate-notes' }, e.notes.map((n) => el('li', null, String(n))))
          : null);
    }

    function showValid(list) {
      badLines = new Set();
      currentLine = 0;
      const n = (list || []).length;
      setText(status, n ? `valid, ${n} warning${n === 1 ? '' : 's'}` : 'valid');
      status.dataset.state = 'valid';
      submitBtn.disabled = false;
      submitBtn.title = '';
      clear(problems);
      showWarnings(list);
      renderGutter();
    }

    function showFailure(e) {
      setText(status, errorText(e));
      status.dataset.state = 'error';
      submitBtn.disabled = false; // the check could not run: the server decides
    }

    async function check() {
      clearTimeout(timer);
      const text = ta.value;
      const mine = ++checkSeq;
      if (!text.trim()) {
        setText(status, 'empty');
        status.dataset.state = '';
        clear(problems); showWarnings([]); showEstimate(null); badLines = new Set(); renderGutter();
        submitBtn.disabled = true;
        return;
      }
      status.dataset.state = 'checking';
      setText(status, 'checking…');
      estimate.dataset.stale = 'true'; // the figures are the last text's until this check answers
      try {
        const r = await api('/jobs?dry_run=1', { method: 'POST', body: text, headers: { 'Content-Type': 'application/yaml' } });
        if (mine !== checkSeq || !ctx.alive) return;
        showValid(r.warnings);
        showEstimate(r.estimate);
      } catch (e) {
        if (mine !== checkSeq || !ctx.alive) return;
        showEstimate(null);
        if (e.status === 400 || e.status === 413) showProblems(e.details, e.message);
        else showFailure(e);
      }
    }

    async function submit() {
      clearTimeout(timer);
      const text = ta.value;
      checkSeq += 1; // a pending check's answer no longer matters
      submitBtn.disabled = true;
      status.dataset.state = 'checking';
      setText(status, 'submitting…');
      try {
        const r = await api('/jobs', { method: 'POST', body: text, headers: { 'Content-Type': 'application/yaml' } });
        flash = { id: r.id, warnings: r.warnings || [] };
        location.hash = jobHref(r.id);
      } catch (e) {
        if (!ctx.alive) return;
        if (e.status === 400 || e.status === 413) showProblems(e.details, e.message);
        else showFailure(e);
      } finally {
        submitBtn.disabled = status.dataset.state === 'invalid';
      }
    }

    function scheduleCheck() {
      clearTimeout(timer);
      estimate.dataset.stale = 'true';
      timer = setTimeout(() => {
        try { localStorage.setItem(DRAFT_KEY, ta.value); } catch (_) { /* storage full or disabled */ }
        check();
      }, 600);
    }

    ta.addEventListener('input', () => { renderGutter(); updateCursor(); scheduleCheck(); });
    ta.addEventListener('scroll', syncScroll);
    for (const ev of ['keyup', 'click', 'select', 'focus']) ta.addEventListener(ev, updateCursor);
    ta.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); check(); }
    });
    checkBtn.addEventListener('click', check);
    submitBtn.addEventListener('click', submit);
    fileInput.addEventListener('change', async () => {
      const f = fileInput.files && fileInput.files[0];
      if (!f) return;
      ta.value = await f.text();
      fileInput.value = '';
      ta.scrollTop = 0;
      renderGutter(); updateCursor(); scheduleCheck();
    });
    template.addEventListener('change', () => {
      const v = template.value;
      template.value = '';
      if (!v) return;
      // The server's template is `jobctl init`'s (spec/catalog_docs): one
      // implementation, and it validates as printed.
      // A shipped recipe (configs/recipes/) comes as its file has it.
      const load = v === '@demo' ? Promise.resolve(DEMO_SPEC)
        : v.startsWith('recipe:') ? api(`/recipes/${encodeURIComponent(v.slice(7))}`, { as: 'text' })
          : api(`/algorithms/${encodeURIComponent(v)}/template`, { as: 'text' });
      load.then((text) => {
        if (!ctx.alive) return;
        if (ta.value.trim() && ta.value !== text && !window.confirm('Replace the text in the editor with this template?')) return;
        ta.value = text;
        renderGutter(); updateCursor(); scheduleCheck();
      }).catch((e) => showProblems([{ path: 'template', line: 0, column: 0, message: e.message }]));
    });

    // Recipes first, then one template per algorithm; both lists are optional.
    const recipeGroup = el('optgroup', { label: 'Recipes (configs/recipes)', testid: 'template-recipes' });
    const algorithmGroup = el('optgroup', { label: 'Algorithms' });
    template.append(recipeGroup, algorithmGroup);
    api('/recipes').then((data) => {
      if (!ctx.alive) return;
      for (const r of (data.recipes || []).filter((x) => x && x.name)) {
        recipeGroup.append(el('option', { value: `recipe:${r.name}`, title: r.title || '' },
          `${r.name}${r.algorithm ? ` (${r.algorithm})` : ''}`));
      }
    }).catch(() => { /* the template list is optional */ });
    api('/algorithms').then((data) => {
      if (!ctx.alive) return;
      algorithms = (data.algorithms || []).filter((a) => a && a.name);
      algorithmGroup.append(...algorithms.map((a) => el('option', { value: a.name, disabled: a.available === false }, `${a.name}${a.available === false ? ' (unavailable)' : ''}`)));
    }).catch(() => { /* the template list is optional */ });

    api('/eval-tasks').then((data) => {
      if (!ctx.alive) return;
      const cell = (v) => (v === null || v === undefined ? '' : typeof v === 'string' ? v : JSON.stringify(v));
      for (const t of data.eval_tasks || []) {
        taskHelp.append(
          el('h3', { testid: 'eval-task-type' }, el('code', null, `type: ${t.type}`), ` · ${t.description}`),
          el('p', { class: 'muted small' }, `Reads: ${t.data}. Reports: ${(t.metrics || []).join(', ')}. ${t.protocol}.`),
          el('table', { class: 'keys' },
            el('thead', null, el('tr', null, ['key', 'type', 'default', 'meaning'].map((h) => el('th', null, h)))),
            el('tbody', null, (t.keys || []).map((k) => el('tr', null,
              el('td', null, el('code', null, k.name)), el('td', null, k.type), el('td', null, cell(k.default)),
              el('td', null, k.description))))));
      }
    }).catch(() => { /* the help is optional */ });

    renderGutter();
    updateCursor();
    check();
  }

  // ------------------------------------------------------------------
  // Router

  let page = null;

  function route() {
    if (page) page.dispose();
    page = makeContext();
    const root = document.getElementById('app');
    const raw = location.hash.replace(/^#/, '') || '/';
    const qi = raw.indexOf('?');
    const path = qi >= 0 ? raw.slice(0, qi) : raw;
    const params = new URLSearchParams(qi >= 0 ? raw.slice(qi + 1) : '');
    let nav = '';
    let m;
    try {
      if (path === '/' || path === '') { nav = 'list'; pageList(root, page, params); }
      else if ((m = /^\/jobs\/(.+)$/.exec(path))) { nav = 'list'; pageJob(root, page, decodeURIComponent(m[1])); }
      else if (path === '/compare') { nav = 'compare'; pageCompare(root, page, params); }
      else if (path === '/submit') { nav = 'submit'; pageSubmit(root, page, params); }
      else {
        document.title = 'qjobs';
        replaceChildren(root, notice('error', `No page ${path}. `, el('a', { href: '#/' }, 'Go to the job list.')));
      }
    } catch (e) {
      replaceChildren(root, notice('error', `This page failed: ${e.message}`));
      console.error(e);
    }
    for (const a of document.querySelectorAll('.nav a')) {
      if (a.dataset.nav === nav) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
  }

  window.addEventListener('hashchange', route);
  route();
})();
