/**
 * Recording files in S3 or any S3-compatible server (RECORDING_S3_URL).
 *
 * Contract:
 * - `url` is `s3://bucket[/prefix]` (AWS: virtual-hosted addressing, region
 *   from `region`) or `http(s)://endpoint/bucket[/prefix]` (any S3-compatible
 *   server — MinIO, Ceph, … — addressed path-style at the URL's origin).
 *   Object `name` is stored under key `prefix/name`.
 * - Writing: appends are buffered until 5 MiB, then sent as one part of a
 *   multipart upload (every part but the last ≥ 5 MiB, as S3 requires); an
 *   object that never reaches 5 MiB is sent whole by one PutObject at
 *   `complete` (so at most about 5 MiB is held per upload). Nothing is
 *   visible under the name until `complete`; `abort` aborts the multipart
 *   upload (its parts are dropped) or just drops the buffer.
 * - Reading: `read` is one ranged GetObject; `size` a HeadObject (none →
 *   undefined); `delete` of a missing object is fine; `list` pages through
 *   ListObjectsV2.
 * - Checksums are sent and checked only where S3 requires them, which every
 *   S3-compatible server understands.
 * - Failures reject with an Error naming the operation, the object and what
 *   the server said (its error code and HTTP status), and `retryable` when a
 *   later attempt may succeed (throttling, 5xx, network). `where` and errors
 *   never hold credentials.
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import { RecordingNotFound, type ObjectUpload, type RecordingStorage } from './types.js';
import { objectNameProblem } from './dir-storage.js';

/** S3's smallest part (all but the last part of a multipart upload). */
export const S3_PART_BYTES = 5 * 1024 * 1024;

export interface S3StorageOptions {
  /** `s3://bucket[/prefix]` or `http(s)://endpoint/bucket[/prefix]`. */
  url: string;
  /** Default us-east-1. */
  region?: string;
  /** Default: the SDK's credential chain (AWS_ACCESS_KEY_ID…, profile, instance role). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Path-style addressing; default true for an http(s) endpoint, false for s3://. */
  forcePathStyle?: boolean;
  /** Keys per ListObjectsV2 page (S3's default and maximum: 1000). */
  listPageSize?: number;
}

/** Where an S3 URL points: endpoint (undefined = AWS), bucket, key prefix (no leading or trailing '/'). */
export function parseS3Url(url: string): { endpoint: string | undefined; bucket: string; prefix: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`RECORDING_S3_URL ${JSON.stringify(redact(url))} is not a URL: use s3://bucket[/prefix] or http(s)://endpoint/bucket[/prefix]`);
  }
  let bucket: string;
  let path: string;
  let endpoint: string | undefined;
  if (u.protocol === 's3:') {
    bucket = u.hostname;
    path = u.pathname;
  } else if (u.protocol === 'http:' || u.protocol === 'https:') {
    endpoint = u.origin;
    const parts = u.pathname.replace(/^\/+/, '').split('/');
    bucket = parts.shift() ?? '';
    path = parts.join('/');
  } else {
    throw new Error(`RECORDING_S3_URL ${JSON.stringify(redact(url))}: use s3://bucket[/prefix] or http(s)://endpoint/bucket[/prefix], not ${u.protocol}`);
  }
  bucket = decodeURIComponent(bucket);
  if (!bucket) throw new Error(`RECORDING_S3_URL ${JSON.stringify(redact(url))} names no bucket`);
  const prefix = decodeURIComponent(path).replace(/^\/+|\/+$/g, '');
  return { endpoint, bucket, prefix };
}

function redact(url: string): string {
  return url.replace(/\/\/[^/@]*@/, '//');
}

interface SdkError {
  name?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  $retryable?: unknown;
}

function statusOf(e: unknown): number | undefined {
  return (e as SdkError | null)?.$metadata?.httpStatusCode;
}

/** A storage failure, with whether trying again may help. */
export class S3StorageError extends Error {
  readonly retryable: boolean;
  constructor(message: string, retryable: boolean, cause: unknown) {
    super(message, { cause });
    this.name = 'S3StorageError';
    this.retryable = retryable;
  }
}

/** Recording storage in an S3 bucket (or an S3-compatible server). */
export function createS3Storage(opts: S3StorageOptions): RecordingStorage {
  const { endpoint, bucket, prefix } = parseS3Url(opts.url);
  const where = `s3://${bucket}${prefix ? `/${prefix}` : ''}`;
  const client = new S3Client({
    region: opts.region ?? 'us-east-1',
    ...(endpoint ? { endpoint } : {}),
    forcePathStyle: opts.forcePathStyle ?? endpoint !== undefined,
    ...(opts.credentials ? { credentials: opts.credentials } : {}),
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  const pageSize = opts.listPageSize;

  const keyOf = (name: string): string => {
    const problem = objectNameProblem(name);
    if (problem) throw new Error(`recording storage ${where}: ${problem}`);
    return prefix ? `${prefix}/${name}` : name;
  };
  const failure = (action: string, name: string, e: unknown): S3StorageError => {
    const err = e as SdkError | null;
    const status = statusOf(e);
    const code = err?.name && err.name !== 'Error' && err.name !== 'Unknown' ? err.name : undefined;
    const said = [code, status ? `HTTP ${status}` : undefined].filter(Boolean).join(', ');
    const text = err?.message && err.message !== code && err.message !== 'UnknownError' ? err.message : '';
    const retryable = err?.$retryable !== undefined || status === undefined || status >= 500 || status === 429 || code === 'SlowDown' || code === 'RequestTimeout';
    return new S3StorageError(`recording storage ${where}: cannot ${action} ${name}: ${[said, text].filter(Boolean).join(': ') || String(e)}`, retryable, e);
  };

  return {
    kind: 's3',
    where,

    async create(name) {
      const key = keyOf(name);
      let buffered: Uint8Array[] = [];
      let bufferedBytes = 0;
      let uploadId: string | undefined;
      const parts: CompletedPart[] = [];
      let state: 'open' | 'complete' | 'aborted' = 'open';

      const takeBuffer = (): Buffer => {
        const body = Buffer.concat(buffered, bufferedBytes);
        buffered = [];
        bufferedBytes = 0;
        return body;
      };
      const sendPart = async (): Promise<void> => {
        const body = takeBuffer();
        if (uploadId === undefined) {
          try {
            const created = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ContentType: 'application/octet-stream' }));
            if (!created.UploadId) throw new Error('the server returned no UploadId');
            uploadId = created.UploadId;
          } catch (e) {
            throw failure('start uploading', name, e);
          }
        }
        const PartNumber = parts.length + 1;
        try {
          const sent = await client.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId: uploadId, PartNumber, Body: body, ContentLength: body.length }));
          parts.push({ PartNumber, ETag: sent.ETag });
        } catch (e) {
          throw failure(`upload part ${PartNumber} of`, name, e);
        }
      };
      const usable = (what: string): void => {
        if (state !== 'open') throw new Error(`recording storage ${where}: ${what} ${name} after it was ${state === 'complete' ? 'completed' : 'aborted'}`);
      };

      const upload: ObjectUpload = {
        async append(bytes) {
          usable('append to');
          if (bytes.length === 0) return;
          buffered.push(Buffer.from(bytes)); // a copy: the caller may reuse its buffer
          bufferedBytes += bytes.length;
          if (bufferedBytes >= S3_PART_BYTES) await sendPart();
        },
        async complete() {
          usable('complete');
          state = 'complete';
          if (uploadId === undefined) {
            const body = takeBuffer();
            try {
              await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentLength: body.length, ContentType: 'application/octet-stream' }));
            } catch (e) {
              throw failure('upload', name, e);
            }
            return;
          }
          try {
            if (bufferedBytes > 0) await sendPart();
            try {
              await client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId, MultipartUpload: { Parts: parts } }));
            } catch (e) {
              throw failure('complete the upload of', name, e);
            }
          } catch (e) {
            // Leave no parts behind (they cost storage until a lifecycle rule drops them).
            await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId })).catch(() => undefined);
            throw e;
          }
        },
        async abort() {
          if (state !== 'open') return;
          state = 'aborted';
          buffered = [];
          bufferedBytes = 0;
          if (uploadId === undefined) return;
          try {
            await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }));
          } catch (e) {
            if (statusOf(e) !== 404) throw failure('abort the upload of', name, e);
          }
        },
      };
      return upload;
    },

    async size(name) {
      const key = keyOf(name);
      try {
        const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
        return head.ContentLength ?? 0;
      } catch (e) {
        if (statusOf(e) === 404) return undefined;
        throw failure('stat', name, e);
      }
    },

    async read(name, start, end) {
      const key = keyOf(name);
      const s = Math.max(0, Math.floor(start));
      const e = Math.floor(end);
      if (e <= s) {
        // An empty range: S3 has no way to ask for none, so only whether the object is there matters.
        try {
          await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
        } catch (err) {
          if (statusOf(err) === 404) throw new RecordingNotFound(name);
          throw failure('read', name, err);
        }
        return new Uint8Array(0);
      }
      try {
        const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key, Range: `bytes=${s}-${e - 1}` }));
        if (!got.Body) return new Uint8Array(0);
        const bytes = await got.Body.transformToByteArray();
        // A server that ignores Range answers 200 with the whole object.
        if (got.ContentRange === undefined && bytes.length > e - s) return bytes.subarray(s, e);
        return bytes;
      } catch (err) {
        const status = statusOf(err);
        if (status === 404) throw new RecordingNotFound(name);
        if (status === 416) return new Uint8Array(0); // start at or past the end
        throw failure('read', name, err);
      }
    },

    async delete(name) {
      const key = keyOf(name);
      try {
        await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
      } catch (e) {
        if (statusOf(e) === 404) return;
        throw failure('delete', name, e);
      }
    },

    async *list(listPrefix) {
      const problem = objectNameProblem(listPrefix, 'prefix');
      if (problem) throw new Error(`recording storage ${where}: ${problem}`);
      const keyPrefix = prefix ? `${prefix}/` : '';
      let token: string | undefined;
      do {
        let page;
        try {
          page = await client.send(
            new ListObjectsV2Command({ Bucket: bucket, Prefix: keyPrefix + listPrefix, ContinuationToken: token, ...(pageSize ? { MaxKeys: pageSize } : {}) }),
          );
        } catch (e) {
          throw failure('list', listPrefix || '(all)', e);
        }
        for (const o of page.Contents ?? []) {
          if (o.Key?.startsWith(keyPrefix)) yield o.Key.slice(keyPrefix.length);
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
    },
  };
}
