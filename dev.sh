#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# dev.sh - set-up, build, run and test kurir on Debian 12.
#
#   ./dev.sh run     install packages, build, run kurird on the embedded
#                    default config (data in ./var), in the foreground
#   ./dev.sh test    install packages, build, run the whole test suite with
#                    prove, then again on the ASan/UBSan build (debug=1)
#   ./dev.sh deps    only install the Debian packages
#   ./dev.sh build   only build (scons)
set -euo pipefail
cd "$(dirname "$0")"

# Build and test dependencies (Debian package names), one reason each:
PKGS=(
  scons pkg-config gcc          # build
  libglib2.0-dev                # event loop, data structures, GIO, g_test
  libconfig-dev                 # kurir.conf
  libssl-dev openssl            # TLS
  libcrypt-dev libargon2-dev    # password hashes (yescrypt, Argon2id)
  libgmime-3.0-dev              # MIME parsing
  python3                       # end-to-end tests (smtplib, imaplib, poplib)
  perl                          # prove (TAP harness)
  swaks curl                    # real SMTP clients in end-to-end tests
  fetchmail                     # a real POP3 client in end-to-end tests
  isync mutt                    # real IMAP clients (mbsync, mutt) in end-to-end tests
  procps                        # ps/pgrep in tests
)

deps() {
  local missing=()
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "${missing[@]}"
  fi
}

build() {
  scons -Q -j"$(nproc)" "$@"
}

suite() {
  local bdir=$1
  local tests=()
  for t in "$bdir"/t/test-*; do [ -x "$t" ] && [ -f "$t" ] && tests+=("./$t"); done
  for t in t/*.py; do [ -x "$t" ] && tests+=("./$t"); done
  # On failure, run the failed tests again verbosely so the log shows
  # their diagnostics, and still fail.
  if ! KURIR_BUILD=$bdir prove -j2 --timer --state=save "${tests[@]}"; then
    KURIR_BUILD=$bdir prove -v --state=failed || true
    return 1
  fi
}

case "${1:-}" in
  deps) deps ;;
  build) deps; build ;;
  run)
    deps; build
    exec ./build/kurird --data-dir ./var ;;
  test)
    deps
    build
    suite build
    build debug=1
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1 \
    LSAN_OPTIONS=suppressions=$PWD/t/lsan.supp:print_suppressions=0 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      suite build-debug ;;
  *)
    sed -n '3,10p' "$0"; exit 64 ;;
esac
