# Shared helpers for scripts/setup and scripts/test (sourced, not executed).
#
# Both scripts must agree on when the project venv is usable, so the rules live
# here: the venv is made from Debian's interpreter (the one python3-bpfcc and
# python3-seccomp are built for), sees the system site-packages, and carries a
# stamp naming the pyproject.toml it was installed from.

TW_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# Debian's interpreter, named by path on purpose: `python3` on PATH may be a
# pyenv or other build that cannot import Debian's bcc and seccomp modules.
TW_SYSTEM_PYTHON=/usr/bin/python3
TW_VENV="$TW_ROOT/.venv"
TW_STAMP="$TW_VENV/.trampwatch-setup-stamp"
# What scripts/setup decided about kernel headers, for `trampwatch doctor`.
TW_STATE_DIR=/var/lib/trampwatch
TW_HEADERS_FILE="$TW_STATE_DIR/kernel-headers"

tw_say() { printf '%s: %s\n' "${TW_PROG:-trampwatch}" "$*"; }
tw_warn() { printf '%s: warning: %s\n' "${TW_PROG:-trampwatch}" "$*" >&2; }
tw_die() { printf '%s: error: %s\n' "${TW_PROG:-trampwatch}" "$*" >&2; exit 1; }

# Print why the venv cannot be used as it is; print nothing and fail if it can.
tw_venv_problem() {
    local py="$TW_VENV/bin/python" cfg="$TW_VENV/pyvenv.cfg"
    if [ ! -e "$TW_VENV" ]; then echo "no venv at $TW_VENV"; return 0; fi
    if [ ! -f "$cfg" ]; then echo "$TW_VENV exists but has no pyvenv.cfg"; return 0; fi
    if [ ! -x "$py" ]; then echo "$py is missing"; return 0; fi
    local want got
    want=$(readlink -f "$TW_SYSTEM_PYTHON" 2>/dev/null || true)
    got=$(readlink -f "$py" 2>/dev/null || true)
    if [ -z "$want" ] || [ "$got" != "$want" ]; then
        echo "venv interpreter is ${got:-unresolvable}, not Debian's ${want:-$TW_SYSTEM_PYTHON}"
        return 0
    fi
    if ! grep -Eqi '^include-system-site-packages *= *true' "$cfg"; then
        echo "venv was made without --system-site-packages (Debian's bcc and seccomp would not import)"
        return 0
    fi
    if ! "$py" -c 'import pip' >/dev/null 2>&1; then echo "venv python or its pip is broken"; return 0; fi
    return 1
}

# The stamp's content: changes whenever pyproject.toml does.
tw_stamp_value() {
    printf 'pyproject-sha256=%s\n' "$(sha256sum "$TW_ROOT/pyproject.toml" | cut -d' ' -f1)"
}

# Print why scripts/setup should run before the tests; fail if nothing is needed.
tw_setup_reason() {
    local problem
    if problem=$(tw_venv_problem); then echo "$problem"; return 0; fi
    if [ ! -f "$TW_STAMP" ]; then echo "project not installed into the venv yet"; return 0; fi
    if [ "$(cat "$TW_STAMP")" != "$(tw_stamp_value)" ]; then
        echo "pyproject.toml changed since the last install"
        return 0
    fi
    if [ ! -d "/lib/modules/$(uname -r)/build/" ]; then
        echo "no kernel headers at /lib/modules/$(uname -r)/build for bcc"
        return 0
    fi
    return 1
}
