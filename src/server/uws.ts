/**
 * The one place that loads uWebSockets.js. Every other file imports its
 * types and `uws` from here, so another build (e.g. one with binaries for a
 * newer Node) can be chosen at load time: set CALLBRIDGE_UWS_MODULE to its
 * package name. Default: the `uWebSockets.js` alias in package.json.
 */
import { createRequire } from 'node:module';
import type * as UWS from 'uWebSockets.js';

export type { HttpRequest, HttpResponse, TemplatedApp, WebSocket, us_listen_socket, us_socket_context_t } from 'uWebSockets.js';

const require = createRequire(import.meta.url);
const moduleName = process.env.CALLBRIDGE_UWS_MODULE || 'uWebSockets.js';

export const uws: typeof UWS = require(moduleName) as typeof UWS;
