umask 022
TMPD=$(mktemp -d) || { echo '{"result":"error","error":"tempdir"}'; exit 9; }
trap 'rm -rf "$TMPD"' EXIT
# True when file $2 is missing or differs from $1 (what would change on install).
differs() { ! { [ -f "$2" ] && [ "$(cat "$1")" = "$(cat "$2")" ]; }; }
@@PAYLOAD@@
take_lock
STACK=unit-watch
find_devs && detect_stack
# Everything this run persists: "<staged file> <target> <mode>", generated before anything is
# applied, so the result can say which files change.
WANT=("$TMPD/body $BODY_PATH 0644" "$TMPD/unit $UNIT_PATH 0644")
[ "$STACK" = unit-watch ] && WANT+=("$TMPD/watch $WATCH_UNIT_PATH 0644")
printf '%s\n' "$STACK" >"$TMPD/mechanism"
WANT+=("$TMPD/mechanism $MECHANISM_FILE 0644")
n=0
while read -r gen path mode; do
  [ -n "$gen" ] || continue
  n=$((n + 1))
  "$gen" >"$TMPD/stack.$n" || fail persist 9 "cannot render $path"
  WANT+=("$TMPD/stack.$n $path $mode")
done < <(stack_files)
LINKS=("$UNIT_PATH $UNIT_LINK")
[ "$STACK" = unit-watch ] && LINKS+=("$WATCH_UNIT_PATH $WATCH_UNIT_LINK")
PENDING=()
for w in "${WANT[@]}"; do
  read -r src dst _ <<<"$w"
  differs "$src" "$dst" && PENDING+=("+file $dst")
done
for l in "${LINKS[@]}"; do
  read -r target link <<<"$l"
  [ "$(readlink "$link" 2>/dev/null)" = "$target" ] || PENDING+=("+enable ${link##*/}")
done
# Apply first (the body checks, applies, and undoes itself on failure); persist only what
# applied cleanly, and undo the applied state too if persisting fails (all or nothing).
/bin/bash "$TMPD/body" --mechanism "$STACK" --undo-log "$TMPD/undo" ${PENDING[@]+"${PENDING[@]}"} >"$TMPD/out"
rc=$?
if [ "$rc" -ne 0 ]; then cat "$TMPD/out"; exit "$rc"; fi
while IFS= read -r line; do UNDO+=("$line"); done <"$TMPD/undo"
# The body's changes are this run's too: reported with the installer's, or as rolled back.
CHANGES=$(sed -n 's/.*"changes":\[\(.*\)\],"warnings":.*/\1/p' "$TMPD/out" | tail -n 1)
MANIFEST_NEW=()
manifest_add() { MANIFEST_NEW+=("$1"); }
make_dirs() { # $1 dir: create missing levels, each recorded (with a trailing /) and undone
  [ -d "$1" ] && return 0
  make_dirs "${1%/*}" || return 1
  mkdir "$1" || return 1
  undo rmdir "$1"
  manifest_add "$1/"
}
put_file() { # $1 staged, $2 target, $3 mode: atomic replace, undone on failure
  manifest_add "$2"
  differs "$1" "$2" || return 0
  make_dirs "${2%/*}" || return 1
  if [ -e "$2" ]; then
    cp -p "$2" "$TMPD/prev.${#UNDO[@]}" || return 1
    undo cp -p "$TMPD/prev.${#UNDO[@]}" "$2"
  else
    undo rm -f "$2"
  fi
  cp "$1" "$2.tmp.$$" && chmod "$3" "$2.tmp.$$" && mv -f "$2.tmp.$$" "$2"
}
undo stack_reload  # undone last: the stack lets go of the restored configuration
for w in "${WANT[@]}"; do
  read -r src dst mode <<<"$w"
  put_file "$src" "$dst" "$mode" || fail persist 9 "routes applied but cannot persist $dst"
done
for l in "${LINKS[@]}"; do
  read -r target link <<<"$l"
  [ "$(readlink "$link" 2>/dev/null)" = "$target" ] && { manifest_add "$link"; continue; }
  if ! { make_dirs "${link%/*}" && ln -sfn "$target" "$link"; }; then
    fail persist 9 "cannot enable ${link##*/}"
  fi
  undo rm -f "$link"
  manifest_add "$link"
done
if [ "$STACK" = networkmanager ]; then
  nm_apply || fail persist 9 "cannot write the NetworkManager profiles"
fi
# Files of ours an earlier run wrote that this one does not want (e.g. another stack's).
if [ -r "$MANIFEST" ]; then
  while IFS= read -r old; do
    [ -n "$old" ] || continue
    case " ${MANIFEST_NEW[*]} " in *" $old "*) continue ;; esac
    case "$old" in
      */) [ -d "$old" ] && manifest_add "$old" ;;  # kept: cleanup removes it when empty
      *) if [ -e "$old" ] || [ -L "$old" ]; then rm -f "$old" && change "-file $old"; fi ;;
    esac
  done <"$MANIFEST"
fi
printf '%s\n' "${MANIFEST_NEW[@]}" | sort -u >"$TMPD/manifest"
put_file "$TMPD/manifest" "$MANIFEST" 0644 || fail persist 9 "cannot write $MANIFEST"
if [ "${#PENDING[@]}" -gt 0 ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
stack_reload || fail persist 9 "the $STACK configuration did not load"
# The guard once more, now that the stack has (re)applied its configuration.
if ! /bin/bash "$BODY_PATH" --hook >"$TMPD/check" 2>&1; then
  fail persist 9 "routes did not survive the $STACK reload: $(tail -n 1 "$TMPD/check")"
fi
UNDO=()
OUT=$(tail -n 1 "$TMPD/out")
OUT=${OUT/\"changes\":\[*\],\"warnings\"/\"changes\":[$CHANGES],\"warnings\"}
[ -n "$CHANGES" ] && OUT=${OUT/\"result\":\"unchanged\"/\"result\":\"applied\"}
printf '%s\n' "$OUT"
