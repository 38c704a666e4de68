// Read-your-writes with Apollo Client through the consistency link (e2e/consistency-link.mjs),
// against a server reading from a streaming replica (run.sh starts it with
// DATABASE_READ_URLS when E2E_REPLICA_URL is set). The replica's replay is paused (with
// psql) while a mutation commits: a client with the link reads its write (its token sends
// the read to the primary), a client without it reads the replica's older state.

import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';

import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client/core/index.js';

import { CONSISTENCY_HEADER, consistencyLink, tokenValue } from '../consistency-link.mjs';
import { BASE_URL, DEMO, GRAPHQL_URL, TOKEN, recordingFetch, sleep } from '../lib.mjs';

const REPLICA_URL = process.env.E2E_REPLICA_URL;

/** Runs SQL on the replica (its base URL, without the test schema's options). */
function onReplica(sql) {
  const base = REPLICA_URL.split('?')[0];
  return execFileSync('psql', [base, '-tAq', '-c', sql], { encoding: 'utf8' }).trim();
}

function client(withLink) {
  const recorder = recordingFetch();
  const http = new HttpLink({ uri: GRAPHQL_URL, fetch: recorder.fetch, headers: { authorization: `Bearer ${TOKEN}` } });
  const link = consistencyLink();
  return {
    client: new ApolloClient({ link: withLink ? link.concat(http) : http, cache: new InMemoryCache() }),
    link,
    requests: recorder.requests,
  };
}

const RENAME = gql`
  mutation Rename($id: ID!, $name: String!) {
    updateWorkspace(id: $id, patch: { name: $name }) {
      workspace {
        id
        name
      }
    }
  }
`;
const NAME = gql`
  query WorkspaceName($id: ID!) {
    workspace(id: $id) {
      id
      name
    }
  }
`;

/** The server's figures for the replica (`/health`). */
async function replicaHealth() {
  const health = await (await fetch(`${BASE_URL}/health`)).json();
  return health.replicas?.[0];
}

describe('the consistency link reads its own writes from a replicated server', { skip: !REPLICA_URL && 'no replica' }, () => {
  after(() => onReplica('SELECT pg_wal_replay_resume()'));

  test('a mutation then a query: with the link the write is seen, without it the replica is behind', async () => {
    // The replica serves: up and caught up with the seed.
    for (let i = 0; i < 300; i++) {
      const replica = await replicaHealth();
      if (replica?.serving && replica.lag_bytes === 0) break;
      await sleep(100);
    }
    assert.equal((await replicaHealth()).serving, true);

    const linked = client(true);
    const plain = client(false);
    const before = await plain.client.query({ query: NAME, variables: { id: DEMO.workspace }, fetchPolicy: 'network-only' });
    assert.equal(before.data.workspace.name, DEMO.workspaceName);
    const readsBefore = (await replicaHealth()).reads;
    assert.ok(readsBefore > 0, 'the plain query was served by the replica');

    onReplica('SELECT pg_wal_replay_pause()');
    try {
      const renamed = await linked.client.mutate({
        mutation: RENAME,
        variables: { id: DEMO.workspace, name: 'Renamed while the replica is paused' },
      });
      assert.equal(renamed.data.updateWorkspace.workspace.name, 'Renamed while the replica is paused');
      const token = linked.link.token();
      assert.ok(tokenValue(token) !== null, `the link kept the mutation's token (${token})`);
      const mutationRequest = linked.requests.at(-1);
      assert.equal(mutationRequest.response.extensions.consistency, token);

      // With the link: the token goes along, the read sees the write.
      const mine = await linked.client.query({ query: NAME, variables: { id: DEMO.workspace }, fetchPolicy: 'network-only' });
      assert.equal(mine.data.workspace.name, 'Renamed while the replica is paused');
      assert.equal(linked.requests.at(-1).headers.get(CONSISTENCY_HEADER), token);

      // Without it: the paused replica's state.
      const theirs = await plain.client.query({ query: NAME, variables: { id: DEMO.workspace }, fetchPolicy: 'network-only' });
      assert.equal(theirs.data.workspace.name, DEMO.workspaceName);
      assert.equal(plain.requests.at(-1).headers.get(CONSISTENCY_HEADER), null);
      assert.ok((await replicaHealth()).reads > readsBefore, 'the plain read went to the replica');
    } finally {
      onReplica('SELECT pg_wal_replay_resume()');
    }
    // Once replayed, everyone sees it.
    for (let i = 0; i < 300; i++) {
      const seen = await plain.client.query({ query: NAME, variables: { id: DEMO.workspace }, fetchPolicy: 'network-only' });
      if (seen.data.workspace.name !== DEMO.workspaceName) return;
      await sleep(100);
    }
    assert.fail('the replica did not replay the rename within 30 s');
  });

  test('a malformed token is a 400 naming the header', async () => {
    const response = await fetch(GRAPHQL_URL, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}`, [CONSISTENCY_HEADER]: 'soon' },
      body: JSON.stringify({ query: '{ me { id } }' }),
    });
    assert.equal(response.status, 400);
    const body = await response.json();
    assert.equal(body.errors[0].extensions.code, 'BAD_USER_INPUT');
    assert.match(body.errors[0].message, /X-Iofold-Consistency/);
  });
});
