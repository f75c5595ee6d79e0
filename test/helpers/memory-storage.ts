/**
 * A RecordingStorage held in memory, for tests: objects become visible when
 * their upload completes (as the real storages promise), and `failDelete`
 * makes deleting a name reject (a storage that is away, or refuses).
 * Everything else follows the interface's contract (src/recording/types.ts).
 */
import { RecordingNotFound, type ObjectUpload, type RecordingStorage } from '../../src/recording/types.js';

export class MemoryStorage implements RecordingStorage {
  readonly kind = 'dir' as const;
  readonly where = 'memory:';
  /** Completed objects by name. */
  readonly objects = new Map<string, Uint8Array>();
  /** Names whose delete rejects. */
  readonly failDelete = new Set<string>();
  /** Every name asked to be deleted, in order (successful or not). */
  readonly deleted: string[] = [];

  /** A completed object, at once (test set-up). */
  put(name: string, bytes: Uint8Array = new Uint8Array([1, 2, 3])): void {
    this.objects.set(name, bytes);
  }

  async create(name: string): Promise<ObjectUpload> {
    const parts: Uint8Array[] = [];
    let done = false;
    return {
      append: async (bytes) => {
        if (done) throw new Error(`upload of ${name} already finished`);
        parts.push(bytes.slice());
      },
      complete: async () => {
        if (done) throw new Error(`upload of ${name} already finished`);
        done = true;
        this.objects.set(name, Buffer.concat(parts));
      },
      abort: async () => {
        done = true;
      },
    };
  }

  async size(name: string): Promise<number | undefined> {
    return this.objects.get(name)?.length;
  }

  async read(name: string, start: number, end: number): Promise<Uint8Array> {
    const o = this.objects.get(name);
    if (!o) throw new RecordingNotFound(name);
    return o.slice(start, Math.min(end, o.length));
  }

  async delete(name: string): Promise<void> {
    this.deleted.push(name);
    if (this.failDelete.has(name)) throw new Error(`memory storage: refused to delete ${name}`);
    this.objects.delete(name);
  }

  async *list(prefix: string): AsyncIterable<string> {
    // A copy: deleting while listing is allowed (as on S3).
    for (const name of [...this.objects.keys()]) if (name.startsWith(prefix)) yield name;
  }
}
