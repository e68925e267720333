/** The protocol families scenario files can use. */
import { managerWorkerFamily } from './managerWorker.js';
import { opacaFamily } from './opaca.js';
import { rearFamily } from './rear.js';
import type { ProtocolFamily } from './types.js';
import { virdiFamily } from './virdi.js';

export const FAMILIES: readonly ProtocolFamily[] = [managerWorkerFamily, virdiFamily, rearFamily, opacaFamily];

export function familyOf(protocol: string): ProtocolFamily | undefined {
  return FAMILIES.find((f) => f.protocol === protocol);
}
