// Atomic replacement of key and certificate files: other programs on the host
// read them, and a crash mid-write must leave either the old or the new file,
// never a torn one. Write a temp file in the same directory, fsync it, rename it
// over the target, then fsync the directory so the rename itself is durable.
import { randomBytes } from "node:crypto";
import { open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

export const PRIVATE_KEY_MODE = 0o600;
export const CERTIFICATE_MODE = 0o644;

export async function writeFileAtomic(
  path: string,
  contents: string | Uint8Array,
  mode: number,
): Promise<void> {
  const dir = dirname(path);
  const temp = join(dir, `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
  // The mode is set at creation: a key must never exist on disk with wider permissions.
  const handle = await open(temp, "wx", mode);
  try {
    await handle.writeFile(contents);
    await handle.chmod(mode); // the umask may have narrowed or the mode argument been ignored
    await handle.sync();
  } catch (error) {
    await handle.close();
    await rm(temp, { force: true });
    throw error;
  }
  await handle.close();
  try {
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  const dirHandle = await open(dir, "r");
  try {
    await dirHandle.sync();
  } finally {
    await dirHandle.close();
  }
}

export function writePrivateKeyFile(path: string, pem: string): Promise<void> {
  return writeFileAtomic(path, pem, PRIVATE_KEY_MODE);
}

export function writeCertificateFile(path: string, pem: string): Promise<void> {
  return writeFileAtomic(path, pem, CERTIFICATE_MODE);
}
