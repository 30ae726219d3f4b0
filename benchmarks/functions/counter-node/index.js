// Counter function for snapshot tests: every request increments an in-memory
// counter, so a restored process visibly continues where its snapshot left
// off. Node standard library only.
'use strict';
const http = require('http');

let count = 0;

// A small sieve so V8 has a hot function to optimise.
function work(n) {
  const sieve = new Uint8Array(n);
  let primes = 0;
  for (let i = 2; i < n; i++) {
    if (!sieve[i]) {
      primes++;
      for (let j = i * i; j < n; j += i) sieve[j] = 1;
    }
  }
  return primes;
}

const url = new URL(process.env.upstream_url || 'http://127.0.0.1:5000');
const server = http.createServer((req, res) => {
  count++;
  const start = process.hrtime.bigint();
  const primes = work(20000);
  const serverUs = Number((process.hrtime.bigint() - start) / 1000n);
  const body = JSON.stringify({ count, pid: process.pid, primes, server_us: serverUs });
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
  req.resume();
});
server.listen(Number(url.port || 5000), url.hostname || '127.0.0.1');
