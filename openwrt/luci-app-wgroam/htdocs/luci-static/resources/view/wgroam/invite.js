'use strict';
'require view';
'require rpc';
'require dom';
'require uqr';

/*
 * wgroam pairing, hub side: "Invite a travel router". Creates an invite with
 * `ubus call wgroam invite` (the rpcd plugin runs `wgroam invite`), shows the
 * one-line token and its QR code (LuCI's uqr, as luci-proto-wireguard draws
 * its QR codes), and lists the invites (`ubus call wgroam invites`, i.e.
 * `wgroam invite --list --json`) with a Revoke button for pending ones
 * (`ubus call wgroam revoke`). Errors are wgroam's own one-line messages.
 */

var callInvite = rpc.declare({
	object: 'wgroam',
	method: 'invite',
	params: [ 'interface', 'name', 'ttl', 'endpoint' ],
	expect: { '': {} }
});

var callInvites = rpc.declare({
	object: 'wgroam',
	method: 'invites',
	expect: { '': {} }
});

var callRevoke = rpc.declare({
	object: 'wgroam',
	method: 'revoke',
	params: [ 'name' ],
	expect: { '': {} }
});

function when(t) {
	if (!t)
		return '-';
	var s = t - Math.floor(Date.now() / 1000), left;
	if (s <= 0)
		left = _('past');
	else if (s < 7200)
		left = _('in %d min').format(Math.ceil(s / 60));
	else
		left = _('in %d h').format(Math.floor(s / 3600));
	return '%s (%s)'.format(new Date(t * 1000).toLocaleString(), left);
}

function field(id, label, placeholder, help) {
	return E('div', { 'class': 'cbi-value' }, [
		E('label', { 'class': 'cbi-value-title', 'for': id }, label),
		E('div', { 'class': 'cbi-value-field' }, [
			E('input', { 'id': id, 'type': 'text', 'class': 'cbi-input-text', 'placeholder': placeholder }),
			help ? E('div', { 'class': 'cbi-value-description' }, help) : null
		])
	]);
}

function value(id) {
	var v = document.getElementById(id).value.trim();
	return v === '' ? undefined : v;
}

function errorBox(msg) {
	return E('div', { 'class': 'alert-message error wgroam-error' }, msg);
}

return view.extend({
	load: function() {
		return callInvites();
	},

	renderList: function(res) {
		if (res.error != null)
			return errorBox(res.error);
		var list = res.invites || [];
		if (!list.length)
			return E('p', { 'class': 'wgroam-noinvites' }, _('No invites.'));
		var self = this;
		return E('table', { 'class': 'table wgroam-invites' }, [
			E('tr', { 'class': 'tr table-titles' }, [
				E('th', { 'class': 'th' }, _('Name')),
				E('th', { 'class': 'th' }, _('Interface')),
				E('th', { 'class': 'th' }, _('State')),
				E('th', { 'class': 'th' }, _('Expires')),
				E('th', { 'class': 'th' }, '')
			])
		].concat(list.map(function(v) {
			var state = v.state;
			if (v.state === 'used')
				state = _('used: prefix %s, tunnel %s').format(v.prefix || '-', v.tunnel_addr || '-');
			return E('tr', { 'class': 'tr', 'data-name': v.name, 'data-state': v.state }, [
				E('td', { 'class': 'td' }, v.name),
				E('td', { 'class': 'td' }, v.interface),
				E('td', { 'class': 'td wgroam-state' }, state),
				E('td', { 'class': 'td' }, when(v.expires)),
				E('td', { 'class': 'td' }, v.state === 'pending'
					? E('button', { 'class': 'cbi-button cbi-button-remove wgroam-revoke', 'data-name': v.name,
						'click': function() { return self.handleRevoke(v.name); } }, _('Revoke'))
					: '')
			]);
		})));
	},

	refreshList: function() {
		var self = this;
		return callInvites().then(function(res) {
			dom.content(document.getElementById('wgroam-invites'), self.renderList(res));
		});
	},

	handleRevoke: function(name) {
		var self = this;
		return callRevoke(name).then(function(res) {
			var out = document.getElementById('wgroam-revoke-result');
			dom.content(out, res.error != null ? errorBox(res.error) : E('p', {}, _('Revoked %s.').format(res.revoked)));
			return self.refreshList();
		});
	},

	handleCreate: function() {
		var self = this, out = document.getElementById('wgroam-invite-result');
		dom.content(out, E('p', { 'class': 'spinning' }, _('Creating the invite…')));
		return callInvite(value('wgroam-interface'), value('wgroam-name'), value('wgroam-ttl'), value('wgroam-endpoint')).then(function(res) {
			if (res.error != null) {
				dom.content(out, errorBox(res.error));
				return;
			}
			var qr = E('div', { 'class': 'wgroam-qr', 'style': 'max-width:320px' });
			qr.innerHTML = uqr.renderSVG(res.token, { pixelSize: 4, whiteColor: 'white', blackColor: 'black' });
			dom.content(out, E('div', { 'class': 'wgroam-invite', 'data-name': res.name }, [
				E('p', {}, _('Invite %s, valid until %s. On the travel router: Services › wgroam › Join a hub, paste this line (or scan the code):').format(res.name, when(res.expires))),
				E('pre', { 'class': 'wgroam-token', 'style': 'white-space:pre-wrap;word-break:break-all' }, res.token),
				qr,
				res.note ? E('p', { 'class': 'alert-message warning wgroam-note' }, res.note) : null
			]));
			return self.refreshList();
		});
	},

	render: function(invites) {
		var self = this;
		return E('div', { 'class': 'cbi-map' }, [
			E('h2', {}, _('Invite a travel router')),
			E('div', { 'class': 'cbi-map-descr' }, _('A one-time invite: the travel router redeems it with wgroam join, gets its prefix from the pool and is added as a peer. Anyone holding the line can use it until it expires; revoke what you do not need.')),
			E('div', { 'class': 'cbi-section' }, [
				field('wgroam-endpoint', _('Hub endpoint'), 'hub.example.org:51820', _('This hub\'s public address and WireGuard port, as the travel router reaches it')),
				field('wgroam-name', _('Name'), 'travel-1', _('Letters, digits, - and _; also the name of the peer section (default travel-N)')),
				field('wgroam-ttl', _('Valid for'), '1h', _('e.g. 30m, 2h, 1d (at most 30d)')),
				field('wgroam-interface', _('Interface'), _('the one with a pool'), null),
				E('div', { 'class': 'cbi-value' }, [
					E('div', { 'class': 'cbi-value-field' }, E('button', { 'id': 'wgroam-create', 'class': 'cbi-button cbi-button-add',
						'click': function() { return self.handleCreate(); } }, _('Create invite')))
				]),
				E('div', { 'id': 'wgroam-invite-result' })
			]),
			E('div', { 'class': 'cbi-section' }, [
				E('h3', {}, _('Invites')),
				E('div', { 'id': 'wgroam-revoke-result' }),
				E('div', { 'id': 'wgroam-invites' }, this.renderList(invites))
			])
		]);
	},

	handleSaveApply: null,
	handleSave: null,
	handleReset: null
});
