# --watch (hairpin-routes-watch.service, used when no network stack owns the config): re-apply
# after link and address events, once things are quiet for a second (a burst is one re-apply;
# the re-apply's own changes cause at most one more, unchanged, pass).
watch_events() {
  local line
  while read -r line; do
    while read -r -t 1 line; do :; done
    /bin/bash "$0" --hook >/dev/null 2>&1
  done < <(ip monitor link address)
  exit 0
}
