// Read-your-writes for Apollo Client against iofold-graph with read replicas.
//
// A mutation's response carries the position of its commit: the `X-Iofold-Consistency`
// response header and `extensions.consistency` (a PostgreSQL WAL position such as
// `0/16B3A28`). A request that sends the newest one back in the `X-Iofold-Consistency`
// header is served by a replica that has replayed at least that far, or by the primary: it
// sees the client's own writes, whichever server instance made them.
//
// This link keeps the newest token it has seen (in memory, per link: per client or per
// user session) and sends it with every later request. Put it before the terminating
// HttpLink or BatchHttpLink:
//
//   import { consistencyLink } from './consistency-link.mjs';
//   const client = new ApolloClient({
//     link: consistencyLink().concat(new HttpLink({ uri: '/graphql' })),
//     cache: new InMemoryCache(),
//   });
//
// It reads `extensions.consistency` (every transport, batches too) and, for HttpLink, the
// response header (`operation.getContext().response`). In a browser on another origin the
// header is only readable when the server's CORS setup exposes it; the extension always is.

import { ApolloLink, Observable } from '@apollo/client/core/index.js';

/** The header the token travels in, both ways. */
export const CONSISTENCY_HEADER = 'x-iofold-consistency';

/** A token (`X/Y`, hexadecimal) as a number, for comparison; `null` when it is not one. */
export function tokenValue(token) {
  const match = typeof token === 'string' ? /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(token.trim()) : null;
  return match ? (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`) : null;
}

/**
 * An ApolloLink that remembers the newest consistency token of the responses it sees and
 * sends it with each request. `initial`: a token to start from (e.g. one kept in
 * sessionStorage). `link.token()` tells the current one.
 */
export function consistencyLink({ initial = null } = {}) {
  let newest = tokenValue(initial) === null ? null : initial;
  const remember = (token) => {
    const value = tokenValue(token);
    if (value !== null && (newest === null || value > tokenValue(newest))) newest = token;
  };
  const link = new ApolloLink((operation, forward) => {
    if (newest) {
      operation.setContext(({ headers = {} }) => ({ headers: { ...headers, [CONSISTENCY_HEADER]: newest } }));
    }
    return new Observable((observer) => {
      const subscription = forward(operation).subscribe({
        next: (result) => {
          remember(result?.extensions?.consistency);
          remember(operation.getContext().response?.headers?.get?.(CONSISTENCY_HEADER));
          observer.next(result);
        },
        error: (error) => observer.error(error),
        complete: () => observer.complete(),
      });
      return () => subscription.unsubscribe();
    });
  });
  link.token = () => newest;
  return link;
}
