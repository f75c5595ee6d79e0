// @ts-check
/**
 * The two-channel recording player: fetches the call's WAV (PCM16 stereo,
 * channel 0 the caller, channel 1 what the caller heard), decodes it with
 * WebAudio (an OfflineAudioContext: nothing plays through it, so no autoplay
 * prompt), draws both channels' waveforms on a canvas, and plays it through
 * an <audio> element on a blob: URL. seek(ms) moves playback; the playhead
 * (on the canvas and through onTime on the timeline) follows playback.
 */
import { fetchRecording } from './api.js';
import { h } from './dom.js';
import { clock } from './format.js';

/**
 * @param {HTMLElement} box
 * @param {string} callSid
 * @param {AbortSignal} signal
 * @param {(ms: number) => void} onTime
 * @param {(message: string) => void} showError
 * @returns {{ seek(ms: number): void, stop(): void }}
 */
export function createPlayer(box, callSid, signal, onTime, showError) {
  const status = h('p', { class: 'muted', 'aria-live': 'polite' }, 'Loading the recording…');
  const canvas = /** @type {HTMLCanvasElement} */ (h('canvas', { class: 'wave', role: 'img', 'aria-label': 'Waveforms: caller above, what the caller heard below. Click to play from there.' }));
  const head = h('span', { class: 'wave-head', 'aria-hidden': 'true' });
  const audio = /** @type {HTMLAudioElement} */ (h('audio', { controls: true, preload: 'auto', class: 'audio' }));
  const waveBox = h('div', { class: 'wave-box' }, h('span', { class: 'wave-label top' }, 'caller'), h('span', { class: 'wave-label bottom' }, 'heard'), canvas, head);
  const player = h('div', { class: 'player', hidden: true }, waveBox, audio);
  box.append(status, player);

  /** @type {AudioBuffer | null} */
  let decoded = null;
  let url = '';
  let frame = 0;
  let pendingSeekMs = /** @type {number | null} */ (null);

  const durationS = () => decoded?.duration ?? (Number.isFinite(audio.duration) ? audio.duration : 0);

  function follow() {
    const s = audio.currentTime;
    const d = durationS();
    head.style.left = `${d > 0 ? Math.min(100, (s / d) * 100) : 0}%`;
    onTime(s * 1000);
    if (!audio.paused) frame = requestAnimationFrame(follow);
  }
  audio.addEventListener('play', () => { cancelAnimationFrame(frame); frame = requestAnimationFrame(follow); });
  audio.addEventListener('timeupdate', follow);
  audio.addEventListener('seeked', follow);

  function draw() {
    if (!decoded) return;
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
    const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
    canvas.width = width;
    canvas.height = height;
    const ctx = canvas.getContext('2d');
    if (!ctx) return;
    const css = getComputedStyle(canvas);
    ctx.clearRect(0, 0, width, height);
    const laneH = height / 2;
    for (let ch = 0; ch < Math.min(2, decoded.numberOfChannels); ch++) {
      const data = decoded.getChannelData(ch);
      const perPx = data.length / width;
      const mid = laneH * ch + laneH / 2;
      ctx.fillStyle = css.getPropertyValue(ch === 0 ? '--wave-caller' : '--wave-heard').trim() || (ch === 0 ? '#2a6fdb' : '#2a9d5c');
      for (let x = 0; x < width; x++) {
        let lo = 0;
        let hi = 0;
        const end = Math.min(data.length, Math.floor((x + 1) * perPx));
        for (let i = Math.floor(x * perPx); i < end; i++) {
          const v = data[i];
          if (v < lo) lo = v;
          if (v > hi) hi = v;
        }
        const top = mid - hi * (laneH / 2 - 1);
        ctx.fillRect(x, top, 1, Math.max(1, (hi - lo) * (laneH / 2 - 1)));
      }
    }
    ctx.fillStyle = css.getPropertyValue('--grid').trim() || 'rgba(128,128,128,0.3)';
    ctx.fillRect(0, Math.floor(laneH), width, Math.max(1, Math.round(ratio)));
  }
  const resize = new ResizeObserver(() => draw());
  const scheme = matchMedia('(prefers-color-scheme: dark)');
  scheme.addEventListener('change', draw);

  canvas.addEventListener('click', (ev) => {
    const rect = canvas.getBoundingClientRect();
    seek(((ev.clientX - rect.left) / rect.width) * durationS() * 1000);
  });

  /** @param {number} ms */
  function seek(ms) {
    if (!url) {
      pendingSeekMs = ms;
      return;
    }
    audio.currentTime = Math.max(0, ms / 1000);
    follow();
    audio.play().catch(() => {
      /* playing needs a user gesture in some browsers; the position is set either way */
    });
  }

  fetchRecording(callSid, signal).then(async (bytes) => {
    url = URL.createObjectURL(new Blob([bytes], { type: 'audio/wav' }));
    audio.src = url;
    try {
      const rate = wavRate(bytes) ?? 8000;
      decoded = await new OfflineAudioContext(2, 1, rate).decodeAudioData(bytes.slice(0));
    } catch {
      decoded = null;
    }
    if (signal.aborted) return;
    player.hidden = false;
    status.textContent = decoded
      ? `${clock(decoded.duration * 1000)} of audio, two channels. Click a transcript line or the waveform to play from there.`
      : 'The recording plays, but its waveform could not be drawn.';
    resize.observe(canvas);
    draw();
    if (pendingSeekMs !== null) seek(pendingSeekMs);
  }, (err) => {
    if (signal.aborted) return;
    status.textContent = 'The recording could not be loaded.';
    showError(err instanceof Error ? `The recording could not be loaded. ${err.message}` : 'The recording could not be loaded.');
  });

  return {
    seek,
    stop() {
      cancelAnimationFrame(frame);
      resize.disconnect();
      scheme.removeEventListener('change', draw);
      audio.pause();
      audio.removeAttribute('src');
      if (url) URL.revokeObjectURL(url);
      url = '';
    },
  };
}

/** The sample rate in a RIFF/WAVE header's fmt chunk, or null. @param {ArrayBuffer} bytes */
function wavRate(bytes) {
  const v = new DataView(bytes);
  if (bytes.byteLength < 44 || v.getUint32(0, false) !== 0x52494646 || v.getUint32(8, false) !== 0x57415645) return null;
  let off = 12;
  while (off + 8 <= bytes.byteLength) {
    const id = v.getUint32(off, false);
    const size = v.getUint32(off + 4, true);
    if (id === 0x666d7420 && off + 16 <= bytes.byteLength) return v.getUint32(off + 12, true);
    off += 8 + size + (size & 1);
  }
  return null;
}
