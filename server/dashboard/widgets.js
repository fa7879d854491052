// What every page uses: its lifetime (timers that stop when the page is
// left), the poller, state badges, progress bars, notices and cards.
import { el, setText } from './dom.js';
import { TERMINAL, etaText, progressPercent } from './format.js';

const POLL_MS = 1500;

// Page lifecycle: each page gets a context whose timers stop when the
// page is left.

export function makeContext() {
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
export function poller(ctx, fn, ms = POLL_MS) {
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

export function stateBadge(state, testid) {
  const b = el('span', { class: 'badge', testid: testid || 'state-badge' });
  updateBadge(b, state);
  return b;
}

export function updateBadge(b, state) {
  if (b.dataset.state !== state) b.dataset.state = state || '';
  setText(b, state || '?');
}

export function progressBar() {
  const fill = el('div', { class: 'progress-fill' });
  const label = el('span', { class: 'progress-label' });
  const bar = el('div', {
    class: 'progress', testid: 'progress-bar', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100',
  }, fill, label);
  bar._fill = fill;
  bar._label = label;
  return bar;
}


export function updateProgress(bar, job) {
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

export function notice(kind, ...children) {
  return el('div', { class: `notice ${kind}` }, ...children);
}

export function card(title, testid, ...children) {
  return el('section', { class: 'card', testid },
    title ? el('h2', null, title) : null, ...children);
}
