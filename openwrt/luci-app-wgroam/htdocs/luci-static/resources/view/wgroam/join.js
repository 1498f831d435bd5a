'use strict';
'require view';
'require rpc';
'require dom';

/*
 * wgroam pairing, travel router side: "Join a hub". Takes the invite line
 * from the hub's "Invite a travel router" page and runs `wgroam join` through
 * `ubus call wgroam join` (the token goes to wgroam on stdin). Shows what
 * wgroam join prints (tunnel address, prefix, hub), or its one-line error;
 * on an error nothing on this router was changed.
 */

var callJoin = rpc.declare({
	object: 'wgroam',
	method: 'join',
	params: [ 'token', 'interface', 'lan' ],
	expect: { '': {} }
});

function value(id) {
	var v = document.getElementById(id).value.trim();
	return v === '' ? undefined : v;
}

return view.extend({
	handleJoin: function() {
		var out = document.getElementById('wgroam-join-result'), token = value('wgroam-token');
		if (!token) {
			dom.content(out, E('div', { 'class': 'alert-message error wgroam-error' }, _('Paste the invite line (wgroam1:…) first.')));
			return Promise.resolve();
		}
		dom.content(out, E('p', { 'class': 'spinning' }, _('Joining: redeeming the invite, bringing the tunnel up (up to 20 s)…')));
		return callJoin(token, value('wgroam-join-interface'), value('wgroam-join-lan')).then(function(res) {
			if (res.error != null)
				dom.content(out, E('div', { 'class': 'alert-message error wgroam-error' }, res.error));
			else
				dom.content(out, E('div', { 'class': 'alert-message success' }, E('pre', { 'class': 'wgroam-summary' }, res.summary)));
		});
	},

	render: function() {
		var self = this;
		return E('div', { 'class': 'cbi-map' }, [
			E('h2', {}, _('Join a hub')),
			E('div', { 'class': 'cbi-map-descr' }, _('Paste the invite created on the hub (Services › wgroam › Invite a travel router). This router then gets its WireGuard key, tunnel and prefix; on any error nothing is changed.')),
			E('div', { 'class': 'cbi-section' }, [
				E('div', { 'class': 'cbi-value' }, [
					E('label', { 'class': 'cbi-value-title', 'for': 'wgroam-token' }, _('Invite')),
					E('div', { 'class': 'cbi-value-field' }, E('textarea', { 'id': 'wgroam-token', 'rows': 3, 'style': 'width:100%', 'placeholder': 'wgroam1:…' }))
				]),
				E('div', { 'class': 'cbi-value' }, [
					E('label', { 'class': 'cbi-value-title', 'for': 'wgroam-join-interface' }, _('Tunnel interface')),
					E('div', { 'class': 'cbi-value-field' }, E('input', { 'id': 'wgroam-join-interface', 'type': 'text', 'placeholder': 'wgroam' }))
				]),
				E('div', { 'class': 'cbi-value' }, [
					E('label', { 'class': 'cbi-value-title', 'for': 'wgroam-join-lan' }, _('LAN interface')),
					E('div', { 'class': 'cbi-value-field' }, E('input', { 'id': 'wgroam-join-lan', 'type': 'text', 'placeholder': 'lan' }))
				]),
				E('div', { 'class': 'cbi-value' }, E('div', { 'class': 'cbi-value-field' },
					E('button', { 'id': 'wgroam-join', 'class': 'cbi-button cbi-button-apply', 'click': function() { return self.handleJoin(); } }, _('Join')))),
				E('div', { 'id': 'wgroam-join-result' })
			])
		]);
	},

	handleSaveApply: null,
	handleSave: null,
	handleReset: null
});
