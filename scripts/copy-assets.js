// Build step (npm run build, prepare, test): copy into dist/ what tsc does not.
// - The browser bundle of @stomp/stompjs that the chat demo loads, into dist/vendor/, so the
//   package serves it without node_modules at run time (it is a devDependency) and no page
//   ever reaches a CDN.
// - The cluster layer's Lua scripts (src/cluster/lua/*.lua), beside the compiled loader in
//   dist/src/cluster/lua/: the package ships no sources.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const vendor = path.join(root, 'dist', 'vendor');
fs.mkdirSync(vendor, { recursive: true });
// The package's require entry is its UMD bundle; the minified one sits beside it.
const bundle = path.join(path.dirname(require.resolve('@stomp/stompjs', { paths: [root] })), 'stomp.umd.min.js');
fs.copyFileSync(bundle, path.join(vendor, 'stomp.umd.min.js'));
fs.cpSync(path.join(root, 'src', 'cluster', 'lua'), path.join(root, 'dist', 'src', 'cluster', 'lua'), { recursive: true });
