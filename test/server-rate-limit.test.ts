/** The per-key token bucket on a manual clock; client addresses behind trusted proxies. */
import { describe, expect, it } from 'vitest';
import { addressKey, RateLimiter } from '../src/server/rate-limit.js';
import type { VoiceApp } from '../src/call/ports.js';
import { loadConfig } from '../src/config.js';
import { silentLogger } from '../src/log.js';
import { canonicalIp, EdgeCore } from '../src/server/core.js';
import { createMetrics } from '../src/server/metrics.js';
import { edgeSettings } from './helpers/settings.js';

describe('RateLimiter', () => {
  it('allows a burst, then refills at the configured rate, per key', () => {
    let now = 0;
    const rl = new RateLimiter(3, 2, () => now);
    expect([rl.allow('a'), rl.allow('a'), rl.allow('a'), rl.allow('a')]).toEqual([true, true, true, false]);
    expect(rl.allow('b')).toBe(true); // other keys have their own bucket
    now += 499; // 0.998 tokens
    expect(rl.allow('a')).toBe(false);
    now += 2; // 1.002 tokens since the last refill point
    expect(rl.allow('a')).toBe(true);
    expect(rl.allow('a')).toBe(false);
    now += 60_000; // refill caps at the burst
    expect([rl.allow('a'), rl.allow('a'), rl.allow('a'), rl.allow('a')]).toEqual([true, true, true, false]);
  });

  it('forgets idle keys (a few per call, least recently used first) so memory follows the active clients', () => {
    let now = 0;
    const rl = new RateLimiter(2, 1, () => now);
    for (let i = 0; i < 1000; i++) rl.allow(`10.0.${i >> 8}.${i & 255}`);
    expect(rl.size).toBe(1000);
    now += 1_000; // not yet full again (2 s): kept
    rl.allow('fresh');
    expect(rl.size).toBe(1001);
    now += 61_000;
    for (let i = 0; i < 300; i++) rl.allow('fresh');
    expect(rl.size).toBe(1);
  });

  it('never holds more than maxKeys buckets: the least recently used goes first', () => {
    let now = 0;
    const rl = new RateLimiter(1, 0.001, () => now, 3); // a bucket refills in 1000 s: nothing is idle
    expect([rl.allow('a'), rl.allow('b'), rl.allow('c')]).toEqual([true, true, true]);
    now += 1;
    expect(rl.allow('a')).toBe(false); // 'a' is now the most recently used
    rl.allow('d'); // over the cap: 'b' (least recently used) goes
    expect(rl.size).toBe(3);
    expect(rl.allow('a')).toBe(false); // kept, still empty
    expect(rl.allow('c')).toBe(false); // kept
    expect(rl.allow('b')).toBe(true); // forgotten: a fresh bucket
    for (let i = 0; i < 10_000; i++) rl.allow(`k${i}`);
    expect(rl.size).toBe(3);
  });

  it('has() tells whether a key has a token, without charging it or creating a bucket', () => {
    let now = 0;
    const rl = new RateLimiter(2, 1, () => now);
    expect(rl.has('a')).toBe(true);
    expect(rl.size).toBe(0);
    rl.allow('a');
    rl.allow('a');
    expect([rl.has('a'), rl.has('a')]).toEqual([false, false]);
    now += 1000;
    expect([rl.has('a'), rl.has('a')]).toEqual([true, true]);
    expect(rl.allow('a')).toBe(true);
    expect(rl.allow('a')).toBe(false);
  });
});

describe('addressKey', () => {
  it('keys IPv6 by its /64 and IPv4 by address', () => {
    expect(addressKey('192.0.2.1')).toBe('192.0.2.1');
    expect(addressKey('2001:db8:1:2::7')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8:1:2:ffff:1:2:3')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressKey('2001:db8:0:0:1::')).toBe('2001:db8:0:0::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
    expect(addressKey('fe80::1:2:3:4')).toBe('fe80:0:0:0::/64');
    expect(addressKey(canonicalIp('::ffff:192.0.2.1')!)).toBe('192.0.2.1'); // IPv4-mapped: the IPv4 address
    expect(addressKey('anonymous')).toBe('anonymous');
  });
});

describe('client addresses (TRUST_PROXY, X-Forwarded-For)', () => {
  it('canonicalIp: one text per address, whatever the writing; null for what is not an address', () => {
    expect(canonicalIp('192.0.2.1')).toBe('192.0.2.1');
    expect(canonicalIp(' 192.0.2.1:8080 ')).toBe('192.0.2.1');
    expect(canonicalIp('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(canonicalIp('0000:0000:0000:0000:0000:ffff:c000:0201')).toBe('192.0.2.1'); // uWS's long form of a mapped IPv4
    expect(canonicalIp('0000:0000:0000:0000:0000:0000:0000:0001')).toBe('::1');
    expect(canonicalIp('[2001:DB8::7]:443')).toBe('2001:db8::7');
    expect(canonicalIp('2001:0db8:0000::0007')).toBe('2001:db8::7');
    for (const bad of ['', 'unknown', '999.1.1.1', '1.2.3', '[::1', 'fe80::1%eth0x/']) expect(canonicalIp(bad)).toBeNull();
  });

  it('TRUST_PROXY is parsed as CIDRs (IPv4, IPv6, bare addresses); every bad entry is listed', () => {
    expect(loadConfig({ TRUST_PROXY: '10.0.0.0/8, 2001:db8::/32,192.0.2.7' }).trustProxy).toEqual([
      { address: '10.0.0.0', prefix: 8, family: 'ipv4' },
      { address: '2001:db8::', prefix: 32, family: 'ipv6' },
      { address: '192.0.2.7', prefix: 32, family: 'ipv4' },
    ]);
    expect(loadConfig({}).trustProxy).toEqual([]);
    expect(() => loadConfig({ TRUST_PROXY: '10.0.0.0/33, proxy.local, ::1/129, 1.2.3.4/8/9' })).toThrow(
      /TRUST_PROXY: '10\.0\.0\.0\/33'[\s\S]*'proxy\.local'[\s\S]*'::1\/129'[\s\S]*'1\.2\.3\.4\/8\/9'/,
    );
  });

  it('the client is the peer, or behind trusted proxies the right-most untrusted X-Forwarded-For hop', () => {
    const core = new EdgeCore({
      settings: edgeSettings({ trustProxy: [{ address: '10.0.0.0', prefix: 8, family: 'ipv4' }, { address: 'fd00::', prefix: 8, family: 'ipv6' }] }),
      app: {} as VoiceApp,
      log: silentLogger,
      metrics: createMetrics(),
    });
    expect(core.clientAddress('192.0.2.9', '198.51.100.7')).toBe('192.0.2.9'); // untrusted peer: its header is ignored
    expect(core.clientAddress('10.0.0.2', '198.51.100.7')).toBe('198.51.100.7');
    expect(core.clientAddress('10.0.0.2', '6.6.6.6, 198.51.100.7, 10.9.9.9')).toBe('198.51.100.7');
    expect(core.clientAddress('::ffff:10.0.0.2', '2001:db8::1, fd00::5')).toBe('2001:db8::1');
    expect(core.clientAddress('10.0.0.2', '10.0.0.3, 10.0.0.4')).toBe('10.0.0.3'); // all trusted: the left-most
    expect(core.clientAddress('10.0.0.2', '')).toBe('10.0.0.2');
    expect(core.clientAddress('10.0.0.2', 'garbage, ')).toBe('10.0.0.2');
  });
});
