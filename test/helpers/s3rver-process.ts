// Child process behind startS3(): runs s3rver on a free loopback port and prints `{"port":N}` once
// listening. A separate process because s3rver's ListObjectsV2 continuation tokens use DES, which Node's
// OpenSSL 3 only offers with --openssl-legacy-provider (set by the parent), and so that the S3 server does
// not share the test's event loop. Two s3rver range bugs are fixed here so the client is tested against
// S3's semantics: `Range: bytes=0-0` returned the whole object (end 0 read as "no end"), and a range on an
// empty object announced one byte it never sent instead of answering 416 InvalidRange. And listings
// (without a delimiter) come back in S3's byte order of keys instead of s3rver's directory-walk order,
// which also lost keys across continuation pages.
// usage: node --openssl-legacy-provider s3rver-process.ts <dir> <bucket>
import { createReadStream } from 'node:fs';
import { createRequire } from 'node:module';
import S3rver from 's3rver';

interface RangeOptions {
  start?: number;
  end?: number;
}
interface StoredObject {
  content: { destroy(): void } | null;
  range?: { start: number; end: number };
  size: number;
}
interface ListOptions {
  delimiter?: string;
  startAfter?: string;
  prefix?: string;
  maxKeys?: number;
}
interface Listing {
  objects: { key: string }[];
  commonPrefixes: string[];
  isTruncated: boolean;
}
interface FilesystemStoreProto {
  listObjects(bucket: string, options: ListOptions): Promise<Listing>;
  getObject(bucket: string, key: string, options?: RangeOptions): Promise<StoredObject | null>;
  getResourcePath(bucket: string, key: string, kind: string): string;
}

const require = createRequire(import.meta.url);
const proto = (require('s3rver/lib/stores/filesystem.js') as { prototype: FilesystemStoreProto }).prototype;
const original = proto.getObject;
proto.getObject = async function (this: FilesystemStoreProto, bucket, key, options) {
  const object = await original.call(this, bucket, key, options);
  if (!object || !options || options.start === undefined) return object;
  if (object.size === 0) {
    object.content?.destroy();
    object.content = null; // s3rver answers a range with no content as 416 InvalidRange
    object.range = { start: options.start, end: options.end ?? 0 };
  } else if (options.end === 0 && object.range && object.range.end !== 0) {
    object.content?.destroy();
    object.content = createReadStream(this.getResourcePath(bucket, key, 'object'), { start: 0, end: 0 });
    object.range = { start: 0, end: 0 };
  }
  return object;
};

const originalList = proto.listObjects;
proto.listObjects = async function (this: FilesystemStoreProto, bucket, options) {
  if (options.delimiter) return originalList.call(this, bucket, options);
  const all = await originalList.call(this, bucket, { prefix: options.prefix });
  const byteOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));
  const after = options.startAfter ?? '';
  const objects = all.objects
    .filter((o) => after === '' || byteOrder(o.key, after) > 0)
    .sort((a, b) => byteOrder(a.key, b.key));
  const maxKeys = options.maxKeys ?? Number.POSITIVE_INFINITY;
  return { objects: objects.slice(0, maxKeys), commonPrefixes: [], isTruncated: objects.length > maxKeys };
};

const [dir, bucket] = process.argv.slice(2);
const server = new S3rver({
  address: '127.0.0.1',
  port: 0,
  silent: true,
  directory: dir,
  vhostBuckets: false,
  configureBuckets: [{ name: bucket }],
});
const { port } = await server.run();
process.stdout.write(`${JSON.stringify({ port })}\n`);
process.on('SIGTERM', () => process.exit(0));
