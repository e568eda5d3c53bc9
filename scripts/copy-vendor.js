// Build step (npm run build, prepare, test): copy the browser bundle of @stomp/stompjs that the
// chat demo loads into dist/vendor/, so the package serves it without node_modules at run time
// (it is a devDependency) and no page ever reaches a CDN.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const target = path.join(root, 'dist', 'vendor');
fs.mkdirSync(target, { recursive: true });
// The package's require entry is its UMD bundle; the minified one sits beside it.
const bundle = path.join(path.dirname(require.resolve('@stomp/stompjs', { paths: [root] })), 'stomp.umd.min.js');
fs.copyFileSync(bundle, path.join(target, 'stomp.umd.min.js'));
