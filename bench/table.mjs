// Formats output/compare/* (dinov3 bench reports and the ONNX Runtime anchor's JSON lines) as one table.
import fs from 'node:fs';
import path from 'node:path';

const [dir, threadsArg] = process.argv.slice(2);
const threads = Number(threadsArg || 2);
const perCore = {
  fp32: Number(process.env.PEAK_GFLOPS_FP32 || 287),
  bf16: Number(process.env.PEAK_GFLOPS_BF16 || 528),
  int8: Number(process.env.PEAK_GFLOPS_INT8 || 1056),
};
const ort = {};
for (const line of fs.readFileSync(path.join(dir, 'ort.jsonl'), 'utf8').split('\n').filter(Boolean)) {
  const r = JSON.parse(line);
  ort[r.batch] = r;
}
const batches = [1, 2, 4, 8];
const rows = [];
const gflop = 12.49;
rows.push({ name: 'onnxruntime fp32', ms1: ort[1]?.median, ips: batches.map((b) => ort[b]?.img_per_s), prec: 'fp32' });
for (const sub of fs.readdirSync(dir).sort()) {
  const file = path.join(dir, sub, 'bench.json');
  if (!fs.existsSync(file)) continue;
  const j = JSON.parse(fs.readFileSync(file, 'utf8'));
  // Images per second from the median batch time, the statistic the ONNX Runtime anchor uses, so both
  // engines' columns mean the same thing (bench.json's images_per_s is from the mean).
  const by = Object.fromEntries(j.throughput.map((t) => [t.batch, (1000 * t.batch) / t.ms_per_batch.p50]));
  rows.push({ name: `dinov3 ${j.context.backend} ${j.context.precision}`, ms1: j.latency_ms.p50, ips: batches.map((b) => by[b]),
              prec: j.context.precision, gflop: j.gflop_per_image, date: j.context.date, machine: j.context.machine });
}
const fmt = (v, d = 1) => (v === undefined || v === null ? '-' : v.toFixed(d));
const ratio = (v) => (v === undefined ? '-' : `${v.toFixed(2)}x`);
const cpu = rows.find((r) => r.machine)?.machine;
console.log(`${cpu ? `${cpu.cpu}, ${cpu.cores} cores` : ''}, ${threads} threads, ViT-S/16 256x256, ${rows.find((r) => r.date)?.date ?? ''}`);
console.log('| engine | ms @1 (p50) | img/s @1 | @2 | @4 | @8 | GFLOP/s (best) | of peak | ms @1 vs ORT | img/s @8 vs ORT |');
console.log('|---|---|---|---|---|---|---|---|---|---|');
for (const r of rows) {
  const g = r.gflop ?? gflop;
  const best = Math.max(...r.ips.filter((v) => v !== undefined));
  const achieved = best * g;
  const peak = perCore[r.prec] * threads;
  const ratioMs = ort[1] && r.ms1 ? r.ms1 / ort[1].median : undefined;
  const ratioTp = ort[8] && r.ips[3] ? r.ips[3] / ort[8].img_per_s : undefined;
  console.log(`| ${r.name} | ${fmt(r.ms1)} | ${r.ips.map((v) => fmt(v)).join(' | ')} | ${fmt(achieved, 0)} | ` +
              `${fmt((100 * achieved) / peak, 0)}% | ${ratio(ratioMs)} | ${ratio(ratioTp)} |`);
}
