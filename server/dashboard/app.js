// qjobs dashboard: a single-page front-end for the job server's HTTP API.
// ES modules, no dependencies, embedded in the server (server/CMakeLists.txt).
// Pages are chosen by the URL hash so the server only has to serve "/":
// #/ (jobs), #/jobs/<id>, #/compare?ids=a,b, #/submit. Every API call
// carries the bearer token kept in localStorage (api.js).
//
// Untrusted text (job names, logs, events, report text) only reaches the
// page as text nodes or through esc(); the markdown renderer escapes its
// input before adding any markup of its own.
import { el, replaceChildren, setText } from './dom.js';
import { TOKEN_KEY, getToken, onAuthProblem } from './api.js';
import { makeContext, notice } from './widgets.js';
import { pageList } from './page_list.js';
import { pageJob } from './page_job.js';
import { pageCompare } from './page_compare.js';
import { pageSubmit } from './page_submit.js';

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

onAuthProblem(showAuthProblem);

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
