# shellcheck shell=dash
# Stand-ins for the OpenWrt shell environment the package's scripts run in,
# sourced by a POSIX shell (busybox ash where available, as on OpenWrt):
#  - /lib/functions.sh's config_load / config_foreach / config_get, reading
#    uci files from $UCI_CONFIG_DIR (config/option lines, quoted values);
#  - procd.sh's procd_* helpers, rc.common's `start` and `logger`, which
#    record their calls, one per line, in $CALLS.
# STUB_RUNNING=1 makes procd_running answer "running".

_stub_rec() { printf '%s\n' "$*" >>"$CALLS"; }

_stub_unquote() {
	case "$1" in
	\'*\') _stub_v=${1#\'}; _stub_v=${_stub_v%\'} ;;
	\"*\") _stub_v=${1#\"}; _stub_v=${_stub_v%\"} ;;
	*) _stub_v=$1 ;;
	esac
}

_stub_vars=""
config_load() {
	local file kw a b sect n=0 v
	for v in $_stub_vars; do unset "$v"; done
	_stub_vars=""
	_stub_sections=""
	file="${UCI_CONFIG_DIR:-/etc/config}/$1"
	[ -f "$file" ] || return 0
	while read -r kw a b; do
		case "$kw" in
		config)
			n=$((n + 1))
			_stub_unquote "$b"
			sect=${_stub_v:-cfg$n}
			_stub_sections="$_stub_sections $sect"
			_stub_unquote "$a"
			eval "CONFIG_${sect}_TYPE=\$_stub_v"
			_stub_vars="$_stub_vars CONFIG_${sect}_TYPE"
			;;
		option)
			_stub_unquote "$b"
			eval "CONFIG_${sect}_${a}=\$_stub_v"
			_stub_vars="$_stub_vars CONFIG_${sect}_${a}"
			;;
		esac
	done <"$file"
}

config_get() {
	local _cg_set
	eval "_cg_set=\${CONFIG_${2}_${3}+x}"
	if [ -n "$_cg_set" ]; then
		eval "$1=\$CONFIG_${2}_${3}"
	else
		eval "$1=\$4"
	fi
}

config_foreach() {
	local fn="$1" type="$2" s t
	for s in $_stub_sections; do
		eval "t=\$CONFIG_${s}_TYPE"
		[ "$t" = "$type" ] && "$fn" "$s"
	done
	return 0
}

procd_open_instance() { _stub_rec procd_open_instance "$@"; }
procd_set_param() { _stub_rec procd_set_param "$@"; }
procd_close_instance() { _stub_rec procd_close_instance "$@"; }
procd_add_reload_trigger() { _stub_rec procd_add_reload_trigger "$@"; }
procd_add_reload_interface_trigger() { _stub_rec procd_add_reload_interface_trigger "$@"; }
procd_add_interface_trigger() { _stub_rec procd_add_interface_trigger "$@"; }
procd_send_signal() { _stub_rec procd_send_signal "$@"; }
procd_add_jail() { _stub_rec procd_add_jail "$@"; }
procd_add_jail_mount() { _stub_rec procd_add_jail_mount "$@"; }
procd_add_jail_mount_rw() { _stub_rec procd_add_jail_mount_rw "$@"; }
procd_running() {
	_stub_rec procd_running "$@"
	[ "${STUB_RUNNING:-0}" = 1 ]
}
logger() {
	_stub_rec logger "$@"
	cat >/dev/null
}
start() {
	_stub_rec start
	start_service
}
