#!/usr/bin/env bash
# Adds a trader to an auth file: renders trader.conf.tmpl for one Pinnacle user id and
# inserts it before the "# END TRADERS" marker. Reload the servers afterwards
# (`nats-server --signal reload`, or SIGHUP): no restart, no dropped connections.
#
#   nats/add-trader.sh <user-id> '<bcrypt-hash>' [auth-file]    (default: nats/auth.conf)
#
# The user id is the trader's id from the user API (a lower-case UUID), which is also their
# NATS user name, so their subjects (orders.<id>.>, events.orders.<id>, _INBOX.<id>.>)
# need no escaping. Hash the trader's NATS password as in passwords.conf.example.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[ $# -ge 2 ] || { echo "usage: $0 <user-id> '<bcrypt-hash>' [auth-file]" >&2; exit 2; }
user="$1" hash="$2" file="${3:-$here/auth.conf}"
[[ "$user" =~ ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$ ]] \
  || { echo "add-trader: '$user' is not a lower-case UUID" >&2; exit 2; }
[[ "$hash" =~ ^\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}$ ]] \
  || { echo "add-trader: the second argument must be a bcrypt hash" >&2; exit 2; }
grep -q '^ *# END TRADERS' "$file" || { echo "add-trader: no END TRADERS marker in $file" >&2; exit 1; }
if grep -q "user: \"$user\"" "$file"; then echo "add-trader: $user is already in $file" >&2; exit 1; fi
entry="$(sed -e "s/@USER_ID@/$user/g" -e "s|@PASSWORD_HASH@|$hash|g" "$here/trader.conf.tmpl")"
tmp="$(mktemp)"
ENTRY="$entry" awk '/^ *# END TRADERS/ { print ENVIRON["ENTRY"] } { print }' "$file" >"$tmp"
cat "$tmp" >"$file" && rm -f "$tmp"
echo "add-trader: added $user to $file" >&2
