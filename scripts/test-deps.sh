#!/usr/bin/env bash
# Installs the system tools that some tests drive, where they are missing and we may install them.
# Tests that need a tool which could not be installed skip with the reason.
set -u
want=()
command -v ab >/dev/null 2>&1 || want+=(apache2-utils)
command -v wrk >/dev/null 2>&1 || want+=(wrk)
command -v hey >/dev/null 2>&1 || want+=(hey)
command -v chromium >/dev/null 2>&1 || want+=(chromium)
[ -x /usr/sbin/rsyslogd ] || [ -x /sbin/rsyslogd ] || want+=(rsyslog)  # the syslog collector (docs/network.md)
# The explain pass's tracers (issue 17): bpftrace on the syscall tracepoints, strace where it cannot run.
command -v bpftrace >/dev/null 2>&1 || want+=(bpftrace)
command -v strace >/dev/null 2>&1 || want+=(strace)
mount_tracefs() {
  # bpftrace reads the syscall tracepoints from tracefs; some machines boot without it mounted.
  if [ "$(id -u)" = 0 ] && [ -d /sys/kernel/tracing ] && [ ! -d /sys/kernel/tracing/events/syscalls ]; then
    mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null \
      || echo "note: cannot mount tracefs; the explain pass will fall back to strace" >&2
  fi
}
trap mount_tracefs EXIT
[ ${#want[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: not root or no apt-get; tests needing ${want[*]} will skip" >&2
  exit 0
fi
echo "installing ${want[*]} (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq </dev/null >/dev/null 2>&1 || true
apt-get install -y -qq --no-install-recommends "${want[@]}" </dev/null >/dev/null 2>&1 \
  || echo "note: apt-get install ${want[*]} failed; tests needing them will skip" >&2
exit 0
