// BullMQ's side of scripts/bench/bullmq.py: run by it with node, bullmq resolved from the
// bench's cache dir (NODE_PATH is not read by ES modules, so the caller passes that dir,
// the one whose node_modules holds bullmq, in BULLMQ_DIR).
//
//   node bullmq_drain.mjs drain --redis URL --jobs N --concurrency C [--url STUB_URL]
//     enqueue N jobs with Queue.addBulk (chunks of 1,000), then drain them with one Worker
//     at concurrency C; print one JSON line: enqueue_s, drain_s (Worker created -> last
//     job completed), steady_s (first processor call -> last job completed).
//     With --url each job POSTs a small JSON body to the stub and awaits its answer.
//   node bullmq_drain.mjs stub --delay-ms 50
//     a stub provider on a free loopback port answering every POST after delay-ms; prints
//     {"url": ...} on its first line, then serves until killed.

import http from "node:http";
import path from "node:path";
import { createRequire } from "node:module";

function opts(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 2) out[argv[i].replace(/^--/, "")] = argv[i + 1];
  return out;
}

const ANSWER = JSON.stringify({ text: "ok", usage: { tokens: 12 } });

function stub(delayMs) {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () =>
      setTimeout(() => {
        res.writeHead(200, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(ANSWER) });
        res.end(ANSWER);
      }, delayMs),
    );
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, "127.0.0.1", () => {
    process.stdout.write(JSON.stringify({ url: `http://127.0.0.1:${server.address().port}/v1/generate` }) + "\n");
  });
  process.on("SIGTERM", () => server.close(() => process.exit(0)));
}

async function drain(o) {
  const dir = process.env.BULLMQ_DIR;
  if (!dir) throw new Error("BULLMQ_DIR is not set (the dir whose node_modules holds bullmq)");
  const { Queue, Worker } = createRequire(path.join(dir, "package.json"))("bullmq");
  const u = new URL(o.redis);
  const connection = { host: u.hostname, port: Number(u.port), maxRetriesPerRequest: null };
  const jobs = Number(o.jobs);
  const concurrency = Number(o.concurrency);
  const name = `bench-${process.pid}`;
  const queue = new Queue(name, { connection });
  const payload = { prompt: "a short prompt" };

  let t0 = performance.now();
  for (let i = 0; i < jobs; i += 1000) {
    const n = Math.min(1000, jobs - i);
    await queue.addBulk(Array.from({ length: n }, () => ({ name: "noop", data: payload })));
  }
  const enqueueS = (performance.now() - t0) / 1000;

  const url = o.url;
  let firstStart = null;
  let done = 0;
  let failed = 0;
  const processor = url
    ? async (job) => {
        firstStart ??= performance.now();
        const res = await fetch(url, {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "application/json" },
          body: JSON.stringify(job.data),
        });
        if (!res.ok) throw new Error(`stub answered ${res.status}`);
        return await res.json();
      }
    : async () => {
        firstStart ??= performance.now();
        return {};
      };
  const finished = new Promise((resolve) => {
    const check = () => done + failed >= jobs && resolve(performance.now());
    t0 = performance.now();
    const worker = new Worker(name, processor, { connection, concurrency });
    worker.on("completed", () => {
      done += 1;
      check();
    });
    worker.on("failed", () => {
      failed += 1;
      check();
    });
  });
  const tEnd = await finished;
  const counts = await queue.getJobCounts("completed", "failed", "waiting", "active");
  process.stdout.write(
    JSON.stringify({
      system: "bullmq",
      concurrency,
      jobs,
      enqueue_s: enqueueS,
      drain_s: (tEnd - t0) / 1000,
      steady_s: (tEnd - firstStart) / 1000,
      failed,
      counts,
    }) + "\n",
  );
  process.exit(0);
}

const [mode, ...rest] = process.argv.slice(2);
const o = opts(rest);
if (mode === "stub") stub(Number(o["delay-ms"] ?? 50));
else if (mode === "drain")
  drain(o).catch((e) => {
    process.stderr.write(`bullmq_drain: ${e.stack || e}\n`);
    process.exit(1);
  });
else {
  process.stderr.write("usage: node bullmq_drain.mjs drain --redis URL --jobs N --concurrency C [--url U] | stub\n");
  process.exit(2);
}
