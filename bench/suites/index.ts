/**
 * Suite registry: add a suite by importing it here. `--suite NAME` filters
 * on Suite.name.
 */
import type { Suite } from '../types.js';
import { dspSuite } from './dsp.js';
import { relaySuite } from './relay.js';

export const suites: Suite[] = [dspSuite, relaySuite];
