/**
 * Suite registry: add a suite by importing it here. `--suite NAME` filters
 * on Suite.name.
 */
import type { Suite } from '../types.js';
import { dspSuite } from './dsp.js';
import { latencySuite } from './latency.js';
import { percoreSuite } from './percore.js';
import { pipelineSuite } from './pipeline.js';
import { relaySuite } from './relay.js';
import { stallSuite } from './stall.js';
import { storeSuite } from './store.js';
import { transcodeCliSuite } from './transcode-cli.js';
import { vadSuite } from './vad.js';
import { wireSuite } from './wire.js';

export const suites: Suite[] = [dspSuite, wireSuite, relaySuite, transcodeCliSuite, storeSuite, latencySuite, stallSuite, percoreSuite, vadSuite, pipelineSuite];
