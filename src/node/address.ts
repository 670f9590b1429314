// HOST:PORT flags (--listen, --advertise, --metrics). IPv6 hosts are bracketed
// ("[::1]:4242"), as grpc-js and URLs write them.
import { NodeError } from "./errors.js";

export interface HostPort {
  host: string;
  port: number;
}

const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$/;

export function parseHostPort(flag: string, value: string): HostPort {
  const match = HOST_PORT.exec(value);
  const port = match ? Number(match[2]) : Number.NaN;
  if (!match || !(port >= 1 && port <= 65535))
    throw new NodeError(
      "ADDRESS_INVALID",
      `${flag} "${value}" is not HOST:PORT with a port from 1 to 65535 (e.g. 127.0.0.1:4242)`,
    );
  return { host: match[1] as string, port };
}

/** The address other nodes dial: --advertise, or --listen when it names a reachable host. */
export function advertisedAddress(listen: string, advertise: string | undefined): string {
  const listenAt = parseHostPort("--listen", listen);
  if (advertise !== undefined) {
    parseHostPort("--advertise", advertise);
    return advertise;
  }
  if (["0.0.0.0", "[::]", "[::0]"].includes(listenAt.host))
    throw new NodeError(
      "ADDRESS_INVALID",
      `--listen ${listen} is a wildcard address other nodes cannot dial; give --advertise HOST:PORT too`,
    );
  return listen;
}
