// A hostile tenant's function, for the sandbox tests: it runs the shell
// command in the request body and answers with what happened. Some verbs
// run inside the function's own process instead: "ALLOC <MiB>" allocates
// and keeps memory, "CONNECT <host> <port>" tries a TCP connection,
// "HOLD <host> <port>" opens one and keeps it, "LISTEN <port>" accepts
// connections on every address, and "SPAWN <n>" starts n processes at
// once and says how many started.
'use strict';
const http = require('http');
const net = require('net');
const { spawn, spawnSync } = require('child_process');

const hoard = [];
const held = [];
let calls = 0;

function connect(host, port, done) {
  const sock = net.connect({ host, port: Number(port) });
  const finish = (result) => { sock.destroy(); done(result); };
  sock.setTimeout(2000, () => finish('timeout'));
  sock.on('connect', () => finish('connected'));
  sock.on('error', (err) => finish(err.code || String(err)));
}

function spawnMany(n, done) {
  const children = [];
  let started = 0, failed = 0;
  const settle = () => {
    if (started + failed < n) return;
    children.forEach((c) => c.kill('SIGKILL'));
    done({ status: 0, stdout: `${started} started, ${failed} refused\n` });
  };
  for (let i = 0; i < n; i++) {
    const c = spawn('/bin/sleep', ['30'], { stdio: 'ignore' });
    children.push(c);
    c.on('spawn', () => { started++; settle(); });
    c.on('error', () => { failed++; settle(); });
  }
}

function run(cmd, done) {
  const many = /^SPAWN (\d+)$/.exec(cmd);
  if (many) return spawnMany(Number(many[1]), done);
  const alloc = /^ALLOC (\d+)$/.exec(cmd);
  if (alloc) {
    for (let i = 0; i < Number(alloc[1]); i++) hoard.push(Buffer.alloc(1 << 20, 1));
    return done({ status: 0, stdout: `holding ${hoard.length} MiB\n` });
  }
  const hold = /^HOLD (\S+) (\d+)$/.exec(cmd);
  if (hold) {
    const sock = net.connect({ host: hold[1], port: Number(hold[2]) });
    held.push(sock);
    sock.on('error', () => {}); // a restored worker finds it closed
    sock.on('connect', () => done({ status: 0, stdout: 'held\n' }));
    return;
  }
  const listen = /^LISTEN (\d+)$/.exec(cmd);
  if (listen) {
    const srv = net.createServer((c) => c.end('hello\n'));
    srv.on('error', (err) => done({ status: 1, stdout: String(err) + '\n' }));
    return srv.listen(Number(listen[1]), '0.0.0.0', () => done({ status: 0, stdout: 'listening\n' }));
  }
  const conn = /^CONNECT (\S+) (\d+)$/.exec(cmd);
  if (conn) {
    return connect(conn[1], conn[2], (result) => done({ status: 0, stdout: result + '\n' }));
  }
  const r = spawnSync('/bin/sh', ['-c', cmd], { encoding: 'utf8', timeout: 20000 });
  done({ status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr, error: r.error && r.error.message });
}

const url = new URL(process.env.upstream_url || 'http://127.0.0.1:5000');
http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => {
    calls++;
    run(body.trim(), (out) => {
      out.calls = calls;
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(out));
    });
  });
}).listen(Number(url.port), url.hostname);
