#!/usr/bin/env node
/*
 * Static checks of luci-app-wgroam (openwrt/luci-app-wgroam), no browser:
 *  - every JS file under htdocs/ compiles the way LuCI's loader wraps it,
 *    (function(window, document, L, deps...) { source }), and starts with
 *    'use strict' and its 'require' strings;
 *  - the menu (root/usr/share/luci/menu.d/*.json) and ACL
 *    (root/usr/share/rpcd/acl.d/*.json) are valid JSON; every view a menu
 *    entry names exists, every ACL group a menu entry depends on exists;
 *  - what the views use (rpc.declare object/method, the uci configs of
 *    form.Map / uci.*) is exactly what the ACL grants: nothing missing,
 *    nothing more, no file/exec/cgi grants at all;
 *  - the ubus methods granted on `wgroam` are the ones the rpcd plugin
 *    (openwrt/files/wgroam.rpcd) lists;
 *  - the checks can fail: an ACL without a method a view calls, and one with
 *    an extra method, are each rejected.
 * Closing line: "luci-app: N passed, N failed".
 */
'use strict';

const fs = require('fs');
const path = require('path');
const vm = require('vm');
const { spawnSync } = require('child_process');

const root = path.resolve(__dirname, '../..');
const app = path.join(root, 'openwrt/luci-app-wgroam');
let passed = 0, failed = 0;
const ok = m => { passed++; console.log('ok: ' + m); };
const fail = m => { failed++; console.log('FAIL: ' + m); };
const check = (m, c) => (c ? ok(m) : fail(m));

function walk(dir) {
	return fs.readdirSync(dir, { withFileTypes: true }).flatMap(e =>
		e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]);
}

function readJson(f) {
	try {
		return JSON.parse(fs.readFileSync(f, 'utf8'));
	} catch (e) {
		fail(`${path.relative(root, f)} is not valid JSON: ${e.message}`);
		return null;
	}
}

/* What a view source uses. */
function uses(src) {
	const ubus = new Set(), uci = new Set(), other = [];
	for (const m of src.matchAll(/rpc\.declare\(\s*\{([^}]*)\}/g)) {
		const obj = /object\s*:\s*'([^']+)'/.exec(m[1]), meth = /method\s*:\s*'([^']+)'/.exec(m[1]);
		if (obj && meth) ubus.add(`${obj[1]}.${meth[1]}`);
		else other.push('rpc.declare without literal object/method');
	}
	for (const m of src.matchAll(/\bform\.Map\(\s*'([^']+)'/g)) uci.add(m[1]);
	for (const m of src.matchAll(/\buci\.(?:load|get|get_first|set|unset|add|remove|sections)\(\s*'([^']+)'/g)) uci.add(m[1]);
	for (const m of src.matchAll(/\b(fs\.(?:read|write|exec|exec_direct|list|stat|remove)|L\.resolveDefault\(fs)\b/g)) other.push(m[1]);
	return { ubus, uci, other };
}

/* What the ACL groups grant. */
function grants(acls, groups) {
	const ubus = { read: new Set(), write: new Set() }, uci = { read: new Set(), write: new Set() }, other = [];
	for (const acl of acls)
		for (const g of groups) {
			if (!acl[g]) continue;
			for (const scope of Object.keys(acl[g])) {
				if (scope === 'description') continue;
				if (scope !== 'read' && scope !== 'write') { other.push(`${g}.${scope}`); continue; }
				for (const [kind, v] of Object.entries(acl[g][scope])) {
					if (kind === 'ubus')
						for (const [o, ms] of Object.entries(v)) for (const m of ms) ubus[scope].add(`${o}.${m}`);
					else if (kind === 'uci')
						for (const c of v) uci[scope].add(c);
					else
						other.push(`${g}.${scope}.${kind}`);
				}
			}
		}
	return { ubus, uci, other };
}

const sorted = s => Array.from(s).sort().join(' ');

/* Compares use and grant; returns the problems. */
function compare(used, granted, writesUci) {
	const problems = [];
	const allUbus = new Set([...granted.ubus.read, ...granted.ubus.write]);
	for (const u of used.ubus) if (!allUbus.has(u)) problems.push(`ubus ${u} used but not granted`);
	for (const g of allUbus) if (!used.ubus.has(g)) problems.push(`ubus ${g} granted but no view uses it`);
	if (sorted(used.uci) !== sorted(granted.uci.read))
		problems.push(`uci read grants [${sorted(granted.uci.read)}] != used [${sorted(used.uci)}]`);
	if (sorted(writesUci) !== sorted(granted.uci.write))
		problems.push(`uci write grants [${sorted(granted.uci.write)}] != written by forms [${sorted(writesUci)}]`);
	if (granted.other.length) problems.push(`grants beyond ubus/uci: ${granted.other.join(', ')}`);
	if (used.other.length) problems.push(`views use ${used.other.join(', ')}`);
	return problems;
}

/* ---- views compile as LuCI loads them */
const resources = path.join(app, 'htdocs/luci-static/resources');
const views = walk(resources).filter(f => f.endsWith('.js'));
check(`views found: ${views.map(f => path.relative(resources, f)).join(', ')}`, views.length >= 2);
const used = { ubus: new Set(), uci: new Set(), other: [] };
const writesUci = new Set();
for (const f of views) {
	const rel = path.relative(resources, f);
	const src = fs.readFileSync(f, 'utf8');
	const deps = Array.from(src.matchAll(/^'require ([a-z0-9_.]+)(?: as ([A-Za-z_]\w*))?';$/gm)).map(m => m[2] || m[1].replace(/[^a-zA-Z0-9_]/g, '_'));
	try {
		new vm.Script(`(function(window, document, L${deps.map(d => ', ' + d).join('')}) { ${src} })`, { filename: rel });
		ok(`${rel} compiles as LuCI's loader wraps it (deps: ${deps.join(', ')})`);
	} catch (e) {
		fail(`${rel}: ${e.message}`);
	}
	check(`${rel} starts with 'use strict'`, src.startsWith("'use strict';\n"));
	check(`${rel} has no Lua/legacy CBI references`, !/luci\.cbi|\.lua\b|L\.Poll\b/.test(src));
	const u = uses(src);
	u.ubus.forEach(x => used.ubus.add(x));
	u.uci.forEach(x => used.uci.add(x));
	used.other.push(...u.other);
	if (/\bform\.Map\(/.test(src)) u.uci.forEach(x => writesUci.add(x));
}
check('no Lua files in the app', !walk(app).some(f => f.endsWith('.lua')));

/* ---- menu and ACL */
const menus = walk(path.join(app, 'root/usr/share/luci/menu.d')).map(readJson).filter(Boolean);
const aclFiles = walk(path.join(app, 'root/usr/share/rpcd/acl.d'));
const acls = aclFiles.map(readJson).filter(Boolean);
check(`menu and ACL files parse (${menus.length} menu, ${acls.length} ACL)`, menus.length === 1 && acls.length === 1 && !failed);
const groups = new Set();
for (const menu of menus)
	for (const [p, e] of Object.entries(menu)) {
		check(`menu ${p} lives under admin/services/wgroam`, p.startsWith('admin/services/wgroam'));
		for (const g of (e.depends && e.depends.acl) || []) groups.add(g);
		if (e.action && e.action.type === 'view') {
			const f = path.join(resources, 'view', e.action.path + '.js');
			check(`menu ${p} -> view ${e.action.path} exists`, fs.existsSync(f));
		}
	}
for (const g of groups) check(`ACL group ${g} (menu depends) is defined`, acls.some(a => a[g]));
const granted = grants(acls, groups);
const problems = compare(used, granted, writesUci);
problems.forEach(fail);
check(`the ACL grants exactly what the views use: ubus [${sorted(used.ubus)}], uci [${sorted(used.uci)}]`, problems.length === 0);

/* ---- the plugin lists the granted wgroam methods */
const sh = spawnSync('busybox', ['sh', path.join(root, 'openwrt/files/wgroam.rpcd'), 'list'], { encoding: 'utf8' });
let listed = {};
try { listed = JSON.parse(sh.stdout); } catch (e) { fail(`plugin list is not JSON: ${sh.stdout} ${sh.stderr}`); }
const wanted = Array.from(new Set([...granted.ubus.read, ...granted.ubus.write])).filter(x => x.startsWith('wgroam.')).map(x => x.slice(7));
check(`rpcd plugin lists the granted wgroam methods [${wanted.join(' ')}] and only those [${Object.keys(listed).join(' ')}]`,
	sorted(wanted) === sorted(Object.keys(listed)));

/* ---- the comparison can fail */
const clone = x => JSON.parse(JSON.stringify(x));
const less = clone(acls);
for (const a of less) for (const g of Object.keys(a)) if (a[g].read && a[g].read.ubus) a[g].read.ubus.wgroam = [];
check('self-test: an ACL missing wgroam.status is rejected', compare(used, grants(less, groups), writesUci).some(p => /wgroam.status used but not granted/.test(p)));
const more = clone(acls);
for (const a of more) for (const g of Object.keys(a)) if (a[g].read && a[g].read.ubus) a[g].read.ubus.file = ['exec'];
check('self-test: an ACL granting an extra method is rejected', compare(used, grants(more, groups), writesUci).some(p => /file.exec granted but no view uses it/.test(p)));
const nojoin = clone(acls);
for (const a of nojoin) for (const g of Object.keys(a)) if (a[g].write && a[g].write.ubus) a[g].write.ubus.wgroam = a[g].write.ubus.wgroam.filter(m => m !== 'join');
check('self-test: an ACL missing wgroam.join (the Join a hub view) is rejected', compare(used, grants(nojoin, groups), writesUci).some(p => /wgroam.join used but not granted/.test(p)));
const files = clone(acls);
for (const a of files) for (const g of Object.keys(a)) if (a[g].read) a[g].read.file = { '/usr/sbin/wgroam': ['exec'] };
check('self-test: an ACL granting file access is rejected', compare(used, grants(files, groups), writesUci).some(p => /beyond ubus\/uci/.test(p)));

console.log(`luci-app: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
