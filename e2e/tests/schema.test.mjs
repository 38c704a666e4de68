// Schema tooling with the reference implementation (graphql-js): schema.graphql builds, and
// it is the same schema as the running server's introspection says.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import {
  buildClientSchema,
  buildSchema,
  getIntrospectionQuery,
  lexicographicSortSchema,
  printSchema,
  validateSchema,
} from 'graphql';

import { GRAPHQL_URL, lineDiff } from '../lib.mjs';

const SCHEMA_FILE = new URL('../../schema.graphql', import.meta.url);

test('schema.graphql builds with graphql-js and is a valid schema', () => {
  const schema = buildSchema(readFileSync(SCHEMA_FILE, 'utf8'));
  assert.deepEqual(validateSchema(schema).map(String), []);
  assert.equal(schema.getQueryType()?.name, 'Query');
  assert.equal(schema.getMutationType()?.name, 'Mutation');
  assert.ok(schema.getType('Node'), 'the Node interface');
});

/** Introspects the running server without credentials, as codegen tools do. */
async function introspect(options) {
  const response = await fetch(GRAPHQL_URL, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ operationName: 'IntrospectionQuery', query: getIntrospectionQuery(options) }),
  });
  assert.equal(response.status, 200);
  const body = await response.json();
  assert.equal(body.errors, undefined, `the standard introspection query is refused: ${JSON.stringify(body.errors)}`);
  const schema = buildClientSchema(body.data);
  assert.deepEqual(validateSchema(schema).map(String), []);
  return schema;
}

/** Fails with a readable line diff when the two schemas print differently (sorted). */
function assertSameSchema(fromFile, fromServer) {
  const expected = printSchema(lexicographicSortSchema(fromFile));
  const actual = printSchema(lexicographicSortSchema(fromServer));
  if (expected !== actual) {
    assert.fail(
      `schema.graphql (expected) differs from the server's introspection (actual):\n${lineDiff(expected, actual)}\n` +
        'Regenerate the file with `cargo run -- schema > schema.graphql` if the server is right.',
    );
  }
}

test('schema.graphql is the schema the server introspects (sorted SDL, every description included)', async () => {
  const fromFile = buildSchema(readFileSync(SCHEMA_FILE, 'utf8'));
  // Everything graphql-js can ask: descriptions (the schema's own too), deprecated input
  // values, @specifiedBy URLs and repeatable directives.
  const fromServer = await introspect({
    descriptions: true,
    schemaDescription: true,
    specifiedByUrl: true,
    directiveIsRepeatable: true,
    inputValueDeprecation: true,
  });
  assert.ok(fromServer.description, 'the server describes its schema');
  assertSameSchema(fromFile, fromServer);
});

test('the introspection GraphiQL and codegen tools send by default is accepted and agrees on every type', async () => {
  const fromFile = buildSchema(readFileSync(SCHEMA_FILE, 'utf8'));
  const fromServer = await introspect({ descriptions: true });
  // The default query does not ask for the schema's description: compare the rest.
  const strip = (schema) =>
    printSchema(lexicographicSortSchema(schema)).replace(/^(?:"""[\s\S]*?"""\n)?schema \{[^}]*\}\n*/m, '');
  const [expected, actual] = [strip(fromFile), strip(fromServer)];
  if (expected !== actual) {
    assert.fail(`schema.graphql (expected) differs from the default introspection (actual):\n${lineDiff(expected, actual)}`);
  }
});
