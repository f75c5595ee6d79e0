/**
 * Suite registry: add a suite by importing it here. `--suite NAME` filters
 * on Suite.name.
 */
import type { Suite } from '../types.js';
import { dspSuite } from './dsp.js';

export const suites: Suite[] = [dspSuite];
