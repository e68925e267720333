/** The human summary of a run (the JSON one is the RunSummary itself). */
import { formatDurationUs } from '../engine/time.js';
import type { RunSummary } from '../scenario/runScenario.js';

const n = (x: number): string => x.toLocaleString('en-US');

function byCount(rec: Record<string, number>): string {
  return Object.entries(rec)
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .map(([k, v]) => `${k} ${n(v)}`)
    .join(' · ');
}

export function summaryText(s: RunSummary, extra: { runDir?: string; untilText: string }): string {
  const lines: string[] = [];
  const dropped = Object.values(s.messages.dropped).reduce((a, b) => a + b, 0);
  lines.push(`scenario   ${s.scenario} (${s.file})`);
  lines.push(`protocol   ${s.protocol}, mode ${s.mode}, seed ${s.seed}, backend ${s.backend}`);
  const why = {
    until: 'reached the time limit',
    idle: 'nothing left to do',
    complete: 'work complete',
    stalled: 'STALLED: virtual time stopped advancing',
  }[s.stoppedBecause];
  lines.push(`stopped    at ${s.virtualTime} virtual (${why}; limit ${extra.untilText})`);
  const wall =
    s.wallMs !== undefined
      ? ` in ${(s.wallMs / 1000).toFixed(2)}s wall → ${n(s.eventsPerSecond ?? 0)} events/s, ${n(s.messagesPerSecond ?? 0)} messages/s`
      : '';
  lines.push(`events     ${n(s.events)}${wall}`);
  const p = s.parallel;
  if (p) {
    const busy = p.busyMs.map((b) => `${Math.round((100 * b) / Math.max(p.wallMs, 1))} %`).join(' / ');
    if (p.mode === 'one-kernel')
      lines.push(`parallel   local mode gave up (${p.abandoned}): redone on one thread (windows are slower), same result`);
    else
      lines.push(
        p.mode === 'local'
          ? `parallel   ${p.shards} shards, local: each ran and checked its own actors (no message crossed shards), ${n(p.windows)} calls; shards busy ${busy} of the time`
          : `parallel   ${p.shards} shards, lookahead ${formatDurationUs(p.lookaheadUs)}, ${n(p.windows)} windows, ${n(p.crossMessages)} messages across shards; shards ran events ${busy} of the time`,
      );
  }
  lines.push(
    `messages   sent ${n(s.messages.sent)}, delivered ${n(s.messages.delivered)}, dropped ${n(dropped)}${dropped ? ` (${byCount(s.messages.dropped)})` : ''}${s.messages.duplicated ? `, duplicated ${n(s.messages.duplicated)}` : ''}`,
  );
  lines.push(`  by type  ${byCount(s.messages.byType) || '—'}`);
  lines.push(`timers     ${n(s.timersFired)} fired; faults ${n(s.faults)}`);
  const metrics = Object.entries(s.metrics)
    .map(
      ([k, v]) =>
        `${k} ${typeof v === 'number' ? n(v) : typeof v === 'object' && v !== null ? `{${byCount(v as Record<string, number>)}}` : String(v)}`,
    )
    .join(', ');
  lines.push(`metrics    ${metrics}`);
  lines.push('invariants');
  const width = Math.max(...s.invariants.map((i) => i.id.length));
  for (const inv of s.invariants) {
    const mark = inv.status === 'held' ? '✓' : inv.status === 'violated' ? '✗' : '·';
    if (inv.status === 'violated') {
      const v = inv.violations[0];
      lines.push(
        `  ${mark} ${inv.id.padEnd(width)}  violated ${n(inv.violationCount)}× — first at ${fmtT(v.t)} [${v.actors.join(', ')}]: ${v.message}`,
      );
      lines.push(`    ${''.padEnd(width)}  replay: ${inv.replay}`);
      for (const r of v.trace.slice(-6)) {
        lines.push(`    ${''.padEnd(width)}  | ${fmtT(r.t)} ${r.kind} ${r.from ?? ''}${r.to ? ` → ${r.to}` : ''} ${r.type}`);
      }
    } else {
      lines.push(`  ${mark} ${inv.id.padEnd(width)}  ${inv.status === 'held' ? `held (${n(inv.checks)} checks)` : 'not exercised'}`);
    }
  }
  if (s.actorErrors.length)
    lines.push(`errors     ${s.actorErrors.length} actor error(s); first: ${s.actorErrors[0].actor}: ${s.actorErrors[0].message}`);
  lines.push(s.expectations.met ? 'expect     met' : `expect     NOT MET\n${s.expectations.failures.map((f) => `  - ${f}`).join('\n')}`);
  if (s.traceHash) lines.push(`trace hash ${s.traceHash}`);
  if (extra.runDir) lines.push(`run folder ${extra.runDir}`);
  return lines.join('\n');
}

function fmtT(us: number): string {
  return `${(us / 1e6).toFixed(6)}s`;
}
