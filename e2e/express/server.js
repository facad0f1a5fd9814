// The demo API's routes in Express with Express's default routing — case-insensitive, a
// trailing slash optional — as an upstream for the path differential test (e2e/paths_test.go).
// Every handler names itself in X-Handler, so the test sees through any proxy which one ran,
// and says in X-Saw-Spoofed whether a client's identity header reached it.
'use strict';
const express = require('express');

const app = express();
app.use((req, res, next) => {
  const spoofed = req.get('x-authz-subject') === 'spoofed' || req.get('x-authz-scopes') === 'spoofed';
  res.set('X-Saw-Spoofed', spoofed ? '1' : '0');
  next();
});
const route = (pattern, body) => app.get(pattern, (req, res) => {
  res.set('X-Handler', 'GET ' + pattern).json(body(req));
});
route('/healthz', () => ({ status: 'ok' }));
route('/api/messages', () => ({ messages: [{ text: 'Hello, world!' }] }));
route('/secure', (req) => ({ sub: req.get('x-authz-subject') || '' }));

const server = app.listen(0, '127.0.0.1', () => {
  // The test reads the port from the first line.
  console.log(server.address().port);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
