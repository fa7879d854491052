// Page: one job (#/jobs/<id or name>): header and progress, metrics, the
// report (markdown), artifacts, log, events and the spec.
import { clear, el, replaceChildren, setText } from './dom.js';
import {
  CANCELLABLE, TERMINAL, etaText, fmtAge, fmtBytes, fmtClock, fmtDuration, fmtTime, fmtValue, jobApi, jobDuration,
} from './format.js';
import { api, artifactBlobUrl, downloadArtifact, errorText } from './api.js';
import { card, notice, poller, progressBar, stateBadge, updateBadge, updateProgress } from './widgets.js';
import { renderMarkdown } from './markdown.js';

let flash = null; // {id, warnings}: shown once on the job page after a submission
export function setFlash(f) { flash = f; }

export function pageJob(root, ctx, idParam) {
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
