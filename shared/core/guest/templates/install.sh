set -u
umask 022
TMPD=$(mktemp -d) || { echo '{"result":"error","error":"tempdir"}'; exit 9; }
trap 'rm -rf "$TMPD"' EXIT
# True when file $2 is missing or differs from $1 (what would change on install).
differs() { ! { [ -f "$2" ] && [ "$(cat "$1")" = "$(cat "$2")" ]; }; }
@@PAYLOAD@@
PENDING=()
differs "$TMPD/body" "$BODY_PATH" && PENDING+=("+file $BODY_PATH")
differs "$TMPD/unit" "$UNIT_PATH" && PENDING+=("+file $UNIT_PATH")
[ "$(readlink "$UNIT_LINK" 2>/dev/null)" = "$UNIT_PATH" ] || PENDING+=("+enable $UNIT_NAME")
# Apply first; persist only what applied cleanly (a failing unit would stall every boot).
/bin/bash "$TMPD/body" ${PENDING[@]+"${PENDING[@]}"}
rc=$?
[ "$rc" -eq 0 ] || exit "$rc"
install_one() { # $1 source, $2 target: atomic replace
  mkdir -p "${2%/*}" && cp "$1" "$2.tmp.$$" && chmod 0644 "$2.tmp.$$" && mv -f "$2.tmp.$$" "$2"
}
if { ! differs "$TMPD/body" "$BODY_PATH" || install_one "$TMPD/body" "$BODY_PATH"; } &&
   { ! differs "$TMPD/unit" "$UNIT_PATH" || install_one "$TMPD/unit" "$UNIT_PATH"; } &&
   { [ "$(readlink "$UNIT_LINK" 2>/dev/null)" = "$UNIT_PATH" ] ||
     { mkdir -p "${UNIT_LINK%/*}" && ln -sfn "$UNIT_PATH" "$UNIT_LINK"; }; }; then
  if [ "${#PENDING[@]}" -gt 0 ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
  fi
  exit 0
fi
echo "hairpin: error: applied, but cannot persist to $BODY_PATH / $UNIT_PATH" >&2
echo '{"result":"error","error":"persist","message":"routes applied but not persisted"}'
exit 9
