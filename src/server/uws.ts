/**
 * The one place that loads uWebSockets.js. Every other file imports its
 * types and `uws` from here, so another build (e.g. one with binaries for a
 * newer Node) can be chosen at load time: set CALLBRIDGE_UWS_MODULE to its
 * package name or path. Default: the `uWebSockets.js` alias in package.json.
 */
import { createRequire } from 'node:module';
import type * as UWS from 'uWebSockets.js';

export type { HttpRequest, HttpResponse, TemplatedApp, WebSocket, us_listen_socket, us_socket_context_t } from 'uWebSockets.js';

const require = createRequire(import.meta.url);
export const UWS_MODULE = process.env.CALLBRIDGE_UWS_MODULE || 'uWebSockets.js';

function load(name: string): typeof UWS {
  try {
    return require(name) as typeof UWS;
  } catch (err) {
    throw new Error(
      `cannot load uWebSockets.js from '${name}' (Node ${process.versions.node}, ABI ${process.versions.modules}, ` +
        `${process.platform}-${process.arch}): ${(err as Error).message}. ` +
        'Set CALLBRIDGE_UWS_MODULE to a build that has binaries for this Node.',
      { cause: err },
    );
  }
}

export const uws: typeof UWS = load(UWS_MODULE);
