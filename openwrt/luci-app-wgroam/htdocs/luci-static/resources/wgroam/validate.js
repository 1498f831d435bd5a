'use strict';
'require baseclass';

/*
 * The checks of `wgroam check` (src/config/mod.rs, src/config/roam.rs) for the
 * settings form, with the same one-line messages:
 *   wgroam.SECTION.OPTION: 'VALUE' is not valid; expected WHAT
 * tests/luci/validate-vs-check.js compares every message with what the real
 * binary says for the same value. Each function returns true or the message.
 * An empty value means "option not set" (the form removes it): the default.
 */

function show(v) {
	return String(v).replace(/[\x00-\x1f\x7f]/g, function(c) {
		switch (c) {
		case '\t': return '\\t';
		case '\n': return '\\n';
		case '\r': return '\\r';
		default: return '\\u{' + c.charCodeAt(0).toString(16) + '}';
		}
	});
}

function bad(label, opt, value, expected) {
	return "wgroam.%s.%s: '%s' is not valid; expected %s".format(label, opt, show(value), expected);
}

function validIfname(s) {
	return s.length > 0 && s.length < 16 && s !== '.' && s !== '..' && /^[\x21-\x7e]+$/.test(s) && !/[\/:]/.test(s);
}

function validUciName(s) {
	return /^[A-Za-z0-9_]+$/.test(s);
}

function number(min, max) {
	return function(label, opt, v) {
		if (/^[0-9]+$/.test(v)) {
			var n = Number(v);
			if (Number.isSafeInteger(n) && n >= min && n <= max)
				return true;
		}
		return bad(label, opt, v, 'a whole number from %d to %d'.format(min, max));
	};
}

/* IPv4 as Rust's Ipv4Addr parses it: four decimal octets, no leading zeros. */
function parse4(s) {
	var p = s.split('.');
	if (p.length !== 4)
		return null;
	var out = [];
	for (var i = 0; i < 4; i++) {
		if (!/^(0|[1-9][0-9]{0,2})$/.test(p[i]) || Number(p[i]) > 255)
			return null;
		out.push(Number(p[i]));
	}
	return out;
}

/* IPv6 as Rust's Ipv6Addr parses it (one '::', 1-4 hex digits per group, an
 * IPv4 tail); the 16 bytes, or null. */
function parse6(s) {
	var halves = s.split('::');
	if (halves.length > 2)
		return null;
	function groups(part, tailOk) {
		if (part === '')
			return [];
		var g = part.split(':'), out = [];
		for (var i = 0; i < g.length; i++) {
			if (tailOk && i === g.length - 1 && g[i].indexOf('.') >= 0) {
				var v4 = parse4(g[i]);
				if (!v4)
					return null;
				out.push(v4[0] << 8 | v4[1], v4[2] << 8 | v4[3]);
			} else if (/^[0-9a-fA-F]{1,4}$/.test(g[i])) {
				out.push(parseInt(g[i], 16));
			} else {
				return null;
			}
		}
		return out;
	}
	var head = groups(halves[0], halves.length === 1), tail = halves.length === 2 ? groups(halves[1], true) : [];
	if (!head || !tail)
		return null;
	var all;
	if (halves.length === 1) {
		if (head.length !== 8)
			return null;
		all = head;
	} else {
		if (head.length + tail.length > 7)
			return null;
		all = head.concat(new Array(8 - head.length - tail.length).fill(0), tail);
	}
	var bytes = [];
	all.forEach(function(g) { bytes.push(g >> 8, g & 255); });
	return bytes;
}

function parseIp(s) {
	return parse4(s) || parse6(s);
}

function validEndpoint(e) {
	var i = e.lastIndexOf(':');
	if (i <= 0)
		return false;
	var port = e.substr(i + 1);
	return /^[+]?[0-9]+$/.test(port) && Number(port.replace('+', '')) > 0 && Number(port.replace('+', '')) < 65536;
}

function validPrefix(p) {
	var i = p.indexOf('/');
	if (i < 0)
		return false; /* a bare address is a /128 */
	var a = p.substr(0, i), l = p.substr(i + 1);
	if (a.indexOf('.') >= 0 && a.indexOf(':') < 0)
		return false; /* IPv4 */
	var bytes = parse6(a);
	if (!bytes || !/^[+]?[0-9]+$/.test(l))
		return false;
	var len = Number(l.replace('+', ''));
	if (len > 64)
		return false;
	for (var bit = len; bit < 128; bit++)
		if (bytes[bit >> 3] & (0x80 >> (bit & 7)))
			return false;
	return true;
}

function validKey(k) {
	return /^[A-Za-z0-9+\/]{42}[AEIMQUYcgkosw048]=?$/.test(k.trim());
}

var rules = {
	agent: {
		log_level: function(label, opt, v) {
			return ['error', 'warn', 'notice', 'info', 'debug'].indexOf(v) >= 0 || bad(label, opt, v, 'error, warn, notice, info or debug');
		},
		state_dir: function(label, opt, v) {
			return v.charAt(0) === '/' || bad(label, opt, v, 'an absolute path');
		},
		state_file: function(label, opt, v) {
			return (v.charAt(0) === '/' && v.charAt(v.length - 1) !== '/') ||
				bad(label, opt, v, 'an absolute path of a file, e.g. /var/lib/wgroam/state.json');
		},
		poll_ms: number(100, 10000),
		commit_interval: number(0, 30 * 86400)
	},
	interface: {
		ifname: function(label, opt, v) {
			return validIfname(v) || bad(label, opt, v, "a Linux interface name (1-15 characters, no '/' or ':')");
		},
		backend: function(label, opt, v) {
			return ['auto', 'kernel', 'userspace'].indexOf(v) >= 0 || bad(label, opt, v, 'auto, kernel or userspace');
		},
		capture_device: function(label, opt, v) {
			return validIfname(v) || bad(label, opt, v, "a Linux interface name, e.g. 'wan' or 'eth1'");
		},
		wan: function(label, opt, v) {
			return (validIfname(v) && !/["\\]/.test(v)) || bad(label, opt, v, "the WAN device, e.g. 'eth1' or 'wan'");
		},
		relay: function(label, opt, v) {
			return ['off', '0', 'nft', 'fw4'].indexOf(v) >= 0 || bad(label, opt, v, 'off, nft or fw4');
		},
		hub_peer: function(label, opt, v) {
			return validUciName(v) || v.indexOf('@wireguard_') === 0 ||
				bad(label, opt, v, "the name of the hub's wireguard_<if> section in network");
		},
		hub_key: function(label, opt, v) {
			return validKey(v) || bad(label, opt, v, 'a WireGuard public key (44 characters of base64)');
		},
		endpoint: function(label, opt, v) {
			return validEndpoint(v) || bad(label, opt, v, "host:port or [ipv6]:port, e.g. 'hub.example.org:51820'");
		},
		prefix: function(label, opt, v) {
			return validPrefix(v) ||
				bad(label, opt, v, "an IPv6 prefix of /64 or shorter with no host bits, e.g. '2001:db8:100:1::/64'");
		},
		tunnel_addr: function(label, opt, v) {
			return parse6(v) != null || bad(label, opt, v, "this router's IPv6 address inside the tunnel");
		},
		hub_tunnel_addr: function(label, opt, v) {
			return parseIp(v) != null || bad(label, opt, v, "the hub's address inside the tunnel");
		},
		heartbeat_interval: number(0, 3600),
		grace: number(0, 86400),
		table: number(1, 4294967294),
		metric: number(1, 4294967295),
		delegate: function(label, opt, v) {
			return ['netifd', 'uci', 'radvd', 'off'].indexOf(v) >= 0 || bad(label, opt, v, 'netifd (or uci), radvd or off');
		},
		downstream: function(label, opt, v) {
			return validIfname(v) || bad(label, opt, v, "a LAN interface name, e.g. 'lan'");
		},
		health_url: function(label, opt, v) {
			return (v.indexOf('http://') === 0 && v.length > 7 && !/\s/.test(v)) ||
				bad(label, opt, v, 'an http:// URL (checked through the tunnel; https is not built in)');
		},
		health_interval: number(5, 86400)
	}
};

return baseclass.extend({
	/* The options with a check, per section type. */
	options: function(stype) {
		return Object.keys(rules[stype] || {});
	},

	/* true, or the message `wgroam check` prints for VALUE of OPTION in
	 * the section LABEL (its name, or @type[index]) of type STYPE. */
	check: function(stype, label, option, value) {
		if (value == null || value === '')
			return true;
		var r = (rules[stype] || {})[option];
		return r ? r(label, option, String(value)) : true;
	},

	/* `forwarding`, `relay` and `ndp_proxy` need `wan`. */
	needsWan: function(label, option, value) {
		return "wgroam.%s.%s: '%s' needs option wan; expected \"option wan 'DEVICE'\" naming the WAN device".format(label, option, value);
	},

	roleMissing: function(label) {
		return "wgroam.%s.role: missing; expected 'hub' (static router) or 'roam' (travel router)".format(label);
	}
});
