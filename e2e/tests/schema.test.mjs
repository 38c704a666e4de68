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

test('schema.graphql is the schema the server introspects (sorted SDL, descriptions included)', async () => {
  const fromFile = buildSchema(readFileSync(SCHEMA_FILE, 'utf8'));
  // The options GraphiQL and codegen tools use: descriptions, deprecated input values,
  // @specifiedBy URLs and repeatable directives.
  const fromServer = await introspect({
    descriptions: true,
    specifiedByUrl: true,
    directiveIsRepeatable: true,
    inputValueDeprecation: true,
  });
  assertSameSchema(fromFile, fromServer);
});

test(
  'with schemaDescription, the introspected schema has no description (schema.graphql has none)',
  {
    todo:
      'async-graphql 7.2.1 answers `__schema { description }` with a fixed text, the description of the ' +
      '__Schema type itself (src/model/schema.rs:30), so a tool that asks for the schema description sees one ' +
      'schema.graphql does not have',
  },
  async () => {
    const fromFile = buildSchema(readFileSync(SCHEMA_FILE, 'utf8'));
    const fromServer = await introspect({ descriptions: true, schemaDescription: true });
    assertSameSchema(fromFile, fromServer);
  },
);
