// Formats output/compare (bench/compare.sh: rounds of the ONNX Runtime anchor's JSON lines and dinov3 bench
// reports, plus one reference-backend report) as one table. Every engine's images/s is batch / median batch
// time, the statistic the anchor uses (bench.json's images_per_s is from the mean). Each figure is the
// median over the rounds; each ratio is the median of the per-round ratios (dinov3 against the ONNX Runtime
// run of the same round).
import fs from 'node:fs';
import path from 'node:path';

const [dir, threadsArg] = process.argv.slice(2);
const threads = Number(threadsArg || 2);
const assumedPerCore = {
  fp32: Number(process.env.PEAK_GFLOPS_FP32 || 287),
  bf16: Number(process.env.PEAK_GFLOPS_BF16 || 528),
  int8: Number(process.env.PEAK_GFLOPS_INT8 || 1056),
};
const batches = [1, 2, 4, 8];
const gflopOrt = 12.49;

const median = (xs) => {
  const v = xs.filter((x) => x !== undefined && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return undefined;
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};

// One engine's figures in one round: ms at batch 1 (p50) and images/s per batch size.
const readOrt = (file) => {
  const by = {};
  for (const line of fs.readFileSync(file, 'utf8').split('\n').filter(Boolean)) {
    const r = JSON.parse(line);
    by[r.batch] = r;
  }
  return { ms1: by[1]?.median, ips: batches.map((b) => by[b]?.img_per_s) };
};
const readBench = (file) => {
  const j = JSON.parse(fs.readFileSync(file, 'utf8'));
  const by = Object.fromEntries(j.throughput.map((t) => [t.batch, (1000 * t.batch) / t.ms_per_batch.p50]));
  return { ms1: j.latency_ms.p50, ips: batches.map((b) => by[b]), json: j };
};

const rounds = fs.readdirSync(dir).filter((d) => /^round-\d+$/.test(d))
  .sort((a, b) => Number(a.split('-')[1]) - Number(b.split('-')[1]));
// Per-core peak per precision: measured in each round by peak_bench (peak.json: {precision: {threads: GFLOP/s}})
// at the run's thread count, else the assumed figures. A precision a measuring round's peak.json lacks has no
// peak on this machine (peak_bench found no such instruction: bf16 and int8 below AVX-512), so no floor.
const measuredPeak = Object.fromEntries(rounds.map((round) => {
  const file = path.join(dir, round, 'peak.json');
  if (!fs.existsSync(file)) return [round, null];
  const j = JSON.parse(fs.readFileSync(file, 'utf8'));
  return [round, Object.fromEntries(Object.entries(j).map(([p, byThreads]) => [p, byThreads[String(threads)]]))];
}));
const perCoreIn = (round, prec) => (measuredPeak[round] ? measuredPeak[round][prec] : assumedPerCore[prec]);
const peakMeasured = rounds.some((r) => measuredPeak[r] !== null);
const perCore = Object.fromEntries(Object.keys(assumedPerCore).map((p) => [p, median(rounds.map((r) => perCoreIn(r, p)))
  ?? (peakMeasured ? undefined : assumedPerCore[p])]));
const engines = new Map();  // name -> {prec, gflop, date, machine, runs: [{round, ms1, ips}]}
const add = (name, info, round, figures) => {
  if (!engines.has(name)) engines.set(name, { ...info, runs: [] });
  engines.get(name).runs.push({ round, ...figures });
};
for (const round of rounds) {
  const rdir = path.join(dir, round);
  if (fs.existsSync(path.join(rdir, 'ort.jsonl'))) {
    add('onnxruntime fp32', { prec: 'fp32', gflop: gflopOrt }, round, readOrt(path.join(rdir, 'ort.jsonl')));
  }
  for (const sub of fs.readdirSync(rdir).sort()) {
    const file = path.join(rdir, sub, 'bench.json');
    if (!fs.existsSync(file)) continue;
    const f = readBench(file);
    const c = f.json.context;
    // An int8 plan runs some layers int8 and the rest bf16: no single peak applies.
    const plan = f.json.model?.int8_plan;
    const name = `dinov3 ${c.backend} ${c.precision}` + (plan ? ` plan (${plan.int8_layers} of ${plan.linear_layers} layers int8)` : '');
    add(name, { prec: plan ? 'mixed' : c.precision, gflop: f.json.gflop_per_image, date: c.date, machine: c.machine }, round, f);
  }
}
const refFile = path.join(dir, 'reference-fp32', 'bench.json');
if (fs.existsSync(refFile)) {
  const f = readBench(refFile);
  add('dinov3 reference fp32', { prec: 'fp32', gflop: f.json.gflop_per_image, date: f.json.context.date, machine: f.json.context.machine }, null, f);
}

const ort = engines.get('onnxruntime fp32');
const ortIn = (round) => ort?.runs.find((r) => r.round === round);
const fmt = (v, d = 1) => (v === undefined ? '-' : v.toFixed(d));
const ratio = (v) => (v === undefined ? '-' : `${v.toFixed(2)}x`);
const first = [...engines.values()].find((e) => e.machine);
const dates = [...engines.values()].map((e) => e.date).filter(Boolean).sort();
console.log(`${first ? `${first.machine.cpu}, ${first.machine.cores} cores` : ''}, ${threads} threads, ViT-S/16 256x256, ` +
            `${rounds.length} round(s), ${dates[0] ?? ''}`);
console.log('| engine | ms @1 (p50) | img/s @1 | @2 | @4 | @8 | GFLOP/s (best) | of peak | ms @1 / floor | ms @1 vs ORT | img/s @8 vs ORT |');
console.log('|---|---|---|---|---|---|---|---|---|---|---|');
const perRound = [];
for (const [name, e] of engines) {
  const ms1 = median(e.runs.map((r) => r.ms1));
  const ips = batches.map((_, i) => median(e.runs.map((r) => r.ips[i])));
  const best = Math.max(...ips.filter((v) => v !== undefined));
  const achieved = best * e.gflop;
  const peak = perCore[e.prec] * threads;
  // Ratios within a round; the reference backend (run once, after the rounds) against the rounds' median.
  const ortMedian = { ms1: median(ort?.runs.map((o) => o.ms1) ?? []), ips: [] };
  const quotient = (a, b) => (a && b ? a / b : undefined);
  const pairs = e.runs.map((r) => {
    const o = r.round === null ? ortMedian : ortIn(r.round);
    return { round: r.round, ms: quotient(r.ms1, o?.ms1), tp: quotient(r.ips[3], o?.ips[3]) };
  });
  // The floor: batch-1 flops at the round's peak for the precision (none for a mixed plan), per round.
  const floors = e.runs.map((r) => {
    const core = r.round === null ? perCore[e.prec] : perCoreIn(r.round, e.prec);
    return core ? r.ms1 / ((1000 * e.gflop) / (core * threads)) : undefined;
  });
  console.log(`| ${name} | ${fmt(ms1)} | ${ips.map((v) => fmt(v)).join(' | ')} | ${fmt(achieved, 0)} | ` +
              `${peak ? `${fmt((100 * achieved) / peak, 0)}%` : '-'} | ${ratio(median(floors))} | ` +
              `${ratio(median(pairs.map((p) => p.ms)))} | ${ratio(median(pairs.map((p) => p.tp)))} |`);
  if (name !== 'onnxruntime fp32' && e.runs.length > 1) {
    perRound.push(`${name}: ` + pairs.map((p) => `${p.round} ${ratio(p.ms)} @1, ${ratio(p.tp)} @8`).join('; '));
  }
}
console.log(`\nPeak per core (GFLOP/s, ${peakMeasured ? `peak_bench at ${threads} threads, median of the rounds` : 'assumed'}): ` +
            Object.entries(perCore).map(([p, v]) => `${p} ${v === undefined ? 'none' : fmt(v, 0)}`).join(', ') +
            '; floor = batch-1 GFLOP / (peak x threads).');
if (perRound.length > 0) {
  console.log('\nPer-round ratios to ONNX Runtime (ms @1, img/s @8):');
  for (const line of perRound) console.log(`  ${line}`);
}
