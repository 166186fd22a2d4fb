// End-to-end test of nightshift's web UI in headless Chromium, driven by playwright-core.
//
// tests/browser.rs starts `nightshift standalone` on a fresh SQLite file with a DAG whose
// only task fails on its first try, creates the users and tokens, then runs this script
// with their secrets in the environment. The script plays the on-call engineer: sign in
// as operator, open the DAG, open the failed task's log from the grid (one click), retry
// it, see the task's and the run's badges and the log turn to the new try on the same page
// (live state: no reload), and a run page, grid and DAG list opened while another run goes
// on turn green by themselves and stop polling; then sign in as viewer: no retry button, and the API answers 403.
// Then an admin: a pool and an API token whose names are JavaScript string breakouts get
// deleted through their confirmations, which show the names as text and run nothing.
// No page may report a Content-Security-Policy violation. Screenshots of the DAG list,
// grid, graph, task page and pools page go to NS_ARTIFACTS (outside the repository).
// Finally every page, at 1366×900 and at 390×844: axe-core finds no serious or critical
// accessibility violation, the phone-sized page has no page-level horizontal scroll
// (document.documentElement.scrollWidth <= 390), and both are screenshotted.

import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (tests/browser.rs sets it)`);
  return value;
};
const BASE = env('NS_BASE_URL');
const DAG = env('NS_DAG_ID');
const TASK = env('NS_TASK_ID');
const ARTIFACTS = env('NS_ARTIFACTS');
const operator = { name: env('NS_OPERATOR'), password: env('NS_OPERATOR_PASSWORD'), token: env('NS_OPERATOR_TOKEN') };
const viewer = { name: env('NS_VIEWER'), password: env('NS_VIEWER_PASSWORD'), token: env('NS_VIEWER_TOKEN') };
const admin = { name: env('NS_ADMIN'), password: env('NS_ADMIN_PASSWORD') };
mkdirSync(ARTIFACTS, { recursive: true });

const started = Date.now();
const step = (what) => console.log(`[e2e ${((Date.now() - started) / 1000).toFixed(1)}s] ${what}`);

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

async function api(method, path, token, body) {
  const response = await fetch(`${BASE}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: response.status, json, text };
}

async function until(what, timeoutMs, probe) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await probe();
    if (last.done) return last.value;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last?.value)})`);
}

// The 03:10 path, on a desktop and on a phone: the nightly DAG's `load` fails → its
// run-failure alert reaches a local HTTP receiver (this script's) → the alert's link →
// sign in → the failed task's error and last log lines are on screen without a click or
// a scroll (bounding boxes inside the viewport) → Retry → the confirmation lists the task
// instances (the same as the API's dry run) → Confirm → the task and its run turn green on
// the same page, without a reload. At most 3 clicks after signing in, counted.
const NIGHTLY = env('NS_NIGHTLY_DAG');
const NIGHTLY_MARKER = env('NS_NIGHTLY_MARKER');
const alerts = [];
const alertServer = createServer((req, res) => {
  let body = '';
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', () => {
    try { alerts.push(JSON.parse(body)); } catch { alerts.push({ unparsed: body }); }
    res.writeHead(204).end();
  });
});
await new Promise((resolve) => alertServer.listen(Number(env('NS_ALERT_PORT')), '127.0.0.1', resolve));

async function onCallAt0310(browser, size, viewport) {
  // A failing nightly run (the marker the failed try leaves makes the retry succeed).
  rmSync(NIGHTLY_MARKER, { force: true });
  await until(`DAG ${NIGHTLY} to be loaded`, 30_000, async () => {
    const r = await api('GET', `/dags/${NIGHTLY}`, operator.token);
    return { done: r.status === 200, value: r.status };
  });
  const triggered = await api('POST', `/dags/${NIGHTLY}/dagRuns`, operator.token, { conf: {} });
  check(triggered.status === 200, `trigger ${NIGHTLY}: ${triggered.status} ${triggered.text}`);
  const run = triggered.json.dag_run_id;
  const alert = await until(`the run-failure alert of ${run}`, 90_000, async () => {
    const found = alerts.find((a) => a.kind === 'dag_run' && a.event === 'failure' && a.run_id === run);
    return { done: Boolean(found), value: found ?? alerts.length };
  });
  check(alert.error === 'failed tasks: load', `the alert names the failed task, got ${JSON.stringify(alert.error)}`);
  const link = new URL(alert.link);
  check(link.pathname === `/dags/${NIGHTLY}/runs/${encodeURIComponent(run)}/tasks/load`,
    `one failed task: the alert links straight to it, got ${alert.link}`);
  step(`${size}: run ${run} failed; its alert reached the receiver with ${alert.link}`);

  const context = await browser.newContext({ viewport });
  context.setDefaultTimeout(15_000);
  const page = await context.newPage();
  const problems = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error' && /Content Security Policy|Refused to/i.test(msg.text())) problems.push(msg.text());
  });
  page.on('pageerror', (err) => problems.push(err.message));
  try {
    await page.goto(alert.link);
    check(page.url().includes('/login'), `signed out, the link asks to sign in first, got ${page.url()}`);
    await page.fill('input[name=username]', operator.name);
    await page.fill('input[name=password]', operator.password);
    await Promise.all([page.waitForURL(alert.link), page.click('button[type=submit]')]);
    // From here on every click counts, and the page must never load again.
    let clicks = 0;
    const click = async (locator) => { clicks += 1; await locator.click(); };
    let loads = 0;
    page.on('framenavigated', (frame) => { if (frame === page.mainFrame()) loads += 1; });
    await page.evaluate(() => { window.nsSamePage = true; });

    // The error and the last log lines, on screen as the page opens.
    const onScreen = async (locator, what) => {
      const box = await locator.boundingBox();
      check(box && box.y >= 0 && box.x >= 0 && box.y + box.height <= viewport.height && box.x + box.width <= viewport.width,
        `${size}: ${what} is inside the ${viewport.width}×${viewport.height} viewport without scrolling, at ${JSON.stringify(box)}`);
    };
    const error = page.locator('#task-live pre.error');
    check((await error.innerText()).includes('exit'), `the error is shown: ${await error.innerText()}`);
    await onScreen(error, 'the error');
    const lastLine = page.locator('#log pre.log .line').last();
    const errorLine = page.locator('#log pre.log .line.stderr', { hasText: 'disk full' });
    check((await errorLine.count()) === 1, `the log has the task's stderr line: ${await page.locator('#log pre.log').innerText()}`);
    await onScreen(errorLine, 'the log\'s error line');
    const logBox = await page.locator('#log pre.log').boundingBox();
    const lineBox = await lastLine.boundingBox();
    check(lineBox.y >= logBox.y && lineBox.y + lineBox.height <= logBox.y + logBox.height + 1,
      `${size}: the log box opens at its end (last line at ${JSON.stringify(lineBox)} in ${JSON.stringify(logBox)})`);
    await onScreen(lastLine, 'the last log line');
    await onScreen(page.locator('#log pre.log .line').nth(-3), 'the third-last log line');
    await page.screenshot({ path: join(ARTIFACTS, `oncall-${size}-1-alert-link.png`) });

    // Retry: the confirmation lists what the clear will change, as the API's dry run does.
    await click(page.getByRole('button', { name: 'Retry', exact: true }));
    const dialog = page.locator('#confirm .confirm');
    await dialog.waitFor();
    const listed = await dialog.locator('tbody tr td:first-child').allInnerTexts();
    const dry = await api('POST', `/dags/${NIGHTLY}/clearTaskInstances`, operator.token,
      { dry_run: true, dag_run_id: run, task_ids: ['load'], include_downstream: true });
    check(dry.status === 200, `dry run: ${dry.status} ${dry.text}`);
    const planned = dry.json.task_instances.map((ti) => ti.task_id);
    check(JSON.stringify(listed) === JSON.stringify(['load', 'report']) && JSON.stringify(planned) === JSON.stringify(listed),
      `${size}: the confirmation lists load and its upstream_failed report (${JSON.stringify(listed)}), as the API's dry run (${JSON.stringify(planned)})`);
    await onScreen(dialog.getByRole('button', { name: 'Confirm: clear' }), 'the confirm button');
    await page.screenshot({ path: join(ARTIFACTS, `oncall-${size}-2-confirm.png`) });
    await click(dialog.getByRole('button', { name: 'Confirm: clear' }));
    await dialog.waitFor({ state: 'detached' });

    // Green on the same page: the task's badge and the run's.
    await page.waitForFunction(() => {
      const badge = (selector) => document.querySelector(selector)?.textContent.trim();
      return badge('#task-live h2 .badge') === 'success' && badge('#task-live .crumbs .badge') === 'success';
    }, null, { timeout: 60_000 });
    check(await page.evaluate(() => window.nsSamePage === true) && loads === 0,
      `${size}: the run turned green without a reload (${loads} page loads)`);
    await page.screenshot({ path: join(ARTIFACTS, `oncall-${size}-3-green.png`) });
    check(clicks <= 3, `${size}: at most 3 clicks after signing in, took ${clicks}`);
    const done = await api('GET', `/dags/${NIGHTLY}/dagRuns/${encodeURIComponent(run)}`, operator.token);
    check(done.json?.state === 'success', `the run succeeded, got ${done.text}`);
    check(problems.length === 0, `CSP violations or script errors: ${problems.join('\n')}`);
    step(`${size}: alert → sign in → error and log on screen → Retry → confirm → green, ${clicks} clicks, no reload`);
  } finally {
    await context.close();
  }
}

// 1. Trigger the DAG through the API and wait for the run to fail.
await until(`DAG ${DAG} to be loaded`, 30_000, async () => {
  const r = await api('GET', `/dags/${DAG}`, operator.token);
  return { done: r.status === 200, value: r.status };
});
const trigger = await api('POST', `/dags/${DAG}/dagRuns`, operator.token, { conf: {} });
check(trigger.status === 200, `trigger answered ${trigger.status}: ${trigger.text}`);
const runId = trigger.json.dag_run_id;
step(`triggered run ${runId}`);
await until(`run ${runId} to fail`, 60_000, async () => {
  const r = await api('GET', `/dags/${DAG}/dagRuns/${encodeURIComponent(runId)}`, operator.token);
  return { done: r.json?.state === 'failed', value: r.json?.state ?? r.text };
});
step('run failed, as planned');

const browser = await chromium.launch({
  executablePath: process.env.NS_CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  // The 03:10 path, on a desktop and on a phone (its own DAG, contexts and checks).
  await onCallAt0310(browser, 'desktop', { width: 1366, height: 900 });
  await onCallAt0310(browser, 'phone', { width: 390, height: 844 });

  // Every CSP violation or script error on any page fails the test at the end.
  const pageProblems = [];
  async function signIn(user) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    context.setDefaultTimeout(15_000);
    const page = await context.newPage();
    page.on('console', (msg) => {
      if (msg.type() === 'error' && /Content Security Policy|Refused to/i.test(msg.text())) {
        pageProblems.push(`${user.name} at ${page.url()}: ${msg.text()}`);
      }
    });
    page.on('pageerror', (err) => pageProblems.push(`${user.name} at ${page.url()}: ${err.message}`));
    // The favicon and the static files are served on every page (no 404s).
    page.on('response', (response) => {
      const url = new URL(response.url());
      if (response.status() >= 400 && (url.pathname === '/favicon.ico' || url.pathname.startsWith('/static/'))) {
        pageProblems.push(`${user.name} at ${page.url()}: ${url.pathname} answered ${response.status()}`);
      }
    });
    await page.goto(`${BASE}/dags`);
    check(page.url().includes('/login'), `an anonymous visit should land on /login, got ${page.url()}`);
    await page.fill('input[name=username]', user.name);
    await page.fill('input[name=password]', user.password);
    await Promise.all([page.waitForURL(`${BASE}/dags`), page.click('button[type=submit]')]);
    return { context, page };
  }

  // 2. The operator: DAG list → DAG grid → (one click) the failed task's log → Retry.
  const { context: opContext, page } = await signIn(operator);
  step('operator signed in');
  await page.getByRole('link', { name: DAG, exact: true }).first().waitFor();
  await page.screenshot({ path: join(ARTIFACTS, 'dag-list.png'), fullPage: true });

  await page.getByRole('link', { name: DAG, exact: true }).first().click();
  await page.waitForURL(`${BASE}/dags/${DAG}`);
  const failedCell = page.locator('table.grid tbody a.sq.s-failed').first();
  await failedCell.waitFor();
  await page.screenshot({ path: join(ARTIFACTS, 'grid.png'), fullPage: true });

  await page.goto(`${BASE}/dags/${DAG}/graph`);
  await page.locator('svg').first().waitFor();
  await page.screenshot({ path: join(ARTIFACTS, 'graph.png'), fullPage: true });
  await page.goBack();

  await page.locator('table.grid tbody a.sq.s-failed').first().click();
  await page.waitForURL(new RegExp(`/dags/${DAG}/runs/.+/tasks/${TASK}`));
  const taskUrl = page.url();
  const log = page.locator('#log pre.log');
  await log.waitFor();
  const logText = await log.innerText();
  check(logText.includes('first try: failing on purpose'), `the failed try's log should show the task's output, got:\n${logText}`);
  check((await page.locator('h2 .badge').first().innerText()) === 'failed', 'the task page shows the task failed');
  const htmx = await page.evaluate(() => [typeof window.htmx, window.htmx?.config?.includeIndicatorStyles, window.htmx?.config?.allowEval]);
  check(htmx[0] === 'object' && htmx[1] === false && htmx[2] === false,
    `htmx is loaded under the CSP and configured by its meta tag (no injected styles, no eval), got ${JSON.stringify(htmx)}`);
  await page.screenshot({ path: join(ARTIFACTS, 'task-failed.png'), fullPage: true });
  step('failed task log is on the page one click from the grid');
  // The run page puts the root cause first: the failed task, its error, its link.
  await page.goto(`${BASE}/dags/${DAG}/runs/${encodeURIComponent(runId)}`);
  const cause = await page.locator('.root-cause').innerText();
  check(cause.includes(TASK), `the run page names the failed task ${TASK}, got:\n${cause}`);
  check((await page.locator('.root-cause a', { hasText: TASK }).count()) === 1, 'the failed task is a link');
  await page.screenshot({ path: join(ARTIFACTS, 'run-failed.png'), fullPage: true });
  await page.goto(taskUrl);

  const retry = page.getByRole('button', { name: 'Retry', exact: true });
  check((await retry.count()) === 1, 'the operator sees one Retry button');
  // Live state: confirming refreshes the page's state part in place and it polls, so the
  // task's badge and its run's turn green on the same page, without a reload (a reload
  // would drop this marker).
  await page.evaluate(() => { window.nsSamePage = true; });
  await retry.click();
  await page.locator('#confirm .confirm').waitFor();
  await page.getByRole('button', { name: 'Confirm: clear' }).click();
  step('clicked Retry and confirmed');
  await page.waitForFunction(() => {
    const badge = (selector) => document.querySelector(selector)?.textContent.trim();
    return badge('#task-live h2 .badge') === 'success' && badge('#task-live .crumbs .badge') === 'success';
  }, null, { timeout: 60_000 });
  check(await page.evaluate(() => window.nsSamePage === true), 'the task and run turned green without a reload');
  check((await page.locator('#task-live[hx-trigger]').count()) === 0, 'polling stopped once the run finished');
  check((await page.locator('#attempts tbody .badge').last().innerText()) === 'success', 'the attempts table shows the new try');
  const liveLog = await page.locator('#log pre.log').innerText();
  check(liveLog.includes('second try: ok'), `the log box moved on to the retry's try by itself, got:\n${liveLog}`);
  await page.screenshot({ path: join(ARTIFACTS, 'task-live-success.png'), fullPage: true });
  step('task and run turned green on the same page after Retry, polling stopped');
  await until(`run ${runId} to succeed`, 60_000, async () => {
    const r = await api('GET', `/dags/${DAG}/dagRuns/${encodeURIComponent(runId)}`, operator.token);
    return { done: r.json?.state === 'success', value: r.json?.state ?? r.text };
  });
  await page.goto(taskUrl);
  check((await page.locator('pre.error').count()) === 0, 'a task that succeeded shows no stale error');
  const secondLog = await page.locator('#log pre.log').innerText();
  check(secondLog.includes('second try: ok'), `the second try's log is shown, got:\n${secondLog}`);
  await page.screenshot({ path: join(ARTIFACTS, 'task.png'), fullPage: true });
  await page.goto(`${BASE}/dags/${DAG}`);
  await page.screenshot({ path: join(ARTIFACTS, 'grid-after-retry.png'), fullPage: true });
  await page.goto(`${BASE}/dags`);
  await page.screenshot({ path: join(ARTIFACTS, 'dag-list-after-retry.png'), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(taskUrl);
  await page.screenshot({ path: join(ARTIFACTS, 'task-phone.png'), fullPage: true });
  step('task went to success after the retry');

  // The live log of a running task is tailed by htmx (polling every 2 s) under the CSP.
  const live = await api('POST', '/dags/e2e_live/dagRuns', operator.token, { conf: {} });
  check(live.status === 200, `trigger e2e_live answered ${live.status}: ${live.text}`);
  const liveRun = encodeURIComponent(live.json.dag_run_id);
  const liveUrl = `${BASE}/dags/e2e_live/runs/${liveRun}/tasks/ticker`;
  // The run page, opened while the run goes on, follows it without a reload.
  const runPage = await opContext.newPage();
  await runPage.goto(`${BASE}/dags/e2e_live/runs/${liveRun}`);
  await runPage.evaluate(() => { window.nsSamePage = true; });
  const firstState = await runPage.locator('#run-live h2 .badge').innerText();
  check(firstState !== 'success', `the live run was opened before it ended, got ${firstState}`);
  check((await runPage.locator('#run-live[hx-trigger]').count()) === 1, 'the unfinished run page polls its state');
  // So do the grid and the DAG list.
  const gridPage = await opContext.newPage();
  await gridPage.goto(`${BASE}/dags/e2e_live`);
  const listPage = await opContext.newPage();
  await listPage.goto(`${BASE}/dags`);
  for (const p of [gridPage, listPage]) {
    await p.evaluate(() => { window.nsSamePage = true; });
    check((await p.locator('[data-live][hx-trigger]').count()) === 1, `${p.url()} polls while the run goes on`);
  }
  await until('the ticker to run', 30_000, async () => {
    await page.goto(liveUrl);
    const text = await page.locator('#log pre.log').innerText();
    return { done: text.includes('tick 1'), value: text };
  });
  const before = await page.locator('#log pre.log').innerText();
  check(!before.includes('tick 6'), `the page was loaded early in the run:\n${before}`);
  await page.waitForFunction(() => document.querySelector('#log pre.log')?.innerText.includes('tick 6'), null, { timeout: 20_000 });
  check(page.url() === liveUrl, 'the log grew in place, without a reload');
  step('live log tailed by htmx under the CSP');
  await runPage.waitForFunction(() => {
    const badges = [...document.querySelectorAll('#run-live .badge')].map((b) => b.textContent.trim());
    return badges.length >= 2 && badges.every((b) => b === 'success');
  }, null, { timeout: 60_000 });
  check(await runPage.evaluate(() => window.nsSamePage === true), 'the run page turned green without a reload');
  check((await runPage.locator('#run-live[hx-trigger]').count()) === 0, 'the finished run page stopped polling');
  await runPage.screenshot({ path: join(ARTIFACTS, 'run-live-success.png'), fullPage: true });
  for (const [name, p, square] of [
    ['grid', gridPage, '#grid-live tbody a.sq'],
    ['DAG list', listPage, '#dags-live tr:has(a[href="/dags/e2e_live"]) td.squares a.sq'],
  ]) {
    await p.waitForFunction((selector) => document.querySelector(selector)?.classList.contains('s-success'), square, { timeout: 30_000 });
    check(await p.evaluate(() => window.nsSamePage === true), `the ${name} turned green without a reload`);
    await p.waitForFunction(() => !document.querySelector('[data-live][hx-trigger]'), null, { timeout: 10_000 });
    await p.close();
  }
  step('grid and DAG list went green by themselves, polling stopped');
  step(`run page went ${firstState} → success by itself, polling stopped`);
  await opContext.close();

  // 3. The viewer: the same page has no Retry button, and the API refuses a clear.
  const { context: viewContext, page: viewPage } = await signIn(viewer);
  await viewPage.goto(taskUrl);
  await viewPage.locator('#log').waitFor();
  check((await viewPage.getByRole('button', { name: 'Retry', exact: true }).count()) === 0, 'a viewer sees no Retry button');
  check((await viewPage.locator('form[action$="/clear"]').count()) === 0, 'a viewer gets no clear form');
  const clear = { dry_run: false, dag_run_id: runId, task_ids: [TASK] };
  const byToken = await api('POST', `/dags/${DAG}/clearTaskInstances`, viewer.token, clear);
  check(byToken.status === 403, `a viewer's token gets 403 on clear, got ${byToken.status}: ${byToken.text}`);
  const csrf = await viewPage.locator('input[name=csrf]').first().inputValue();
  const bySession = await viewPage.request.post(`${BASE}/api/v1/dags/${DAG}/clearTaskInstances`, {
    data: clear,
    headers: { 'x-csrf-token': csrf },
  });
  check(bySession.status() === 403, `a viewer's session gets 403 on clear, got ${bySession.status()}: ${await bySession.text()}`);
  check((await bySession.json()).detail.includes('operator'), 'the 403 says the operator role is needed');
  await viewContext.close();
  step('viewer: no Retry button, API clear is 403');

  // 4. The admin: names that break out of a JavaScript string in an inline handler
  // (`onsubmit="return confirm('Delete pool …')"`) must stay text in the confirmation.
  const { context: adminContext, page: adminPage } = await signIn(admin);
  const dialogs = [];
  let answer = 'dismiss';
  adminPage.on('dialog', async (dialog) => {
    dialogs.push({ type: dialog.type(), message: dialog.message() });
    if (answer === 'accept') await dialog.accept();
    else await dialog.dismiss();
  });
  // Clicks `button` in a form with a confirmation; `accept` answers it. Returns the
  // dialogs the click raised (the only one allowed: a confirm naming `name`).
  async function confirmClick(button, name, accept) {
    dialogs.length = 0;
    answer = accept ? 'accept' : 'dismiss';
    if (accept) await Promise.all([adminPage.waitForNavigation(), button.click()]);
    else await button.click();
    await adminPage.waitForTimeout(300); // an injected alert() would be raised by now
    check(dialogs.length === 1, `one dialog for ${name}, got ${JSON.stringify(dialogs)}`);
    check(dialogs[0].type === 'confirm', `the dialog is a confirm, got ${JSON.stringify(dialogs)}`);
    check(dialogs[0].message.includes(name), `the confirmation shows the literal name ${name}: ${dialogs[0].message}`);
  }

  const pool = "y'+alert(1)+'";
  await adminPage.goto(`${BASE}/admin/pools`);
  await adminPage.fill('input[aria-label="Pool name"]', pool);
  await adminPage.fill('input[aria-label="Slots"]', '2');
  await Promise.all([adminPage.waitForNavigation(), adminPage.getByRole('button', { name: 'Create pool' }).click()]);
  const poolRow = adminPage.locator('tr', { has: adminPage.locator('strong', { hasText: pool }) });
  check((await poolRow.count()) === 1, `the pool ${pool} is listed`);
  await adminPage.screenshot({ path: join(ARTIFACTS, 'pools.png'), fullPage: true });
  await confirmClick(poolRow.getByRole('button', { name: 'Delete' }), pool, false);
  check(adminPage.url() === `${BASE}/admin/pools`, `dismissing stays on the page, at ${adminPage.url()}`);
  await adminPage.reload();
  check((await poolRow.count()) === 1, 'dismissing the confirmation keeps the pool');
  await confirmClick(poolRow.getByRole('button', { name: 'Delete' }), pool, true);
  check((await poolRow.count()) === 0, 'accepting the confirmation deletes the pool');
  step(`pool ${pool}: a plain confirmation, kept on dismiss, deleted on accept`);

  const tokenName = "t');alert(2);('";
  await adminPage.goto(`${BASE}/admin`);
  await adminPage.fill('input[name=name]', tokenName);
  await Promise.all([adminPage.waitForNavigation(), adminPage.getByRole('button', { name: 'Create token' }).click()]);
  const tokenRow = adminPage.locator('tr', { has: adminPage.locator('td', { hasText: tokenName }) });
  check((await tokenRow.count()) === 1, `the token ${tokenName} is listed`);
  await confirmClick(tokenRow.getByRole('button', { name: 'Revoke' }), tokenName, false);
  await adminPage.goto(`${BASE}/admin`); // (the page that showed the new token was a POST's answer)
  check((await tokenRow.count()) === 1, 'dismissing the confirmation keeps the token');
  await confirmClick(tokenRow.getByRole('button', { name: 'Revoke' }), tokenName, true);
  check((await tokenRow.count()) === 0, 'accepting the confirmation revokes the token');
  step(`token ${tokenName}: a plain confirmation, kept on dismiss, revoked on accept`);

  // The run graph's run picker submits itself without an inline handler.
  await adminPage.goto(`${BASE}/dags/${DAG}/graph`);
  const picker = adminPage.locator('select[name=run_id]');
  const runOption = await picker.locator('option').first().getAttribute('value');
  await Promise.all([adminPage.waitForURL(/run_id=/), picker.selectOption(runOption)]);
  step('graph run picker submits through data-autosubmit');

  // 5. Every page, desktop and phone: axe-core (0 serious/critical violations), no
  // page-level horizontal scroll at 390 px, a screenshot of each.
  const runs = await api('GET', `/dags/${DAG}/dagRuns?limit=1`, operator.token);
  const sweepRun = encodeURIComponent(runs.json?.dag_runs?.[0]?.dag_run_id ?? runId);
  const pages = [
    ['dags', '/dags'],
    ['grid', `/dags/${DAG}`],
    ['graph', `/dags/${DAG}/graph`],
    ['durations', `/dags/${DAG}/durations`],
    ['calendar', `/dags/${DAG}/calendar`],
    ['source', `/dags/${DAG}/source`],
    ['dags-by-tag', '/dags?tag=e2e&owner=on-call'],
    ['run', `/dags/${DAG}/runs/${sweepRun}`],
    ['task', `/dags/${DAG}/runs/${sweepRun}/tasks/${TASK}`],
    ['trigger', `/dags/${DAG}/trigger`],
    ['audit', '/audit'],
    ['admin', '/admin'],
    ['pools', '/admin/pools'],
    ['users', '/admin/users'],
    ['not-found', '/dags/no_such_dag'],
  ];
  const violations = [];
  const tooWide = [];
  async function sweep(page, name, path, who) {
    for (const [size, viewport] of [['desktop', { width: 1366, height: 900 }], ['phone', { width: 390, height: 844 }]]) {
      await page.setViewportSize(viewport);
      await page.goto(`${BASE}${path}`);
      await page.waitForLoadState('load');
      await page.screenshot({ path: join(ARTIFACTS, `${size}-${name}.png`), fullPage: true });
      if (size === 'phone') {
        const width = await page.evaluate(() => document.documentElement.scrollWidth);
        if (width > 390) tooWide.push(`${name} (${path}): scrollWidth ${width}`);
      }
      // Injected through the DevTools protocol (not a <script>), so the page's CSP stays.
      await page.evaluate(AXE_SOURCE);
      const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
      for (const v of result.violations) {
        if (v.impact === 'serious' || v.impact === 'critical') {
          const where = v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ');
          violations.push(`${who} ${size} ${name}: ${v.impact} ${v.id} (${v.help}) at ${where}`);
        }
      }
    }
  }
  for (const [name, path] of pages) await sweep(adminPage, name, path, 'admin');
  // Keyboard: on a phone, Tab reaches each page's actions (and focus is visible).
  async function tabTo(path, label) {
    await adminPage.goto(`${BASE}${path}`);
    for (let presses = 1; presses <= 80; presses++) {
      await adminPage.keyboard.press('Tab');
      const focused = await adminPage.evaluate(() => {
        const el = document.activeElement;
        const box = el?.getBoundingClientRect();
        return { text: (el?.innerText || el?.value || el?.getAttribute('aria-label') || '').trim(), right: box?.right ?? 0 };
      });
      if (focused.text === label) {
        check(focused.right <= 390, `${label} on ${path} is on screen when focused (right edge ${focused.right})`);
        return presses;
      }
    }
    throw new Error(`check failed: Tab never reached ${label} on ${path}`);
  }
  await adminPage.setViewportSize({ width: 390, height: 844 });
  const keyboard = [
    ['/dags', 'Pause'],
    [`/dags/${DAG}/runs/${sweepRun}`, 'Clear whole run'],
    [`/dags/${DAG}/runs/${sweepRun}/tasks/${TASK}`, 'Retry'],
    [`/dags/${DAG}/trigger`, 'Trigger run'],
  ];
  for (const [path, label] of keyboard) {
    const presses = await tabTo(path, label);
    step(`keyboard: ${label} on ${path} after ${presses} Tab presses`);
  }
  await adminContext.close();
  const anonymousContext = await browser.newContext();
  const loginPage = await anonymousContext.newPage();
  await sweep(loginPage, 'login', '/login', 'anonymous');
  await anonymousContext.close();
  step(`swept ${pages.length + 1} pages at 1366 and 390 px: ${violations.length} serious/critical axe violations, ${tooWide.length} too wide`);
  check(tooWide.length === 0 && violations.length === 0,
    `pages wider than a 390 px phone:\n${tooWide.join('\n')}\naxe-core serious or critical violations:\n${violations.join('\n')}`);
  check(pageProblems.length === 0, `pages reported CSP violations or script errors:\n${pageProblems.join('\n')}`);
} finally {
  await browser.close();
  alertServer.close();
}

// 5. The metrics endpoint counts what just happened (needs a token too): flaky failed
// once, then flaky and report succeeded.
const anonymous = await fetch(`${BASE}/metrics`);
check(anonymous.status === 401, `/metrics without a token is 401, got ${anonymous.status}`);
const metrics = await fetch(`${BASE}/metrics`, { headers: { authorization: `Bearer ${viewer.token}` } });
const text = await metrics.text();
check(metrics.status === 200, `/metrics answered ${metrics.status}: ${text}`);
for (const series of [
  `nightshift_task_finished_total{dag_id="${DAG}",kind="command",state="failed"} 1`,
  `nightshift_task_finished_total{dag_id="${DAG}",kind="command",state="success"} 2`,
  'nightshift_scheduler_tick_duration_seconds_count',
  'nightshift_task_claim_to_start_seconds_bucket',
  'nightshift_worker_slots_busy',
  'nightshift_task_instances{state="running"}',
  'nightshift_db_pool_connections{state="idle"}',
]) {
  check(text.includes(series), `/metrics has ${series}:\n${text}`);
}
step('metrics recorded the two tries');
