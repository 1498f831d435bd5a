#!/usr/bin/env node
/*
 * Drives luci-app-wgroam's status view in a real headless browser (Debian's
 * chromium through playwright-core) against a stand-in of LuCI's runtime
 * (standin/runtime-standin.js) and of rpcd + uhttpd's /ubus endpoint (here):
 *  - the ACL files of the app (root/usr/share/rpcd/acl.d/*.json) decide, as
 *    rpcd does, whether the session may call object/method (the session
 *    holds the ACL groups the menu entry depends on); anything else is
 *    answered with JSON-RPC error -32002 "Access denied";
 *  - an allowed call runs the REAL rpcd exec plugin (openwrt/files/wgroam.rpcd,
 *    under busybox sh) as rpcd does: `PLUGIN list` once, then
 *    `PLUGIN call METHOD` with the arguments as JSON on stdin; a method the
 *    plugin does not list is -32601 "Method not found"; its output must be
 *    one JSON object (else ubus code 2, UBUS_STATUS_INVALID_ARGUMENT).
 *
 *   node status-page.js --config WGROAM_CONFIG --wgroam BIN --shot PNG
 *        [--view wgroam/status] [--fill 'SELECTOR|VALUE']... [--click SELECTOR]
 *        [--wait SELECTOR]... [--accept-dialogs]
 *        [--expect TEXT]... [--expect-attr 'SELECTOR|ATTR|VALUE']...
 *        [--save-text 'SELECTOR|FILE']... [--poll] [--width 390]
 *
 * Steps run in the order given, after the view rendered: --fill types VALUE
 * into an input, --click clicks (and waits for the rpc calls it starts),
 * --wait waits for an element (15 s). --save-text writes an element's text
 * to FILE at the end (e.g. the invite token, for the caller to check);
 * 'SELECTOR|FILE|html' its innerHTML.
 * LuCI's `uqr` module (the QR encoder luci-proto-wireguard uses, vendored
 * in LuCI from the npm package uqr) is served from tests/luci/node_modules/uqr
 * wrapped as a LuCI class: uqr.renderSVG(text, opts) -> SVG string.
 *
 * Prints the page text; exit 1 when an expectation fails.
 */
'use strict';

const http = require('http');
const fs = require('fs');
const path = require('path');
const { execFileSync, spawnSync } = require('child_process');
const { chromium } = require('playwright-core');

const root = path.resolve(__dirname, '../..');
const app = path.join(root, 'openwrt/luci-app-wgroam');
const plugin = path.join(root, 'openwrt/files/wgroam.rpcd');

function parseArgs(argv) {
	const o = { expect: [], expectAttr: [], width: 1024, poll: false, view: 'wgroam/status', steps: [], saveText: [] };
	for (let i = 0; i < argv.length; i++) {
		const a = argv[i];
		if (a === '--config') o.config = argv[++i];
		else if (a === '--wgroam') o.wgroam = argv[++i];
		else if (a === '--shot') o.shot = argv[++i];
		else if (a === '--expect') o.expect.push(argv[++i]);
		else if (a === '--expect-attr') o.expectAttr.push(argv[++i]);
		else if (a === '--width') o.width = +argv[++i];
		else if (a === '--poll') o.poll = true;
		else if (a === '--view') o.view = argv[++i];
		else if (a === '--fill' || a === '--click' || a === '--wait') o.steps.push([a.slice(2), argv[++i]]);
		else if (a === '--save-text') o.saveText.push(argv[++i]);
		else throw new Error('unknown argument ' + a);
	}
	if (!o.config || !o.wgroam)
		throw new Error('usage: status-page.js --config FILE --wgroam BIN [--shot PNG] [--expect TEXT]...');
	return o;
}

/* The ACL groups the status menu entry depends on, and what they grant. */
function loadAcl(view) {
	const menu = JSON.parse(fs.readFileSync(path.join(app, 'root/usr/share/luci/menu.d/luci-app-wgroam.json')));
	const entry = Object.values(menu).find(e => e.action && e.action.path === view);
	if (!entry)
		throw new Error('menu: no entry for view ' + view);
	const groups = (entry.depends && entry.depends.acl) || [];
	const grants = {};
	for (const f of fs.readdirSync(path.join(app, 'root/usr/share/rpcd/acl.d'))) {
		const acl = JSON.parse(fs.readFileSync(path.join(app, 'root/usr/share/rpcd/acl.d', f)));
		for (const g of groups) {
			for (const scope of ['read', 'write']) {
				const ubus = acl[g] && acl[g][scope] && acl[g][scope].ubus || {};
				for (const [obj, methods] of Object.entries(ubus))
					for (const m of methods)
						grants[obj + '.' + m] = true;
			}
		}
	}
	return { groups, grants };
}

function runPlugin(env, args, input) {
	const r = spawnSync('busybox', ['sh', plugin].concat(args), { input: input || '', env, encoding: 'utf8', timeout: 10000 });
	return { code: r.status, out: r.stdout, err: r.stderr };
}

async function main() {
	const o = parseArgs(process.argv.slice(2));
	const env = Object.assign({}, process.env, { WGROAM_BIN: o.wgroam, WGROAM_CONFIG: o.config });
	const acl = loadAcl(o.view);
	const listed = JSON.parse(runPlugin(env, ['list']).out);
	const calls = [];

	const server = http.createServer((req, res) => {
		const send = (code, type, body) => {
			res.writeHead(code, { 'Content-Type': type, 'Cache-Control': 'no-store' });
			res.end(body);
		};
		if (req.method === 'POST' && req.url === '/ubus/') {
			let body = '';
			req.on('data', c => { body += c; });
			req.on('end', () => {
				const msg = JSON.parse(body);
				const [sid, object, method, args] = msg.params;
				calls.push(object + '.' + method);
				const reply = r => send(200, 'application/json', JSON.stringify(Object.assign({ jsonrpc: '2.0', id: msg.id }, r)));
				if (sid !== 'standin-session' || !acl.grants[object + '.' + method])
					return reply({ error: { code: -32002, message: 'Access denied' } });
				if (object !== 'wgroam' || !listed[method])
					return reply({ error: { code: -32601, message: 'Method not found' } });
				const r = runPlugin(env, ['call', method], JSON.stringify(args || {}));
				let out;
				try { out = JSON.parse(r.out); } catch (e) { out = null; }
				if (out === null || typeof out !== 'object' || Array.isArray(out))
					return reply({ result: [2] });
				return reply({ result: [0, out] });
			});
			return;
		}
		const url = req.url.split('?')[0];
		if (url === '/favicon.ico')
			return send(204, 'text/plain', '');
		if (url === '/' || url === '/index.html')
			return send(200, 'text/html', fs.readFileSync(path.join(__dirname, 'standin/index.html')));
		if (url === '/luci-static/resources/luci.js')
			return send(200, 'text/javascript', fs.readFileSync(path.join(__dirname, 'standin/runtime-standin.js')));
		if (url === '/luci-static/resources/uqr.js') {
			const cjs = fs.readFileSync(path.join(__dirname, 'node_modules/uqr/dist/index.cjs'), 'utf8').replace(/^'use strict';/, '');
			return send(200, 'text/javascript', "'use strict';\n'require baseclass';\nvar exports = {};\n" + cjs +
				'\nreturn baseclass.extend({ encode: exports.encode, renderSVG: exports.renderSVG, renderANSI: exports.renderANSI, renderUnicode: exports.renderUnicode });\n');
		}
		if (url === '/luci-static/standin.css')
			return send(200, 'text/css', fs.readFileSync(path.join(__dirname, 'standin/standin.css')));
		const m = /^\/luci-static\/resources\/([a-z0-9_\/-]+\.js)$/.exec(url);
		if (m) {
			const f = path.join(app, 'htdocs/luci-static/resources', m[1]);
			if (fs.existsSync(f))
				return send(200, 'text/javascript', fs.readFileSync(f));
		}
		send(404, 'text/plain', 'not found');
	});
	await new Promise(r => server.listen(0, '127.0.0.1', r));
	const base = 'http://127.0.0.1:' + server.address().port;

	const browser = await chromium.launch({
		executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
		args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
			'--disable-component-update', '--no-first-run', '--disable-sync']
	});
	let failed = 0;
	try {
		const page = await browser.newPage({ viewport: { width: o.width, height: 900 } });
		const errors = [];
		page.on('pageerror', e => errors.push(String(e)));
		page.on('console', m => { if (m.type() === 'error') errors.push(m.text()); });
		page.on('dialog', d => d.accept());
		await page.goto(base + '/#view=' + o.view);
		await page.waitForFunction(() => window.__viewRendered || window.__viewError, null, { timeout: 15000 });
		const viewError = await page.evaluate(() => window.__viewError || null);
		if (viewError) {
			console.log('FAIL: the view did not render: ' + viewError);
			failed++;
		}
		for (const [kind, arg] of o.steps) {
			if (kind === 'fill') {
				const [sel, v] = arg.split('|');
				await page.fill(sel, v);
			} else if (kind === 'click') {
				const n0 = calls.length;
				await page.click(arg);
				await page.waitForTimeout(200);
				console.log('clicked %s (%d rpc call(s): %s)', arg, calls.length - n0, calls.slice(n0).join(', '));
			} else {
				await page.waitForSelector(arg, { timeout: 15000 });
			}
		}
		if (o.poll) {
			/* The refresh: a node rendered now is replaced by the next poll. */
			await page.evaluate(() => {
				const b = document.getElementById('wgroam-status');
				if (b && b.firstChild) b.firstChild.setAttribute('data-old', '1');
			});
			const n0 = calls.length;
			try {
				await page.waitForFunction(() => !document.querySelector('#wgroam-status [data-old]'), null, { timeout: 8000 });
				console.log('ok: polling refreshed the page (%d status call(s) after the first render)', calls.length - n0);
			} catch (e) {
				console.log('FAIL: the page was not refreshed by polling within 8 s');
				failed++;
			}
		}
		const text = await page.innerText('#view');
		console.log('--- page text\n' + text + '\n---');
		for (const t of o.expect) {
			if (text.includes(t)) console.log('ok: page shows "%s"', t);
			else { console.log('FAIL: page does not show "%s"', t); failed++; }
		}
		for (const spec of o.expectAttr) {
			const [sel, attr, value] = spec.split('|');
			const got = await page.evaluate(([s, a]) => {
				const el = document.querySelector(s);
				return el ? (a === 'text' ? el.textContent : el.getAttribute(a)) : null;
			}, [sel, attr]);
			if (got === value) console.log('ok: %s %s = "%s"', sel, attr, value);
			else { console.log('FAIL: %s %s = %j, expected "%s"', sel, attr, got, value); failed++; }
		}
		const denied = calls.filter(c => !acl.grants[c]);
		console.log('ubus calls made by the view: %s', Array.from(new Set(calls)).join(', ') || 'none');
		if (denied.length) { console.log('FAIL: calls outside the ACL: %s', denied.join(', ')); failed++; }
		if (errors.length) { console.log('FAIL: errors in the page: %s', errors.join(' | ')); failed++; }
		for (const spec of o.saveText) {
			const [sel, file, what] = spec.split('|');
			const t = await page.evaluate(([s, w]) => { const el = document.querySelector(s); return el ? (w === 'html' ? el.innerHTML : el.textContent) : ''; }, [sel, what]);
			fs.writeFileSync(file, t);
		}
		if (o.shot) {
			await page.screenshot({ path: o.shot, fullPage: true });
			console.log('screenshot: %s', o.shot);
		}
	} finally {
		await browser.close();
		server.close();
	}
	process.exit(failed ? 1 : 0);
}

main().catch(e => { console.error('status-page: ' + (e && e.stack || e)); process.exit(1); });
