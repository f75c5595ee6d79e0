// @ts-check
/**
 * The last hour's chart (uPlot): calls started and failed per bucket on the
 * left axis, turn latency p50/p95 (ms) on the right. Sizes itself to its box
 * and follows the box's width.
 */
// @ts-ignore -- served from node_modules/uplot/dist at ./vendor/ (src/console/static.ts); not in this folder
import uPlot from './vendor/uPlot.esm.js';

/**
 * @param {HTMLElement} box
 * @returns {{ update(stats: any): void, destroy(): void }}
 */
export function statsChart(box) {
  /** @type {any} */
  let plot = null;
  const css = getComputedStyle(document.documentElement);
  const color = (/** @type {string} */ name, /** @type {string} */ fallback) => css.getPropertyValue(name).trim() || fallback;
  const axisStroke = color('--fg-muted', '#666');
  const grid = { stroke: color('--grid', 'rgba(128,128,128,0.2)'), width: 1 };
  const size = () => ({ width: Math.max(240, box.clientWidth), height: Math.max(180, Math.round(box.clientWidth / 4)) });

  /** @param {any} stats */
  function data(stats) {
    const b = stats.buckets;
    return [
      b.map((/** @type {any} */ x) => Date.parse(x.t) / 1000),
      b.map((/** @type {any} */ x) => x.started),
      b.map((/** @type {any} */ x) => x.failed),
      b.map((/** @type {any} */ x) => x.turnP50Ms),
      b.map((/** @type {any} */ x) => x.turnP95Ms),
    ];
  }

  const resize = new ResizeObserver(() => { if (plot) plot.setSize(size()); });
  resize.observe(box);

  return {
    update(stats) {
      if (plot) {
        plot.setData(data(stats));
        return;
      }
      plot = new uPlot({
        ...size(),
        scales: { x: { time: true }, n: { range: (/** @type {unknown} */ _u, /** @type {number} */ _min, /** @type {number} */ max) => [0, Math.max(1, max)] }, ms: { range: (/** @type {unknown} */ _u, /** @type {number} */ _min, /** @type {number | null} */ max) => [0, Math.max(1500, max ?? 0)] } },
        axes: [
          { stroke: axisStroke, grid },
          { scale: 'n', label: 'calls', stroke: axisStroke, grid },
          { scale: 'ms', label: 'ms', side: 1, stroke: axisStroke, grid: { show: false } },
        ],
        series: [
          {},
          { label: 'started', scale: 'n', stroke: color('--c-started', '#2a6fdb'), width: 2 },
          { label: 'failed', scale: 'n', stroke: color('--c-failed', '#d33'), width: 2 },
          { label: 'p50 turn', scale: 'ms', stroke: color('--c-p50', '#2a9d5c'), width: 1.5, spanGaps: false },
          { label: 'p95 turn', scale: 'ms', stroke: color('--c-p95', '#c98a00'), width: 1.5, dash: [6, 4], spanGaps: false },
        ],
      }, /** @type {any} */ (data(stats)), box);
    },
    destroy() {
      resize.disconnect();
      if (plot) plot.destroy();
      plot = null;
    },
  };
}
