// Request validation at the boundary: JSON bodies, query strings and path ids through zod, every failure
// as a 4xx AppError naming the offending fields.
import type { Context } from 'hono';
import { z } from 'zod';
import { AppError, parseWith } from '../../contracts/errors.ts';
import { isUuid, notFound } from '../db/ids.ts';
import { ATTRIBUTE_KEY, ATTRIBUTE_KEY_MAX, ATTRIBUTE_STRING_MAX } from '../retrieval/filters.ts';
import type { AppEnv } from '../services.ts';

/** The body as JSON, validated; 415 for another content type, 400 for malformed JSON or a bad shape. */
export async function jsonBody<S extends z.ZodType>(c: Context<AppEnv>, schema: S): Promise<z.output<S>> {
  const type = (c.req.header('content-type') ?? '').split(';')[0].trim().toLowerCase();
  if (type !== 'application/json' && !/^application\/[\w.+-]+\+json$/.test(type)) {
    throw new AppError('unsupported_media_type', 'send the request body as application/json');
  }
  let raw: unknown;
  try {
    raw = JSON.parse(await c.req.text());
  } catch {
    throw new AppError('bad_request', 'request body is not valid JSON');
  }
  return parseWith(schema, raw, 'request body');
}

export function queryParams<S extends z.ZodType>(c: Context<AppEnv>, schema: S): z.output<S> {
  return parseWith(schema, c.req.query(), 'query parameters');
}

/** A path id; a malformed one names nothing that exists, so it is a 404 like an unknown one. */
export function pathId(c: Context<AppEnv>, name: string, what: string): string {
  const v = c.req.param(name) ?? '';
  if (!isUuid(v)) throw notFound(what, v);
  return v.toLowerCase();
}

/** Unix seconds, as OpenAI objects carry them. */
export const unixSeconds = (d: Date) => Math.floor(d.getTime() / 1000);

export const metadataSchema = z
  .record(z.string().max(64), z.union([z.string().max(512), z.number(), z.boolean()]))
  .refine((m) => Object.keys(m).length <= 16, 'at most 16 keys')
  .describe('Up to 16 key/value pairs; keys ≤ 64 chars, string values ≤ 512 chars.');

/** Document attributes: what search filters match on, so keys follow the filter key rules. */
export const attributesSchema = z
  .record(
    z
      .string()
      .min(1)
      .max(ATTRIBUTE_KEY_MAX)
      .regex(ATTRIBUTE_KEY, 'keys hold only letters, digits, "_", ".", ":" and "-"'),
    z.union([z.string().max(ATTRIBUTE_STRING_MAX), z.number().refine(Number.isFinite), z.boolean()]),
  )
  .refine((m) => Object.keys(m).length <= 16, 'at most 16 attributes')
  .describe('Up to 16 attributes (string ≤ 512 chars, number or boolean), matched by search filters.');
