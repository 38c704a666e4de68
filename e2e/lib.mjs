// Shared helpers of the end-to-end tests. `run.sh` starts the server and passes it here
// through the environment: E2E_URL (http://127.0.0.1:<port>), E2E_TOKEN (the seeded demo
// user's API token), E2E_OUTSIDER_TOKEN (a user of no workspace) and E2E_BACKEND
// (sqlite | postgres).

import { createHash } from 'node:crypto';

function required(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run the end-to-end tests with \`bash e2e/run.sh\`, which starts the server`);
  }
  return value;
}

export const BASE_URL = required('E2E_URL').replace(/\/+$/, '');
export const GRAPHQL_URL = `${BASE_URL}/graphql`;
export const WS_URL = GRAPHQL_URL.replace(/^http/, 'ws');
export const TOKEN = required('E2E_TOKEN');
/** A user who is a member of no workspace (`iofold-graph token create`). */
export const OUTSIDER_TOKEN = required('E2E_OUTSIDER_TOKEN');
export const BACKEND = process.env.E2E_BACKEND || 'sqlite';

/** The seeded demo rows (src/seed.rs: fixed ids). */
const demoId = (prefix, n) => `${prefix}_0194a1b2-0000-7000-8000-${String(n).padStart(12, '0')}`;
export const DEMO = {
  user: demoId('user', 1),
  userEmail: 'demo@iofold.dev',
  workspace: demoId('workspace', 1),
  workspaceName: 'Demo Workspace',
  agent: demoId('agent', 1),
  agentName: 'Support bot',
  agentVersions: [demoId('agent_version', 1), demoId('agent_version', 2)],
  activeVersion: demoId('agent_version', 2),
  eval: demoId('eval', 1),
  traces: [1, 2, 3, 4, 5].map((n) => demoId('trace', n)),
  feedback: [1, 2, 3, 4, 5].map((n) => demoId('feedback', n)),
  evalExecutions: [1, 2, 3, 4, 5].map((n) => demoId('eval_execution', n)),
  job: demoId('job', 1),
  execution: demoId('execution', 1),
};

/** SHA-256 in hex, as Apollo's persisted-query link wants it. */
export const sha256 = (text) => createHash('sha256').update(text).digest('hex');

function parseBody(body) {
  if (typeof body !== 'string') return body;
  try {
    return JSON.parse(body);
  } catch {
    return body;
  }
}

/**
 * A `fetch` that records every request it sends (url, method, headers, parsed JSON body)
 * and the response (status, parsed JSON body): pass it to Apollo's links as `fetch`.
 */
export function recordingFetch() {
  const requests = [];
  async function recording(input, init = {}) {
    const url = typeof input === 'string' ? input : input.url ?? String(input);
    const entry = {
      url,
      method: (init.method || 'GET').toUpperCase(),
      headers: new Headers(init.headers),
      body: parseBody(init.body),
    };
    requests.push(entry);
    const response = await fetch(input, init);
    entry.status = response.status;
    entry.response = await response
      .clone()
      .text()
      .then(parseBody)
      .catch(() => undefined);
    return response;
  }
  return { fetch: recording, requests };
}

/** A raw GraphQL POST (no client library), for checks of the wire itself. */
export async function post(body, { token = TOKEN, headers = {} } = {}) {
  const response = await fetch(GRAPHQL_URL, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...headers,
    },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: parseBody(text) };
}

/** Resolves after `ms` milliseconds. */
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Rejects with a message naming `what` when `promise` takes longer than `ms`. */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The `extensions.code`s of the GraphQL errors of an ApolloError or a result. */
export function errorCodes(errorOrResult) {
  const errors = [
    ...(errorOrResult?.graphQLErrors ?? []),
    ...(errorOrResult?.errors ?? []),
    ...(errorOrResult?.networkError?.result?.errors ?? []),
  ];
  return errors.map((e) => e?.extensions?.code);
}

/**
 * A readable line diff of two long texts: the common head and tail are cut, the rest is
 * shown as `-` (expected) and `+` (actual) lines with a few lines of context, like
 * `diff -u`, so a failure names the exact fields that differ.
 */
export function lineDiff(expected, actual, { context = 3, maxLines = 200 } = {}) {
  const a = expected.split('\n');
  const b = actual.split('\n');
  // Longest common subsequence on the differing middle (both ends trimmed first).
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head++;
  let tail = 0;
  while (tail < a.length - head && tail < b.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail++;
  const am = a.slice(head, a.length - tail);
  const bm = b.slice(head, b.length - tail);
  const ops = [];
  if (am.length * bm.length <= 25_000_000) {
    const dp = Array.from({ length: am.length + 1 }, () => new Uint32Array(bm.length + 1));
    for (let i = am.length - 1; i >= 0; i--) {
      for (let j = bm.length - 1; j >= 0; j--) {
        dp[i][j] = am[i] === bm[j] ? dp[i + 1][j + 1] + 1 : Math.max(dp[i + 1][j], dp[i][j + 1]);
      }
    }
    let i = 0;
    let j = 0;
    while (i < am.length || j < bm.length) {
      if (i < am.length && j < bm.length && am[i] === bm[j]) {
        ops.push([' ', am[i]]);
        i++;
        j++;
      } else if (j < bm.length && (i === am.length || dp[i][j + 1] >= dp[i + 1][j])) {
        ops.push(['+', bm[j++]]);
      } else {
        ops.push(['-', am[i++]]);
      }
    }
  } else {
    for (const line of am) ops.push(['-', line]);
    for (const line of bm) ops.push(['+', line]);
  }
  // Print the changed lines with `context` unchanged lines around each hunk.
  const before = a.slice(Math.max(0, head - context), head).map((l) => [' ', l]);
  const after = a.slice(a.length - tail, a.length - tail + context).map((l) => [' ', l]);
  const all = [...before, ...ops, ...after];
  const keep = new Array(all.length).fill(false);
  all.forEach(([op], k) => {
    if (op !== ' ') for (let d = -context; d <= context; d++) if (all[k + d]) keep[k + d] = true;
  });
  const out = [`--- expected (line ${head + 1}…)`, '+++ actual'];
  let skipped = false;
  all.forEach(([op, line], k) => {
    if (keep[k]) {
      out.push(`${op} ${line}`);
      skipped = false;
    } else if (!skipped) {
      out.push('  …');
      skipped = true;
    }
  });
  if (out.length > maxLines) return [...out.slice(0, maxLines), `  … (${out.length - maxLines} more diff lines)`].join('\n');
  return out.join('\n');
}
