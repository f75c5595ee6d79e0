/**
 * Structured logging (pino). Personal data — member IDs, dates of birth,
 * transcripts, caller numbers — goes only into the fields listed in REDACT,
 * which are censored in every log line. Never interpolate them into `msg`.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

/** Field paths that may carry personal data; pino replaces their values. */
export const REDACT = [
  'memberId', 'member_id', 'dateOfBirth', 'date_of_birth', 'dob',
  'transcript', 'text', 'args', 'arguments', 'result', 'from', 'to', 'From', 'To', 'caller',
  '*.memberId', '*.member_id', '*.dateOfBirth', '*.date_of_birth', '*.dob',
  '*.transcript', '*.text', '*.args', '*.arguments', '*.result', '*.from', '*.to',
];

export function createLogger(level = 'info', destination?: pino.DestinationStream): Logger {
  return pino({ level, redact: { paths: REDACT, censor: '[redacted]' }, base: { app: 'callbridge' } }, destination);
}

/** A logger that drops everything: for tests and library use without a sink. */
export const silentLogger: Logger = pino({ level: 'silent' });
