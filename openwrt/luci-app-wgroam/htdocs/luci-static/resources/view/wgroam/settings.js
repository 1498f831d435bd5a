'use strict';
'require view';
'require form';
'require uci';
'require wgroam.validate as wv';

/*
 * wgroam settings: a form over /etc/config/wgroam. Each field is checked as
 * `wgroam check` checks it, with the same message (wgroam/validate.js).
 * Save & Apply commits through rpcd; procd's reload trigger on the `wgroam`
 * config (/etc/init.d/wgroam) then reloads the agent, which re-reads its
 * config on SIGHUP (and refuses a broken one, keeping the running config).
 * The interface options shown are those of the configured role: an option
 * of the other role is an error for `wgroam check`.
 */

/* The section as `wgroam check` names it: its name, or @type[index]. */
function label(sid) {
	var s = uci.get('wgroam', sid);
	if (!s || !s['.anonymous'])
		return sid;
	var n = 0, idx = 0;
	uci.sections('wgroam', s['.type'], function(x) {
		if (x['.name'] === sid)
			idx = n;
		n++;
	});
	return '@%s[%d]'.format(s['.type'], idx);
}

function checked(o, stype) {
	o.validate = function(sid, value) {
		return wv.check(stype, label(sid), this.option, value);
	};
	return o;
}

return view.extend({
	load: function() {
		return uci.load('wgroam');
	},

	render: function() {
		var m, s, o;
		var role = uci.get_first('wgroam', 'agent', 'role');

		m = new form.Map('wgroam', _('wgroam settings'),
			_('The WireGuard roaming agent. Save & Apply reloads it; a configuration with a problem is refused and the running one kept (see the system log).'));

		s = m.section(form.TypedSection, 'agent', _('Agent'));
		s.anonymous = true;
		s.addremove = false;

		o = s.option(form.ListValue, 'role', _('Role'),
			_('hub: the static router that owns the routed IPv6 prefix. roam: the travel router behind somebody else\'s NAT.'));
		o.value('', _('-- choose --'));
		o.value('hub', _('hub (static router)'));
		o.value('roam', _('roam (travel router)'));
		o.rmempty = false;
		o.validate = function(sid, value) {
			return value ? true : wv.roleMissing(label(sid));
		};

		o = checked(s.option(form.ListValue, 'log_level', _('Log level')), 'agent');
		['error', 'warn', 'notice', 'info', 'debug'].forEach(function(l) { o.value(l); });
		o.default = 'info';

		o = checked(s.option(form.Value, 'poll_ms', _('Poll interval (ms)'),
			_('How often the WireGuard state is read (100-10000).')), 'agent');
		o.placeholder = '500';

		o = s.option(form.Flag, 'uci', _('Use uci'),
			_('Hub: stage learned endpoints in /etc/config/network. Roam: delegate the prefix through netifd. Off on hosts without uci.'));
		o.default = '1';
		o = checked(s.option(form.Value, 'commit_interval', _('Commit interval (s)'),
			_('Hub: seconds before staged endpoints are written to flash; 0 never. Flash wears out: keep it rare.')), 'agent');
		o.placeholder = '3600';
		o = s.option(form.Flag, 'commit_on_stop', _('Commit on stop'));
		o.default = '1';

		o = checked(s.option(form.Value, 'state_dir', _('State directory (RAM)')), 'agent');
		o.placeholder = '/var/run/wgroam';
		o = checked(s.option(form.Value, 'state_file', _('State file')), 'agent');
		o.placeholder = '/var/lib/wgroam/state.json';

		s = m.section(form.TypedSection, 'interface', _('WireGuard interfaces'),
			role ? _('One section per WireGuard interface, named like the netifd interface in /etc/config/network.')
				: _('Choose a role above and Save to see the interface options of that role.'));
		s.anonymous = false;
		s.addremove = true;
		s.addbtntitle = _('Add interface');

		o = s.option(form.Flag, 'enabled', _('Enabled'));
		o.default = '1';
		o = checked(s.option(form.Value, 'ifname', _('Device'), _('Kernel device, if it differs from the interface name.')), 'interface');
		o = checked(s.option(form.ListValue, 'backend', _('Backend')), 'interface');
		o.value('auto');
		o.value('kernel');
		o.value('userspace');
		o.default = 'auto';

		if (role === 'hub') {
			o = s.option(form.Flag, 'capture', _('Capture initiations'),
				_('Watch the WAN for the peers\' handshake initiations and verify them, to follow a peer that moved before the kernel notices.'));
			o.default = '1';
			o = checked(s.option(form.Value, 'capture_device', _('Capture device'), _('Default: all devices.')), 'interface');
			o = s.option(form.Flag, 'routes', _('Routes for peer prefixes'));
			o.default = '1';
			o = checked(s.option(form.Value, 'wan', _('WAN device'),
				_('Needed by forwarding, relay and NDP proxy.')), 'interface');
			[['forwarding', _('IPv6 forwarding')], ['ndp_proxy', _('NDP proxy')]].forEach(function(f) {
				o = s.option(form.Flag, f[0], f[1]);
				o.default = '0';
				o.validate = function(sid, value) {
					if (value === '1' && !this.section.formvalue(sid, 'wan'))
						return wv.needsWan(label(sid), this.option, '1');
					return true;
				};
			});
			o = checked(s.option(form.ListValue, 'relay', _('Relay policy'),
				_('fw4: a firewall zone "wgroam" with forwardings to and from wan (Network → Firewall). nft: a table of its own (needs the WAN device).')), 'interface');
			o.value('off');
			o.value('fw4');
			o.value('nft');
			o.default = 'off';
			var relayCheck = o.validate;
			o.validate = function(sid, value) {
				var r = relayCheck.call(this, sid, value);
				if (r === true && value === 'nft' && !this.section.formvalue(sid, 'wan'))
					return wv.needsWan(label(sid), 'relay', value);
				return r;
			};
		} else if (role === 'roam') {
			[
				['hub_peer', form.Value, _('Hub peer section'), _('Default: the only wireguard_<if> section.')],
				['hub_key', form.Value, _('Hub public key'), _('Hosts without uci only.')],
				['endpoint', form.DynamicList, _('Hub endpoints'), _('Hosts without uci only: host:port, preferred first.')],
				['prefix', form.Value, _('Routed prefix'), _('The prefix to delegate, e.g. 2001:db8:100:1::/64.')],
				['tunnel_addr', form.Value, _('Tunnel address'), _('Default: the first IPv6 address of the interface.')],
				['hub_tunnel_addr', form.Value, _('Hub tunnel address'), _('Heartbeats go there; empty: no heartbeat.')],
				['heartbeat_interval', form.Value, _('Heartbeat interval (s)'), _('0 turns heartbeats off.')],
				['grace', form.Value, _('Grace (s)'), _('How long the tunnel may be down before the prefix is withdrawn.')],
				['downstream', form.DynamicList, _('Downstream interfaces'), _('Default: lan.')],
				['health_url', form.Value, _('Health check URL'), _('http:// only, fetched through the tunnel.')],
				['health_interval', form.Value, _('Health check interval (s)')],
				['table', form.Value, _('Routing table')],
				['metric', form.Value, _('Route metric')]
			].forEach(function(d) {
				checked(s.option(d[1], d[0], d[2], d[3]), 'interface');
			});
			o = checked(s.option(form.ListValue, 'delegate', _('Delegation')), 'interface');
			o.value('', _('default (netifd with agent uci 1, else radvd)'));
			o.value('netifd', _('netifd (a dynamic interface over ubus)'));
			o.value('uci', _('uci (same as netifd)'));
			o.value('radvd');
			o.value('off');
		}

		return m.render();
	}
});
