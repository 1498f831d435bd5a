'use strict';
'require view';
'require poll';
'require rpc';
'require dom';

/*
 * wgroam status: what the agent sees and did, from `ubus call wgroam status`
 * (the rpcd plugin /usr/libexec/rpcd/wgroam, which returns exactly what
 * `wgroam status --json` prints; schema "version": 1). Polled every 5 s.
 */

var callStatus = rpc.declare({
	object: 'wgroam',
	method: 'status',
	expect: { '': {} }
});

/* A handshake within this many seconds counts as online (WireGuard's
 * REJECT_AFTER_TIME: an older session is dead). */
var ONLINE_S = 180;

function now() {
	return Math.floor(Date.now() / 1000);
}

function ago(t) {
	if (t == null || t === 0)
		return _('never');
	var s = Math.max(0, now() - t);
	if (s < 120)
		return _('%d s ago').format(s);
	if (s < 7200)
		return _('%d min ago').format(Math.floor(s / 60));
	if (s < 172800)
		return _('%d h ago').format(Math.floor(s / 3600));
	return _('%d days ago').format(Math.floor(s / 86400));
}

function when(t) {
	if (t == null || t === 0)
		return '-';
	return '%s (%s)'.format(new Date(t * 1000).toLocaleString(), ago(t));
}

function bytes(n) {
	if (n == null)
		return '-';
	var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'], i = 0;
	while (n >= 1024 && i < units.length - 1) {
		n /= 1024;
		i++;
	}
	return (i ? n.toFixed(1) : String(n)) + ' ' + units[i];
}

function online(handshake) {
	return handshake != null && handshake > 0 && now() - handshake <= ONLINE_S;
}

function badge(ok, yes, no) {
	return E('span', {
		'class': 'wgroam-badge ' + (ok ? 'wgroam-ok' : 'wgroam-bad'),
		'data-state': ok ? 'ok' : 'bad'
	}, ok ? yes : no);
}

/* One key/value table: readable on a phone, one pair per row. */
function kv(rows) {
	return E('table', { 'class': 'table wgroam-kv' }, rows.filter(function(r) {
		return r != null;
	}).map(function(r) {
		return E('tr', { 'class': 'tr', 'data-key': r[2] || '' }, [
			E('td', { 'class': 'td left', 'style': 'width:35%' }, r[0]),
			E('td', { 'class': 'td left' }, r[1])
		]);
	}));
}

function problem(text) {
	return E('div', { 'class': 'alert-message warning wgroam-problem' }, text);
}

var WHY = {
	kernel: _('the kernel saw the peer there'),
	initiation: _('a verified handshake initiation came from there'),
	index: _('a packet of its session came from there'),
	restored: _('restored from the state file')
};

function renderPeer(p) {
	var key = p.public_key || '?';
	var ch = p.last_change;
	var moved = ch ? E('span', {}, [
		_('from %s to %s').format(ch.from || _('none'), ch.to || '?'), E('br'),
		E('small', {}, '%s, %s'.format(WHY[ch.why] || ch.why || '?', ago(ch.at)))
	]) : _('not since the agent started');
	return E('div', { 'class': 'cbi-section wgroam-peer', 'data-peer': key }, [
		E('h4', {}, [
			p.section ? p.section + ' ' : '', E('code', {}, key.substr(0, 8) + '…'), ' ',
			badge(online(p.latest_handshake), _('online'), _('offline'))
		]),
		p.problem ? problem(_('Handshake failing: %s').format(p.problem)) : null,
		kv([
			[_('Endpoint'), E('strong', { 'class': 'wgroam-endpoint' }, p.endpoint || _('none yet')), 'endpoint'],
			(p.kernel_endpoint && p.kernel_endpoint !== p.endpoint) ?
				[_('Kernel endpoint'), p.kernel_endpoint, 'kernel_endpoint'] : null,
			(p.uci_endpoint != null && p.uci_endpoint !== p.endpoint) ?
				[_('Endpoint in uci'), p.uci_endpoint, 'uci_endpoint'] : null,
			[_('Last move'), moved, 'last_change'],
			[_('Latest handshake'), ago(p.latest_handshake), 'latest_handshake'],
			[_('Received / sent'), '%s / %s'.format(bytes(p.rx_bytes), bytes(p.tx_bytes)), 'traffic'],
			[_('Initiations / handshakes / replays'),
				'%d / %d / %d'.format(p.initiations || 0, p.handshakes || 0, p.replays || 0), 'diag'],
			p.present === false ? [_('Peer'), _('configured in uci, not in the kernel'), 'present'] : null
		])
	]);
}

function renderIgnored(ign) {
	var keys = Object.keys(ign || {}).sort();
	if (!keys.length)
		return _('none');
	return keys.map(function(k) { return '%s %d'.format(k, ign[k]); }).join(', ');
}

function renderHub(st) {
	var out = [];
	(st.interfaces || []).forEach(function(i) {
		out.push(E('div', { 'class': 'cbi-section wgroam-iface', 'data-iface': i.name }, [
			E('h3', {}, [_('Interface %s').format(i.name), ' ', badge(i.up, _('up'), _('down'))]),
			i.capture_error ? problem(_('Capture: %s').format(i.capture_error)) : null,
			kv([
				[_('Backend / port'), '%s / %s'.format(i.backend || '-', i.listen_port != null ? i.listen_port : '-'), 'backend'],
				[_('Capture'), i.capture || _('off'), 'capture'],
				[_('Ignored packets'), E('span', { 'class': 'wgroam-ignored' }, renderIgnored(i.ignored)), 'ignored'],
				i.capture_drops ? [_('Capture overflows'), _('%d packets dropped unread').format(i.capture_drops), 'capture_drops'] : null
			]),
			(i.peers || []).length ? E('div', {}, i.peers.map(renderPeer))
				: E('p', {}, E('em', {}, _('No peers configured.')))
		]));
	});
	if (st.uci)
		out.push(E('p', { 'class': 'wgroam-uci' }, st.uci.pending
			? _('Endpoint changes are staged in uci (RAM); the commit to flash is pending. Commits so far: %d.').format(st.uci.commits || 0)
			: _('uci: nothing pending. Commits so far: %d.').format(st.uci.commits || 0)));
	return out;
}

var DELEGATION = {
	delegated: _('delegated'),
	pending: _('pending'),
	withdrawn: _('withdrawn'),
	unknown: _('unknown')
};

function renderRoam(st) {
	return (st.interfaces || []).map(function(i) {
		var d = i.delegation || {};
		var h = i.health;
		var tunnel = i.tunnel_up
			? E('span', {}, [badge(true, _('up'), ''), ' ', _('handshake %s').format(ago(i.latest_handshake))])
			: E('span', {}, [badge(false, '', _('down')), ' ', i.down_since ? _('since %s').format(when(i.down_since)) : '']);
		var dstate = E('span', { 'class': 'wgroam-delegation', 'data-state': d.state || 'unknown' }, [
			badge(d.state === 'delegated', DELEGATION[d.state] || d.state || '-', DELEGATION[d.state] || d.state || '-')
		]);
		var dparts = [];
		if (d.interface)
			dparts.push(_('interface %s').format(d.interface));
		if (d.downstream && d.downstream.length)
			dparts.push(_('to %s').format([].concat(d.downstream).join(', ')));
		if (d.mtu)
			dparts.push(_('MTU %d').format(d.mtu));
		if (d.via)
			dparts.push(_('via %s').format(d.via));
		return E('div', { 'class': 'cbi-section wgroam-iface', 'data-iface': i.name }, [
			E('h3', {}, [_('Tunnel %s').format(i.name), ' ', badge(i.tunnel_up, _('up'), _('down'))]),
			st.config_error ? problem(_('Configuration: %s').format(st.config_error)) : null,
			d.problem ? problem(_('Delegation: %s').format(d.problem)) : null,
			st.clock_ok === false ? problem(_('The clock is not synchronised yet (NTP): handshakes wait for it.')) : null,
			kv([
				[_('Tunnel'), tunnel, 'tunnel'],
				[_('Hub endpoint'), E('strong', { 'class': 'wgroam-endpoint' }, i.endpoint || _('none')), 'endpoint'],
				(i.kernel_endpoint && i.kernel_endpoint !== i.endpoint) ? [_('Kernel endpoint'), i.kernel_endpoint, 'kernel_endpoint'] : null,
				[_('Received / sent'), '%s / %s'.format(bytes(i.rx_bytes), bytes(i.tx_bytes)), 'traffic'],
				[_('Prefix'), E('code', {}, d.prefix || _('none')), 'prefix'],
				[_('Delegation'), E('span', {}, [dstate, dparts.length ? ' (' + dparts.join(', ') + ')' : '',
					d.changed ? E('br') : '', d.changed ? E('small', {}, '%s, %s'.format(d.changed.what, ago(d.changed.at))) : '']), 'delegation'],
				[_('Uplink'), '%s%s'.format(i.gateway_v4 ? 'IPv4 via ' + i.gateway_v4 : _('no IPv4 gateway'),
					i.gateway_v6 ? ', IPv6 via ' + i.gateway_v6 : ''), 'uplink'],
				[_('Last uplink reaction'), i.last_reaction
					? '%s, %s'.format(i.last_reaction.what, ago(i.last_reaction.at)) : _('none yet'), 'last_reaction'],
				[_('Health check'), h ? E('span', {}, [badge(h.ok, _('ok'), _('failing')), ' ', h.detail || '', ' ', E('small', {}, ago(h.at))])
					: _('not configured'), 'health'],
				[_('Reactions / forced handshakes / heartbeats'),
					'%d / %d / %d'.format(i.reactions || 0, i.handshakes_forced || 0, i.heartbeats || 0), 'counters']
			])
		]);
	});
}

function renderStatus(st) {
	if (!st || typeof st !== 'object' || (st.version == null && st.error == null))
		return [problem(_('No status from the wgroam ubus object; is the wgroam package installed (and rpcd reloaded)?'))];
	if (st.error != null)
		return [E('div', { 'class': 'alert-message warning wgroam-problem wgroam-not-running' }, [
			E('strong', {}, _('wgroam is not running.')), E('br'), String(st.error)
		])];
	if (st.version !== 1)
		return [problem(_('Unknown status format version %s; this page knows version 1.').format(st.version))];
	var head = E('p', { 'class': 'wgroam-head' }, _('Role %s, pid %d, running since %s; status written %s.')
		.format(st.role, st.pid, when(st.started), ago(st.updated)));
	return [head].concat(st.role === 'roam' ? renderRoam(st) : renderHub(st));
}

return view.extend({
	load: function() {
		return callStatus().catch(function(e) { return { error: String(e) }; });
	},

	render: function(st) {
		var body = E('div', { 'id': 'wgroam-status' }, renderStatus(st));
		poll.add(function() {
			return callStatus().then(function(s) {
				dom.content(body, renderStatus(s));
			}).catch(function(e) {
				dom.content(body, renderStatus({ error: String(e) }));
			});
		}, 5);
		return E('div', {}, [
			E('style', {}, [
				'.wgroam-badge{display:inline-block;padding:0 .5em;border-radius:.8em;font-size:90%;color:#fff}',
				'.wgroam-ok{background:#2e7d32}.wgroam-bad{background:#c62828}',
				'.wgroam-kv td{word-break:break-word}',
				'@media (max-width:600px){.wgroam-kv tr{display:block;padding:4px 0}',
				'.wgroam-kv td{display:block;width:auto!important;border:0;padding:1px 4px}',
				'.wgroam-kv td:first-child{font-weight:bold}}'
			].join('')),
			E('h2', {}, _('wgroam')),
			E('div', { 'class': 'cbi-map-descr' }, _('The WireGuard roaming agent: what it sees and what it did. Refreshes every 5 seconds.')),
			body
		]);
	},

	handleSaveApply: null,
	handleSave: null,
	handleReset: null
});
