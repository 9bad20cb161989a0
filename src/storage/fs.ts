// Filesystem blob store (embedded mode): object `a/b/c` is the file `<root>/a/b/c`. Writes go to a temp
// file in the target's directory, are fsynced, then renamed over the target (rename is atomic within a
// directory), and the directory is fsynced so the rename survives a crash. Content types are not kept.
// Unlike S3, a key cannot be both an object and a "directory" of other objects (`a` and `a/b`): such a
// put fails with AppError('conflict').
import { randomUUID } from 'node:crypto';
import type { Dirent } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { mkdir, open, readdir, rename, rmdir, stat, unlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { AppError } from '../../contracts/errors.ts';
import type { BlobInfo, BlobStore, ByteRange, PutOptions } from '../../contracts/blob-store.ts';
import { bodyChunks } from './bytes.ts';
import { RESERVED_SEGMENT_PREFIX, resolveRange, validateKey, validatePrefix, validateRange } from './keys.ts';

const TEMP_PREFIX = `${RESERVED_SEGMENT_PREFIX}tmp-`;

const code = (err: unknown): string | undefined => (err as NodeJS.ErrnoException)?.code;

export class FsBlobStore implements BlobStore {
  readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  private pathOf(key: string): string {
    validateKey(key);
    return join(this.root, ...key.split('/'));
  }

  async put(
    key: string,
    body: Uint8Array | ReadableStream<Uint8Array>,
    _opts?: PutOptions,
  ): Promise<BlobInfo> {
    const path = this.pathOf(key);
    const dir = dirname(path);
    const tmp = join(dir, `${TEMP_PREFIX}${randomUUID()}`);
    const fh = await this.openTemp(key, dir, tmp);
    let size = 0;
    try {
      for await (const chunk of bodyChunks(body)) {
        await writeFully(fh, chunk);
        size += chunk.byteLength;
      }
      await fh.sync();
    } catch (err) {
      await fh.close().catch(() => {});
      await unlink(tmp).catch(() => {});
      throw err;
    }
    await fh.close();
    try {
      await rename(tmp, path);
    } catch (err) {
      await unlink(tmp).catch(() => {});
      if (code(err) === 'EISDIR' || code(err) === 'ENOTEMPTY' || code(err) === 'EEXIST') {
        throw new AppError('conflict', `blob key ${JSON.stringify(key)} is a prefix of other keys`);
      }
      throw err;
    }
    await syncDir(dir);
    return { key, size, lastModified: new Date() };
  }

  /** Creates the directory chain and the temp file; retries once if a concurrent delete pruned the dir. */
  private async openTemp(key: string, dir: string, tmp: string): Promise<FileHandle> {
    for (let attempt = 0; ; attempt++) {
      try {
        await mkdir(dir, { recursive: true });
        return await open(tmp, 'wx');
      } catch (err) {
        if (code(err) === 'ENOTDIR' || code(err) === 'EEXIST') {
          throw new AppError('conflict', `blob key ${JSON.stringify(key)} lies under an existing object`);
        }
        if (code(err) !== 'ENOENT' || attempt >= 2) throw err;
      }
    }
  }

  async get(key: string, range?: ByteRange): Promise<Uint8Array | null> {
    const path = this.pathOf(key);
    if (range) validateRange(range);
    const fh = await openExisting(path);
    if (!fh) return null;
    try {
      const { size } = await fh.stat();
      const { start, endExclusive } = resolveRange(range, size);
      const out = new Uint8Array(endExclusive - start);
      const got = await readFully(fh, start, out);
      return got === out.byteLength ? out : out.subarray(0, got);
    } finally {
      await fh.close();
    }
  }

  async readInto(key: string, start: number, dst: Uint8Array): Promise<number | null> {
    const path = this.pathOf(key);
    validateRange({ start });
    const fh = await openExisting(path);
    if (!fh) return null;
    try {
      return await readFully(fh, start, dst);
    } finally {
      await fh.close();
    }
  }

  async getStream(key: string, range?: ByteRange): Promise<ReadableStream<Uint8Array> | null> {
    const path = this.pathOf(key);
    if (range) validateRange(range);
    const fh = await openExisting(path);
    if (!fh) return null;
    let size: number;
    try {
      size = (await fh.stat()).size;
    } catch (err) {
      await fh.close();
      throw err;
    }
    const { start, endExclusive } = resolveRange(range, size);
    if (endExclusive === start) {
      await fh.close();
      return new ReadableStream<Uint8Array>({ start: (c) => c.close() });
    }
    // The stream owns the handle and closes it when done or cancelled.
    const node = fh.createReadStream({ start, end: endExclusive - 1, autoClose: true });
    return Readable.toWeb(node) as unknown as ReadableStream<Uint8Array>;
  }

  async head(key: string): Promise<BlobInfo | null> {
    const path = this.pathOf(key);
    try {
      const st = await stat(path);
      return st.isFile() ? { key, size: st.size, lastModified: st.mtime } : null;
    } catch (err) {
      if (code(err) === 'ENOENT' || code(err) === 'ENOTDIR') return null;
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    const path = this.pathOf(key);
    try {
      await unlink(path);
    } catch (err) {
      if (code(err) === 'ENOENT' || code(err) === 'ENOTDIR' || code(err) === 'EISDIR') return;
      // Linux reports unlink of a directory as EISDIR, macOS as EPERM; a directory is not an object.
      if (code(err) === 'EPERM' && (await stat(path).catch(() => null))?.isDirectory()) return;
      throw err;
    }
    await this.pruneEmptyDirs(dirname(path));
  }

  /** Removes now-empty directories up to (not including) the root, so listings stay cheap. */
  private async pruneEmptyDirs(dir: string): Promise<void> {
    while (dir.startsWith(this.root + '/') && dir !== this.root) {
      try {
        await rmdir(dir);
      } catch {
        return; // not empty (or already gone, or re-created by a put): stop
      }
      dir = dirname(dir);
    }
  }

  async *list(prefix: string): AsyncIterable<BlobInfo> {
    validatePrefix(prefix);
    const slash = prefix.lastIndexOf('/');
    yield* this.walk(slash < 0 ? '' : prefix.slice(0, slash), prefix);
  }

  /**
   * Depth-first walk in byte order of full keys: a directory `a` sorts as `a/`, so `a-b` (0x2d) comes
   * before the keys under `a/` (0x2f) and those before `a0` (0x30), exactly as S3 orders keys.
   */
  private async *walk(dirKey: string, prefix: string): AsyncGenerator<BlobInfo> {
    const dirPath = dirKey === '' ? this.root : join(this.root, ...dirKey.split('/'));
    let entries: Dirent[];
    try {
      entries = await readdir(dirPath, { withFileTypes: true });
    } catch (err) {
      if (code(err) === 'ENOENT' || code(err) === 'ENOTDIR') return;
      throw err;
    }
    const items = entries
      .filter((e) => !e.name.startsWith(RESERVED_SEGMENT_PREFIX) && (e.isFile() || e.isDirectory()))
      .map((e) => {
        const key = dirKey === '' ? e.name : `${dirKey}/${e.name}`;
        const dir = e.isDirectory();
        return { key, dir, sortKey: Buffer.from(dir ? `${key}/` : key) };
      })
      .sort((a, b) => Buffer.compare(a.sortKey, b.sortKey));
    for (const item of items) {
      if (item.dir) {
        const asPrefix = `${item.key}/`;
        if (asPrefix.startsWith(prefix) || prefix.startsWith(asPrefix)) yield* this.walk(item.key, prefix);
      } else if (item.key.startsWith(prefix)) {
        const st = await stat(join(dirPath, item.key.slice(item.key.lastIndexOf('/') + 1))).catch(() => null);
        if (st?.isFile()) yield { key: item.key, size: st.size, lastModified: st.mtime }; // gone meanwhile: skip
      }
    }
  }
}

async function openExisting(path: string): Promise<FileHandle | null> {
  try {
    const fh = await open(path, 'r');
    if ((await fh.stat()).isFile()) return fh;
    await fh.close();
    return null;
  } catch (err) {
    if (code(err) === 'ENOENT' || code(err) === 'ENOTDIR' || code(err) === 'EISDIR') return null;
    throw err;
  }
}

/** Reads into all of `dst` from `start` unless the file ends first; the bytes read. */
async function readFully(fh: FileHandle, start: number, dst: Uint8Array): Promise<number> {
  let off = 0;
  while (off < dst.byteLength) {
    const { bytesRead } = await fh.read(dst, off, dst.byteLength - off, start + off);
    if (bytesRead === 0) break; // the end of the file (a range past it, or truncated underneath us)
    off += bytesRead;
  }
  return off;
}

async function writeFully(fh: FileHandle, chunk: Uint8Array): Promise<void> {
  let off = 0;
  while (off < chunk.byteLength) {
    const { bytesWritten } = await fh.write(chunk, off, chunk.byteLength - off);
    off += bytesWritten;
  }
}

/** fsync a directory so a rename in it is durable; some filesystems refuse, which we tolerate. */
async function syncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch (err) {
    if (code(err) !== 'EINVAL' && code(err) !== 'EPERM' && code(err) !== 'EISDIR') throw err;
  } finally {
    await fh?.close();
  }
}
