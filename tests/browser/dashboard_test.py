"""End-to-end test of the qjobs dashboard in headless Chromium.

Env: QJOBS_URL (server base URL), QJOBS_TOKEN (a valid bearer token),
SCREENSHOT_DIR (where PNGs go), CHROMIUM (default /usr/bin/chromium).
The server runs from the repository root so examples/kjv-llama resolves.
Run through tests/browser/run.sh, which starts the server, with the
project's virtual environment (pip `playwright`; Debian's Chromium, never
a downloaded browser).
"""
import json
import math
import os
import re
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

BASE = re.sub(r"/+$", "", os.environ.get("QJOBS_URL", ""))
TOKEN = os.environ.get("QJOBS_TOKEN", "")
SHOTS = os.environ.get("SCREENSHOT_DIR") or "browser-screenshots"
CHROMIUM = os.environ.get("CHROMIUM") or "/usr/bin/chromium"
ROOT = str(Path(__file__).resolve().parents[2])  # the repository

T0 = time.monotonic()


def elapsed():
    return f"{time.monotonic() - T0:.1f}s"


def shot(name):
    return os.path.join(SHOTS, name)


def log(msg):
    print(msg, flush=True)


def err(msg):
    print(msg, file=sys.stderr, flush=True)


def passed(msg):
    log(f"ok   [{elapsed()}] {msg}")


def info(msg):
    log(f"     [{elapsed()}] {msg}")


# ---- assertions (node:assert/strict's, with the same messages) ----
# Raised explicitly, not with `assert`, so that python -O keeps them.

def ok(value, msg=None):
    if not value:
        raise AssertionError(msg or f"The expression evaluated to a falsy value:\n\n  {value!r}\n")


def equal(actual, expected, msg=None):
    if actual != expected:
        raise AssertionError(msg or f"Expected values to be strictly equal:\n\n{actual!r} !== {expected!r}\n")


def match(text, pattern, msg=None, flags=0):
    if re.search(pattern, text, flags) is None:
        raise AssertionError(msg or f"The input did not match the regular expression /{pattern}/. "
                                    f"Input:\n\n{text!r}\n")


def num(s):
    """JavaScript's Number() of an attribute value (null and '' are 0)."""
    if s is None or not s.strip():
        return 0
    try:
        v = float(s)
    except ValueError:
        return math.nan
    return int(v) if v.is_integer() else v


def secs(ms):
    v = ms / 1000
    return str(int(v)) if v.is_integer() else str(v)


def enc(s):
    """encodeURIComponent."""
    return urllib.parse.quote(s, safe="!~*'()")


# ---- job specs (paths relative to the repository root) ----

EVAL = [
    "eval:",
    "  tasks:",
    "    - type: ppl",
    "      name: kjv-heldout",
    '      data_path: "examples/data/kjv/test.jsonl"',
    "      seqlen: 256",
    "      batch_size: 4",
]


def quick_spec(wbit):
    return "\n".join([
        "# browser test: RTN on the example model",
        'MODEL: "examples/kjv-llama"',
        "ALGORITHM: RTN",
        'JOB_ID: "browser-rtn"',
        "llm:",
        "  RTN:",
        f"    W_BIT: {wbit}",
        "    Q_GROUP_SIZE: 32",
        "    ZERO_POINT: true",
        *EVAL,
        "",
    ])


W8_SPEC = "\n".join([
    "# browser test: RTN W8, symmetric, one scale per output channel",
    'MODEL: "examples/kjv-llama"',
    "ALGORITHM: RTN",
    'JOB_ID: "browser-rtn-w8"',
    "llm:",
    "  RTN:",
    "    W_BIT: 8",
    "    Q_GROUP_SIZE: -1",
    "    ZERO_POINT: false",
    *EVAL,
    "",
])

# Slow enough to be cancelled while RUNNING: GPTQ with a full calibration
# set and long windows, then perplexity.
SLOW_SPEC = "\n".join([
    "# browser test: a job that runs long enough to be cancelled",
    'MODEL: "examples/kjv-llama"',
    "ALGORITHM: GPTQ",
    'JOB_ID: "browser-slow"',
    "MAX_ATTEMPTS: 1",
    "llm:",
    "  GPTQ:",
    "    W_BIT: 4",
    "    Q_GROUP_SIZE: 32",
    "calibration:",
    '  data_path: "examples/data/kjv/calib.jsonl"',
    "  n_samples: 128",
    "  seqlen: 512",
    *EVAL,
    "",
])

# ---- API access from Python ----

# No proxy from the environment: the server is on 127.0.0.1 (as with node's
# fetch, which ignores http_proxy). 300 s: undici's (node's fetch) default.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
HTTP_TIMEOUT_S = 300


def http(path, method="GET", body=None, headers=None):
    """(status, text); a 4xx/5xx answer is a result, not an exception."""
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(BASE + path, data=data, method=method, headers=headers or {})
    try:
        with _opener.open(req, timeout=HTTP_TIMEOUT_S) as res:
            return res.status, res.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read().decode("utf-8", "replace")


def api_call(path, method="GET", body=None, headers=None):
    status, text = http(path, method, body, {"Authorization": f"Bearer {TOKEN}", **(headers or {})})
    try:
        js = json.loads(text)
    except ValueError:
        js = None  # not JSON
    return {"status": status, "json": js, "text": text}


def submit_via_api(spec):
    r = api_call("/jobs", method="POST", body=spec, headers={"Content-Type": "application/yaml"})
    ok(r["status"] in (201, 200), f"POST /jobs answered {r['status']}: {r['text']}")
    ok(isinstance(r["json"], dict) and r["json"].get("id"), f"POST /jobs gave no id: {r['text']}")
    return r["json"]["id"]


def wait_job_state(job_id, wanted, timeout_ms):
    deadline = time.monotonic() + timeout_ms / 1000
    last = None
    while time.monotonic() < deadline:
        r = api_call(f"/jobs/{enc(job_id)}")
        equal(r["status"], 200, f"GET /jobs/{job_id} answered {r['status']}: {r['text']}")
        last = r["json"] or {}
        if last.get("state") in wanted:
            return last
        if last.get("state") in ("SUCCEEDED", "FAILED", "CANCELLED"):
            raise RuntimeError(f"job {job_id} ended {last['state']} while waiting for {'/'.join(wanted)}: "
                               f"{last.get('error_type') or ''} {last.get('error') or ''}")
        time.sleep(0.25)
    raise RuntimeError(f"job {job_id} not {'/'.join(wanted)} within {secs(timeout_ms)}s "
                       f"(last state {last.get('state') if last else None})")


def line_of(text, needle):
    return next((i + 1 for i, line in enumerate(text.split("\n")) if needle in line), 0)


# ---- the test ----

def run(page, page_errors):
    def go_hash(h):
        page.evaluate("(h) => { location.hash = h; }", h)

    def job_state_on_page():
        return page.get_attribute('[data-testid="job-header"] [data-testid="job-state"]', "data-state")

    running_shot = False

    # ---- 1. token ----
    js, _ = http("/ui/app.js")
    equal(js, 200, f"GET /ui/app.js without a token answered {js}")
    css, _ = http("/ui/style.css")
    equal(css, 200, f"GET /ui/style.css without a token answered {css}")
    no_tok, _ = http("/jobs")
    equal(no_tok, 401, f"GET /jobs without a token answered {no_tok}, expected 401")

    page.goto(f"{BASE}/")
    msg = page.locator('[data-testid="auth-message"]')
    msg.wait_for(state="visible")
    match(msg.inner_text(), r"token required", 'the header says "token required"', re.I)
    match(page.locator('[data-testid="list-message"]').inner_text(), r"token required",
          'the job list says "token required"', re.I)
    equal(page.locator('[data-testid="jobs-empty"]').is_visible(), False, "no job list without a token")
    passed('1a. without a token the list shows "token required"')

    page.fill('[data-testid="token"]', TOKEN)
    page.press('[data-testid="token"]', "Enter")
    page.locator('[data-testid="jobs-empty"]').wait_for(state="visible")
    msg.wait_for(state="hidden")
    equal(page.evaluate("() => localStorage.getItem('qjobs_token')"), TOKEN, "token saved in localStorage")
    equal(page.locator('[data-testid="job-row"]').count(), 0, "the list is empty")
    passed("1b. with the token the (empty) job list loads and the token is saved")

    # ---- 2. submit page: a problem, its position, the fix, submission ----
    page.click('[data-testid="nav-submit"]')
    editor = page.locator('[data-testid="spec-editor"]')
    editor.wait_for()
    bad = quick_spec(99)
    wbit_line = line_of(bad, "W_BIT")
    editor.fill(bad)
    problem = page.locator('[data-testid="problems"] [data-testid="problem"]', has_text="llm.RTN.W_BIT")
    problem.first.wait_for(state="visible", timeout=15000)
    line = num(problem.first.get_attribute("data-line"))
    column = num(problem.first.get_attribute("data-column"))
    ptext = problem.first.inner_text()
    equal(line, wbit_line, f"the problem names line {line}, W_BIT is on line {wbit_line} ({ptext})")
    ok(f"{wbit_line}:" in ptext, f'the problem shows "line:column": {ptext}')
    page.locator(".gutter div.bad", has_text=str(wbit_line)).first.wait_for()
    ptext_flat = re.sub(r"\s+", " ", ptext)
    ok(page.locator('[data-testid="submit"]').is_disabled(), "Submit is disabled while the spec has problems")
    passed(f'2a. invalid W_BIT reported as "{ptext_flat}"; Submit disabled')

    problem.first.click()
    caret = editor.evaluate("""(ta) => {
      const before = ta.value.slice(0, ta.selectionStart);
      return { line: before.split('\\n').length, col: before.length - before.lastIndexOf('\\n'),
               focused: document.activeElement === ta };
    }""")
    equal(caret["line"], wbit_line, f"clicking the problem puts the cursor on line {wbit_line}, got {caret['line']}")
    if column > 0:
        equal(caret["col"], column, f"cursor column {caret['col']}, the problem says {column}")
    ok(caret["focused"], "the editor has the focus")
    match(page.locator('[data-testid="cursor-pos"]').inner_text(), f"Ln {wbit_line},")
    passed(f"2b. clicking the problem moves the cursor to {caret['line']}:{caret['col']}")

    # A template from the server (jobctl init's) fills the editor and checks valid.
    page.once("dialog", lambda d: d.accept())
    page.select_option('[data-testid="template"]', "AutoAWQ")
    page.wait_for_function(
        """() => document.querySelector('[data-testid="spec-editor"]').value.includes('ALGORITHM: AutoAWQ')""")
    page.locator('[data-testid="check-status"][data-state="valid"]').wait_for(timeout=15000)
    passed("2c0. the AutoAWQ template loads from the server and checks valid")

    # The shipped recipes are in the same menu, each as its file has it.
    recipes = api_call("/recipes")["json"]["recipes"]
    offered = page.locator('[data-testid="template-recipes"] option').evaluate_all("os => os.map(o => o.value)")
    equal(sorted(offered), sorted("recipe:" + r["name"] for r in recipes), "the menu offers every shipped recipe")
    ok(len(recipes) >= 7, f"the server lists the shipped recipes: {[r['name'] for r in recipes]}")
    with open(os.path.join(ROOT, "configs", "recipes", "nyuntam-awq.yaml"), encoding="utf-8") as f:
        recipe_text = f.read()
    page.once("dialog", lambda d: d.accept())
    page.select_option('[data-testid="template"]', "recipe:nyuntam-awq")
    page.wait_for_function(
        """() => document.querySelector('[data-testid="spec-editor"]').value.includes('nyuntam_awq_example')""")
    equal(page.locator('[data-testid="spec-editor"]').input_value(), recipe_text,
          "the editor holds configs/recipes/nyuntam-awq.yaml byte for byte")
    page.locator('[data-testid="check-status"][data-state="valid"]').wait_for(timeout=15000)
    passed(f"2c0a. the template menu offers the {len(recipes)} shipped recipes; nyuntam-awq loads and checks valid")

    # Under the check, what the job will cost: the dry run's estimate, with a
    # time from the rates the worker measured on this machine (the first dry
    # run measures them), shown as the API gives it.
    page.locator('[data-testid="estimate"]:not([data-stale]) [data-testid="estimate-time"]').wait_for(timeout=30000)
    dry = api_call("/jobs?dry_run=1", method="POST", body=recipe_text,
                   headers={"Content-Type": "application/yaml"})["json"]["estimate"]
    ok(isinstance(dry, dict) and isinstance(dry.get("seconds"), (int, float)) and dry["seconds"] > 0,
       f"the dry run estimates a time: {dry}")
    ok(dry["rates"]["device"] == "cpu" and dry["rates"]["gemm_gflops"] > 0, f"measured rates: {dry['rates']}")
    # The output is the packed model: smaller than the original, and on disk with the calibration state.
    ok(0 < dry["output_bytes"] < dry["original_bytes"] <= dry["disk_bytes"] + dry["original_bytes"],
       f"output {dry['output_bytes']} B of {dry['original_bytes']} B")
    shown = page.locator('[data-testid="estimate"]').inner_text()
    def size(b):  # as the page writes a size: KiB, MiB or GiB, 2 decimals below 10
        v, unit = float(b), "B"
        for u in ("KiB", "MiB", "GiB"):
            if v < 1024:
                break
            v, unit = v / 1024, u
        return f"{v:.{2 if v < 10 else 1}f} {unit}"
    for label, b in (("host memory", dry["host_bytes"]), ("disk", dry["disk_bytes"]), ("output", dry["output_bytes"])):
        ok(size(b) in shown, f"the page shows the {label} {size(b)}: {shown!r}")
    ok("on cpu" in page.locator('[data-testid="estimate-time"]').inner_text(), f"the time names the device: {shown!r}")
    page.screenshot(path=shot("submit-recipe.png"))
    passed(f"2c0b. the estimate shows under the check: {' · '.join(shown.splitlines()[:2])!r}")

    # The eval tasks' help comes from their rows (GET /eval-tasks): every type
    # the server knows, each with its keys.
    want_types = [t["type"] for t in api_call("/eval-tasks")["json"]["eval_tasks"]]
    ok(len(want_types) >= 4, f"the server lists the eval task types: {want_types}")
    page.click('[data-testid="eval-task-help"] summary')
    shown = page.locator('[data-testid="eval-task-type"]').all_inner_texts()
    ok([s.split(" ")[1] for s in shown] == want_types, f"the help lists {want_types}, in order: {shown}")
    ok("seqlen" in page.locator('[data-testid="eval-task-help"]').inner_text(), "the help shows ppl's seqlen key")
    page.click('[data-testid="eval-task-help"] summary')
    passed(f"2c0c. the eval task help lists {len(want_types)} types with their keys")

    # Uploading a .yaml fills the editor (the fixed spec, from a file).
    page.set_input_files('[data-testid="spec-file"]',
                         {"name": "job.yaml", "mimeType": "application/yaml", "buffer": quick_spec(4).encode()})
    page.wait_for_function("""(want) => document.querySelector('[data-testid="spec-editor"]').value === want""",
                           arg=quick_spec(4))
    passed("2c1. an uploaded .yaml fills the editor")

    status = page.locator('[data-testid="check-status"][data-state="valid"]')
    status.wait_for(timeout=15000)
    match(status.inner_text(), r"valid")
    equal(page.locator('[data-testid="problem"]').count(), 0, "no problems left")
    ok(page.locator('[data-testid="submit"]').is_enabled(), "Submit is enabled again once the spec checks valid")
    passed('2c. the fixed spec checks "valid"; Submit enabled')

    page.click('[data-testid="submit"]')
    page.wait_for_function("() => location.hash.startsWith('#/jobs/')")
    first_id = urllib.parse.unquote(page.evaluate("() => location.hash")[len("#/jobs/"):])
    page.locator('[data-testid="job-header"] [data-testid="job-state"][data-state]').wait_for()
    page.wait_for_function("""() => document.querySelector('[data-testid="job-id"]').textContent.length > 10""")
    equal(page.locator('[data-testid="job-id"]').inner_text(), first_id)
    passed(f"2d. submitted; on the job page of {first_id}")

    # ---- 3. the job runs and succeeds; report and artifacts ----
    deadline = time.monotonic() + 5 * 60
    seen = []
    state = None
    while time.monotonic() < deadline:
        state = job_state_on_page()
        if state and (seen[-1] if seen else None) != state:
            seen.append(state)
            info(f"job page shows {state}")
        if state == "RUNNING" and not running_shot:
            page.locator('[data-testid="job-header"] [data-testid="progress-bar"]').wait_for(state="visible")
            # the first poll may come before the worker's first progress report
            try:
                page.wait_for_function("""() => {
                  const bar = document.querySelector('[data-testid="job-header"] [data-testid="progress-bar"]');
                  return bar.dataset.percent !== '' || bar.dataset.state !== 'RUNNING';
                }""", timeout=4000)
            except PlaywrightError:
                pass
            time.sleep(0.4)  # the bar's width transition (0.3 s)
            if job_state_on_page() == "RUNNING":
                page.screenshot(path=shot("job-running.png"))
                running_shot = True
        if state in ("SUCCEEDED", "FAILED", "CANCELLED"):
            break
        time.sleep(0.15)
    if state != "SUCCEEDED":
        try:
            job_error = page.locator('[data-testid="job-error"]').inner_text()
        except PlaywrightError:
            job_error = ""
        raise RuntimeError(f"job {first_id} ended {state} (seen {' → '.join(seen)}): {job_error}")
    passed(f"3a. job {' → '.join(seen)}{' (job-running.png taken)' if running_shot else ''}")

    report = page.locator('[data-testid="report"]')
    report.locator("table").first.wait_for(timeout=20000)
    report_text = report.inner_text()
    ok("size on disk" in report_text, 'the report mentions "size on disk"')
    equal(report.locator("script").count(), 0)
    imgs = report.locator("img")
    if imgs.count():
        page.wait_for_function("""() => [...document.querySelectorAll('[data-testid="report"] img')]
          .every((i) => i.complete && i.naturalWidth > 0 && i.src.startsWith('blob:'))""", timeout=15000)
        info(f"{imgs.count()} report image(s) loaded through blob URLs")
    passed('3b. the Report section renders a table with "size on disk"')

    for p in ("report.md", "model/model.safetensors"):
        page.locator(f'[data-testid="artifact-row"][data-path="{p}"]').wait_for()
    passed("3c. artifacts list report.md and model/model.safetensors")

    with page.expect_download() as download_info:
        page.click('[data-testid="artifact-link"][data-path="report.md"]')
    download = download_info.value
    equal(download.suggested_filename, "report.md")
    body = Path(download.path()).read_text(encoding="utf-8")
    ok(body.startswith("# qjobs report"),
       f"downloaded report.md starts with {json.dumps(body[:40], ensure_ascii=False)}")
    passed("3d. an artifact downloads with the bearer token (report.md)")

    ok("W_BIT: 4" in page.locator('[data-testid="spec"]').inner_text(), "the Spec section shows the YAML")
    ok(page.locator('[data-testid="events-table"] tr[data-type="state"]').count() >= 1, "state events listed")
    ok(len(page.locator('[data-testid="log"]').inner_text().strip()) > 0, "the log is shown")
    equal(page.locator('[data-testid="cancel"]').is_visible(), False, "no Cancel on a finished job")
    equal(page.locator('[data-testid="delete"]').is_visible(), True, "Delete on a finished job")
    passed("3e. spec, events and log sections are filled")

    # a full-page capture clipped to the section: the sticky top bar stays
    # at the top of the page instead of covering the section
    page.evaluate("() => window.scrollTo(0, 0)")
    box = report.bounding_box()
    page.screenshot(path=shot("report.png"), full_page=True, clip=box)

    # ---- 4. a slower job, cancelled from its page ----
    slow_id = submit_via_api(SLOW_SPEC)
    wait_job_state(slow_id, ["RUNNING"], 120000)
    info(f"slow job {slow_id} is RUNNING")
    go_hash(f"#/jobs/{enc(slow_id)}")
    page.wait_for_function("""(id) => document.querySelector('[data-testid="job-id"]')?.textContent === id""",
                           arg=slow_id)
    cancel = page.locator('[data-testid="cancel"]')
    cancel.wait_for(state="visible")
    if not running_shot:
        page.locator('[data-testid="job-header"] [data-testid="progress-bar"]').wait_for(state="visible")
        try:
            page.wait_for_function("""() => document.querySelector(
              '[data-testid="job-header"] [data-testid="progress-bar"]').dataset.percent !== ''""", timeout=5000)
        except PlaywrightError:
            pass
        time.sleep(0.4)  # the bar's width transition (0.3 s)
        page.screenshot(path=shot("job-running.png"))
        running_shot = True
        info("job-running.png taken on the slow job")
    equal(job_state_on_page(), "RUNNING", "the slow job is still RUNNING when Cancel is clicked")
    cancel.click()
    page.locator('[data-testid="job-header"] [data-testid="job-state"][data-state="CANCELLED"]').wait_for(
        timeout=60000)
    cancel.wait_for(state="hidden")
    api = api_call(f"/jobs/{enc(slow_id)}")
    equal((api["json"] or {}).get("state"), "CANCELLED")
    passed("4. Cancel on the running slow job: it ends CANCELLED")

    # ---- 5. a second quick job; list and compare ----
    w8_id = submit_via_api(W8_SPEC)
    wait_job_state(w8_id, ["SUCCEEDED"], 5 * 60 * 1000)
    info(f"W8 job {w8_id} SUCCEEDED")

    # A job that fails at load (a model whose weights file is not safetensors):
    # its row says why, where the stage is.
    broken = Path(tempfile.mkdtemp(prefix="qjobs-broken-model-"))
    (broken / "config.json").write_text(Path("examples/kjv-llama/config.json").read_text())
    (broken / "model.safetensors").write_text("this is not a safetensors file")
    failed_id = submit_via_api(f'MODEL: "{broken.resolve()}"\nALGORITHM: RTN\nMAX_ATTEMPTS: 1\n')
    wait_job_state(failed_id, ["FAILED"], 60 * 1000)

    page.click('[data-testid="nav-jobs"]')
    page.wait_for_function("""() => document.querySelectorAll('[data-testid="job-row"]').length >= 3""")
    failed_stage = page.locator(f'[data-testid="job-row"][data-id="{failed_id}"] [data-testid="job-stage"]')
    failed_stage.wait_for()
    page.wait_for_function("""(id) => (document.querySelector(
      `[data-testid="job-row"][data-id="${id}"] [data-testid="job-stage"]`).textContent || '').includes('MODEL_LOAD')""",
                           arg=failed_id)
    info(f"failed row: {failed_stage.inner_text()}")
    page.wait_for_function("""(ids) => ids.every((id) => document.querySelector(
      `[data-testid="job-row"][data-id="${id}"][data-state="SUCCEEDED"]`))""", arg=[first_id, w8_id])
    states = page.eval_on_selector_all('[data-testid="job-row"]', "(rows) => rows.map((r) => r.dataset.state)")
    ok(len(set(states)) >= 2, f"the list shows jobs of different states: {', '.join(states)}")
    first_row = page.locator(f'[data-testid="job-row"][data-id="{first_id}"]')
    match(first_row.locator('[data-testid="progress-bar"]').inner_text(), r"100%")
    page.screenshot(path=shot("list.png"))
    passed(f"5a. the list shows {len(states)} jobs ({', '.join(states)}); the failed one says MODEL_LOAD")

    for job_id in (first_id, w8_id):
        page.check(f'[data-testid="job-row"][data-id="{job_id}"] [data-testid="job-select"]')
    page.click('[data-testid="compare-selected"]')
    page.wait_for_function("() => location.hash.startsWith('#/compare?ids=')")
    table = page.locator('[data-testid="compare-table"]').first
    table.wait_for()
    cmp = api_call(f"/compare?ids={enc(first_id)},{enc(w8_id)}")
    equal(cmp["status"], 200, f"GET /compare answered {cmp['status']}: {cmp['text']}")
    labels = [c["label"] for c in cmp["json"]["columns"]]
    equal(len(labels), 2, "two columns")
    head = table.locator("thead").inner_text()
    for label in labels:
        ok(label in head, f'the compare table header has "{label}": {head}')
    ok("original" in head, 'the compare table has an "original" column')
    match(table.inner_text(), r"size on disk")
    points = page.locator('[data-testid="compare-chart"] [data-testid="chart-point"]')
    points.first.wait_for()
    n = points.count()
    ok(n >= 3, f"the chart has {n} points, expected at least 3 (2 jobs + original)")
    picked = page.eval_on_selector_all('[data-testid="pick"]:checked', "(cbs) => cbs.map((c) => c.dataset.id)")
    ok(set(picked) == {first_id, w8_id}, "the picker has both jobs checked")
    # The per-block error curves: one per job, one point per decoder block,
    # each the mean of that block's Linears in the job's own report.json
    # (recomputed here from the file, not taken from /compare).
    curves = page.locator('[data-testid="block-error-chart"] [data-testid="block-curve"]')
    curves.first.wait_for()
    equal(curves.count(), 2, "one error curve per compared job")
    n_layers = json.loads(Path("examples/kjv-llama/config.json").read_text())["num_hidden_layers"]
    blocks = page.eval_on_selector_all('[data-testid="block-curve"]', "(cs) => cs.map((c) => Number(c.dataset.blocks))")
    equal(blocks, [n_layers, n_layers], f"each curve has a point per block ({n_layers})")
    rep = api_call(f"/jobs/{enc(first_id)}/artifacts/report.json")
    equal(rep["status"], 200, f"report.json of {first_id}: {rep['status']}")
    block0 = [lay for lay in rep["json"]["layers"] if ".layers.0." in lay["name"]]
    metric = cmp["json"]["columns"][0]["block_errors"]["metric"]
    want = sum(lay[metric] for lay in block0) / len(block0)
    got = cmp["json"]["columns"][0]["block_errors"]["values"][0]
    ok(abs(got - want) <= 1e-12 * max(1.0, abs(want)), f"block 0's {metric}: /compare {got}, report.json mean {want}")
    page.screenshot(path=shot("compare.png"), full_page=True)
    quoted = ", ".join(f'"{label}"' for label in labels)
    passed(f"5b. compare shows labels {quoted}, {n} chart points and {curves.count()} error curves of {n_layers} blocks "
           f"({metric}, block 0 = {want:.5f})")

    # Issue 31: by names, as a user types them into the address. Each name
    # checks its job's own row (no blank row per name); the labels differ
    # without a [name] suffix; the settings table marks the keys that
    # differ; the chart colours by algorithm and draws the Pareto front.
    by_name = api_call("/compare?ids=browser-rtn,browser-rtn-w8")
    equal(by_name["status"], 200, f"GET /compare by names answered {by_name['status']}: {by_name['text']}")
    named_ids = [c["id"] for c in by_name["json"]["columns"]]
    named_labels = [c["label"] for c in by_name["json"]["columns"]]
    go_hash("#/compare?ids=browser-rtn,browser-rtn-w8")
    page.wait_for_function("""(ids) => {
      const picked = [...document.querySelectorAll('[data-testid="pick"]:checked')].map((c) => c.dataset.id);
      return picked.length === ids.length && ids.every((id) => picked.includes(id));
    }""", arg=named_ids)
    ghosts = page.locator('[data-testid="pick-row"][data-state=""]').count()
    equal(ghosts, 0, f"{ghosts} blank rows were added for the names")
    page.wait_for_function("() => location.hash.includes('ids=') && !location.hash.includes('browser-rtn')")
    equal(len(set(named_labels)), 2, f"the two recipes read apart: {named_labels}")
    ok(all("[" not in label for label in named_labels), f"told apart by a suffix: {named_labels}")
    settings = page.locator('[data-testid="settings-table"]')
    settings.wait_for()
    differing = page.eval_on_selector_all('[data-testid="setting-row"][data-differ="1"]',
                                          "(rows) => rows.map((r) => r.dataset.key)")
    for key in ("weights", "ZERO_POINT", "W_BIT"):
        ok(key in differing, f'the settings table marks "{key}" as differing: {differing}')
    page.locator('[data-testid="pareto-front"]').wait_for()
    legend = page.locator('[data-testid="chart-legend"]').text_content()
    ok("RTN" in legend, f"the chart's legend names the algorithm: {legend}")
    front = page.eval_on_selector_all('[data-testid="chart-point"][data-front="1"]', "(ps) => ps.map((p) => p.dataset.label)")
    ok(len(front) >= 2, f"at least two points on the Pareto front: {front}")
    page.screenshot(path=shot("compare-names.png"), full_page=True)
    passed(f"5c. compare by names: their own rows checked, no blank rows, labels {named_labels}, "
           f"settings differing in {differing}, front {front}")

    # ---- 6. delete the cancelled job from its page ----
    go_hash(f"#/jobs/{enc(slow_id)}")
    delete = page.locator('[data-testid="delete"]')
    delete.wait_for(state="visible")
    page.once("dialog", lambda d: d.accept())
    delete.click()
    page.wait_for_function("() => location.hash === '#/' || location.hash === ''")
    page.wait_for_function("""(id) => !document.querySelector(`[data-testid="job-row"][data-id="${id}"]`) &&
      document.querySelectorAll('[data-testid="job-row"]').length >= 2""", arg=slow_id)
    gone = api_call(f"/jobs/{enc(slow_id)}")
    equal(gone["status"], 404, f"the deleted job answers {gone['status']}")
    passed("6. Delete (after confirm) removes the cancelled job and returns to the list")

    equal(len(page_errors), 0, f"uncaught errors in the page: {'; '.join(e.message for e in page_errors)}")


def main():
    if not BASE or not TOKEN:
        err("QJOBS_URL and QJOBS_TOKEN must be set (tests/browser/run.sh sets them)")
        return 2
    os.makedirs(SHOTS, exist_ok=True)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        context = browser.new_context(viewport={"width": 1360, "height": 900}, accept_downloads=True,
                                      reduced_motion="reduce")
        page = context.new_page()
        page.set_default_timeout(20000)
        page_errors = []

        def on_page_error(e):
            page_errors.append(e)
            err(f"page error: {e.message}")

        page.on("pageerror", on_page_error)

        exit_code = 0
        try:
            run(page, page_errors)
            log(f"PASS: dashboard end-to-end test ({elapsed()}); screenshots in {SHOTS}")
        except Exception:  # noqa: BLE001 -- every failure is reported, with a screenshot
            exit_code = 1
            err(f"FAIL [{elapsed()}]: {traceback.format_exc()}")
            try:
                page.screenshot(path=shot("failure.png"), full_page=True)
                err(f"see {shot('failure.png')}")
            except Exception:  # noqa: BLE001
                pass
        finally:
            try:
                browser.close()
            except Exception:  # noqa: BLE001
                pass
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
