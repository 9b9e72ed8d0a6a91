set -u
export LC_ALL=C
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CHANGES=''
WARNINGS=''
# Only our own fixed tokens and kernel interface names reach the JSON; strip anything else.
clean() { local s="$*"; printf '%s' "${s//[^A-Za-z0-9 ._:\/+@(),-]/?}"; }
change() { CHANGES="${CHANGES:+$CHANGES,}\"$(clean "$*")\""; }
warn() { WARNINGS="${WARNINGS:+$WARNINGS,}\"$(clean "$*")\""; }
fail() { # $1 code, $2 exit status, $3 message
  echo "hairpin: error: $3" >&2
  printf '{"result":"error","error":"%s","message":"%s","changes":[%s]}\n' \
    "$1" "$(clean "$3")" "$CHANGES"
  exit "$2"
}
