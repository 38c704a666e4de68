// Apollo Client (v3) against the running server: normalised cache, cursor pagination,
// mutations updating the cache, automatic persisted queries, batching, subscriptions over
// graphql-ws, and authentication errors as Apollo surfaces them.

import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql, split } from '@apollo/client/core/index.js';
import { loadDevMessages, loadErrorMessages } from '@apollo/client/dev/index.js';
import { BatchHttpLink } from '@apollo/client/link/batch-http/index.js';
import { createPersistedQueryLink } from '@apollo/client/link/persisted-queries/index.js';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions/index.js';
import { getMainDefinition, relayStylePagination } from '@apollo/client/utilities/index.js';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

import {
  BACKEND,
  DEMO,
  GRAPHQL_URL,
  OUTSIDER_TOKEN,
  TOKEN,
  WS_URL,
  errorCodes,
  post,
  recordingFetch,
  sha256,
  sleep,
  withTimeout,
} from '../lib.mjs';

// Apollo's warnings in full, not as links.
loadDevMessages();
loadErrorMessages();

// Apollo's GraphQLWsLink tells close and error events apart with `instanceof WebSocket`;
// Node 20 has no global WebSocket (browsers and Node 22 do), so give it the `ws` one.
globalThis.WebSocket ??= WebSocket;

const authHeaders = (token = TOKEN) => (token ? { authorization: `Bearer ${token}` } : {});

/** An Apollo Client over HttpLink whose requests are recorded. */
function httpClient({ token = TOKEN, typePolicies, possibleTypes } = {}) {
  const recorder = recordingFetch();
  const client = new ApolloClient({
    link: new HttpLink({ uri: GRAPHQL_URL, fetch: recorder.fetch, headers: authHeaders(token) }),
    cache: new InMemoryCache({ typePolicies, possibleTypes }),
  });
  return { client, requests: recorder.requests };
}

/**
 * Watches a query: resolves with its first complete result and the subscription that keeps
 * the watch (and its cache updates) alive.
 */
function watchFirst(watch, onResult = () => {}) {
  return new Promise((resolve, reject) => {
    let first = true;
    const subscription = watch.subscribe({
      next: (result) => {
        onResult(result);
        if (first && !result.loading && result.data) {
          first = false;
          resolve({ result, subscription });
        }
      },
      error: reject,
    });
  });
}

/** Every graphql-ws client made by a test, closed at the end. */
const wsClients = [];
after(async () => {
  await Promise.all(wsClients.map((c) => c.dispose()));
});

/** A graphql-ws client (the `ws` package as WebSocket), with its lifecycle events recorded. */
function wsClient({ connectionParams } = {}) {
  const events = { connected: 0, closed: [] };
  let resolveConnected;
  const connected = new Promise((resolve) => {
    resolveConnected = resolve;
  });
  const client = createClient({
    url: WS_URL,
    webSocketImpl: WebSocket,
    connectionParams,
    lazy: true,
    retryAttempts: 0,
    shouldRetry: () => false,
    on: {
      connected: () => {
        events.connected++;
        resolveConnected();
      },
      closed: (event) => events.closed.push({ code: event?.code, reason: event?.reason }),
    },
  });
  wsClients.push(client);
  return { client, events, connected };
}

/** HTTP for queries and mutations, WebSocket for subscriptions: the usual Apollo set-up. */
function splitClient({ token = TOKEN } = {}) {
  const recorder = recordingFetch();
  const ws = wsClient({ connectionParams: token ? { authorization: `Bearer ${token}` } : undefined });
  const link = split(
    ({ query }) => {
      const definition = getMainDefinition(query);
      return definition.kind === 'OperationDefinition' && definition.operation === 'subscription';
    },
    new GraphQLWsLink(ws.client),
    new HttpLink({ uri: GRAPHQL_URL, fetch: recorder.fetch, headers: authHeaders(token) }),
  );
  const client = new ApolloClient({ link, cache: new InMemoryCache() });
  return { client, requests: recorder.requests, ws };
}

describe(`Apollo Client (${BACKEND})`, () => {
  test('a nested query is normalised on __typename + id: one cache entry per row, whatever the path', async () => {
    const { client, requests } = httpClient();
    const WORKSPACE_AGENTS = gql`
      query WorkspaceAgents($id: ID!) {
        workspace(id: $id) {
          id
          name
          agents(first: 10) {
            totalCount
            nodes {
              id
              name
              activeVersion { id version status }
              agentVersions(first: 10) { nodes { id version status agent { id name } } }
              activeEval { id name }
              evals(first: 10) {
                nodes {
                  id
                  name
                  agent { id }
                  evalExecutions(first: 10) {
                    totalCount
                    nodes { id predictedResult trace { id feedback { id rating } } }
                  }
                }
              }
            }
          }
        }
      }
    `;
    const { data, errors } = await client.query({ query: WORKSPACE_AGENTS, variables: { id: DEMO.workspace } });
    assert.equal(errors, undefined);
    assert.equal(requests.length, 1);

    // The data itself.
    assert.equal(data.workspace.__typename, 'Workspace');
    assert.equal(data.workspace.name, DEMO.workspaceName);
    assert.equal(data.workspace.agents.totalCount, 1);
    const [agent] = data.workspace.agents.nodes;
    assert.equal(agent.id, DEMO.agent);
    assert.equal(agent.name, DEMO.agentName);
    assert.equal(agent.activeVersion.id, DEMO.activeVersion);
    assert.deepEqual(agent.agentVersions.nodes.map((v) => v.id).sort(), [...DEMO.agentVersions].sort());
    assert.equal(agent.activeEval.id, DEMO.eval);
    const [evalNode] = agent.evals.nodes;
    assert.equal(evalNode.evalExecutions.totalCount, 5);
    assert.deepEqual(evalNode.evalExecutions.nodes.map((e) => e.trace.id).sort(), [...DEMO.traces].sort());
    for (const execution of evalNode.evalExecutions.nodes) {
      assert.equal(execution.trace.feedback.__typename, 'Feedback');
      // The seeded eval agrees with every human rating.
      assert.equal(execution.predictedResult, execution.trace.feedback.rating === 'POSITIVE');
    }

    // The normalised cache: one entry per row, keyed `<__typename>:<id>`.
    const cache = client.cache;
    const store = cache.extract();
    const keys = Object.keys(store);
    const ofType = (type) => keys.filter((k) => k.startsWith(`${type}:`));
    const versionKey = cache.identify({ __typename: 'AgentVersion', id: DEMO.activeVersion });
    const agentKey = cache.identify({ __typename: 'Agent', id: DEMO.agent });
    const evalKey = cache.identify({ __typename: 'Eval', id: DEMO.eval });
    assert.equal(versionKey, `AgentVersion:${DEMO.activeVersion}`);
    assert.ok(store[versionKey], `${versionKey} is in the cache`);
    assert.deepEqual(ofType('Workspace'), [`Workspace:${DEMO.workspace}`]);
    assert.deepEqual(ofType('Agent'), [agentKey]);
    // The active version is reached as `agent.activeVersion` and in `agent.agentVersions`:
    // still 2 AgentVersion entries, not 3.
    assert.deepEqual(ofType('AgentVersion').sort(), DEMO.agentVersions.map((id) => `AgentVersion:${id}`).sort());
    assert.deepEqual(ofType('Eval'), [evalKey]);
    assert.equal(ofType('EvalExecution').length, 5);
    assert.equal(ofType('Trace').length, 5);
    assert.equal(ofType('Feedback').length, 5);

    // Both paths hold a reference to the same entry.
    const agentEntry = store[agentKey];
    assert.deepEqual(agentEntry.activeVersion, { __ref: versionKey });
    const versionsField = Object.keys(agentEntry).find((k) => k.startsWith('agentVersions'));
    assert.ok(
      agentEntry[versionsField].nodes.some((ref) => ref.__ref === versionKey),
      'agentVersions holds a reference to the active version entry',
    );
    assert.deepEqual(agentEntry.activeEval, { __ref: evalKey });
    // The agent reached back from each version is the same Agent entry.
    for (const id of DEMO.agentVersions) assert.deepEqual(store[`AgentVersion:${id}`].agent, { __ref: agentKey });

    // A change to the one entry shows on every path that reaches it.
    cache.modify({ id: versionKey, fields: { status: () => 'ARCHIVED' } });
    const reread = client.readQuery({ query: WORKSPACE_AGENTS, variables: { id: DEMO.workspace } });
    const rereadAgent = reread.workspace.agents.nodes[0];
    assert.equal(rereadAgent.activeVersion.status, 'ARCHIVED');
    assert.equal(rereadAgent.agentVersions.nodes.find((v) => v.id === DEMO.activeVersion).status, 'ARCHIVED');

    // Another query for the same row by its own root field merges into the same entry.
    const { data: one } = await client.query({
      query: gql`query OneVersion($id: ID!) { agentVersion(id: $id) { id promptTemplate } }`,
      variables: { id: DEMO.activeVersion },
    });
    assert.equal(one.agentVersion.id, DEMO.activeVersion);
    const merged = client.readFragment({
      id: versionKey,
      fragment: gql`fragment Merged on AgentVersion { id version promptTemplate }`,
    });
    assert.equal(merged.version, 2);
    assert.match(merged.promptTemplate, /never upsell/);
    assert.equal(Object.keys(client.cache.extract()).filter((k) => k.startsWith('AgentVersion:')).length, 2);
  });

  test('cursor pagination: fetchMore with relayStylePagination collects every trace once, in order', async () => {
    // More traces than one page, several sharing a timestamp (the id breaks the tie), so
    // pages cross runs of equal sort keys.
    const imported = await post({
      query: `mutation Import($ws: ID!, $traces: [TraceImportInput!]!) {
        importTraces(workspaceId: $ws, source: OPENAI, traces: $traces) { imported updated traces { id } }
      }`,
      variables: {
        ws: DEMO.workspace,
        traces: Array.from({ length: 22 }, (_, i) => ({
          traceId: `e2e-page-${String(i).padStart(2, '0')}`,
          timestamp: `2026-02-01T00:0${Math.floor(i / 3)}:00.000000Z`,
          steps: [{ type: 'llm_call', input: `question ${i}`, output: `answer ${i}`, error: null }],
        })),
      },
    });
    assert.equal(imported.status, 200, JSON.stringify(imported.body));
    assert.equal(imported.body.errors, undefined, JSON.stringify(imported.body.errors));
    const { imported: inserted, updated } = imported.body.data.importTraces;
    assert.equal(inserted + updated, 22);

    const { client, requests } = httpClient({
      typePolicies: { Query: { fields: { traces: relayStylePagination(['workspaceId', 'filter', 'orderBy']) } } },
    });
    const TRACE_PAGE = gql`
      query TracePage($ws: ID!, $first: Int, $after: String, $last: Int, $before: String) {
        traces(workspaceId: $ws, first: $first, after: $after, last: $last, before: $before) {
          totalCount
          edges { cursor node { id traceId timestamp } }
          pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
        }
      }
    `;
    const PAGE = 5;
    const watch = client.watchQuery({ query: TRACE_PAGE, variables: { ws: DEMO.workspace, first: PAGE } });
    const { result: first, subscription: watching } = await watchFirst(watch);
    const total = first.data.traces.totalCount;
    assert.ok(total >= 27, `totalCount ${total} counts the 5 seeded and 22 imported traces`);
    const pages = [first.data.traces.edges.map((e) => e.node.id)];
    let pageInfo = first.data.traces.pageInfo;
    assert.equal(pageInfo.hasPreviousPage, false);
    while (pageInfo.hasNextPage) {
      assert.ok(pages.length <= total, 'pagination ends');
      const more = await watch.fetchMore({ variables: { after: pageInfo.endCursor } });
      assert.equal(more.errors, undefined);
      assert.equal(more.data.traces.totalCount, total, 'totalCount is the same on every page');
      pages.push(more.data.traces.edges.map((e) => e.node.id));
      pageInfo = more.data.traces.pageInfo;
      assert.equal(pageInfo.hasPreviousPage, true, 'a page after a cursor has a previous page');
    }
    const ids = pages.flat();
    assert.equal(pages.length, Math.ceil(total / PAGE));
    pages.slice(0, -1).forEach((page, i) => assert.equal(page.length, PAGE, `page ${i + 1} is full`));
    assert.equal(new Set(ids).size, ids.length, 'no row on two pages');
    assert.equal(ids.length, total, 'every row is on a page');
    assert.equal(requests.length, pages.length, 'one request per page');

    // Apollo merged the pages into one cached list, in the same order.
    const merged = watch.getCurrentResult().data.traces;
    assert.deepEqual(merged.edges.map((e) => e.node.id), ids);
    assert.equal(merged.pageInfo.hasNextPage, false);
    // Default order: newest timestamp first.
    const stamps = merged.edges.map((e) => Date.parse(e.node.timestamp));
    stamps.slice(1).forEach((t, i) => assert.ok(t <= stamps[i], `timestamps descend at row ${i + 1}`));

    // One page of 100 holds the same rows in the same order.
    const whole = await client.query({
      query: TRACE_PAGE,
      variables: { ws: DEMO.workspace, first: 100 },
      fetchPolicy: 'no-cache',
    });
    assert.deepEqual(whole.data.traces.edges.map((e) => e.node.id), ids);

    // Backwards (last/before) gives the same rows, page by page from the end.
    const backwards = [];
    let before = null;
    for (;;) {
      const { data } = await client.query({
        query: TRACE_PAGE,
        variables: { ws: DEMO.workspace, last: PAGE, before },
        fetchPolicy: 'no-cache',
      });
      backwards.unshift(...data.traces.edges.map((e) => e.node.id));
      if (!data.traces.pageInfo.hasPreviousPage) break;
      before = data.traces.pageInfo.startCursor;
      assert.ok(backwards.length <= total, 'backward pagination ends');
    }
    assert.deepEqual(backwards, ids);
    watching.unsubscribe();
  });

  test('a mutation updates the normalised cache entry: watchers see it without a refetch', async () => {
    const { client, requests } = httpClient();
    const TRACE_RATING = gql`
      query TraceRating($id: ID!) {
        trace(id: $id) { id inputPreview feedback { id rating ratingDetail } }
      }
    `;
    const RATE = gql`
      mutation Rate($trace: ID!, $rating: FeedbackRating!, $detail: String, $agent: ID) {
        rateTrace(traceId: $trace, rating: $rating, ratingDetail: $detail, agentId: $agent) {
          created
          feedback { id rating ratingDetail }
        }
      }
    `;
    const traceId = DEMO.traces[0];
    const seen = [];
    const watch = client.watchQuery({ query: TRACE_RATING, variables: { id: traceId } });
    const { result: initial, subscription } = await watchFirst(watch, ({ data }) => data && seen.push(data.trace.feedback));
    try {
      const original = initial.data.trace.feedback;
      assert.equal(original.id, DEMO.feedback[0]);
      assert.equal(original.rating, 'POSITIVE');
      const untilSeen = (rating) =>
        withTimeout(
          (async () => {
            while (!seen.some((f) => f.rating === rating)) await sleep(10);
          })(),
          5000,
          `the watched query to show rating ${rating}`,
        );

      const changed = await client.mutate({
        mutation: RATE,
        variables: { trace: traceId, rating: 'NEGATIVE', detail: 'e2e: changed by Apollo', agent: DEMO.agent },
      });
      assert.equal(changed.data.rateTrace.created, false, 'the trace had a rating: it is updated');
      assert.equal(changed.data.rateTrace.feedback.id, original.id, 'the same Feedback row');
      await untilSeen('NEGATIVE');
      assert.deepEqual(
        { ...seen.at(-1) },
        { __typename: 'Feedback', id: original.id, rating: 'NEGATIVE', ratingDetail: 'e2e: changed by Apollo' },
      );
      const entry = client.cache.extract()[client.cache.identify({ __typename: 'Feedback', id: original.id })];
      assert.equal(entry.rating, 'NEGATIVE');
      assert.equal(entry.ratingDetail, 'e2e: changed by Apollo');
      assert.deepEqual(
        requests.map((r) => r.body.operationName),
        ['TraceRating', 'Rate'],
        'the watched query was not fetched again',
      );

      // And back, with `update<Type>`-style semantics of rateTrace (same row again).
      await client.mutate({
        mutation: RATE,
        variables: { trace: traceId, rating: 'POSITIVE', detail: original.ratingDetail, agent: DEMO.agent },
      });
      await untilSeen('POSITIVE');
      assert.equal(seen.at(-1).ratingDetail, original.ratingDetail);
      assert.deepEqual(requests.map((r) => r.body.operationName), ['TraceRating', 'Rate', 'Rate']);

      // A generic update<Type> mutation updates the Agent entry the same way.
      const { data: before } = await client.query({
        query: gql`query AgentDesc($id: ID!) { agent(id: $id) { id description updatedAt } }`,
        variables: { id: DEMO.agent },
      });
      const description = `${before.agent.description} (e2e ${Date.now()})`;
      const updated = await client.mutate({
        mutation: gql`mutation UpdateAgent($id: ID!, $patch: AgentPatch!) {
          updateAgent(id: $id, patch: $patch) { agent { id description updatedAt } }
        }`,
        variables: { id: DEMO.agent, patch: { description } },
      });
      assert.equal(updated.data.updateAgent.agent.description, description);
      const cached = client.readFragment({
        id: client.cache.identify({ __typename: 'Agent', id: DEMO.agent }),
        fragment: gql`fragment D on Agent { description updatedAt }`,
      });
      assert.equal(cached.description, description);
      assert.ok(Date.parse(cached.updatedAt) >= Date.parse(before.agent.updatedAt), 'updatedAt is stamped');
      await client.mutate({
        mutation: gql`mutation UpdateAgent($id: ID!, $patch: AgentPatch!) {
          updateAgent(id: $id, patch: $patch) { agent { id description } }
        }`,
        variables: { id: DEMO.agent, patch: { description: before.agent.description } },
      });
    } finally {
      subscription.unsubscribe();
    }
  });

  test('BatchHttpLink sends several operations in one HTTP request and each gets its result', async () => {
    const recorder = recordingFetch();
    const client = new ApolloClient({
      link: new BatchHttpLink({
        uri: GRAPHQL_URL,
        fetch: recorder.fetch,
        headers: authHeaders(),
        batchMax: 10,
        batchInterval: 50,
      }),
      cache: new InMemoryCache(),
    });
    const queries = [
      client.query({ query: gql`query Me { me { id email } }` }),
      client.query({ query: gql`query Ws($id: ID!) { workspace(id: $id) { id name } }`, variables: { id: DEMO.workspace } }),
      client.query({
        query: gql`query Tr($id: ID!) { trace(id: $id) { id feedback { id rating } } }`,
        variables: { id: DEMO.traces[2] },
      }),
      // One failing operation does not fail the others.
      client.query({
        query: gql`query BadCursor($ws: ID!) { traces(workspaceId: $ws, first: 1, after: "not-a-cursor") { nodes { id } } }`,
        variables: { ws: DEMO.workspace },
        errorPolicy: 'all',
      }),
    ];
    const [me, ws, trace, bad] = await Promise.all(queries);
    assert.equal(recorder.requests.length, 1, 'one HTTP request for four operations');
    const [request] = recorder.requests;
    assert.equal(request.method, 'POST');
    assert.ok(Array.isArray(request.body), 'the body is a JSON array of operations');
    assert.deepEqual(request.body.map((op) => op.operationName), ['Me', 'Ws', 'Tr', 'BadCursor']);
    assert.ok(Array.isArray(request.response) && request.response.length === 4, 'the response is an array of 4');

    assert.equal(me.data.me.email, DEMO.userEmail);
    assert.equal(me.data.me.id, DEMO.user);
    assert.equal(ws.data.workspace.name, DEMO.workspaceName);
    assert.equal(trace.data.trace.id, DEMO.traces[2]);
    assert.equal(trace.data.trace.feedback.rating, 'NEGATIVE');
    assert.deepEqual(errorCodes(bad), ['BAD_USER_INPUT']);
  });

  test('without a token a query is UNAUTHENTICATED; an unknown token is a 401 with the same code', async () => {
    const QUERY = gql`query Workspaces { workspaces { nodes { id name } } }`;
    const { client } = httpClient({ token: null });
    const result = await client.query({ query: QUERY, errorPolicy: 'all' });
    assert.deepEqual(errorCodes(result), ['UNAUTHENTICATED']);
    assert.ok(!result.data?.workspaces, 'no data without a token');
    await assert.rejects(client.query({ query: QUERY, fetchPolicy: 'network-only' }), (error) => {
      assert.equal(error.name, 'ApolloError');
      assert.deepEqual(errorCodes(error), ['UNAUTHENTICATED']);
      return true;
    });

    const { client: badClient, requests } = httpClient({ token: `iofold_${'0'.repeat(64)}` });
    await assert.rejects(badClient.query({ query: QUERY }), (error) => {
      assert.equal(error.networkError?.statusCode, 401);
      assert.deepEqual(errorCodes(error), ['UNAUTHENTICATED']);
      return true;
    });
    assert.equal(requests[0].status, 401);

    // Introspection answers without a token (schema tooling needs no credentials).
    const { data } = await client.query({ query: gql`query Intro { __schema { queryType { name } } }` });
    assert.equal(data.__schema.queryType.name, 'Query');
  });

  test("another user's token sees none of the workspace: null and empty lists, as if it did not exist", async () => {
    const { client } = httpClient({ token: OUTSIDER_TOKEN });
    const { data, errors } = await client.query({
      query: gql`query Outsider($ws: ID!, $trace: ID!) {
        me { email }
        workspace(id: $ws) { id name }
        trace(id: $trace) { id }
        workspaces { totalCount nodes { id } }
      }`,
      variables: { ws: DEMO.workspace, trace: DEMO.traces[0] },
      errorPolicy: 'all',
    });
    assert.equal(errors, undefined);
    assert.equal(data.me.email, 'outsider@e2e.test');
    assert.equal(data.workspace, null);
    assert.equal(data.trace, null);
    assert.equal(data.workspaces.totalCount, 0);
  });

  describe('automatic persisted queries', () => {
    const APQ_QUERY = gql`query ApqWorkspace($id: ID!) { workspace(id: $id) { id name } }`;
    const isPersistedQueryNotFound = (response) =>
      response?.errors?.some(
        (e) => e.message === 'PersistedQueryNotFound' || e.extensions?.code === 'PERSISTED_QUERY_NOT_FOUND',
      );

    test('POST: PersistedQueryNotFound, the link retries with the query, then the hash alone is enough', async () => {
      const recorder = recordingFetch();
      const client = new ApolloClient({
        link: ApolloLink.from([
          createPersistedQueryLink({ sha256 }),
          new HttpLink({ uri: GRAPHQL_URL, fetch: recorder.fetch, headers: authHeaders() }),
        ]),
        cache: new InMemoryCache(),
      });
      const variables = { id: DEMO.workspace };
      const first = await client.query({ query: APQ_QUERY, variables, fetchPolicy: 'network-only' });
      assert.equal(first.data.workspace.name, DEMO.workspaceName);
      const second = await client.query({ query: APQ_QUERY, variables, fetchPolicy: 'network-only' });
      assert.equal(second.data.workspace.name, DEMO.workspaceName);

      const summary = recorder.requests.map((r) => ({ status: r.status, hasQuery: 'query' in r.body, body: r.body, response: r.response }));
      assert.equal(recorder.requests.length, 3, `3 requests: ${JSON.stringify(summary, null, 1)}`);
      const [miss, register, hit] = recorder.requests;
      const hash = miss.body.extensions?.persistedQuery?.sha256Hash;
      assert.match(hash ?? '', /^[0-9a-f]{64}$/, 'the first request sends the hash');
      assert.equal(miss.body.extensions.persistedQuery.version, 1);
      assert.equal(miss.body.query, undefined, 'the first request has no query');
      assert.ok(isPersistedQueryNotFound(miss.response), `the server answers PersistedQueryNotFound: ${JSON.stringify(miss.response)}`);
      assert.equal(
        miss.response.errors.find((e) => e.message === 'PersistedQueryNotFound')?.extensions?.code,
        'PERSISTED_QUERY_NOT_FOUND',
      );
      assert.equal(typeof register.body.query, 'string', 'the retry sends the query');
      assert.equal(register.body.extensions.persistedQuery.sha256Hash, hash, 'with the same hash');
      assert.equal(sha256(register.body.query), hash, 'the hash is the SHA-256 of the query text');
      assert.equal(register.response.errors, undefined);
      assert.equal(hit.body.query, undefined, 'the second query goes by hash only');
      assert.equal(hit.body.extensions.persistedQuery.sha256Hash, hash);
      assert.equal(hit.status, 200);
      assert.equal(hit.response.errors, undefined);
      assert.equal(hit.response.data.workspace.name, DEMO.workspaceName);
    });

    test('GET (useGETForHashedQueries): the hash in the URL, the registration by POST', async () => {
      const recorder = recordingFetch();
      const client = new ApolloClient({
        link: ApolloLink.from([
          createPersistedQueryLink({ sha256, useGETForHashedQueries: true }),
          new HttpLink({ uri: GRAPHQL_URL, fetch: recorder.fetch, headers: authHeaders() }),
        ]),
        cache: new InMemoryCache(),
      });
      // A query text of its own, so its hash is not registered yet.
      const query = gql`query ApqGet($id: ID!) { workspace(id: $id) { id name createdAt } }`;
      const variables = { id: DEMO.workspace };
      const first = await client.query({ query, variables, fetchPolicy: 'network-only' });
      assert.equal(first.data.workspace.name, DEMO.workspaceName);
      const second = await client.query({ query, variables, fetchPolicy: 'network-only' });
      assert.equal(second.data.workspace.name, DEMO.workspaceName);

      const summary = recorder.requests.map((r) => ({ method: r.method, url: r.url, status: r.status, response: r.response }));
      assert.deepEqual(
        recorder.requests.map((r) => r.method),
        ['GET', 'POST', 'GET'],
        `requests: ${JSON.stringify(summary, null, 1)}`,
      );
      const [miss, register, hit] = recorder.requests;
      const missUrl = new URL(miss.url);
      assert.equal(missUrl.searchParams.get('query'), null, 'the GET has no query text');
      assert.match(missUrl.searchParams.get('extensions') ?? '', /persistedQuery/);
      assert.ok(isPersistedQueryNotFound(miss.response), `PersistedQueryNotFound: ${JSON.stringify(miss.response)}`);
      assert.equal(typeof register.body.query, 'string');
      assert.equal(register.response.errors, undefined);
      const hitUrl = new URL(hit.url);
      assert.equal(hitUrl.searchParams.get('query'), null, 'the second GET goes by hash only');
      assert.equal(hit.status, 200);
      assert.equal(hit.response.data.workspace.name, DEMO.workspaceName);
    });

    test('a query sent with a hash that is not its SHA-256 is never stored under that hash', async () => {
      // Otherwise anyone could make a hash that others use answer a query of their choosing.
      const unknown = await post({ extensions: { persistedQuery: { version: 1, sha256Hash: sha256(`unknown ${Date.now()}`) } } });
      assert.ok(isPersistedQueryNotFound(unknown.body), `APQ support: an unknown hash is PersistedQueryNotFound, got ${unknown.status} ${JSON.stringify(unknown.body)}`);
      const honest = 'query Honest { me { id } }';
      const forged = 'query Forged { __typename }';
      const hash = sha256(honest);
      const poison = await post({ query: forged, extensions: { persistedQuery: { version: 1, sha256Hash: hash } } });
      const lookup = await post({ extensions: { persistedQuery: { version: 1, sha256Hash: hash } } });
      assert.ok(
        isPersistedQueryNotFound(lookup.body),
        `the forged registration (${poison.status} ${JSON.stringify(poison.body)}) must not be stored: ` +
          `the hash alone then answered ${lookup.status} ${JSON.stringify(lookup.body)}`,
      );
    });
  });

  describe('subscriptions over graphql-ws (GraphQLWsLink)', () => {
    const JOB_UPDATES = gql`
      subscription JobUpdates($ws: ID!, $job: ID) {
        jobUpdated(workspaceId: $ws, jobId: $job) { id status progress result }
      }
    `;
    const PROGRESS = gql`
      mutation Progress($id: ID!, $progress: Int, $status: JobStatus, $result: JSON) {
        updateJobProgress(id: $id, progress: $progress, status: $status, result: $result) { job { id status progress } }
      }
    `;
    // A worker's reports, and the job as it is after each.
    const STEPS = [
      { variables: { status: 'RUNNING', progress: 10 }, state: { status: 'RUNNING', progress: 10 } },
      { variables: { progress: 40 }, state: { status: 'RUNNING', progress: 40 } },
      { variables: { progress: 70 }, state: { status: 'RUNNING', progress: 70 } },
      { variables: { status: 'COMPLETED', progress: 100, result: { imported: 3 } }, state: { status: 'COMPLETED', progress: 100 } },
    ];
    const stateOf = ({ status, progress }) => ({ status, progress });

    async function newJob(client) {
      const created = await client.mutate({
        mutation: gql`mutation NewJob($ws: ID!) {
          createJob(input: { workspaceId: $ws, type: IMPORT, metadata: { e2e: true } }) { job { id status progress } }
        }`,
        variables: { ws: DEMO.workspace },
      });
      const job = created.data.createJob.job;
      assert.deepEqual(stateOf(job), { status: 'QUEUED', progress: 0 });
      return job;
    }

    /**
     * Subscribes and resolves once the server holds the subscription. graphql-transport-ws
     * does not acknowledge a `subscribe` message, so this watches the server's
     * `iofold_subscriptions_active` gauge (GET /metrics) reach one more than before (the
     * test files run one at a time, so only this test subscribes meanwhile).
     */
    async function subscribeLive(client, ws, options) {
      const baseline = await activeSubscriptions();
      const events = [];
      const errors = [];
      let completed = false;
      const subscription = client.subscribe(options).subscribe({
        next: ({ data, errors: errs }) => {
          if (errs) errors.push(...errs);
          if (data) events.push(Object.values(data)[0]);
        },
        error: (error) => errors.push(error),
        complete: () => {
          completed = true;
        },
      });
      await withTimeout(ws.connected, 5000, 'the WebSocket connection to be acknowledged');
      await withTimeout(
        (async () => {
          while ((await activeSubscriptions()) < baseline + 1 && errors.length === 0) await sleep(20);
        })(),
        5000,
        'the server to hold the subscription (iofold_subscriptions_active)',
      );
      assert.deepEqual(errors.map(String), [], 'the subscription started without errors');
      const until = (predicate, what, ms = 10_000) =>
        withTimeout(
          (async () => {
            while (!predicate(events) && errors.length === 0) await sleep(10);
            if (errors.length) throw new Error(`subscription error while waiting for ${what}: ${errors.map((e) => e.message ?? JSON.stringify(e)).join('; ')}`);
          })(),
          ms,
          `${what}; received ${JSON.stringify(events)}`,
        );
      // Unsubscribes, then waits for the server to let go of the subscription, so the next
      // test's count starts from a settled gauge.
      const unsubscribe = async () => {
        subscription.unsubscribe();
        await withTimeout(
          (async () => {
            while ((await activeSubscriptions()) > baseline) await sleep(20);
          })(),
          5000,
          'the server to end the subscription after the client unsubscribed',
        );
      };
      return { events, errors, until, completed: () => completed, unsubscribe };
    }

    async function activeSubscriptions() {
      const text = await (await fetch(`${GRAPHQL_URL.replace(/\/graphql$/, '')}/metrics`)).text();
      const match = text.match(/^iofold_subscriptions_active\s+(\d+)/m);
      assert.ok(match, 'GET /metrics reports iofold_subscriptions_active');
      return Number(match[1]);
    }

    test('jobUpdated pushes each progress report, in order, as a worker reports it', async () => {
      const { client, requests, ws } = splitClient();
      const job = await newJob(client);
      const sub = await subscribeLive(client, ws, { query: JOB_UPDATES, variables: { ws: DEMO.workspace, job: job.id } });
      try {
        assert.deepEqual(sub.events, [], 'nothing before the first change');
        for (const [i, step] of STEPS.entries()) {
          const { data } = await client.mutate({ mutation: PROGRESS, variables: { id: job.id, ...step.variables } });
          assert.deepEqual(stateOf(data.updateJobProgress.job), step.state);
          await sub.until((events) => events.length > i, `event ${i + 1} (${JSON.stringify(step.state)})`);
        }
        await sleep(200); // nothing more arrives
        assert.deepEqual(
          sub.events.map((e) => ({ id: e.id, ...stateOf(e) })),
          STEPS.map((step) => ({ id: job.id, ...step.state })),
          'one event per report, in order, each the job as it was after that report',
        );
        assert.deepEqual(sub.events.at(-1).result, { imported: 3 });

        // The events went through Apollo's normalised cache: the Job entry is up to date.
        const cached = client.cache.extract()[client.cache.identify({ __typename: 'Job', id: job.id })];
        assert.deepEqual(stateOf(cached), { status: 'COMPLETED', progress: 100 });
        assert.ok(requests.every((r) => r.body.operationName !== 'JobUpdates'), 'the subscription did not go over HTTP');
      } finally {
        await sub.unsubscribe();
      }
    });

    test('jobUpdated under a burst of reports: one event per report, never going backwards, ending at the last', async () => {
      const { client, ws } = splitClient();
      const job = await newJob(client);
      const other = await newJob(client); // a job of the same workspace the subscription does not watch
      const sub = await subscribeLive(client, ws, { query: JOB_UPDATES, variables: { ws: DEMO.workspace, job: job.id } });
      try {
        for (const step of STEPS) {
          await client.mutate({ mutation: PROGRESS, variables: { id: other.id, ...step.variables } });
          await client.mutate({ mutation: PROGRESS, variables: { id: job.id, ...step.variables } });
        }
        await sub.until((events) => events.length >= STEPS.length, `${STEPS.length} events`);
        await sleep(200);
        assert.equal(sub.events.length, STEPS.length, `one event per report: ${JSON.stringify(sub.events)}`);
        assert.ok(sub.events.every((e) => e.id === job.id), 'only the watched job');
        // Each event is the job as it was at some point after its report (the server
        // re-reads the row), so under a burst a later state may show early: never earlier.
        const order = STEPS.map((step) => JSON.stringify(step.state));
        const positions = sub.events.map((e) => order.indexOf(JSON.stringify(stateOf(e))));
        assert.ok(positions.every((p) => p >= 0), `every event is a state the job had: ${JSON.stringify(sub.events)}`);
        positions.forEach((p, i) => assert.ok(p >= i, `event ${i + 1} is not older than report ${i + 1}: ${JSON.stringify(sub.events)}`));
        positions.slice(1).forEach((p, i) => assert.ok(p >= positions[i], `events never go backwards: ${JSON.stringify(sub.events)}`));
        assert.deepEqual(stateOf(sub.events.at(-1)), { status: 'COMPLETED', progress: 100 });
      } finally {
        await sub.unsubscribe();
      }
    });

    test('jobUpdated without jobId watches every job of the workspace', async () => {
      const { client, ws } = splitClient();
      const [first, second] = [await newJob(client), await newJob(client)];
      const sub = await subscribeLive(client, ws, { query: JOB_UPDATES, variables: { ws: DEMO.workspace } });
      try {
        await client.mutate({ mutation: PROGRESS, variables: { id: first.id, status: 'RUNNING', progress: 5 } });
        await client.mutate({ mutation: PROGRESS, variables: { id: second.id, status: 'RUNNING', progress: 6 } });
        await sub.until(
          (events) => events.some((e) => e.id === first.id && e.progress === 5) && events.some((e) => e.id === second.id && e.progress === 6),
          'a report of each job',
        );
        assert.ok(sub.events.every((e) => e.__typename === 'Job'));
      } finally {
        await sub.unsubscribe();
      }
    });

    test('executionUpdated pushes a workflow execution and its steps as a step changes', async () => {
      const { client, ws } = splitClient();
      const workflow = await client.query({
        query: gql`query Wf($ws: ID!) { workflows(workspaceId: $ws, first: 1) { nodes { id } } }`,
        variables: { ws: DEMO.workspace },
      });
      const workflowId = workflow.data.workflows.nodes[0].id;
      const started = await client.mutate({
        mutation: gql`mutation Start($wf: ID!) {
          startExecution(workflowId: $wf, data: { e2e: true }) { execution { id status } executionSteps { id nodeId status } }
        }`,
        variables: { wf: workflowId },
      });
      const execution = started.data.startExecution.execution;
      const steps = started.data.startExecution.executionSteps;
      assert.equal(steps.length, 3);
      assert.ok(steps.every((step) => step.status === 'PENDING'));

      const sub = await subscribeLive(client, ws, {
        query: gql`subscription Exec($id: ID!) {
          executionUpdated(executionId: $id) { id status executionSteps(first: 10) { nodes { id nodeId status } } }
        }`,
        variables: { id: execution.id },
      });
      try {
        await client.mutate({
          mutation: gql`mutation Step($id: ID!) {
            updateExecutionStep(id: $id, patch: { status: RUNNING }) { executionStep { id status } }
          }`,
          variables: { id: steps[0].id },
        });
        await sub.until((events) => events.length >= 1, 'an executionUpdated event');
        await sleep(200);
        assert.equal(sub.events.length, 1, `one event for one change: ${JSON.stringify(sub.events)}`);
        const [event] = sub.events;
        assert.equal(event.id, execution.id);
        assert.equal(event.__typename, 'Execution');
        assert.equal(event.executionSteps.nodes.find((step) => step.id === steps[0].id)?.status, 'RUNNING');
        assert.deepEqual(
          event.executionSteps.nodes.filter((step) => step.id !== steps[0].id).map((step) => step.status),
          ['PENDING', 'PENDING'],
        );
      } finally {
        await sub.unsubscribe();
      }
    });

    test("a subscription to another workspace's jobs is NOT_FOUND, like a missing one, and never sees its events", async () => {
      const { client: demo } = httpClient();
      const job = await newJob(demo);
      const outcomes = [];
      for (const variables of [{ ws: DEMO.workspace, job: job.id }, { ws: 'workspace_0194a1b2-0000-7000-8000-999999999999' }]) {
        const { client } = splitClient({ token: OUTSIDER_TOKEN }); // a connection each
        outcomes.push(
          await withTimeout(
            new Promise((resolve) => {
              client.subscribe({ query: JOB_UPDATES, variables }).subscribe({
                next: (result) => resolve({ kind: 'next', result }),
                error: (error) => resolve({ kind: 'error', codes: errorCodes(error), message: error.message }),
                complete: () => resolve({ kind: 'complete' }),
              });
            }),
            10_000,
            'the refusal',
          ),
        );
      }
      await demo.mutate({ mutation: PROGRESS, variables: { id: job.id, status: 'RUNNING', progress: 1 } });
      const [theirs, missing] = outcomes;
      assert.equal(theirs.kind, 'error', `refused: ${JSON.stringify(theirs)}`);
      assert.deepEqual(theirs.codes, ['NOT_FOUND'], `another workspace's job: ${JSON.stringify(theirs)}`);
      assert.deepEqual(missing.codes, ['NOT_FOUND'], `a missing workspace: ${JSON.stringify(missing)}`);
    });

    test('a lazy client closes its socket cleanly after its last subscription, then subscribes again', async () => {
      // graphql-ws (lazy) closes its socket with 1000 when the last subscription ends; the
      // server must answer that close frame. Dropping the connection instead is a 1006 for
      // the client, and a subscription started while that close is under way fails with it.
      const { client, ws } = splitClient();
      const job = await newJob(client);
      const options = { query: JOB_UPDATES, variables: { ws: DEMO.workspace, job: job.id } };
      const first = await subscribeLive(client, ws, options);
      await first.unsubscribe();
      await withTimeout(
        (async () => {
          while (ws.events.closed.length === 0) await sleep(10);
        })(),
        5000,
        'the lazy client to close its socket',
      );
      assert.deepEqual(
        ws.events.closed,
        [{ code: 1000, reason: 'Normal Closure' }],
        'the close handshake completed (1006: the server dropped the connection without answering the close frame)',
      );

      const events = [];
      const errors = [];
      const second = client.subscribe(options).subscribe({
        next: ({ data }) => data && events.push(data.jobUpdated),
        error: (error) => errors.push(error),
      });
      try {
        await withTimeout(
          (async () => {
            while (ws.events.connected < 2 && errors.length === 0) await sleep(10);
          })(),
          5000,
          'a new connection',
        );
        await sleep(300);
        await client.mutate({ mutation: PROGRESS, variables: { id: job.id, status: 'RUNNING', progress: 20 } });
        await withTimeout(
          (async () => {
            while (events.length === 0 && errors.length === 0) await sleep(10);
          })(),
          10_000,
          'the event of the second subscription',
        );
        assert.deepEqual(errors.map((e) => e.message), []);
        assert.deepEqual(stateOf(events[0]), { status: 'RUNNING', progress: 20 });
      } finally {
        second.unsubscribe();
      }
    });

    for (const [name, params] of [
      ['without a token', undefined],
      ['with an unknown token', { authorization: `Bearer iofold_${'0'.repeat(64)}` }],
    ]) {
      test(`a subscription ${name} is refused: UNAUTHENTICATED or the connection closed with 4403`, async () => {
        const ws = wsClient({ connectionParams: params });
        const link = new GraphQLWsLink(ws.client);
        const client = new ApolloClient({ link, cache: new InMemoryCache() });
        const outcome = await withTimeout(
          new Promise((resolve) => {
            client
              .subscribe({
                query: gql`subscription Anon($ws: ID!) { jobUpdated(workspaceId: $ws) { id status progress } }`,
                variables: { ws: DEMO.workspace },
              })
              .subscribe({
                next: (result) => resolve({ kind: 'next', result }),
                error: (error) => resolve({ kind: 'error', error }),
                complete: () => resolve({ kind: 'complete' }),
              });
          }),
          10_000,
          'the refusal',
        );
        const codes = outcome.kind === 'error' ? errorCodes(outcome.error) : errorCodes(outcome.result);
        const closedBy = ws.events.closed.find((e) => e.code === 4403);
        const refused =
          codes.includes('UNAUTHENTICATED') || Boolean(closedBy) || /Socket closed with event 4403/.test(outcome.error?.message ?? '');
        assert.ok(
          refused && !(outcome.kind === 'next' && outcome.result.data?.jobUpdated),
          `refused with UNAUTHENTICATED or close 4403 Forbidden; got ${outcome.kind}: ${JSON.stringify(outcome.result ?? { message: outcome.error?.message, codes })}, closes ${JSON.stringify(ws.events.closed)}`,
        );
      });
    }
  });
});
