// Pronghorn's Node.js template: the HTTP server around function/handler.js.
// Pronghorn's agent starts it (the template's fprocess) or restores it from a
// snapshot, and sends it each call on the address in upstream_url (default
// http://127.0.0.1:5000), as of-watchdog's http mode does. Node's standard
// library only. State kept in the handler's module survives across calls
// and, in a restored worker, across snapshots.
'use strict';
const http = require('http');
const handler = require('./function/handler');

const upstream = new URL(process.env.upstream_url || 'http://127.0.0.1:5000');

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    const url = new URL(req.url, 'http://localhost');
    const event = {
      method: req.method, path: url.pathname, query: url.searchParams,
      headers: req.headers, body: Buffer.concat(chunks),
    };
    let out;
    try {
      out = await handler(event, { hostname: process.env.HOSTNAME || 'localhost' });
    } catch (err) {
      console.error(err);
      out = { statusCode: 500, body: 'handler failed\n' };
    }
    if (out === null || typeof out !== 'object' || Buffer.isBuffer(out)) out = { body: out };
    let body = out.body === undefined ? '' : out.body;
    if (!Buffer.isBuffer(body)) body = Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    const headers = Object.assign({ 'Content-Type': 'text/plain; charset=utf-8' }, out.headers || {});
    headers['Content-Length'] = body.length;
    res.writeHead(out.statusCode || 200, headers);
    res.end(body);
  });
});
server.keepAliveTimeout = 0; // the agent keeps its connections as long as it likes
server.listen(Number(upstream.port) || 5000, upstream.hostname || '127.0.0.1');
