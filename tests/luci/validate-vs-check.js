#!/usr/bin/env node
/*
 * The settings form says what `wgroam check` says: for each value below, the
 * form's check (openwrt/luci-app-wgroam/.../wgroam/validate.js, loaded the
 * way LuCI loads it) and the REAL binary (`wgroam check --config FILE` with
 * that value in a config written for it) must agree: both accept it, or
 * both reject it with the same one-line message.
 *
 *   node tests/luci/validate-vs-check.js WGROAM_BIN
 *
 * Closing line: "validate-vs-check: N passed, N failed".
 */
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const vm = require('vm');
const { spawnSync } = require('child_process');

const root = path.resolve(__dirname, '../..');
const bin = process.argv[2];
if (!bin) {
	console.error('usage: validate-vs-check.js WGROAM_BIN');
	process.exit(2);
}

/* LuCI's loader, as the stand-in runtime does it, in a fresh context. */
const ctx = vm.createContext({ document: {}, Node: function() {} });
ctx.window = ctx;
vm.runInContext(fs.readFileSync(path.join(__dirname, 'standin/runtime-standin.js'), 'utf8'), ctx);
const src = fs.readFileSync(path.join(root, 'openwrt/luci-app-wgroam/htdocs/luci-static/resources/wgroam/validate.js'), 'utf8');
const C = vm.runInContext(`(function(window, document, L, baseclass) { ${src} })`, ctx)(ctx, ctx.document, ctx.L, ctx.L.Class);
const wv = new C();

const KEY = 'kM3hD8xqPZ0Gq3hJ8lV6mQ1d2ZoS2Fz3b5mH3yY7dHg=';
/* [section type, option, value, role]; role '' = no role option. */
const cases = [
	['agent', 'log_level', 'verbose', 'hub'], ['agent', 'log_level', 'debug', 'hub'],
	['agent', 'poll_ms', '50', 'hub'], ['agent', 'poll_ms', '10001', 'hub'], ['agent', 'poll_ms', '500', 'hub'],
	['agent', 'poll_ms', '+500', 'hub'], ['agent', 'poll_ms', '5 00', 'hub'], ['agent', 'poll_ms', '100', 'roam'],
	['agent', 'commit_interval', '0', 'hub'], ['agent', 'commit_interval', '2592001', 'hub'], ['agent', 'commit_interval', '-1', 'hub'],
	['agent', 'state_dir', 'var/run', 'hub'], ['agent', 'state_dir', '/tmp/x/', 'hub'],
	['agent', 'state_file', '/var/lib/wgroam/', 'hub'], ['agent', 'state_file', 'state.json', 'hub'], ['agent', 'state_file', '/tmp/s.json', 'hub'],
	['interface', 'ifname', 'wg0', 'hub'], ['interface', 'ifname', 'a-very-long-ifname', 'hub'], ['interface', 'ifname', 'wg:0', 'hub'],
	['interface', 'ifname', 'wg/0', 'roam'], ['interface', 'ifname', '..', 'hub'],
	['interface', 'backend', 'bsd', 'hub'], ['interface', 'backend', 'kernel', 'roam'],
	['interface', 'capture_device', 'eth1', 'hub'], ['interface', 'capture_device', 'e th1', 'hub'],
	['interface', 'wan', 'eth"1', 'hub'], ['interface', 'wan', 'eth1', 'hub'],
	['interface', 'relay', 'iptables', 'hub'], ['interface', 'relay', 'off', 'hub'], ['interface', 'relay', 'fw4', 'hub'],
	['interface', 'hub_peer', 'hub-1', 'roam'], ['interface', 'hub_peer', '@wireguard_wg0[0]', 'roam'], ['interface', 'hub_peer', 'hub_1', 'roam'],
	['interface', 'hub_key', 'notakey', 'roam'], ['interface', 'hub_key', KEY, 'roam'], ['interface', 'hub_key', KEY.slice(0, 43), 'roam'], ['interface', 'hub_key', KEY.slice(0, 42) + 'h=', 'roam'], ['interface', 'hub_key', ' ' + KEY, 'roam'],
	['interface', 'endpoint', 'hub.example.org', 'roam'], ['interface', 'endpoint', 'hub.example.org:0', 'roam'],
	['interface', 'endpoint', ':51820', 'roam'], ['interface', 'endpoint', '[2001:db8::1]:51820', 'roam'], ['interface', 'endpoint', 'hub:65536', 'roam'],
	['interface', 'prefix', '2001:db8:100:1::/64', 'roam'], ['interface', 'prefix', '2001:db8:100:1::1/64', 'roam'],
	['interface', 'prefix', '2001:db8:100::/48', 'roam'], ['interface', 'prefix', '2001:db8:100:1::/80', 'roam'],
	['interface', 'prefix', '10.0.0.0/8', 'roam'], ['interface', 'prefix', '2001:db8::', 'roam'], ['interface', 'prefix', '2001:db8:::/64', 'roam'],
	['interface', 'tunnel_addr', '2001:db8:100::2', 'roam'], ['interface', 'tunnel_addr', '10.0.0.2', 'roam'],
	['interface', 'tunnel_addr', '2001:db8::1::2', 'roam'], ['interface', 'tunnel_addr', '::ffff:10.0.0.1', 'roam'],
	['interface', 'hub_tunnel_addr', '10.0.0.1', 'roam'], ['interface', 'hub_tunnel_addr', '010.0.0.1', 'roam'],
	['interface', 'hub_tunnel_addr', 'fe80::1%wg0', 'roam'], ['interface', 'hub_tunnel_addr', '2001:db8:100::1', 'roam'],
	['interface', 'heartbeat_interval', '3601', 'roam'], ['interface', 'heartbeat_interval', '0', 'roam'],
	['interface', 'grace', '86401', 'roam'], ['interface', 'grace', 'ten', 'roam'],
	['interface', 'table', '0', 'roam'], ['interface', 'table', '4294967295', 'roam'], ['interface', 'table', '100', 'roam'],
	['interface', 'metric', '0', 'roam'], ['interface', 'metric', '4294967295', 'roam'],
	['interface', 'delegate', 'dhcpv6', 'roam'], ['interface', 'delegate', 'radvd', 'roam'],
	['interface', 'downstream', 'lan', 'roam'], ['interface', 'downstream', 'lan:1', 'roam'],
	['interface', 'health_url', 'https://example.org/', 'roam'], ['interface', 'health_url', 'http://', 'roam'],
	['interface', 'health_url', 'http://[2001:db8::1]/ok', 'roam'], ['interface', 'health_url', 'http://a b', 'roam'],
	['interface', 'health_interval', '4', 'roam'], ['interface', 'health_interval', '60', 'roam']
];
const LISTS = new Set(['endpoint', 'downstream']);

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wgroam-validate-'));
const conf = path.join(dir, 'wgroam');
let passed = 0, failed = 0;

function check(lines) {
	fs.writeFileSync(conf, lines.join('\n') + '\n');
	const r = spawnSync(bin, ['check', '--config', conf], { encoding: 'utf8', env: Object.assign({}, process.env, { WGROAM_UCI_BIN: '/nonexistent' }) });
	return { code: r.status, lines: (r.stderr || '').split('\n').filter(Boolean) };
}

function compare(what, js, lines, code, prefix) {
	const mine = lines.filter(l => l.startsWith(prefix));
	const agree = js === true ? mine.length === 0 : (code === 2 && mine.length === 1 && mine[0] === js);
	if (agree) {
		passed++;
		console.log(`ok: ${what}: ${js === true ? 'both accept' : js}`);
	} else {
		failed++;
		console.log(`FAIL: ${what}: form says ${js === true ? 'ok' : JSON.stringify(js)}; wgroam check (exit ${code}) says ${JSON.stringify(mine.length ? mine : lines)}`);
	}
}

for (const [stype, opt, value, role] of cases) {
	const kw = LISTS.has(opt) ? 'list' : 'option';
	const lines = ["config agent 'agent'"];
	if (role) lines.push(`\toption role '${role}'`);
	lines.push(`\toption state_dir '${dir}'`);
	if (stype === 'agent') lines.push(`\t${kw} ${opt} '${value}'`);
	lines.push('', "config interface 'wg0'", "\toption capture '0'".replace(/.*/, role === 'hub' ? "\toption capture '0'" : '\toption enabled \'1\''));
	if (stype === 'interface') lines.push(`\t${kw} ${opt} '${value}'`);
	const label = stype === 'agent' ? 'agent' : 'wg0';
	const r = check(lines);
	compare(`${stype} ${opt} '${value}' (role ${role})`, wv.check(stype, label, opt, value), r.lines, r.code, `wgroam.${label}.${opt}:`);
}

/* Options that need another one, and the role itself. */
for (const [opt, value] of [['forwarding', '1'], ['ndp_proxy', '1'], ['relay', 'nft']]) {
	const r = check(["config agent 'agent'", "\toption role 'hub'", '', "config interface 'wg0'", `\toption ${opt} '${value}'`]);
	compare(`hub ${opt} '${value}' without wan`, wv.needsWan('wg0', opt, value), r.lines, r.code, `wgroam.wg0.${opt}:`);
}
{
	const r = check(["config agent 'agent'", '', "config interface 'wg0'"]);
	compare('agent without a role', wv.roleMissing('agent'), r.lines, r.code, 'wgroam.agent.role:');
}
/* Section labels: an anonymous agent section is @agent[0]. */
{
	const r = check(['config agent', "\toption role 'hub'", "\toption poll_ms '1'", '', "config interface 'wg0'"]);
	compare('anonymous agent section, poll_ms 1', wv.check('agent', '@agent[0]', 'poll_ms', '1'), r.lines, r.code, 'wgroam.@agent[0].poll_ms:');
}

fs.rmSync(dir, { recursive: true, force: true });
console.log(`validate-vs-check: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
