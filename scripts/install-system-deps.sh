#!/usr/bin/env bash
# Installs the real services the tests start on 127.0.0.1 (PostgreSQL 15, Redis, Chromium, coturn), the font the
# consent PDFs embed (DejaVu, for Cyrillic) and openssl (the tests sign consents with `openssl cms`).
# Only what is missing is installed, so a prepared machine spends no time here.
set -euo pipefail
need=()
[[ -x /usr/lib/postgresql/15/bin/postgres ]] || need+=(postgresql-15)
command -v redis-server >/dev/null || need+=(redis-server)
command -v chromium >/dev/null || need+=(chromium)
command -v runuser >/dev/null || need+=(util-linux)
[[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]] || need+=(fonts-dejavu-core)
command -v openssl >/dev/null || need+=(openssl)
command -v turnserver >/dev/null || need+=(coturn)
if ((${#need[@]})); then
  if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
  # The tests start their own turnserver on 127.0.0.1. The package's service must not run: it would listen on
  # every interface with the stock /etc/turnserver.conf. Its SysV script stays off while /etc/default/coturn
  # leaves TURNSERVER_ENABLED unset (Debian's default), but its systemd unit ignores that file and is enabled and
  # started by the package, so under systemd it is masked for the install and disabled afterwards.
  systemd=
  if [[ " ${need[*]} " == *" coturn "* && -d /run/systemd/system ]]; then
    systemd=1
    $SUDO systemctl mask --runtime --quiet coturn.service
  fi
  echo "installing system packages: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  if [[ -n $systemd ]]; then
    $SUDO systemctl disable --quiet coturn.service
    $SUDO systemctl unmask --runtime --quiet coturn.service
  elif [[ " ${need[*]} " == *" coturn "* && -s /run/turnserver.pid ]]; then
    # Enabled in /etc/default/coturn kept from an earlier install: stop that daemon by its pid (a test's own
    # turnserver keeps its pid file elsewhere), if the pid is still a turnserver's.
    pid=$(cat /run/turnserver.pid)
    if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == turnserver ]]; then
      echo "stopping the coturn service the package started (tests run their own)"
      $SUDO kill "$pid"
    fi
  fi
fi
