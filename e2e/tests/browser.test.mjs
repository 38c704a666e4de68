// GraphiQL in headless Chromium, as a person uses it: open /graphql in the browser, put the
// token in the headers editor, type a query, run it, read the result pane. The page must
// work offline: every request it makes goes to the server itself.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';

import { chromium } from 'playwright-core';

import { BASE_URL, DEMO, GRAPHQL_URL, TOKEN, WS_URL, post, sleep } from '../lib.mjs';

const CHROMIUM = process.env.E2E_CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = new URL('../artifacts/', import.meta.url);
const ORIGIN = new URL(BASE_URL);

/** Whether a URL is the server's own (http or ws on the same host and port), or local data. */
function isOwn(url) {
  const u = new URL(url);
  if (u.protocol === 'data:' || u.protocol === 'blob:' || u.protocol === 'about:') return true;
  return u.hostname === ORIGIN.hostname && u.port === ORIGIN.port && ['http:', 'ws:'].includes(u.protocol);
}

let browser;
before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium (the test never downloads a browser)`);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    timeout: 60_000,
  });
});
after(async () => {
  await browser?.close();
});

/** The editor (CodeMirror 5 in GraphiQL 2–3, Monaco in GraphiQL 4–5) inside `container`. */
const editorIn = (container) => container.locator('.CodeMirror, .monaco-editor').first();

/** The text an editor shows (what a person reads; Monaco renders spaces as U+00A0). */
async function editorText(editor) {
  return editor.evaluate((el) => {
    if (el.CodeMirror) return el.CodeMirror.getValue();
    const lines = el.querySelector('.view-lines') ?? el;
    return lines.innerText.replace(/\u00a0/g, ' ');
  });
}

/** Clicks into an editor, clears it and types `text` with the keyboard. */
async function typeInto(page, editor, text) {
  await editor.click();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Backspace');
  await page.keyboard.type(text, { delay: 5 });
  await page.keyboard.press('Escape'); // close any autocompletion popup
}

/** A page recording its requests (foreign ones refused at once) and its errors. */
async function openPage() {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  const requests = [];
  const foreign = [];
  const problems = [];
  page.on('request', (request) => {
    requests.push(`${request.method()} ${request.url()}`);
    if (!isOwn(request.url())) foreign.push(request.url());
  });
  page.on('websocket', (ws) => {
    requests.push(`WS ${ws.url()}`);
    if (!isOwn(ws.url())) foreign.push(ws.url());
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => message.type() === 'error' && problems.push(`console: ${message.text()}`));
  // The machine has no network: refuse other hosts at once rather than wait for timeouts.
  await page.route((url) => !isOwn(url.href), (route) => route.abort('blockedbyclient'));
  const diagnostics = () =>
    `\nrequests:\n  ${requests.join('\n  ')}\nproblems:\n  ${problems.join('\n  ') || '(none)'}`;
  const screenshot = async (name) => {
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: new URL(name, ARTIFACTS).pathname, fullPage: true });
  };
  return { context, page, requests, foreign, diagnostics, screenshot };
}

/** Opens GraphiQL from the server and types the token into its headers editor. */
async function openGraphiQL({ page, diagnostics }) {
  // A browser's navigation: Accept: text/html,…
  const response = await page.goto(GRAPHQL_URL, { waitUntil: 'load', timeout: 30_000 });
  assert.equal(response.status(), 200);
  assert.match(response.headers()['content-type'] ?? '', /text\/html/);

  const queryEditor = editorIn(page.locator('.graphiql-query-editor'));
  await queryEditor.waitFor({ state: 'visible', timeout: 30_000 }).catch((error) => {
    throw new Error(`GraphiQL did not render its query editor: ${error.message}${diagnostics()}`);
  });

  // The headers editor: the Headers tab of the editor tools.
  const headersTab = page.locator('.graphiql-editor-tools').getByRole('tab', { name: 'Headers' })
    .or(page.locator('.graphiql-editor-tools button', { hasText: 'Headers' })).first();
  await headersTab.click();
  const headersEditor = editorIn(page.locator('.graphiql-editor-tool .graphiql-editor:not(.hidden)').last());
  await headersEditor.waitFor({ state: 'visible', timeout: 10_000 });
  await typeInto(page, headersEditor, `{"Authorization": "Bearer ${TOKEN}"}`);
  const headersText = await editorText(headersEditor);
  assert.deepEqual(JSON.parse(headersText), { Authorization: `Bearer ${TOKEN}` }, `the headers editor holds ${headersText}`);
  return queryEditor;
}

/** Types a query into the query editor and runs it with the run button. */
async function run(page, queryEditor, query) {
  await typeInto(page, queryEditor, query);
  const typed = (await editorText(queryEditor)).replace(/\s+/g, ' ').trim();
  assert.equal(typed, query, 'the query editor holds the typed query');
  // A person glances at the query before running it; GraphiQL parses the editor's text
  // (to tell a subscription from a query) a moment after the last keystroke.
  await sleep(500);
  await page.locator('.graphiql-execute-button').click();
}

/** The result pane's text, once it shows `text`. */
async function resultShowing(page, text, diagnostics) {
  const pane = page.locator('.graphiql-response');
  await pane.getByText(text).first().waitFor({ timeout: 30_000 }).catch(async (error) => {
    const shown = await pane.innerText().catch(() => '(no result pane)');
    throw new Error(`the result pane did not show ${JSON.stringify(text)}: ${error.message}\nit shows: ${shown}${diagnostics()}`);
  });
  return (await pane.innerText()).replace(/\u00a0/g, ' ');
}

test('GraphiQL from the server runs a typed query with the token and shows seeded data, offline', { timeout: 120_000 }, async () => {
  const tab = await openPage();
  const { page, requests, foreign, diagnostics, screenshot } = tab;
  try {
    const queryEditor = await openGraphiQL(tab);
    await run(page, queryEditor, '{ me { email } workspaces { nodes { id name } } }');
    const shown = await resultShowing(page, DEMO.workspaceName, diagnostics);
    assert.match(shown, /"email": "demo@iofold\.dev"/);
    assert.match(shown, new RegExp(`"id": "${DEMO.workspace}"`));
    assert.match(shown, /"name": "Demo Workspace"/);
    assert.doesNotMatch(shown, /"errors"/);

    // GraphiQL loaded the schema (its introspection query): the docs show the roots.
    const docs = page.locator('.graphiql-doc-explorer');
    if (!(await docs.isVisible())) await page.getByRole('button', { name: /Documentation Explorer/i }).first().click();
    await docs.getByText('Root Types').first().waitFor({ timeout: 20_000 }).catch(async (error) => {
      const text = await docs.innerText().catch(() => '(no docs pane)');
      throw new Error(`GraphiQL could not load the schema: the docs pane shows "${text.trim()}" (${error.message})${diagnostics()}`);
    });
    assert.match(await docs.innerText(), /query\s*:\s*Query/);
    await screenshot('graphiql.png');

    // The query went to this server, and nothing to any other host.
    assert.ok(requests.some((r) => r === `POST ${GRAPHQL_URL}`), `GraphiQL posted to ${GRAPHQL_URL}${diagnostics()}`);
    assert.deepEqual(foreign, [], `the page made requests to other hosts${diagnostics()}`);
  } catch (error) {
    await screenshot('graphiql.png').catch(() => {});
    throw error;
  } finally {
    await tab.context.close();
  }
});

test('GraphiQL runs a subscription over the server\'s WebSocket and shows each pushed change', { timeout: 120_000 }, async () => {
  const created = await post({
    query: 'mutation ($ws: ID!) { createJob(input: { workspaceId: $ws, type: IMPORT }) { job { id } } }',
    variables: { ws: DEMO.workspace },
  });
  assert.equal(created.body.errors, undefined, JSON.stringify(created.body));
  const jobId = created.body.data.createJob.job.id;
  const progress = (value) =>
    post({
      query: 'mutation ($id: ID!, $p: Int) { updateJobProgress(id: $id, progress: $p, status: RUNNING) { job { id } } }',
      variables: { id: jobId, p: value },
    });

  const tab = await openPage();
  const { page, requests, foreign, diagnostics, screenshot } = tab;
  try {
    const queryEditor = await openGraphiQL(tab);
    await run(page, queryEditor, `subscription { jobUpdated(workspaceId: "${DEMO.workspace}", jobId: "${jobId}") { id status progress } }`);
    // The subscription is live once the browser's WebSocket is open and acknowledged;
    // report progress until the pane shows it (each report is a new event).
    let shown = '';
    for (let attempt = 1; attempt <= 20 && !/"progress": 4\d/.test(shown); attempt++) {
      const result = await progress(40 + Math.min(attempt, 9));
      assert.equal(result.body.errors, undefined, JSON.stringify(result.body));
      await sleep(250);
      shown = (await page.locator('.graphiql-response').innerText().catch(() => '')).replace(/\u00a0/g, ' ');
    }
    assert.match(shown, /"progress": 4\d/, `the result pane shows the pushed job: ${shown}${diagnostics()}`);
    assert.match(shown, /"status": "RUNNING"/);
    assert.match(shown, new RegExp(`"id": "${jobId}"`));
    await progress(77);
    shown = await resultShowing(page, '77', diagnostics);
    assert.match(shown, /"progress": 77/);
    await screenshot('graphiql-subscription.png');
    assert.ok(requests.some((r) => r === `WS ${WS_URL}`), `the subscription went over ${WS_URL}${diagnostics()}`);
    assert.deepEqual(foreign, [], `the page made requests to other hosts${diagnostics()}`);
  } catch (error) {
    await screenshot('graphiql-subscription.png').catch(() => {});
    throw error;
  } finally {
    await tab.context.close();
  }
});
