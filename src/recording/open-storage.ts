/**
 * The recording storage the settings name: S3 (or an S3-compatible server)
 * when RECORDING_S3_URL is set, else the directory RECORDING_DIR.
 *
 * S3 credentials and region come from the environment as the AWS SDK reads
 * them (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, or a
 * profile, or an instance role; AWS_REGION or AWS_DEFAULT_REGION, default
 * us-east-1). Nothing is contacted here: the first write or read is.
 * Throws a clear Error for a RECORDING_S3_URL it cannot use (config.ts checks
 * its shape at start-up).
 */
import { createDirStorage } from './dir-storage.js';
import { createS3Storage } from './s3-storage.js';
import type { RecordingStorage } from './types.js';

export function openRecordingStorage(s: { dir: string; s3Url: string | undefined }, env: NodeJS.ProcessEnv = process.env): RecordingStorage {
  if (!s.s3Url) return createDirStorage(s.dir);
  const region = env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1';
  const accessKeyId = env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
  const credentials =
    accessKeyId && secretAccessKey ? { accessKeyId, secretAccessKey, ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}) } : undefined;
  return createS3Storage({ url: s.s3Url, region, ...(credentials ? { credentials } : {}) });
}
