/*
 * A small stand-in for LuCI's JavaScript runtime (luci.js, rpc.js, dom,
 * view, poll): only what luci-app-wgroam's status view uses, written to
 * behave as LuCI does (openwrt/luci, modules/luci-base/htdocs/luci-static/
 * resources/):
 *  - L.require(name) fetches /luci-static/resources/<name as path>.js, finds
 *    its leading 'require x [as y]' strings and evaluates the source as
 *    (function(window, document, L, deps...) { source }), instantiating the
 *    class it returns (a view renders from its constructor: load -> render
 *    -> #view);
 *  - rpc.declare() posts JSON-RPC 2.0 {"method":"call","params":[sid, object,
 *    method, args]} to L.env.ubuspath and maps the reply as rpc.js does
 *    (error frame -> rejected; result[0] != 0 without `reject` -> the
 *    `expect` default; `expect` picks a key and falls back on a type
 *    mismatch);
 *  - poll.add(fn, interval) calls fn every interval seconds, never two at once;
 *  - E(), _(), String.prototype.format (%s %d %f with width/precision), dom.content.
 * Nothing of LuCI itself is copied here.
 */
(function(window, document) {
	'use strict';

	String.prototype.format = function() {
		var args = arguments, i = 0;
		return String(this).replace(/%(-)?(0)?(\d+)?(?:\.(\d+))?([sdfx%])/g, function(m, left, zero, width, prec, conv) {
			if (conv === '%')
				return '%';
			var v = args[i++], s;
			switch (conv) {
			case 'd': s = String(Math.trunc(Number(v) || 0)); break;
			case 'f': s = (Number(v) || 0).toFixed(prec != null ? +prec : 6); break;
			case 'x': s = (Number(v) || 0).toString(16); break;
			default: s = (v == null) ? '' : String(v);
			}
			if (width && s.length < +width) {
				var pad = Array(+width - s.length + 1).join(zero ? '0' : ' ');
				s = left ? s + pad : pad + s;
			}
			return s;
		});
	};

	function isNode(x) { return x instanceof Node; }

	function append(node, children) {
		if (children == null || children === false)
			return;
		if (Array.isArray(children))
			children.forEach(function(c) { append(node, c); });
		else if (isNode(children))
			node.appendChild(children);
		else
			node.appendChild(document.createTextNode(String(children)));
	}

	window.E = function(tag, attrs, children) {
		if (Array.isArray(attrs) || isNode(attrs) || typeof attrs === 'string') {
			children = attrs;
			attrs = null;
		}
		var el = document.createElement(tag);
		Object.keys(attrs || {}).forEach(function(k) {
			var v = attrs[k];
			if (v == null || v === false)
				return;
			/* as LuCI's dom.attr: a function value is an event listener
			 * for the event of that name ('click': fn) */
			if (typeof v === 'function')
				el.addEventListener(k, v);
			else
				el.setAttribute(k, typeof v === 'object' ? JSON.stringify(v) : String(v));
		});
		append(el, children);
		return el;
	};

	window._ = function(s) { return s; };
	window.N_ = function(n, s) { return s; };

	/* Classes: extend() chains prototypes, the constructor calls __init__. */
	function Class() {}
	Class.extend = function(props) {
		var parent = this;
		var C = function() {
			if (typeof this.__init__ === 'function')
				return this.__init__.apply(this, arguments);
		};
		C.prototype = Object.create(parent.prototype);
		Object.keys(props || {}).forEach(function(k) { C.prototype[k] = props[k]; });
		C.prototype.constructor = C;
		C.extend = Class.extend;
		C.__base__ = parent;
		return C;
	};
	Class.isSubclass = function(C) {
		return typeof C === 'function' && (C === Class || C.__base__ != null);
	};

	var dom = {
		content: function(node, children) {
			while (node.firstChild)
				node.removeChild(node.firstChild);
			append(node, children);
			return node;
		},
		append: function(node, children) { append(node, children); return node; }
	};

	var polls = [];
	var poll = {
		add: function(fn, interval) {
			var p = { fn: fn, interval: (interval || 5) * 1000, busy: false };
			p.timer = window.setInterval(function() {
				if (p.busy)
					return;
				p.busy = true;
				Promise.resolve().then(p.fn).finally(function() { p.busy = false; });
			}, p.interval);
			polls.push(p);
			return true;
		},
		active: function() { return polls.length > 0; }
	};

	var rpcId = 1;
	var rpc = {
		declare: function(opts) {
			return function() {
				var args = {}, params = opts.params || [];
				for (var i = 0; i < params.length && i < arguments.length; i++)
					if (arguments[i] !== undefined)
						args[params[i]] = arguments[i];
				var body = {
					jsonrpc: '2.0', id: rpcId++, method: 'call',
					params: [L.env.sessionid, opts.object, opts.method, args]
				};
				return window.fetch(L.env.ubuspath, {
					method: 'POST',
					headers: { 'Content-Type': 'application/json' },
					body: JSON.stringify(body)
				}).then(function(res) {
					if (!res.ok)
						throw new Error('RPC call to %s/%s failed with HTTP error %d'.format(opts.object, opts.method, res.status));
					return res.json();
				}).then(function(msg) {
					var ret;
					if (msg && msg.jsonrpc === '2.0') {
						if (msg.error && msg.error.code)
							throw new Error('RPC call to %s/%s failed with error %d: %s'.format(opts.object, opts.method, msg.error.code, msg.error.message || '?'));
						if (Array.isArray(msg.result)) {
							if (opts.reject && msg.result[0] !== 0)
								throw new Error('RPC call to %s/%s failed with ubus code %d'.format(opts.object, opts.method, msg.result[0]));
							ret = msg.result.length > 1 ? msg.result[1] : msg.result[0];
						}
					} else {
						throw new Error('Invalid message frame received');
					}
					var type = Object.prototype.toString;
					for (var key in (opts.expect || {})) {
						if (ret != null && key !== '')
							ret = ret[key];
						if (ret == null || type.call(ret) !== type.call(opts.expect[key]))
							ret = opts.expect[key];
						break;
					}
					return typeof opts.filter === 'function' ? opts.filter(ret, args) : ret;
				});
			};
		}
	};

	var View = Class.extend({
		__init__: function() {
			var vp = document.getElementById('view');
			dom.content(vp, E('div', { 'class': 'spinning' }, 'Loading view…'));
			var self = this;
			return Promise.resolve(this.load()).then(function(data) {
				return self.render(data);
			}).then(function(nodes) {
				dom.content(vp, nodes);
				var buttons = ['handleSaveApply', 'handleSave', 'handleReset'].filter(function(h) {
					return typeof self[h] === 'function';
				});
				if (buttons.length)
					vp.appendChild(E('div', { 'class': 'cbi-page-actions' }, buttons.map(function(h) {
						return E('button', { 'class': 'cbi-button', 'data-action': h }, h);
					})));
				window.__viewRendered = true;
			}).catch(function(e) {
				dom.content(vp, E('div', { 'class': 'alert-message error', 'id': 'view-error' }, String(e && e.stack || e)));
				window.__viewError = String(e);
			});
		},
		load: function() {},
		render: function() {}
	});

	var builtins = {
		baseclass: Class,
		view: View,
		poll: poll,
		rpc: rpc,
		dom: dom
	};

	var classes = {};
	var L = window.L = {
		env: { sessionid: 'standin-session', ubuspath: '/ubus/', resource: '/luci-static/resources' },
		Class: Class,
		require: function(name) {
			if (Object.prototype.hasOwnProperty.call(builtins, name))
				return Promise.resolve(builtins[name]);
			if (classes[name])
				return classes[name];
			var url = L.env.resource + '/' + name.replace(/\./g, '/') + '.js';
			classes[name] = window.fetch(url).then(function(res) {
				if (!res.ok)
					throw new Error('HTTP error %d while loading class file "%s"'.format(res.status, url));
				return res.text();
			}).then(function(source) {
				var requirematch = /^require[ \t]+(\S+)(?:[ \t]+as[ \t]+([a-zA-Z_]\S*))?$/,
				    strictmatch = /^use[ \t]+strict$/,
				    depends = [], args = '';
				/* the leading string statements, as LuCI reads them */
				for (var i = 0, off = -1, prev = -1, quote = -1, comment = -1, esc = false; i < source.length; i++) {
					var chr = source.charCodeAt(i);
					if (esc) {
						esc = false;
					} else if (comment !== -1) {
						if ((comment === 47 && chr === 10) || (comment === 42 && prev === 42 && chr === 47))
							comment = -1;
					} else if ((chr === 42 || chr === 47) && prev === 47 && quote === -1) {
						comment = chr;
					} else if (chr === 92) {
						esc = true;
					} else if (chr === quote) {
						var s = source.substring(off, i), m = requirematch.exec(s);
						if (m) {
							depends.push(L.require(m[1]));
							args += ', ' + (m[2] || m[1].replace(/[^a-zA-Z0-9_]/g, '_'));
						} else if (!strictmatch.exec(s)) {
							break;
						}
						off = -1;
						quote = -1;
					} else if (quote === -1 && (chr === 34 || chr === 39)) {
						off = i + 1;
						quote = chr;
					}
					prev = chr;
				}
				return Promise.all(depends).then(function(instances) {
					/* indirect eval: global scope, like LuCI's */
					var factory = (0, eval)('(function(window, document, L%s) { %s })\n\n//# sourceURL=%s\n'.format(args, source, url));
					var C = factory.apply(factory, [window, document, L].concat(instances));
					if (!Class.isSubclass(C))
						throw new TypeError('"%s" factory yields invalid constructor'.format(name));
					return new C();
				});
			});
			return classes[name];
		}
	};
})(window, document);
