// Your function: (event, context) => response. event has method, path,
// query (URLSearchParams), headers and body (a Buffer); return an object
// with statusCode, body and headers, or just the body (a string, Buffer or
// anything JSON). Module-level state lives as long as the worker, and a
// worker restored from a snapshot starts with it: here a call counter that
// goes on from where the snapshot was taken.
'use strict';

let count = 0;

module.exports = async (event, context) => {
  count += 1;
  return {
    statusCode: 200,
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ count, pid: process.pid, runtime: 'node', received: event.body.length }),
  };
};
