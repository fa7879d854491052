// Page: the job list (#/, #/?state=&name=), polled, rows updated in place.
import { appendAll, clear, el, replaceChildren, setText } from './dom.js';
import { STATES, fmtAge, fmtDuration, fmtTime, jobDuration, jobHref } from './format.js';
import { api, errorText } from './api.js';
import { card, notice, poller, progressBar, stateBadge, updateBadge, updateProgress } from './widgets.js';

export function pageList(root, ctx, params) {
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
