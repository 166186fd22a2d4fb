// End-to-end test of nightshift's web UI in headless Chromium, driven by playwright-core.
//
// tests/browser.rs starts `nightshift standalone` on a fresh SQLite file with a DAG whose
// only task fails on its first try, creates the users and tokens, then runs this script
// with their secrets in the environment. The script plays the on-call engineer: sign in
// as operator, open the DAG, open the failed task's log from the grid (one click), retry
// it, see it succeed; then sign in as viewer: no retry button, and the API answers 403.
// Screenshots of the DAG list, grid, graph and task page go to NS_ARTIFACTS.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

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
  async function signIn(user) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    context.setDefaultTimeout(15_000);
    const page = await context.newPage();
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
  await page.screenshot({ path: join(ARTIFACTS, 'task-failed.png'), fullPage: true });
  step('failed task log is on the page one click from the grid');

  page.once('dialog', (dialog) => dialog.accept());
  const retry = page.getByRole('button', { name: 'Retry', exact: true });
  check((await retry.count()) === 1, 'the operator sees one Retry button');
  await Promise.all([page.waitForLoadState('load'), retry.click()]);
  step('clicked Retry');
  await until('the retried task to succeed', 60_000, async () => {
    await page.goto(taskUrl);
    const state = await page.locator('h2 .badge').first().innerText();
    return { done: state === 'success', value: state };
  });
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
  await opContext.close();
  step('task went to success after the retry');

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
} finally {
  await browser.close();
}

// 4. The metrics endpoint counts what just happened (needs a token too): flaky failed
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
