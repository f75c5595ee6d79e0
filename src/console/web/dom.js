// @ts-check
/**
 * Building DOM without innerHTML: every text goes in as a text node, so call
 * data (transcripts, tool output, names) can never become markup.
 *   h('a', {href: '#/live', class: 'nav', onclick: fn}, 'Live', child, [more])
 * Attributes: `class`, `text`, `on<event>` handlers, booleans (true → present,
 * false/null/undefined → absent), anything else via setAttribute.
 */

/** @typedef {Node | string | number | null | undefined | false | unknown[]} Child  (arrays nest) */

/**
 * @param {string} tag
 * @param {Record<string, unknown> | null} [attrs]
 * @param {...Child} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), /** @type {EventListener} */ (v));
    else if (k === 'class') el.className = String(v);
    else if (k === 'text') el.textContent = String(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

/**
 * @param {Element} el
 * @param {unknown[]} children Child values, arrays nesting
 */
export function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(typeof c === 'number' ? String(c) : /** @type {Node | string} */ (c));
  }
}

/** @param {Element} el @param {...Child} children */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}
