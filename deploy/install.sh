#!/usr/bin/env bash
# Install alertflow on a systemd host: the binaries, the units, the system user,
# /etc/default/alertflow and /etc/alertflow/alertflow.toml, shell completions
# and the docs. Idempotent: binaries, units, completions and docs are replaced;
# the env file and the config are written only if absent (your edits stay).
#
#   cargo build --release --locked
#   sudo deploy/install.sh                       # from the repository root
#   sudo systemctl enable --now alertflow-worker@{1..4} alertflow-beat alertflow-web
#
# Options (DESTDIR may also come from the environment):
#   --prefix DIR    where bin/ and share/ go (default /usr/local); the units'
#                   ExecStart= is rewritten to DIR/bin
#   --destdir DIR   stage everything under DIR (packaging, tests): no user is
#                   created, nothing is chowned, systemd is not reloaded
#   --from DIR      where the built binaries are (default: $CARGO_TARGET_DIR/release,
#                   else target/release)
#   --no-reload     do not run `systemctl daemon-reload`
#
# Units go to /etc/systemd/system, the sysusers file to /etc/sysusers.d (the
# administrator's directories, read whatever the prefix).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
prefix=/usr/local
destdir="${DESTDIR:-}"
from=""
reload=1

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
    --prefix=*) prefix="${1#*=}"; shift ;;
    --destdir) destdir="${2:?--destdir needs a directory}"; shift 2 ;;
    --destdir=*) destdir="${1#*=}"; shift ;;
    --from) from="${2:?--from needs a directory}"; shift 2 ;;
    --from=*) from="${1#*=}"; shift ;;
    --no-reload) reload=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

case "$prefix" in
  /*) ;;
  *) echo "error: --prefix must be an absolute path, got $prefix" >&2; exit 2 ;;
esac
prefix="${prefix%/}" # "" for /
if [ -n "$destdir" ]; then
  mkdir -p "$destdir"
  destdir="$(cd "$destdir" && pwd)"
fi
if [ -z "$from" ]; then
  from="${CARGO_TARGET_DIR:-$repo/target}/release"
fi

bins=(alertflow alertflow-worker alertflow-beat)
for b in "${bins[@]}"; do
  if [ ! -x "$from/$b" ]; then
    echo "error: $from/$b not found: run \`cargo build --release --locked\` first, or pass --from DIR" >&2
    exit 1
  fi
done

as_root=0
[ "$(id -u)" -eq 0 ] && as_root=1
live=0 # installing onto this very host (not staging)
[ -z "$destdir" ] && [ "$as_root" -eq 1 ] && live=1
if [ -z "$destdir" ] && [ "$as_root" -eq 0 ]; then
  echo "error: run as root to install onto this host, or pass --destdir DIR to stage" >&2
  exit 1
fi

bindir="$prefix/bin"
docdir="$prefix/share/doc/alertflow"
D="$destdir"

say() { printf '%s\n' "$*"; }

# 1. Binaries (install(1) replaces the file, so running processes keep theirs).
install -d -m 0755 "$D$bindir"
for b in "${bins[@]}"; do
  install -m 0755 "$from/$b" "$D$bindir/$b"
done
say "binaries: ${bins[*]} in $D$bindir"

# 2. Units, pointed at this prefix.
install -d -m 0755 "$D/etc/systemd/system"
for u in alertflow-worker@.service alertflow-beat.service alertflow-web.service; do
  sed -e "s#/usr/local/bin/#$bindir/#g" \
    -e "s#/usr/local/share/doc/alertflow#$docdir#g" \
    "$here/systemd/$u" >"$D/etc/systemd/system/$u.tmp"
  chmod 0644 "$D/etc/systemd/system/$u.tmp"
  mv -f "$D/etc/systemd/system/$u.tmp" "$D/etc/systemd/system/$u"
done
say "units: $D/etc/systemd/system/{alertflow-worker@.service,alertflow-beat.service,alertflow-web.service}"

# 3. The system user.
install -d -m 0755 "$D/etc/sysusers.d"
install -m 0644 "$here/systemd/alertflow.sysusers" "$D/etc/sysusers.d/alertflow.conf"
if [ "$live" -eq 1 ]; then
  if ! getent passwd alertflow >/dev/null; then
    if command -v systemd-sysusers >/dev/null 2>&1; then
      systemd-sysusers /etc/sysusers.d/alertflow.conf
    else
      useradd --system --user-group --home-dir /var/lib/alertflow --no-create-home \
        --shell /usr/sbin/nologin --comment "alertflow task queue" alertflow
    fi
    say "user: created alertflow"
  else
    say "user: alertflow exists"
  fi
else
  say "user: staging under $D, not creating it (systemd-sysusers does on the host)"
fi

# 4. Configuration: never overwrite what is there.
install -d -m 0750 "$D/etc/alertflow"
install -d -m 0755 "$D/etc/default"
if [ ! -e "$D/etc/default/alertflow" ]; then
  install -m 0640 "$here/alertflow.env" "$D/etc/default/alertflow"
  say "env: wrote $D/etc/default/alertflow"
else
  say "env: kept $D/etc/default/alertflow"
fi
if [ ! -e "$D/etc/alertflow/alertflow.toml" ]; then
  install -m 0640 "$here/alertflow.toml" "$D/etc/alertflow/alertflow.toml"
  say "config: wrote $D/etc/alertflow/alertflow.toml"
else
  say "config: kept $D/etc/alertflow/alertflow.toml"
fi
if [ "$live" -eq 1 ]; then
  # Readable by the service user, not by everyone (they may hold secrets).
  chown root:alertflow /etc/alertflow /etc/default/alertflow /etc/alertflow/alertflow.toml
  chmod 0750 /etc/alertflow
  chmod 0640 /etc/default/alertflow /etc/alertflow/alertflow.toml
fi

# 5. Docs, examples, completions, man page.
install -d -m 0755 "$D$docdir"
for f in "$here/alertflow.toml" "$here/alertflow.env" "$repo/README.md" "$repo/docs/operations.md"; do
  [ -e "$f" ] && install -m 0644 "$f" "$D$docdir/"
done
cli="$from/alertflow"
if "$cli" completions bash >/dev/null 2>&1; then
  install -d -m 0755 "$D$prefix/share/bash-completion/completions" \
    "$D$prefix/share/zsh/site-functions" "$D$prefix/share/fish/vendor_completions.d"
  for b in "${bins[@]}"; do
    "$cli" completions bash --for "$b" >"$D$prefix/share/bash-completion/completions/$b"
    "$cli" completions zsh --for "$b" >"$D$prefix/share/zsh/site-functions/_$b"
    "$cli" completions fish --for "$b" >"$D$prefix/share/fish/vendor_completions.d/$b.fish"
  done
  say "completions: bash, zsh, fish under $D$prefix/share"
fi
if "$cli" man >/dev/null 2>&1; then
  for b in "${bins[@]}"; do
    "$cli" man --for "$b" --out-dir "$D$prefix/share/man/man1"
  done
  say "man pages: $D$prefix/share/man/man1 (man alertflow, man alertflow-check-config, ...)"
fi

# 6. Tell systemd.
if [ "$live" -eq 1 ] && [ "$reload" -eq 1 ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  say "systemd: reloaded"
else
  say "systemd: not reloaded (staging, --no-reload, or systemd is not running)"
fi

cat <<EOF

Next:
  edit /etc/alertflow/alertflow.toml and /etc/default/alertflow (secrets)
  $bindir/alertflow check-config --connect
  systemctl enable --now alertflow-worker@{1..4} alertflow-beat alertflow-web
  systemctl status 'alertflow-worker@*' alertflow-beat alertflow-web
  (the dashboard: ssh -L 9800:127.0.0.1:9800 this-host, then http://127.0.0.1:9800/)
Upgrading: run this again, then restart one worker at a time
  (for i in 1 2 3 4; do systemctl restart alertflow-worker@\$i; done; systemctl restart alertflow-beat alertflow-web)
EOF
